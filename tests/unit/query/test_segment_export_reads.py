"""The sizes of an export's store reads (qis_query.application.segment_export.StoreRead): a
series' first read takes SEGMENTS_PER_READ segments, each read after it as many as make about
ROWS_PER_READ rows by the rows the read before found, one segment at least and
MAX_SEGMENTS_PER_READ at most; a read that finds fewer than it asked for is the series' last."""

from __future__ import annotations

from qis_adapters.readstore.port import OVERFLOW_ROWS, Segment
from qis_query.application.export import ExportedSeries, ValueColumns
from qis_query.application.ranges import SEGMENTS_PER_READ
from qis_query.application.segment_export import (
    MAX_SEGMENTS_PER_READ,
    ROWS_PER_READ,
    StoreRead,
)

HOUR = 3_600_000_000
SERIES = [ExportedSeries(s, "price", "USD", ValueColumns.DECIMAL, HOUR) for s in "AB"]


def found(rows: list[int]) -> list[Segment]:
    return [
        Segment("A", i * HOUR, i * HOUR, i * HOUR + 1, n, b"", 0, 1) for i, n in enumerate(rows)
    ]


def test_a_series_first_read_takes_the_fixed_number_from_the_buckets_start() -> None:
    first = StoreRead.first(SERIES, 0, 5 * HOUR + 7)
    assert first == StoreRead(0, 5 * HOUR, SEGMENTS_PER_READ)


def test_the_reads_after_aim_at_the_rows_per_read() -> None:
    first = StoreRead.first(SERIES, 0, 0)
    assert first is not None
    second = first.following(found([10_000] * SEGMENTS_PER_READ), SERIES, 0)
    expected = ROWS_PER_READ // 10_000
    assert expected < MAX_SEGMENTS_PER_READ
    assert second == StoreRead(0, (SEGMENTS_PER_READ - 1) * HOUR + 1, expected)


def test_large_segments_make_reads_of_one_and_overflowing_ones_count_as_a_read() -> None:
    read = StoreRead(0, 0, 2)
    assert read.following(found([ROWS_PER_READ * 3, 10]), SERIES, 0) == StoreRead(0, HOUR + 1, 1)
    assert read.following(found([OVERFLOW_ROWS, 0]), SERIES, 0) == StoreRead(0, HOUR + 1, 1)


def test_tiny_segments_make_reads_of_at_most_the_maximum() -> None:
    read = StoreRead(0, 0, 3)
    assert read.following(found([1, 0, 2]), SERIES, 0) == StoreRead(
        0, 2 * HOUR + 1, MAX_SEGMENTS_PER_READ
    )


def test_a_read_finding_fewer_than_it_asked_is_the_series_last() -> None:
    read = StoreRead(0, 0, 4)
    assert read.following(found([3_600] * 3), SERIES, 2 * HOUR) == StoreRead(
        1, 2 * HOUR, SEGMENTS_PER_READ
    )
    assert StoreRead(1, 0, 4).following(found([3_600]), SERIES, 0) is None
