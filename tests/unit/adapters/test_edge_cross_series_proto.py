"""`benchmark` and `underlying` at the edge: each travels both ways, a malformed one is refused
with its fields (a benchmark needs a rule; names, decimals and the window are checked), an
unset one stays unset (a definition without them reads back as before), and issues of the
three cross-series rules reach a client as their QualityRule value."""

from __future__ import annotations

from decimal import Decimal

import pytest
from qis.data.v1 import series_pb2
from qis_adapters.proto.definitions import series_from_proto, series_to_proto
from qis_domain.definitions import BenchmarkCheck, UnderlyingCheck

from tests.unit.adapters.test_edge_proto_mapping import series, violations_of


def test_a_benchmark_check_travels_both_ways() -> None:
    check = series_pb2.BenchmarkCheck(
        series="series/SPX",
        beta="1.2",
        max_residual_multiple="4",
        residual_window=60,
        flat_move_percent="1.5",
    )
    definition = series_from_proto(series(validation__benchmark=check))
    assert definition.validation.benchmark == BenchmarkCheck(
        series_id="SPX",
        beta=Decimal("1.2"),
        max_residual_multiple=Decimal(4),
        residual_window=60,
        flat_move_percent=Decimal("1.5"),
    )
    assert series_to_proto("AAPL", definition, 1).validation.benchmark == check


def test_a_benchmark_check_takes_its_defaults() -> None:
    check = series_pb2.BenchmarkCheck(series="series/SPX", flat_move_percent="1")
    benchmark = series_from_proto(series(validation__benchmark=check)).validation.benchmark
    assert benchmark is not None
    assert (benchmark.beta, benchmark.residual_window) == (Decimal(1), 20)
    assert benchmark.max_residual_multiple is None


def test_an_underlying_check_travels_both_ways() -> None:
    check = series_pb2.UnderlyingCheck(series="series/SPX", inverse=True, tolerance_percent="2")
    definition = series_from_proto(series(validation__underlying=check))
    assert definition.validation.underlying == UnderlyingCheck(
        series_id="SPX", inverse=True, tolerance_percent=Decimal(2)
    )
    assert series_to_proto("SPXP", definition, 1).validation.underlying == check


def test_without_them_the_rules_read_back_unset() -> None:
    definition = series_from_proto(series())
    assert (definition.validation.benchmark, definition.validation.underlying) == (None, None)
    back = series_to_proto("AAPL", definition, 1).validation
    assert not back.HasField("benchmark")
    assert not back.HasField("underlying")
    # Stored definitions without them keep their bytes: the fields are left out.
    assert "benchmark" not in definition.validation.model_dump(mode="json")


@pytest.mark.parametrize(
    ("check", "wrong"),
    [
        (series_pb2.BenchmarkCheck(flat_move_percent="1"), ["series"]),
        (series_pb2.BenchmarkCheck(series="SPX", flat_move_percent="1"), ["series"]),
        (series_pb2.BenchmarkCheck(series="series/SPX"), ["max_residual_multiple"]),
        (
            series_pb2.BenchmarkCheck(
                series="series/SPX", max_residual_multiple="0", flat_move_percent="-1"
            ),
            ["max_residual_multiple", "flat_move_percent"],
        ),
        (
            series_pb2.BenchmarkCheck(
                series="series/SPX", beta="x", max_residual_multiple="3", residual_window=1
            ),
            ["beta", "residual_window"],
        ),
        (
            series_pb2.BenchmarkCheck(
                series="series/SPX", max_residual_multiple="3", residual_window=251
            ),
            ["residual_window"],
        ),
    ],
)
def test_a_malformed_benchmark_check_is_refused_with_its_fields(
    check: series_pb2.BenchmarkCheck, wrong: list[str]
) -> None:
    assert violations_of(series(validation__benchmark=check)) == [
        f"series.validation.benchmark.{name}" for name in wrong
    ]


def test_a_malformed_underlying_check_is_refused_with_its_fields() -> None:
    check = series_pb2.UnderlyingCheck(series="", tolerance_percent="-1")
    assert violations_of(series(validation__underlying=check)) == [
        "series.validation.underlying.series",
        "series.validation.underlying.tolerance_percent",
    ]
