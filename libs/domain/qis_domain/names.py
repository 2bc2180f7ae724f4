"""Identifiers and resource names ("series/{id}", "sources/{id}")."""

from __future__ import annotations

import re

from qis_domain.bounds import quoted
from qis_domain.errors import InvalidArgument, Resource
from qis_domain.snaps import format_snap

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


def series_resource(series_id: str) -> Resource:
    return Resource("qis.data.v1.Series", series_name(series_id), "SERIES")


def source_resource(source_id: str) -> Resource:
    return Resource("qis.data.v1.DataSource", source_name(source_id), "SOURCE")


def point_resource(series_id: str, snap_us: int) -> Resource:
    """A point of a series: its official value at a snap."""
    return Resource(
        "qis.data.v1.OfficialValue",
        f"{series_name(series_id)}/points/{format_snap(snap_us)}",
        "POINT",
    )


def issue_resource(series_id: str, issue_id: str) -> Resource:
    return Resource(
        "qis.data.v1.QualityIssue", f"{series_name(series_id)}/issues/{issue_id}", "ISSUE"
    )


def command_resource(scope: str, command_id: str) -> Resource:
    return Resource("qis.data.v1.Command", f"{scope}/commands/{command_id}", "COMMAND")
