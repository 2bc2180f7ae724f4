"""What `qis define-series` and `qis register-source` send."""

from __future__ import annotations

import pytest
from qis.data.v1 import series_pb2, values_pb2
from qis_cli.definitions import SeriesSpec, parse_source_spec, register_source_request
from qis_cli.errors import CliError


@pytest.mark.parametrize(
    ("spec", "source", "priority"),
    [
        ("bloomberg", "sources/bloomberg", 0),
        ("bloomberg:2", "sources/bloomberg", 2),
        ("feed:v2", "sources/feed:v2", 0),  # ids may hold ':'; only digits make a priority
        ("feed:v2:1", "sources/feed:v2", 1),
    ],
)
def test_source_specs(spec: str, source: str, priority: int) -> None:
    parsed = parse_source_spec(spec)
    assert (parsed.source, parsed.priority) == (source, priority)


def test_an_empty_source_spec_is_a_usage_error() -> None:
    with pytest.raises(CliError):
        parse_source_spec("")


def test_a_series_definition_request() -> None:
    spec = SeriesSpec(
        series_id="AAPL.close",
        data_type="price",
        frequency="daily",
        unit="USD",
        sources=["exchange:1", "vendor:2"],
        require_positive=True,
        time_zone="America/New_York",
        calendar="XNYS",
        manual_publication=True,
    )
    request = spec.request("cmd-1")
    assert (request.command_id, request.series_id) == ("cmd-1", "AAPL.close")
    series = request.series
    assert series.data_type == values_pb2.DATA_TYPE_PRICE
    assert series.frequency == series_pb2.FREQUENCY_DAILY
    assert [(s.source, s.priority) for s in series.sources] == [
        ("sources/exchange", 1),
        ("sources/vendor", 2),
    ]
    assert series.validation.require_positive
    assert (series.time_zone, series.calendar) == ("America/New_York", "XNYS")
    assert series.publication.mode == series_pb2.PUBLICATION_MODE_MANUAL


def test_a_registered_source_is_enabled() -> None:
    request = register_source_request("cmd-2", "csv", "file", "daily closes")
    assert request.source.enabled
    assert (request.source_id, request.source.provider) == ("csv", "file")
