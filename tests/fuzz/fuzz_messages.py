"""Hypothesis strategies for any protobuf message, built from its descriptor, and for raw bytes.

No message is known by hand: `MessageFuzzer` walks `DESCRIPTOR.fields` and draws every field by
its type, so a field added to a contract is fuzzed the day it is added. Well-known types get
their own shapes: Timestamps and Durations in range and beyond it (seconds past the contracts'
bounds, nanos that are negative, past a second, or below the microsecond), and a FieldMask's
paths are the field names of the resource beside it in the request (plus nested, unknown,
output-only and "*" paths). What the fuzzer does know is the state a test seeded (resource
names, snaps, issue ids, page tokens) and the grammar of the AIP-160 filters a list RPC takes
(`aip160_filters`): `Pools` hands those out by field name, so that a good share of requests get
past validation into the handlers behind it instead of all dying at the first check. Draws
shrink towards the pooled, plausible value and towards an absent optional field, so a minimised
failure differs from a sensible request only where it has to.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from google.api import field_behavior_pb2
from google.protobuf import duration_pb2, field_mask_pb2, message_factory, timestamp_pb2
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message
from google.type import date_pb2
from hypothesis import strategies as st

T = TypeVar("T")
F = FieldDescriptor

INT_RANGES: Final = {
    F.TYPE_INT32: (-(2**31), 2**31 - 1),
    F.TYPE_SINT32: (-(2**31), 2**31 - 1),
    F.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    F.TYPE_INT64: (-(2**63), 2**63 - 1),
    F.TYPE_SINT64: (-(2**63), 2**63 - 1),
    F.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    F.TYPE_UINT32: (0, 2**32 - 1),
    F.TYPE_FIXED32: (0, 2**32 - 1),
    F.TYPE_UINT64: (0, 2**64 - 1),
    F.TYPE_FIXED64: (0, 2**64 - 1),
}
EXTREMES: Final = (
    0, 1, -1, 2**31 - 1, -(2**31), 2**31, 2**32 - 1,
    2**62, -(2**62), 2**63 - 1, -(2**63), 2**63, 2**64 - 1,
)  # fmt: skip
FIRST_SECOND: Final = -62_135_596_800  # 0001-01-01T00:00:00Z, the contracts' lower bound
LAST_SECOND: Final = 253_402_300_799  # 9999-12-31T23:59:59Z, the upper bound
SECOND_EXTREMES: Final = (
    FIRST_SECOND, FIRST_SECOND - 1, LAST_SECOND, LAST_SECOND + 1, 0, -1,
    2**31, 2**62, -(2**62), 2**63 - 1, -(2**63),
)  # fmt: skip
NANO_EXTREMES: Final = (999_999_999, 1_000_000_000, -1, 2**31 - 1, -(2**31), 1, 999)
# Nanos that are not whole microseconds: a snap with them is refused, never truncated into
# another snap; and whole-microsecond ones, which are fine.
SUB_MICRO_NANOS: Final = (1, 500, 999, 1_001, 999_999_999, 123_456_789, 1_000_500)
WHOLE_MICRO_NANOS: Final = (1_000, 999_999_000, 500_000_000, 123_456_000)
# The offsets a snap may state (whole minutes within ±23:59), and ones it may not.
MAX_OFFSET_SECONDS: Final = 86_340
OFFSET_SECONDS: Final = (0, -18_000, 19_800, 3_600, -MAX_OFFSET_SECONDS, MAX_OFFSET_SECONDS, 20_700)
ODD_OFFSET_SECONDS: Final = (
    30, -1, 59, 86_399, 86_400, -86_400, MAX_OFFSET_SECONDS + 60, 2**31, 2**62, -(2**63),
    2**63 - 1,
)  # fmt: skip
# Spans of time (cut-offs, SLAs): 0 to the span of instants, in whole seconds.
MAX_SPAN_SECONDS: Final = 315_537_897_599
SPAN_SECONDS: Final = (0, 1, 60, 3_600, 86_400, MAX_SPAN_SECONDS)
ODD_SPAN_SECONDS: Final = (-1, MAX_SPAN_SECONDS + 1, 2**62, -(2**63), 2**63 - 1)
DURATION_NANOS: Final = (1, -1, 999_999_999, 1_000_000_000, -(2**31), 2**31 - 1)

# Instants at the ends of the contracts' range, and just past them once the offset is applied;
# the epoch and the instant before it (negative micros); a leap day; a leap second.
EDGE_DATE_TIMES: Final = (
    "0001-01-01T00:00:00Z", "0001-01-01T00:00:00+00:01", "0001-01-01T00:00:00-00:01",
    "9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59.999999-00:01",
    "9999-12-31T23:59:59+00:01", "1970-01-01T00:00:00Z", "1969-12-31T23:59:59.999999Z",
    "2024-02-29T21:00:00Z", "2016-12-31T23:59:60Z",
)  # fmt: skip
# Offsets RFC 3339 refuses (or that ISO 8601 allows and RFC 3339 does not), and the extremes.
ODD_OFFSETS: Final = (
    "z", "+14:00", "-23:59", "+24:00", "-00:00", "+0500", "+05", "", "+99:99", " Z", "Z\x00",
)  # fmt: skip
# Strings that broke parsers elsewhere: NUL, bidi override, BOM, case mappings that change
# length, digits Python's int()/Decimal() accept but no other language does, combining marks,
# the last code point, separators of resource names on their own.
ODD_STRINGS: Final = (
    "", " ", "\x00", "a\x00b", "\u202e", "\ufeff", "İ", "ß", "ǅ", "🚀", "１２３", "٣.١٤",
    "a\u0301", "\u00a0", "\U0010ffff", "\t\n", "-", "/", "//", "..", "%00", "*", "null",
    "series/", "sources/", "series/-", "series/\x00", "SERIES/X", "series/../x", "${x}",
    "'; DROP TABLE events; --",
)  # fmt: skip
ODD_DECIMALS: Final = (
    "NaN", "-NaN", "sNaN", "Infinity", "-inf", "1e18", "1000000000000000000",
    "-999999999999999999.9999999999999999999", "1.0000000000000000000",
    "1E+999999999999999999", "1E-999999999999999999", "1e99999999999999999999999",
    "１０１.５", "١٠١", "1_000", " 101.5", "101.5 ", "+101.5", ".5", "5.", "1,5", "0x1A",
    "-", "e5", "1e", "--1", "1e-18", "0E-1000000",
)  # fmt: skip
VALID_DECIMALS: Final = (
    "101.5", "100", "0", "-0", "1E+3", "0.000000000000000001", "999999999999999999",
    "-12.25", "99.75", "250",
)  # fmt: skip
_TEXT: Final = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=24)


def weighted(*choices: tuple[int, st.SearchStrategy[T]]) -> st.SearchStrategy[T]:
    """One of `choices`, each as often as its weight says; shrinks towards the first."""
    table = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.integers(0, len(table) - 1).flatmap(lambda i: table[i])


def long_strings() -> st.SearchStrategy[str]:
    """Just past the contracts' length limits (128, 1,024) and far past them (10k)."""
    return st.builds(
        lambda c, n: c * n,
        st.sampled_from(["x", "é", "🚀", "9", "/"]),
        st.sampled_from([129, 1_025, 10_000]),
    )


def garbage_strings() -> st.SearchStrategy[str]:
    return weighted(
        (3, st.sampled_from(ODD_STRINGS)),
        (3, _TEXT),
        (1, long_strings()),
        (2, st.builds(str.__add__, st.sampled_from(["series/", "sources/", ""]), _TEXT)),
        (1, rfc3339_like()),
        (1, decimal_like()),
    )


def rfc3339_like() -> st.SearchStrategy[str]:
    """Date-times assembled from parts that are each valid most of the time: valid RFC 3339,
    and near misses (no offset, "+hhmm", a space for "T", 7 fraction digits, 24:00, a leap
    second, day 30 of February, year 0 or 10000, an offset that crosses a bound of the range)."""
    parts = st.tuples(
        weighted(
            (4, st.sampled_from([2024, 2023, 1970])),
            (1, st.sampled_from([1, 9999])),
            (1, st.sampled_from([0, 10_000, -1, 99_999])),
        ),
        weighted((6, st.integers(1, 12)), (1, st.sampled_from([0, 13, 99]))),
        weighted((6, st.integers(1, 28)), (1, st.sampled_from([0, 29, 30, 31, 32]))),
        weighted((6, st.sampled_from(["T"])), (1, st.sampled_from(["t", " ", "_", ""]))),
        weighted(
            (6, st.sampled_from([(21, 0, 0), (0, 0, 0)])),
            (1, st.sampled_from([(23, 59, 59), (24, 0, 0), (23, 59, 60), (25, 61, 61)])),
        ),
        weighted(
            (6, st.just("")),
            (1, st.sampled_from([".5", ".123456", ".1234567", ".", ".000000001", ".9999999"])),
        ),
        weighted(
            (6, st.sampled_from(["Z", "-05:00", "+00:00"])), (2, st.sampled_from(ODD_OFFSETS))
        ),
    )
    return weighted((6, parts.map(_date_time_text)), (1, st.sampled_from(EDGE_DATE_TIMES)))


def _date_time_text(parts: tuple[int, int, int, str, tuple[int, int, int], str, str]) -> str:
    year, month, day, sep, (hour, minute, second), fraction, offset = parts
    date = f"{year:04d}-{month:02d}-{day:02d}"
    return f"{date}{sep}{hour:02d}:{minute:02d}:{second:02d}{fraction}{offset}"


def decimal_like() -> st.SearchStrategy[str]:
    return weighted(
        (5, st.sampled_from(VALID_DECIMALS)),
        (2, st.decimals(min_value=-(10**6), max_value=10**6, places=4).map(str)),
        (2, st.sampled_from(ODD_DECIMALS)),
        (1, st.decimals(allow_nan=True, allow_infinity=True).map(str)),
        (1, st.integers(-(10**20), 10**20).map(str)),
    )


def timestamps(
    seeded_seconds: Sequence[int],
) -> tuple[st.SearchStrategy[timestamp_pb2.Timestamp], st.SearchStrategy[timestamp_pb2.Timestamp]]:
    """(usual, odd): the seeded instants, so that lookups find something; then anywhere in
    the contracts' range, the bounds and beyond them, in seconds and in nanos."""

    def instant(seconds: int, nanos: int) -> timestamp_pb2.Timestamp:
        return timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)

    usual = st.builds(instant, st.sampled_from(seeded_seconds), st.just(0))
    seconds = weighted(
        (2, st.sampled_from(seeded_seconds)),
        (2, st.integers(FIRST_SECOND, LAST_SECOND)),
        (2, st.sampled_from(SECOND_EXTREMES)),
    )
    nanos = weighted(
        (3, st.just(0)), (2, st.integers(0, 999_999_999)), (2, st.sampled_from(NANO_EXTREMES))
    )
    return usual, st.builds(instant, seconds, nanos)


def snap_times(
    seeded_us: Sequence[int], fresh_us: Sequence[int]
) -> st.SearchStrategy[timestamp_pb2.Timestamp]:
    """Snaps (DataPoint.snap_time and the like): mostly the seeded points and days the seed left
    empty, at whole microseconds; then nanos below the microsecond (two such snaps must never
    merge), and seconds and nanos beyond the contracts' range."""

    def at(us: int, nanos: int = 0) -> timestamp_pb2.Timestamp:
        seconds, micros = divmod(us, 1_000_000)
        return timestamp_pb2.Timestamp(seconds=seconds, nanos=micros * 1_000 + nanos)

    def instant(seconds: int, nanos: int) -> timestamp_pb2.Timestamp:
        return timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)

    seeded = st.sampled_from(seeded_us)
    odd_seconds = st.sampled_from(SECOND_EXTREMES)
    return weighted(
        (5, seeded.map(at)),
        (3, st.sampled_from(fresh_us).map(at)),
        (1, st.builds(instant, st.sampled_from([us // 1_000_000 for us in seeded_us]), st.sampled_from(WHOLE_MICRO_NANOS))),
        (2, st.builds(at, seeded, st.sampled_from(SUB_MICRO_NANOS))),
        (1, st.builds(instant, odd_seconds, st.sampled_from((0, *WHOLE_MICRO_NANOS)))),
        (1, st.builds(instant, st.integers(FIRST_SECOND, LAST_SECOND), st.sampled_from(NANO_EXTREMES))),
    )  # fmt: skip


def durations(
    usual_seconds: Sequence[int], odd_seconds: Sequence[int]
) -> tuple[st.SearchStrategy[duration_pb2.Duration], st.SearchStrategy[duration_pb2.Duration]]:
    """(usual, odd): whole seconds a field accepts; then seconds it refuses, nanos (below the
    second, negative, past a second, of another sign than the seconds)."""

    def span(seconds: int, nanos: int) -> duration_pb2.Duration:
        return duration_pb2.Duration(seconds=seconds, nanos=nanos)

    usual = st.builds(span, st.sampled_from(usual_seconds), st.just(0))
    odd = weighted(
        (3, st.builds(span, st.sampled_from(odd_seconds), st.just(0))),
        (2, st.builds(span, st.sampled_from(usual_seconds), st.sampled_from(DURATION_NANOS))),
        (1, st.builds(span, st.sampled_from(odd_seconds), st.sampled_from(DURATION_NANOS))),
    )
    return usual, odd


def utc_offsets() -> st.SearchStrategy[duration_pb2.Duration]:
    """DataPoint.utc_offset: whole minutes within ±23:59, then everything else."""
    usual, odd = durations(OFFSET_SECONDS, ODD_OFFSET_SECONDS)
    return weighted((3, usual), (2, odd))


def spans() -> st.SearchStrategy[duration_pb2.Duration]:
    """Cut-offs and SLAs: whole seconds up to the span of instants, then beyond."""
    usual, odd = durations(SPAN_SECONDS, ODD_SPAN_SECONDS)
    return weighted((3, usual), (2, odd))


def field_masks(resource: Descriptor) -> tuple[
    st.SearchStrategy[field_mask_pb2.FieldMask], st.SearchStrategy[field_mask_pb2.FieldMask]
]:  # fmt: skip
    """(usual, odd) update masks of `resource` (AIP-134): top-level field names it has (the
    ones a client may set most often), or "*"; then output-only and identifier fields, nested
    paths ("publication.cutoff"), JSON names, unknown and empty names, "*" beside others,
    duplicates, and far too many paths."""
    settable: list[str] = []
    fixed: list[str] = []
    nested: list[str] = []
    for fd in resource.fields:
        behaviors = set(fd.GetOptions().Extensions[field_behavior_pb2.field_behavior])
        if behaviors & {field_behavior_pb2.OUTPUT_ONLY, field_behavior_pb2.IDENTIFIER}:
            fixed.append(fd.name)
        else:
            settable.append(fd.name)
        if fd.message_type is not None and not fd.message_type.GetOptions().map_entry:
            nested += [f"{fd.name}.{sub.name}" for sub in fd.message_type.fields]
    json_names = [fd.json_name for fd in resource.fields if fd.json_name != fd.name]
    odd_names = [
        *fixed, *nested, *json_names, "colour", "", " ", "*.*", "**", "name.", ".name",
        *(n.upper() for n in settable[:2]),
    ]  # fmt: skip

    def made(paths: list[str]) -> field_mask_pb2.FieldMask:
        return field_mask_pb2.FieldMask(paths=paths)

    plain = st.sampled_from(settable)
    usual = weighted(
        (6, st.lists(plain, min_size=1, max_size=3, unique=True)), (1, st.just(["*"]))
    ).map(made)
    anything = plain | st.sampled_from(odd_names) | st.just("*")
    odd = weighted(
        (3, st.lists(anything, min_size=1, max_size=4)),
        (1, plain.map(lambda n: [n, n])),
        (1, st.builds(lambda ps: ["*", *ps], st.lists(plain, min_size=1, max_size=2))),
        (1, st.just([])),
        (1, garbage_strings().map(lambda g: [g])),
        (1, st.builds(lambda n, k: [n] * k, plain, st.sampled_from([101, 1_001]))),
    ).map(made)
    return usual, odd


# --- AIP-160 filters ----------------------------------------------------------------------------

COMPARISONS: Final = ("=", "!=", "<", "<=", ">", ">=")


@dataclass(frozen=True)
class FilterField:
    """A field a filter may compare: the operators it accepts and its values, as filter text
    (quoted strings, bare enum words)."""

    name: str
    ops: Sequence[str]
    values: st.SearchStrategy[str]


def quoted(text: str) -> str:
    r"""A filter string literal: double quotes, with backslash escapes for \" and \\."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def enum_words(enum: EnumDescriptor) -> list[str]:
    """The value names of an enum without their common prefix ("OPEN" of
    QUALITY_ISSUE_STATUS_OPEN), as a filter names them; UNSPECIFIED left out."""
    names = [v.name for v in enum.values if v.number != 0]
    prefix = next(v.name for v in enum.values if v.number == 0).removesuffix("UNSPECIFIED")
    return [n.removeprefix(prefix) for n in names]


def aip160_filters(fields: Sequence[FilterField]) -> st.SearchStrategy[str]:
    """Filters of the AIP-160 subset (comparisons joined by AND) on `fields`: well formed most of
    the time, then each way of leaving the subset: OR, NOT, parentheses, lower-case "and", an
    unknown field, an operator the field does not take, a value of the wrong kind (bare where
    quoted, quoted where bare, unterminated, bad escapes), trailing text, a dangling AND, and
    thousands of terms."""
    assert fields

    def term(f: FilterField) -> st.SearchStrategy[str]:
        return st.builds(
            lambda op, value, a, b: f"{f.name}{a}{op}{b}{value}",
            st.sampled_from(f.ops),
            f.values,
            st.sampled_from([" ", "", "  "]),
            st.sampled_from([" ", "", "\t"]),
        )

    good_term = st.sampled_from(list(fields)).flatmap(term)
    good = st.lists(good_term, min_size=1, max_size=3).map(" AND ".join)
    names = [f.name for f in fields]
    bad_op = st.builds(
        lambda f, op, v: f"{f.name} {op} {v}",
        st.sampled_from(list(fields)),
        st.sampled_from([*COMPARISONS, "==", "=~", ":", "<>", "", "IN"]),
        st.sampled_from(list(fields)).flatmap(lambda f: f.values),
    )
    bad_value = st.builds(
        lambda name, value: f"{name} = {value}",
        st.sampled_from(names),
        weighted(
            (2, garbage_strings()),
            (2, garbage_strings().map(quoted)),
            (1, rfc3339_like()),
            (1, rfc3339_like().map(quoted)),
            (
                1,
                st.sampled_from(['"unterminated', '"a\\q"', '"\\"', "'single'", '""', "-1", "1e9"]),
            ),
        ),
    )
    joined = st.builds(
        lambda a, glue, b: f"{a}{glue}{b}",
        good,
        st.sampled_from([" OR ", " and ", " AND AND ", " ", " AND NOT ", ", ", " && "]),
        good,
    )
    wrapped = st.builds(
        lambda text, how: how.format(text),
        good,
        st.sampled_from(
            ["({})", "NOT {}", "-{}", "{} AND", "AND {}", "{})", "{} trailing", "{}\x00"]
        ),
    )
    unknown = st.builds(
        lambda name, v: f"{name} = {v}",
        st.sampled_from(["colour", "series", "name", "parent", "rule.name", "", "AND", "*"]),
        st.sampled_from(["X", '"x"', "OPEN"]),
    )
    huge = st.builds(lambda t, n: " AND ".join([t] * n), good_term, st.sampled_from([100, 5_000]))
    return weighted(
        (8, good),
        (2, bad_op),
        (2, bad_value),
        (2, joined),
        (2, wrapped),
        (1, unknown),
        (1, huge),
        (1, garbage_strings()),
    )


def dates() -> tuple[st.SearchStrategy[date_pb2.Date], st.SearchStrategy[date_pb2.Date]]:
    """(usual, odd): real dates; then years, months and days at and beyond their ranges."""

    def date(year: int, month: int, day: int) -> date_pb2.Date:
        return date_pb2.Date(year=year, month=month, day=day)

    valid = st.dates().map(lambda d: date(d.year, d.month, d.day))
    odd = st.builds(
        date,
        st.sampled_from([0, 1, 9999, 10_000, -1, 2**31 - 1]),
        st.sampled_from([0, 1, 2, 12, 13, -1]),
        st.sampled_from([0, 1, 29, 30, 31, 32, -1]),
    )
    return valid, odd


@dataclass(frozen=True)
class Pools:
    """What a test knows about the state it seeded, handed out by field: keyed by
    "Message.field" first, then by field name (`series` means the same in every request)."""

    strings: Mapping[str, st.SearchStrategy[str]] = field(default_factory=dict)
    ints: Mapping[str, st.SearchStrategy[int]] = field(default_factory=dict)  # enums too
    messages: Mapping[str, st.SearchStrategy[Message]] = field(default_factory=dict)
    # oneof full name -> the member drawn most often (e.g. the data type the seeded series hold)
    oneofs: Mapping[str, str] = field(default_factory=dict)
    # fields a request needs that the contract does not mark REQUIRED ("DataPoint.value"), or
    # that identify what a request is about although marked OUTPUT_ONLY ("Series.name")
    needed: frozenset[str] = frozenset()
    seeded_seconds: Sequence[int] = (0,)


def _lookup(table: Mapping[str, T], fd: FieldDescriptor) -> T | None:
    owner = fd.containing_type.name if fd.containing_type is not None else ""
    return table.get(f"{owner}.{fd.name}", table.get(fd.name))


class MessageFuzzer:
    """Builds strategies for messages of any descriptor. `wildness` (0 to 100) is the share
    of fields drawn from outside the usual: garbage instead of a pooled string, an extreme
    instead of a small int, an unknown enum number, a required field left out, a repeated field
    empty or far too long. At 0 every field is plausible. `max_items` bounds repeated fields
    (apart from the rare one repeated beyond the contracts' limits)."""

    def __init__(
        self, pools: Pools, wildness: int, *, max_depth: int = 6, max_items: int = 8
    ) -> None:
        self._pools = pools
        self._needed = dict.fromkeys(pools.needed, True)
        self._wildness = wildness
        self._max_depth = max_depth
        self._max_items = max_items
        self._timestamps = self._mix(*timestamps(pools.seeded_seconds))
        self._durations = self._mix(*durations(SPAN_SECONDS, ODD_SPAN_SECONDS))
        self._dates = self._mix(*dates())
        self._garbage = garbage_strings()
        self._cache: dict[tuple[str, int], st.SearchStrategy[Message]] = {}

    def _mix(self, usual: st.SearchStrategy[T], odd: st.SearchStrategy[T]) -> st.SearchStrategy[T]:
        if self._wildness == 0:
            return usual
        return weighted((100 - self._wildness, usual), (self._wildness, odd))

    def messages(self, descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
        key = (descriptor.full_name, depth)
        if key not in self._cache:
            self._cache[key] = self._build(descriptor, depth)
        return self._cache[key]

    def _build(self, descriptor: Descriptor, depth: int) -> st.SearchStrategy[Message]:
        if descriptor.full_name == "google.protobuf.Timestamp":
            return self._timestamps
        if descriptor.full_name == "google.protobuf.Duration":
            return self._durations
        if descriptor.full_name == "google.type.Date":
            return self._dates
        cls = message_factory.GetMessageClass(descriptor)
        if depth >= self._max_depth:
            return st.builds(cls)
        plan = [(fd, self._present(fd), self._field(fd, depth)) for fd in descriptor.fields]
        oneofs = [
            self._member(o.fields, self._pools.oneofs.get(o.full_name)) for o in descriptor.oneofs
        ]

        @st.composite
        def build(draw: st.DrawFn) -> Message:
            message = cls()
            chosen = {draw(member) for member in oneofs}  # one member of each oneof, or none
            for fd, present, value in plan:
                if fd.containing_oneof is not None and fd.name not in chosen:
                    continue
                if fd.containing_oneof is None and not draw(present):
                    continue
                _assign(message, fd, draw(value))
            return message

        return build()

    def _present(self, fd: FieldDescriptor) -> st.SearchStrategy[bool]:
        """Fields a request needs (required by the contract, or said to be needed in its prose)
        are there unless wild; output-only ones rarely (the service must ignore them); the
        others half the time. Each shrinks towards its usual state."""
        behaviors = set(fd.GetOptions().Extensions[field_behavior_pb2.field_behavior])
        if field_behavior_pb2.REQUIRED in behaviors or _lookup(self._needed, fd):
            return self._mix(st.just(True), st.just(False))
        share = 15 if field_behavior_pb2.OUTPUT_ONLY in behaviors else 50
        return st.integers(0, 99).map(lambda n: n >= 100 - share)

    def _member(
        self, members: Sequence[FieldDescriptor], bias: str | None
    ) -> st.SearchStrategy[str | None]:
        names: list[str | None] = [m.name for m in members]
        if bias in names:
            others = [n for n in names if n != bias]
            return self._mix(st.just(bias), st.sampled_from([*others, None]))
        return weighted((3, st.none()), (2, st.sampled_from(names)))

    def _field(self, fd: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            key, value = (self._single(f, depth + 1) for f in fd.message_type.fields)
            return st.dictionaries(key, value, max_size=3)
        single = self._single(fd, depth)
        if not fd.is_repeated:
            return single
        # Rarely, one item repeated just beyond the contracts' 1,000 and 10,000 limits: cheap to
        # draw, and exercises the bounds and the cap on the violations an answer lists.
        many = st.builds(lambda item, n: [item] * n, single, st.sampled_from([1_001, 10_001]))
        odd = weighted(
            (2, st.just([])), (2, st.lists(single, min_size=4, max_size=self._max_items)), (1, many)
        )
        return self._mix(st.lists(single, min_size=1, max_size=3), odd)

    def _single(self, fd: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
        if fd.type == F.TYPE_MESSAGE:
            assert fd.message_type is not None
            pooled_message = _lookup(self._pools.messages, fd)
            built = self.messages(fd.message_type, depth + 1)
            resource = _masked_resource(fd)
            if resource is not None:  # paths of the resource beside it in the request
                built = self._mix(*field_masks(resource))
            return built if pooled_message is None else self._mix(pooled_message, built)
        if fd.type == F.TYPE_STRING:
            hint = _lookup(self._pools.strings, fd)
            return self._mix(_TEXT if hint is None else hint, self._garbage)
        if fd.type in INT_RANGES:
            low, high = INT_RANGES[fd.type]
            pooled = _lookup(self._pools.ints, fd)
            usual = st.integers(max(low, 0), 5) if pooled is None else pooled
            extremes = st.sampled_from([n for n in EXTREMES if low <= n <= high])
            return self._mix(usual, extremes | st.integers(low, high))
        if fd.type == F.TYPE_ENUM:
            assert fd.enum_type is not None
            numbers = [v.number for v in fd.enum_type.values]
            known = st.sampled_from([n for n in numbers if n != 0] or numbers)
            pooled = _lookup(self._pools.ints, fd)  # enum numbers are pooled as ints
            usual = known if pooled is None else weighted((3, pooled), (1, known))
            return self._mix(usual, st.sampled_from([0, -1, 99, 2**31 - 1, -(2**31)]))
        if fd.type == F.TYPE_BOOL:
            return st.booleans()
        if fd.type in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
            return st.floats(width=64 if fd.type == F.TYPE_DOUBLE else 32)
        if fd.type == F.TYPE_BYTES:
            return st.binary(max_size=32)
        raise NotImplementedError(f"{fd.full_name}: field type {fd.type}")


class RequestFuzzer:
    """Requests at several levels of wildness: plausible ones get past validation into the
    handlers and the stores, near misses (a field or so off) probe each check one at a time,
    wild ones the parsers. Shrinks towards the plausible."""

    LEVELS = ((2, 0), (2, 10), (1, 40))  # (weight, wildness)

    def __init__(self, pools: Pools) -> None:
        self._levels = [(weight, MessageFuzzer(pools, wild)) for weight, wild in self.LEVELS]

    def messages(self, descriptor: Descriptor) -> st.SearchStrategy[Message]:
        return weighted(*((w, fuzzer.messages(descriptor)) for w, fuzzer in self._levels))

    def raw(self, descriptor: Descriptor) -> st.SearchStrategy[bytes]:
        """Bytes sent as a request: encodings of near misses, mutated; hand-made wire
        records; random bytes."""
        near_miss = self._levels[1][1].messages(descriptor)
        # Map entries in a fixed order: by default their order varies with the process, and so
        # would the bytes a mutation changes.
        encoded = near_miss.map(lambda m: m.SerializeToString(deterministic=True))
        return weighted(
            (4, encoded.flatmap(mutated)),
            (3, crafted_wire(descriptor)),
            (2, st.binary(max_size=256)),
        )


def _masked_resource(fd: FieldDescriptor) -> Descriptor | None:
    """For a FieldMask field, the message it masks: the one other message field of its request
    that is not a well-known type (EvolveSeriesSchemaRequest.update_mask masks `series`)."""
    if fd.message_type is None or fd.message_type.full_name != "google.protobuf.FieldMask":
        return None
    owner = fd.containing_type
    candidates = [
        f.message_type
        for f in (owner.fields if owner is not None else ())
        if f.message_type is not None and not f.message_type.full_name.startswith("google.")
    ]
    return candidates[0] if len(candidates) == 1 else None


def _assign(message: Message, fd: FieldDescriptor, value: Any) -> None:
    target = getattr(message, fd.name)
    if isinstance(value, dict):
        target.update(value)
    elif isinstance(value, list):
        target.extend(value)
    elif isinstance(value, Message):
        target.CopyFrom(value)
    else:
        setattr(message, fd.name, value)


# --- raw bytes --------------------------------------------------------------------------------


def varint(n: int) -> bytes:
    n &= 2**64 - 1
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _wire_field(number: int, wire_type: int, payload: bytes) -> bytes:
    return varint((number << 3) | wire_type) + payload


def crafted_wire(descriptor: Descriptor) -> st.SearchStrategy[bytes]:
    """Hand-made wire records on the message's own field numbers: wrong wire types, varints
    too long to end, lengths that run past the end, invalid UTF-8, field number 0, groups."""
    numbers = [fd.number for fd in descriptor.fields] + [0, 2**29 - 1]
    payloads: dict[int, st.SearchStrategy[bytes]] = {
        0: weighted(
            (3, st.sampled_from(EXTREMES).map(varint)), (1, st.just(b"\xff" * 10 + b"\x01"))
        ),
        1: st.binary(min_size=8, max_size=8),
        2: weighted(
            (2, st.sampled_from([b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"ok"])),
            (1, st.binary(max_size=16)),
        ).map(lambda b: varint(len(b)) + b),
        3: st.just(b""),
        4: st.just(b""),
        5: st.binary(min_size=4, max_size=4),
    }
    lying = st.builds(
        lambda n, b: varint(n) + b, st.sampled_from([64, 2**31, 2**63]), st.binary(max_size=4)
    )
    payloads[2] = weighted((4, payloads[2]), (1, lying))

    def record(number: int, wire_type: int) -> st.SearchStrategy[bytes]:
        payload = payloads.get(wire_type, st.just(b""))  # 6 and 7 are no wire type at all
        return payload.map(lambda p: _wire_field(number, wire_type, p))

    records = st.tuples(st.sampled_from(numbers), st.integers(0, 7)).flatmap(
        lambda pair: record(*pair)
    )
    return st.lists(records, min_size=1, max_size=4).map(b"".join)


def mutated(encoded: bytes) -> st.SearchStrategy[bytes]:
    """A valid encoding truncated, with a byte changed, or with bytes inserted."""
    if not encoded:
        return st.binary(min_size=1, max_size=8)
    at = st.integers(0, len(encoded) - 1)
    truncate = at.map(lambda i: encoded[:i])
    flip = st.tuples(at, st.integers(0, 255)).map(
        lambda ib: encoded[: ib[0]] + bytes([ib[1]]) + encoded[ib[0] + 1 :]
    )
    insert = st.tuples(at, st.binary(min_size=1, max_size=8)).map(
        lambda ib: encoded[: ib[0]] + ib[1] + encoded[ib[0] :]
    )
    return st.one_of(truncate, flip, insert)
