"""Enum values as a person reads and types them: "jump", "open", "priority", "block"."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


class _Value(Protocol):
    @property
    def name(self) -> str: ...


class EnumType(Protocol):
    """An enum's descriptor, as `X.DESCRIPTOR` or a field's `enum_type` gives it (protobuf
    types the pure-Python and the upb descriptors apart)."""

    @property
    def values_by_number(self) -> Mapping[int, _Value]: ...


def short_name(enum: EnumType, number: int) -> str:
    """The value's name without its enum's prefix, in lower case (QUALITY_RULE_SOURCE_BREAK ->
    "source_break"). The prefix is the one of the enum's zero value, X_UNSPECIFIED, which every
    enum of the contract has. A number this client does not know (a value added to a newer
    service; proto3 keeps it) is shown as the number."""
    value = enum.values_by_number.get(number)
    if value is None:
        return str(number)
    prefix = enum.values_by_number[0].name.removesuffix("UNSPECIFIED")
    return value.name.removeprefix(prefix).lower()
