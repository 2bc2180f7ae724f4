"""`qis register-source`, `qis define-series` and `qis evolve-series`.

The evolvable parts of a definition (unit, rules, reconciliation, publication, ...) are one
table of options, shared by `define-series` (set on a new definition) and `evolve-series`
(changed on the current one, the rest kept): an option left out is left as it is.
`evolve-series` sends the top-level fields its options touch under an update mask, with the
schema version it read, so that the service refuses it rather than undo a concurrent change.
"""

from __future__ import annotations

import argparse
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from google.protobuf import duration_pb2, field_mask_pb2, text_format
from google.protobuf.message import Message
from qis.data.v1 import command_service_pb2, quality_pb2, series_pb2, values_pb2

from qis_cli.enums import short_name
from qis_cli.errors import CliError

DATA_TYPES = (
    "price",
    "volume",
    "ohlc_bar",
    "options_chain",
    "corporate_action",
    "term_structure",
    "surface",
)
FREQUENCIES = ("tick", "second", "minute", "hourly", "daily", "weekly", "monthly")
OFF = "off"
_DURATION = re.compile(r"(\d+)([smhd]?)")
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3_600, "d": 86_400}


def new_command_id() -> str:
    """A fresh id: a definition is typed once by a person, not re-run from a file, so there is
    nothing to derive it from. `--command-id` makes a scripted setup repeatable."""
    return str(uuid.uuid4())


def parse_source_spec(text: str) -> series_pb2.SeriesSource:
    """'ID' or 'ID:PRIORITY'. Ids may contain ':', so only an all-digit last part is read as
    the priority ('feed:v2' is an id; 'feed:v2:1' is that id with priority 1)."""
    source_id, sep, tail = text.rpartition(":")
    if sep and source_id and tail.isdigit():
        return series_pb2.SeriesSource(source=f"sources/{source_id}", priority=int(tail))
    if not text:
        raise CliError("--source needs an id, e.g. --source bloomberg:1")
    # Priority 0 lets the server rank sources in the order given.
    return series_pb2.SeriesSource(source=f"sources/{text}")


# --- option values: checked by argparse, so a typo is a usage error before any call ---------


def _decimal(text: str) -> str:
    """The text as typed once known to be a finite decimal: the server keeps it exactly."""
    try:
        finite = Decimal(text).is_finite()
    except InvalidOperation:
        finite = False
    if not finite:
        raise argparse.ArgumentTypeError(f"{text!r} is not a decimal number")
    return text


def _decimal_or_off(text: str) -> str:
    return "" if text == OFF else _decimal(text)


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0")
    return int(text)


def duration_seconds(text: str) -> int:
    """'90', '90s', '15m', '2h', '1d' as seconds; 'off' as 0."""
    if text == OFF:
        return 0
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 90s, 15m, 2h, 1d")
    return int(match[1]) * _SECONDS[match[2]]


def duration_text(seconds: int) -> str:
    """Seconds as they would be typed, in the largest whole unit: 7200 -> "2h", 5400 -> "90m";
    "" for 0 (off)."""
    for unit in ("d", "h", "m"):
        if seconds and not seconds % _SECONDS[unit]:
            return f"{seconds // _SECONDS[unit]}{unit}"
    return f"{seconds}s" if seconds else ""


def _duration(seconds: int) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=seconds)


def _enum(prefix: str, enum: Any) -> Callable[[str], int]:
    def number(word: str) -> int:
        value: int = enum.Value(f"{prefix}{word.upper()}")
        return value

    return number


def _same(value: Any) -> Any:
    return value


def _publication_mode(manual: bool) -> int:
    return series_pb2.PUBLICATION_MODE_MANUAL if manual else series_pb2.PUBLICATION_MODE_AUTOMATIC


def _zero_severity(word: str) -> int:
    if word == OFF:
        return quality_pb2.SEVERITY_UNSPECIFIED
    value: int = quality_pb2.Severity.Value(f"SEVERITY_{word.upper()}")
    return value


_WINDOW = re.compile(r"(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})x(.+)")


def jump_windows(text: str) -> list[series_pb2.JumpWindow]:
    """'09:30-10:00x3,15:50-16:00x2' (local times of day, the end excluded, and the factor of
    the jump limits in each); 'off' for none. The server checks what a time of day may be
    (24:00 ends the day) and that no two windows overlap."""
    if text == OFF:
        return []
    windows = []
    for part in text.split(","):
        match = _WINDOW.fullmatch(part.strip())
        if match is None:
            raise argparse.ArgumentTypeError(
                f"{part!r} is not a window such as 09:30-10:00x2 (HH:MM-HH:MMxFACTOR)"
            )
        start_h, start_m, end_h, end_m, factor = match.groups()
        windows.append(
            series_pb2.JumpWindow(
                start=_duration(int(start_h) * 3600 + int(start_m) * 60),
                end=_duration(int(end_h) * 3600 + int(end_m) * 60),
                multiplier=_decimal(factor),
            )
        )
    return windows


def _check_spec(text: str, keys: dict[str, Callable[[str], Any]]) -> tuple[str, dict[str, Any]]:
    """'SERIES,key=value,flag' (a series id, then its parameters) as the id and the values."""
    series_id, *parts = (p.strip() for p in text.split(","))
    if not series_id or "=" in series_id:
        raise argparse.ArgumentTypeError(f"{text!r} does not start with a series id")
    return f"series/{series_id.removeprefix('series/')}", _parameters(parts, keys)


def _parameters(parts: list[str], keys: dict[str, Callable[[str], Any]]) -> dict[str, Any]:
    """'key=value' and 'flag' parts as their values, each key one of `keys`."""
    values: dict[str, Any] = {}
    for part in parts:
        key, eq, value = part.partition("=")
        if key not in keys or (not eq) != (keys[key] is bool):
            raise argparse.ArgumentTypeError(
                f"{part!r} is not one of {', '.join(k if keys[k] is bool else f'{k}=' for k in keys)}"
            )
        values[key] = True if keys[key] is bool else keys[key](value)
    return values


def benchmark_check(text: str) -> series_pb2.BenchmarkCheck | None:
    """'SPX,k=3,window=20,beta=1.2,flat=1' (k: the benchmark_move multiple, flat: the
    flat_while_benchmark_moved percent; at least one); 'off' for none."""
    if text == OFF:
        return None
    keys: dict[str, Callable[[str], Any]] = {
        "k": _decimal,
        "window": _count,
        "beta": _decimal,
        "flat": _decimal,
    }
    series, v = _check_spec(text, keys)
    return series_pb2.BenchmarkCheck(
        series=series,
        beta=v.get("beta", ""),
        max_residual_multiple=v.get("k", ""),
        residual_window=v.get("window", 0),
        flat_move_percent=v.get("flat", ""),
    )


def underlying_check(text: str) -> series_pb2.UnderlyingCheck | None:
    """'SPX,tolerance=2,inverse' (inverse: moves opposite to it, a put); 'off' for none."""
    if text == OFF:
        return None
    keys: dict[str, Callable[[str], Any]] = {"tolerance": _decimal, "inverse": bool}
    series, v = _check_spec(text, keys)
    return series_pb2.UnderlyingCheck(
        series=series, inverse=v.get("inverse", False), tolerance_percent=v.get("tolerance", "")
    )


def day_over_day_check(text: str) -> series_pb2.DayOverDayCheck | None:
    """'pct=2', 'rise=0.35,fall=0.25', 'pct=2,abs=0.05,error' (bands: percent either way, of a
    rise, of a fall, absolute; error: hold rather than flag); 'off' for none."""
    if text == OFF:
        return None
    keys: dict[str, Callable[[str], Any]] = {
        "pct": _decimal,
        "rise": _decimal,
        "fall": _decimal,
        "abs": _decimal,
        "error": bool,
    }
    v = _parameters([p.strip() for p in text.split(",")], keys)
    if not v.keys() - {"error"}:
        raise argparse.ArgumentTypeError(f"{text!r} sets no band (pct=, rise=, fall= or abs=)")
    return series_pb2.DayOverDayCheck(
        max_percent=v.get("pct", ""),
        max_rise_percent=v.get("rise", ""),
        max_fall_percent=v.get("fall", ""),
        max_abs=v.get("abs", ""),
        severity=quality_pb2.SEVERITY_ERROR if v.get("error") else quality_pb2.SEVERITY_WARNING,
    )


def _checked(parse: Callable[[str], Any]) -> Callable[[str], str]:
    """argparse's check of a spec `parse` reads again when the request is made: the text
    itself is the option's value, so that 'off' (None once parsed) still counts as given."""

    def check(text: str) -> str:
        parse(text)
        return text

    return check


@dataclass(frozen=True, slots=True)
class Setting:
    """One option of the evolvable definition and the Series field it sets."""

    flag: str
    field: str
    """Dotted path in series_pb2.Series, e.g. "validation.max_jump_percent"."""
    help: str
    type: Callable[[str], Any] | None = None
    """argparse's conversion; None for an on/off switch (--x / --no-x)."""
    choices: tuple[str, ...] = ()
    metavar: str | None = None
    to_proto: Callable[[Any], Any] = _same

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "--unit",
        "unit",
        "currency (prices, bars: USD) or unit (volumes: shares)",
        str,
        metavar="CODE",
    ),
    Setting(
        "--precision",
        "precision",
        "decimal places of official values, 0-18 (0: as sent)",
        _count,
        metavar="N",
    ),
    Setting(
        "--time-zone",
        "time_zone",
        "IANA zone of the market, e.g. America/New_York (default: UTC)",
        str,
        metavar="ZONE",
    ),
    Setting(
        "--calendar",
        "calendar",
        "exchange calendar (ISO 10383 MIC), e.g. XNYS; '' for none (a 24/7 series)",
        str,
        metavar="MIC",
    ),
    Setting("--description", "description", "free text for people", str, metavar="TEXT"),
    Setting(
        "--require-positive",
        "validation.require_positive",
        "flag values <= 0 (not for rates or spreads, which can be negative)",
    ),
    Setting(
        "--max-jump-percent",
        "validation.max_jump_percent",
        "hold a value that moved more than PCT %% from the previous received value ('off')",
        _decimal_or_off,
        metavar="PCT",
    ),
    Setting(
        "--max-rise-percent",
        "validation.max_rise_percent",
        "hold a rise beyond PCT %%: an asymmetric band, in place of --max-jump-percent for"
        " moves up ('off': --max-jump-percent)",
        _decimal_or_off,
        metavar="PCT",
    ),
    Setting(
        "--max-fall-percent",
        "validation.max_fall_percent",
        "hold a fall beyond PCT %%, in place of --max-jump-percent for moves down ('off':"
        " --max-jump-percent)",
        _decimal_or_off,
        metavar="PCT",
    ),
    Setting(
        "--jump-windows",
        "validation.jump_windows",
        "times of day (the series' time zone) whose jump limits are scaled, e.g."
        " 09:30-10:00x3,15:50-16:00x2 ('off': none)",
        jump_windows,
        metavar="WINDOWS",
    ),
    Setting(
        "--max-spike-percent",
        "validation.max_spike_percent",
        "warn on an out-and-back move beyond PCT %% each way: one bad print ('off')",
        _decimal_or_off,
        metavar="PCT",
    ),
    Setting(
        "--max-zscore",
        "validation.max_zscore",
        "hold a value whose move has a z-score beyond Z against recent moves ('off')",
        _decimal_or_off,
        metavar="Z",
    ),
    Setting(
        "--zscore-window",
        "validation.zscore_window",
        "previous moves the z-score is computed over, 2-1000 (0: 20)",
        _count,
        metavar="N",
    ),
    Setting(
        "--stale-after",
        "validation.stale_after_snaps",
        "warn on a value unchanged for N consecutive snaps, 0-1000 (0: never)",
        _count,
        metavar="N",
    ),
    Setting(
        "--check-calendar",
        "validation.check_calendar",
        "warn on snaps that are not sessions of the series' --calendar",
    ),
    Setting(
        "--forbid-zero",
        "validation.forbid_zero",
        "a figure of exactly 0 (a price, a quantity, a bar price, a strike...): flag it"
        " (warning), hold it (error), or allow it (off)",
        choices=(OFF, "warning", "error"),
        to_proto=_zero_severity,
    ),
    Setting(
        "--review-manual-values",
        "validation.review_manual_values",
        "raise every value set by hand (restatement, override) for a second person's review",
    ),
    Setting(
        "--benchmark",
        "validation.benchmark",
        "check moves against a benchmark series, e.g. SPX,k=3,window=20,beta=1.2,flat=1"
        " (k: flag a residual beyond k times its usual size; flat: flag an unchanged value"
        " while the benchmark moved beyond PCT %%; 'off': none)",
        _checked(benchmark_check),
        metavar="SPEC",
        to_proto=benchmark_check,
    ),
    Setting(
        "--underlying",
        "validation.underlying",
        "hold a move against the underlying series' move beyond a tolerance, e.g."
        " SPX,tolerance=2 or SPX,inverse for a put ('off': none)",
        _checked(underlying_check),
        metavar="SPEC",
        to_proto=underlying_check,
    ),
    Setting(
        "--day-over-day",
        "validation.day_over_day",
        "flag a change from the previous session's official value of the same time of day,"
        " e.g. pct=2, rise=0.35,fall=0.25 or pct=2,abs=0.05,error (beyond every band given;"
        " error: hold; 'off': none)",
        _checked(day_over_day_check),
        metavar="SPEC",
        to_proto=day_over_day_check,
    ),
    Setting(
        "--reconciliation",
        "reconciliation.method",
        "how sources make the official value: the most trusted one, their median, or the"
        " median of those within tolerance of it",
        choices=("priority", "median", "consensus"),
        to_proto=_enum("RECONCILIATION_METHOD_", series_pb2.ReconciliationMethod),
    ),
    Setting(
        "--tolerance-bps",
        "reconciliation.tolerance_bps",
        "sources within BPS basis points of the reference value agree",
        _decimal,
        metavar="BPS",
    ),
    Setting(
        "--tolerance-abs",
        "reconciliation.tolerance_abs",
        "sources within this absolute difference agree",
        _decimal,
        metavar="AMOUNT",
    ),
    Setting(
        "--on-break",
        "reconciliation.on_break",
        "sources beyond both tolerances: publish and flag, or block for approval",
        choices=("flag", "block"),
        to_proto=_enum("BREAK_ACTION_", series_pb2.BreakAction),
    ),
    Setting(
        "--min-agreeing-sources",
        "reconciliation.min_agreeing_sources",
        "once a point has N sources, fewer than N within tolerance of the official value is"
        " low confidence, 0-100 (0 or 1: never)",
        _count,
        metavar="N",
    ),
    Setting(
        "--on-low-confidence",
        "reconciliation.on_low_confidence",
        "too few sources agreeing: publish and flag, or block for approval",
        choices=("flag", "block"),
        to_proto=_enum("BREAK_ACTION_", series_pb2.BreakAction),
    ),
    Setting(
        "--min-sources",
        "publication.min_sources",
        "sources needed before automatic publication (0: 1)",
        _count,
        metavar="N",
    ),
    Setting(
        "--min-quality",
        "publication.min_quality_score",
        "quality score in [0, 1] needed for automatic publication ('off': none)",
        _decimal_or_off,
        metavar="SCORE",
    ),
    Setting(
        "--cutoff",
        "publication.cutoff",
        "publish with what has arrived this long after the snap, even short of --min-sources"
        " (90s, 30m, 2h, 1d; 'off')",
        duration_seconds,
        metavar="DURATION",
        to_proto=_duration,
    ),
    Setting(
        "--sla",
        "publication.timeliness_sla",
        "a first publication later than this after its snap counts as late ('off': no SLA)",
        duration_seconds,
        metavar="DURATION",
        to_proto=_duration,
    ),
    Setting(
        "--manual-publication",
        "publication.mode",
        "values become official only by explicit (four-eyes) approval",
        to_proto=_publication_mode,
    ),
)


def add_setting_options(parser: argparse.ArgumentParser, title: str) -> None:
    group = parser.add_argument_group(title)
    for s in SETTINGS:
        if s.choices:
            group.add_argument(s.flag, choices=s.choices, help=s.help)
        elif s.type is None:
            group.add_argument(s.flag, action=argparse.BooleanOptionalAction, help=s.help)
        else:
            group.add_argument(s.flag, type=s.type, metavar=s.metavar, help=s.help)


def _given(args: argparse.Namespace) -> list[Setting]:
    return [s for s in SETTINGS if getattr(args, s.dest) is not None]


def apply_settings(series: series_pb2.Series, args: argparse.Namespace) -> None:
    """Sets the fields whose option was given; leaves the others as they are."""
    for s in _given(args):
        *parents, leaf = s.field.split(".")
        message: Message = series
        for name in parents:
            message = getattr(message, name)
        value = s.to_proto(getattr(args, s.dest))
        if value is None:
            # 'off' of an optional message (a cross-series check): unset, not empty.
            message.ClearField(leaf)
        elif isinstance(value, Message):
            # A message field (a Duration) cannot be assigned, only filled.
            getattr(message, leaf).CopyFrom(value)
        elif isinstance(value, list):
            # Nor can a repeated one: its elements are replaced.
            del getattr(message, leaf)[:]
            getattr(message, leaf).extend(value)
        else:
            setattr(message, leaf, value)


def define_request(
    command_id: str, series_id: str, args: argparse.Namespace
) -> command_service_pb2.DefineSeriesRequest:
    series = series_pb2.Series(
        data_type=values_pb2.DataType.Value(f"DATA_TYPE_{args.type.upper()}"),
        frequency=series_pb2.Frequency.Value(f"FREQUENCY_{args.frequency.upper()}"),
        sources=[parse_source_spec(s) for s in args.source],
    )
    apply_settings(series, args)
    return command_service_pb2.DefineSeriesRequest(
        command_id=command_id, series_id=series_id, series=series
    )


def evolved(
    current: series_pb2.Series,
    args: argparse.Namespace,
    added: Sequence[str] = (),
    removed: Sequence[str] = (),
) -> series_pb2.Series:
    """The current definition with what the options change: settings, sources added (or given
    another priority) and sources removed."""
    series = series_pb2.Series()
    series.CopyFrom(current)
    apply_settings(series, args)
    priorities = {s.source: s.priority for s in series.sources}
    for text in added:
        spec = parse_source_spec(text)
        priorities[spec.source] = spec.priority or priorities.get(spec.source, 0)
    for source_id in removed:
        name = f"sources/{source_id.removeprefix('sources/')}"
        if name not in priorities:
            raise CliError(f"{name} is not a source of {current.name}")
        del priorities[name]
    del series.sources[:]
    series.sources.extend(
        series_pb2.SeriesSource(source=name, priority=priority)
        for name, priority in priorities.items()
    )
    return series


def evolve_request(
    command_id: str,
    current: series_pb2.Series,
    series: series_pb2.Series,
    args: argparse.Namespace,
) -> command_service_pb2.EvolveSeriesSchemaRequest:
    """`series` (`current` as the options change it) sent for the top-level fields the options
    given touch, and only those: a mask names whole fields, so `--max-jump-percent` sends all of
    "validation", the rules not given as they were read. `expected_schema_version` is the
    version they were read at: had the series changed since, the service refuses the request
    (ABORTED, SCHEMA_VERSION_MISMATCH) instead of putting back what was read."""
    touched = {s.field.split(".")[0] for s in _given(args)}
    if args.source or args.remove_source:
        touched.add("sources")
    # In the order of the definition, so that the same options always make the same mask.
    paths = [fd.name for fd in series_pb2.Series.DESCRIPTOR.fields if fd.name in touched]
    return command_service_pb2.EvolveSeriesSchemaRequest(
        command_id=command_id,
        series=series,
        reason=args.reason,
        update_mask=field_mask_pb2.FieldMask(paths=paths),
        expected_schema_version=current.schema_version,
    )


def changes(before: series_pb2.Series, after: series_pb2.Series) -> list[str]:
    """'field: old -> new' for every field that differs, for a person to check."""
    old, new = _fields(before), _fields(after)
    return [
        f"{path}: {old[path] or '(none)'} -> {new[path] or '(none)'}"
        for path in new
        if old[path] != new[path]
    ]


def _fields(message: Message, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for fd in message.DESCRIPTOR.fields:
        value = getattr(message, fd.name)
        path = prefix + fd.name
        if fd.name == "sources":
            out[path] = ", ".join(
                f"{s.source.removeprefix('sources/')}:{s.priority}" for s in value
            )
        elif fd.name == "jump_windows":
            out[path] = ", ".join(
                f"{_time_of_day(w.start.seconds)}-{_time_of_day(w.end.seconds)}x{w.multiplier}"
                for w in value
            )
        elif fd.message_type is not None and fd.is_repeated:
            # Any other list of messages, element by element as protobuf writes them.
            out[path] = "; ".join(text_format.MessageToString(m, as_one_line=True) for m in value)
        elif fd.message_type is duration_pb2.Duration.DESCRIPTOR:
            out[path] = duration_text(value.seconds)
        elif fd.message_type is not None:
            out.update(_fields(value, f"{path}."))
        elif fd.enum_type is not None:
            out[path] = short_name(fd.enum_type, value)
        else:
            out[path] = str(value)
    return out


def _time_of_day(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    return f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"


def register_source_request(
    command_id: str, source_id: str, provider: str, description: str
) -> command_service_pb2.RegisterDataSourceRequest:
    return command_service_pb2.RegisterDataSourceRequest(
        command_id=command_id,
        source_id=source_id,
        # `disabled` left false: a source registered by hand is meant to be used.
        source=series_pb2.DataSource(provider=provider, description=description),
    )


def outcome_text(what: str, response: command_service_pb2.CommandResponse) -> str:
    if response.duplicate:
        return (
            f"{what}: already done by this command id, nothing changed"
            f" (commit position {response.commit_position})"
        )
    return f"{what} (commit position {response.commit_position})"
