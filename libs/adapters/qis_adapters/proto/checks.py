"""Request checks that record violations instead of raising, so that one answer lists them all."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from qis_domain.bounds import MAX_ID_LENGTH, check_length
from qis_domain.errors import FieldViolation, InvalidArgument
from qis_domain.names import parse_name, validate_id

T = TypeVar("T")


def collected(v: list[FieldViolation], parse: Callable[[], T]) -> T | None:
    """What `parse` returns, or None with its violations added to `v`."""
    try:
        return parse()
    except InvalidArgument as error:
        v.extend(error.violations)
        return None


def id_from_proto(value: str, field: str, v: list[FieldViolation]) -> str | None:
    """A bare id ("PX"); records a violation and returns None if it is not one."""
    return _bounded(value, MAX_ID_LENGTH, field, v, lambda: validate_id(value, field))


def name_from_proto(name: str, collection: str, field: str, v: list[FieldViolation]) -> str | None:
    """The id inside a resource name `{collection}/{id}`; a violation and None if not one."""
    limit = len(collection) + 1 + MAX_ID_LENGTH
    return _bounded(name, limit, field, v, lambda: parse_name(name, collection, field))


def _bounded(
    text: str, limit: int, field: str, v: list[FieldViolation], parse: Callable[[], str]
) -> str | None:
    if len(text) > limit:
        # Checked first: the domain's message quotes the whole text.
        check_length(text, limit, field, v)
        return None
    return collected(v, parse)
