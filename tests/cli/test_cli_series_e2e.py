"""`qis define-series` with rules and policies, and `qis evolve-series`, against the real qis
processes: what the query service then holds as the definition."""

from __future__ import annotations

import time

import grpc
import pytest
from google.protobuf import duration_pb2
from qis.data.v1 import series_pb2
from qis_cli import reading
from qis_cli.connection import call
from qis_cli.definitions import evolve_request, evolved
from qis_cli.errors import CliError
from qis_cli.main import Stub, build_parser

from tests.cli.cli_support import DefineSeries, Qis, SeriesSetup
from tests.e2e.harness import Cluster

pytestmark = pytest.mark.e2e


def _definition(services: Cluster, series: SeriesSetup, schema_version: int) -> series_pb2.Series:
    """The definition once the read model has the given schema version (it follows the log)."""
    deadline = time.monotonic() + 10
    with grpc.insecure_channel(services.address("query")) as channel:
        stub = reading.Stub(channel)
        while True:
            found = reading.get_series(stub, series.series_id, (("x-qis-user", "t"),))
            if found.schema_version >= schema_version or time.monotonic() > deadline:
                return found
            time.sleep(0.05)


def test_define_series_sets_rules_and_policies(
    define_series: DefineSeries, services: Cluster
) -> None:
    series = define_series(
        "price", "USD", "--max-jump-percent", "12.5", "--max-spike-percent", "8",
        "--max-zscore", "4", "--zscore-window", "30", "--stale-after", "5",
        "--reconciliation", "median", "--tolerance-bps", "2.5", "--tolerance-abs", "0.01",
        "--on-break", "block", "--min-quality", "0.8", "--cutoff", "2h", "--sla", "90m",
        "--manual-publication", "--precision", "2", "--description", "closing prices",
    )  # fmt: skip
    held = _definition(services, series, 1)
    assert held.validation == series_pb2.ValidationRules(
        max_jump_percent="12.5",
        max_spike_percent="8",
        max_zscore="4",
        zscore_window=30,
        stale_after_snaps=5,
    )
    assert held.reconciliation == series_pb2.ReconciliationPolicy(
        method=series_pb2.RECONCILIATION_METHOD_MEDIAN,
        tolerance_bps="2.5",
        tolerance_abs="0.01",
        on_break=series_pb2.BREAK_ACTION_BLOCK,
    )
    assert held.publication == series_pb2.PublicationPolicy(
        mode=series_pb2.PUBLICATION_MODE_MANUAL,
        min_sources=1,
        min_quality_score="0.8",
        cutoff=duration_pb2.Duration(seconds=7_200),
        timeliness_sla=duration_pb2.Duration(seconds=5_400),
    )
    assert (held.precision, held.description) == (2, "closing prices")


def test_evolve_series_changes_only_what_is_given(
    qis: Qis, price_series: SeriesSetup, services: Cluster
) -> None:
    before = _definition(services, price_series, 1)
    result = qis(
        "evolve-series", price_series.series_id, "--reason", "noisy vendor",
        "--max-jump-percent", "10", "--on-break", "block", "--sla", "1h",
    )  # fmt: skip
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].startswith(
        f"evolved series/{price_series.series_id} (was schema version 1) (commit position"
    )
    assert lines[1:] == [
        "  validation.max_jump_percent: (none) -> 10",
        "  reconciliation.on_break: flag -> block",
        "  publication.timeliness_sla: (none) -> 1h",
    ]
    after = _definition(services, price_series, 2)
    assert after.schema_version == 2
    expected = series_pb2.Series()
    expected.CopyFrom(before)
    expected.schema_version = 2
    expected.validation.max_jump_percent = "10"
    expected.reconciliation.on_break = series_pb2.BREAK_ACTION_BLOCK
    expected.publication.timeliness_sla.CopyFrom(duration_pb2.Duration(seconds=3_600))
    assert after == expected, "require_positive and the rest are kept"

    again = qis(
        "evolve-series", price_series.series_id, "--reason", "again", "--max-jump-percent", "10"
    )
    assert (again.code, again.out.strip()) == (
        0,
        f"series/{price_series.series_id} is defined so already: nothing sent",
    )


def test_evolve_series_refusals_have_their_exit_codes(qis: Qis, price_series: SeriesSetup) -> None:
    unknown = qis("evolve-series", "no-such-series", "--reason", "r", "--sla", "1h")
    assert (unknown.code, unknown.out) == (3, "")
    assert unknown.err.startswith("qis evolve-series: NOT_FOUND: series/no-such-series")

    out_of_range = qis(
        "evolve-series", price_series.series_id, "--reason", "r", "--zscore-window", "1"
    )
    assert out_of_range.code == 1
    assert out_of_range.err.splitlines()[:2] == [
        "qis evolve-series: INVALID_ARGUMENT",
        "  series.validation.zscore_window: 1 is outside 2..1,000",
    ]


def test_a_change_made_from_a_version_read_before_another_change_is_refused(
    qis: Qis, price_series: SeriesSetup, services: Cluster
) -> None:
    """What `qis evolve-series` sends when someone else's evolution got in between its read and
    its write: the service refuses it, and the person is told to run the command again."""
    stale = _definition(services, price_series, 1)
    other = qis("evolve-series", price_series.series_id, "--reason", "first", "--sla", "1h")
    assert other.code == 0, other.err
    args = build_parser().parse_args(
        ["evolve-series", price_series.series_id, "--reason", "second", "--max-zscore", "4"]
    )
    request = evolve_request("cmd-stale", stale, evolved(stale, args), args)
    metadata = (("x-qis-user", "cli-tester"),)
    with pytest.raises(CliError) as refused:
        call(
            services.address("command"),
            "command",
            Stub,
            lambda stub: stub.EvolveSeriesSchema(request, metadata=metadata),
        )
    assert refused.value.exit_code == 4
    first, hint = str(refused.value).splitlines()
    assert first.startswith("ABORTED: ")
    assert hint.startswith("  the series changed since its definition was read")
    assert _definition(services, price_series, 2).publication.timeliness_sla.seconds == 3_600
