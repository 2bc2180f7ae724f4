"""Identifiers and resource names ("series/{id}", "sources/{id}")."""

from __future__ import annotations

import re

from qis_domain.bounds import quoted
from qis_domain.errors import InvalidArgument

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}")
SERIES_COLLECTION = "series"
SOURCES_COLLECTION = "sources"


def validate_id(value: str, field: str) -> str:
    if not _ID.fullmatch(value):
        raise InvalidArgument.single(
            field, f"{quoted(value)} is not a valid id: 1-128 of letters, digits and '._:-'"
        )
    return value


def parse_name(name: str, collection: str, field: str) -> str:
    """The id inside a resource name `{collection}/{id}`."""
    prefix = f"{collection}/"
    if not name.startswith(prefix):
        raise InvalidArgument.single(
            field, f"{quoted(name)} is not a resource name '{prefix}{{id}}'"
        )
    return validate_id(name[len(prefix) :], field)


def series_name(series_id: str) -> str:
    return f"{SERIES_COLLECTION}/{series_id}"


def source_name(source_id: str) -> str:
    return f"{SOURCES_COLLECTION}/{source_id}"
