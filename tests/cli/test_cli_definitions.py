"""What `qis define-series`, `qis evolve-series` and `qis register-source` send."""

from __future__ import annotations

import argparse

import pytest
from google.protobuf import duration_pb2, field_mask_pb2
from qis.data.v1 import series_pb2, values_pb2
from qis_cli.definitions import (
    changes,
    define_request,
    duration_seconds,
    duration_text,
    evolve_request,
    evolved,
    parse_source_spec,
    register_source_request,
)
from qis_cli.errors import CliError
from qis_cli.main import build_parser


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


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def test_a_series_definition_request() -> None:
    args = _args(
        "define-series", "AAPL.close", "--type", "price", "--frequency", "daily", "--unit", "USD",
        "--source", "exchange:1", "--source", "vendor:2", "--require-positive",
        "--time-zone", "America/New_York", "--calendar", "XNYS", "--manual-publication",
    )  # fmt: skip
    request = define_request("cmd-1", "AAPL.close", args)
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


_RULES = (
    "--max-jump-percent", "12.5", "--max-spike-percent", "8", "--max-zscore", "4.0",
    "--zscore-window", "30", "--stale-after", "5", "--check-calendar", "--calendar", "XNYS",
    "--time-zone", "America/New_York", "--reconciliation", "consensus",
    "--tolerance-bps", "2.5", "--tolerance-abs", "0.01", "--on-break", "block",
    "--min-sources", "2", "--min-quality", "0.8", "--cutoff", "2h", "--sla", "90m",
    "--manual-publication",
)  # fmt: skip


def _expected_rules() -> series_pb2.Series:
    return series_pb2.Series(
        time_zone="America/New_York",
        calendar="XNYS",
        validation=series_pb2.ValidationRules(
            max_jump_percent="12.5",
            max_spike_percent="8",
            max_zscore="4.0",
            zscore_window=30,
            stale_after_snaps=5,
            check_calendar=True,
        ),
        reconciliation=series_pb2.ReconciliationPolicy(
            method=series_pb2.RECONCILIATION_METHOD_CONSENSUS,
            tolerance_bps="2.5",
            tolerance_abs="0.01",
            on_break=series_pb2.BREAK_ACTION_BLOCK,
        ),
        publication=series_pb2.PublicationPolicy(
            mode=series_pb2.PUBLICATION_MODE_MANUAL,
            min_sources=2,
            min_quality_score="0.8",
            cutoff=duration_pb2.Duration(seconds=7_200),
            timeliness_sla=duration_pb2.Duration(seconds=5_400),
        ),
    )


def test_rules_and_policies_are_set_by_define_series() -> None:
    args = _args(
        "define-series", "x", "--type", "price", "--frequency", "daily", "--source", "a", *_RULES
    )
    series = define_request("cmd", "x", args).series
    expected = _expected_rules()
    assert series.validation == expected.validation
    assert series.reconciliation == expected.reconciliation
    assert series.publication == expected.publication
    assert (series.time_zone, series.calendar) == (expected.time_zone, expected.calendar)


def _current() -> series_pb2.Series:
    return series_pb2.Series(
        name="series/x",
        data_type=values_pb2.DATA_TYPE_PRICE,
        frequency=series_pb2.FREQUENCY_DAILY,
        unit="USD",
        time_zone="UTC",
        sources=[
            series_pb2.SeriesSource(source="sources/a", priority=1),
            series_pb2.SeriesSource(source="sources/b", priority=2),
        ],
        validation=series_pb2.ValidationRules(
            require_positive=True, max_jump_percent="20", zscore_window=20
        ),
        publication=series_pb2.PublicationPolicy(
            mode=series_pb2.PUBLICATION_MODE_AUTOMATIC, min_sources=1
        ),
        description="kept",
        schema_version=3,
    )


def test_evolve_changes_only_what_is_given() -> None:
    current = _current()
    args = _args("evolve-series", "x", "--reason", "r", "--max-jump-percent", "off", "--sla", "1d")
    series = evolved(current, args)
    expected = series_pb2.Series()
    expected.CopyFrom(current)
    expected.validation.max_jump_percent = ""
    expected.publication.timeliness_sla.seconds = 86_400
    assert series == expected
    assert changes(current, series) == [
        "validation.max_jump_percent: 20 -> (none)",
        "publication.timeliness_sla: (none) -> 1d",
    ]


def test_changes_show_jump_windows_as_times_of_day() -> None:
    """A series with windows set elsewhere (another client, the API) is shown, not a crash."""
    current = _current()
    after = series_pb2.Series()
    after.CopyFrom(current)
    window = after.validation.jump_windows.add(multiplier="3")
    window.start.seconds, window.end.seconds = 9 * 3600 + 30 * 60, 10 * 3600
    assert changes(current, after) == [
        "validation.jump_windows: (none) -> 09:30:00-10:00:00x3",
    ]


def test_evolve_sends_the_fields_given_and_the_version_read() -> None:
    """The mask names the top-level fields the options touch, whole: the validation rules not
    given go as they were read. The version read makes a concurrent change a refusal."""
    current = _current()
    args = _args(
        "evolve-series", "x", "--reason", "noisy", "--max-jump-percent", "10",
        "--sla", "1h", "--min-sources", "2", "--unit", "EUR",
    )  # fmt: skip
    series = evolved(current, args, args.source, args.remove_source)
    request = evolve_request("cmd-3", current, series, args)
    assert request.update_mask == field_mask_pb2.FieldMask(
        paths=["unit", "validation", "publication"]
    )
    assert request.expected_schema_version == 3
    assert (request.command_id, request.reason) == ("cmd-3", "noisy")
    assert request.series.validation == series_pb2.ValidationRules(
        require_positive=True, max_jump_percent="10", zscore_window=20
    )
    assert request.series.publication == series_pb2.PublicationPolicy(
        mode=series_pb2.PUBLICATION_MODE_AUTOMATIC,
        min_sources=2,
        timeliness_sla=duration_pb2.Duration(seconds=3_600),
    )


@pytest.mark.parametrize(
    ("options", "paths"),
    [
        (("--source", "c:3"), ["sources"]),
        (("--remove-source", "a"), ["sources"]),
        (("--description", "new", "--on-break", "block"), ["reconciliation", "description"]),
        (("--time-zone", "Europe/London", "--calendar", "XLON"), ["time_zone", "calendar"]),
        (("--precision", "2", "--no-check-calendar"), ["precision", "validation"]),
    ],
)
def test_the_mask_names_exactly_what_the_options_touch(
    options: tuple[str, ...], paths: list[str]
) -> None:
    args = _args("evolve-series", "x", "--reason", "r", *options)
    series = evolved(_current(), args, args.source, args.remove_source)
    assert list(evolve_request("c", _current(), series, args).update_mask.paths) == paths


def test_evolve_sets_every_rule_and_policy() -> None:
    args = _args("evolve-series", "x", "--reason", "r", "--no-require-positive", *_RULES)
    series = evolved(_current(), args)
    expected = _expected_rules()
    expected.validation.require_positive = False
    assert series.validation == expected.validation
    assert series.reconciliation == expected.reconciliation
    assert series.publication == expected.publication
    assert (series.unit, series.description, series.schema_version) == ("USD", "kept", 3)


def test_evolve_adds_reprioritises_and_removes_sources() -> None:
    args = _args(
        "evolve-series", "x", "--reason", "r",
        "--source", "c:3", "--source", "b:1", "--source", "a", "--remove-source", "sources/a",
    )  # fmt: skip
    series = evolved(_current(), args, args.source, args.remove_source)
    assert [(s.source, s.priority) for s in series.sources] == [
        ("sources/b", 1),
        ("sources/c", 3),
    ]
    assert changes(_current(), series) == ["sources: a:1, b:2 -> b:1, c:3"]


def test_removing_a_source_the_series_does_not_have_is_a_usage_error() -> None:
    with pytest.raises(CliError, match="sources/z is not a source of series/x"):
        evolved(_current(), _args("evolve-series", "x", "--reason", "r"), removed=["z"])


def test_nothing_given_changes_nothing() -> None:
    current = _current()
    assert changes(current, evolved(current, _args("evolve-series", "x", "--reason", "r"))) == []


@pytest.mark.parametrize(
    ("text", "seconds", "shown"),
    [
        ("90", 90, "90s"),
        ("90s", 90, "90s"),
        ("15m", 900, "15m"),
        ("90m", 5_400, "90m"),
        ("2h", 7_200, "2h"),
        ("1d", 86_400, "1d"),
        ("off", 0, ""),
    ],
)
def test_durations(text: str, seconds: int, shown: str) -> None:
    assert duration_seconds(text) == seconds
    assert duration_text(seconds) == shown


def test_durations_are_sent_as_durations() -> None:
    args = _args(
        "define-series", "x", "--type", "price", "--frequency", "daily", "--source", "a",
        "--cutoff", "off", "--sla", "90s",
    )  # fmt: skip
    publication = define_request("cmd", "x", args).series.publication
    assert publication.HasField("cutoff")
    assert publication.cutoff == duration_pb2.Duration(), "'off' is zero: no cut-off"
    assert publication.timeliness_sla == duration_pb2.Duration(seconds=90)


@pytest.mark.parametrize(
    "argv",
    [
        ("--max-jump-percent", "ten"),
        ("--max-zscore", "NaN"),
        ("--tolerance-bps", "off"),  # a tolerance is a number; 0 is none
        ("--zscore-window", "-1"),
        ("--cutoff", "2 weeks"),
        ("--on-break", "ignore"),
    ],
)
def test_wrong_option_values_are_usage_errors(
    argv: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        _args("evolve-series", "x", "--reason", "r", *argv)
    assert stopped.value.code == 2
    assert f"argument {argv[0]}" in capsys.readouterr().err


def test_a_registered_source_is_in_use() -> None:
    request = register_source_request("cmd-2", "csv", "file", "daily closes")
    assert not request.source.disabled
    assert (request.source_id, request.source.provider) == ("csv", "file")


def test_changes_show_enum_values_as_they_are_typed() -> None:
    current = _current()
    current.reconciliation.on_break = series_pb2.BREAK_ACTION_FLAG
    args = _args("evolve-series", "x", "--reason", "r", "--on-break", "block", "--cutoff", "2h")
    assert changes(current, evolved(current, args)) == [
        "reconciliation.on_break: flag -> block",
        "publication.cutoff: (none) -> 2h",
    ]
