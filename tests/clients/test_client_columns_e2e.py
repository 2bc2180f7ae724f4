"""qis_client's columnar helpers against a real `qis up`: points ingested in columns (one
request, and BulkIngest chunks) are the same commands as per-point ones, and a range read in the
columnar view holds exactly what the per-point view of the same range does, page for page and
across calls (a call is capped at two messages here), for prices (with flags, a restatement,
two sources and a median), volumes and OHLC bars, latest and as of a position; GetValues too;
and a price series whose unit changed, its pages mixing `other` and `prices`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from google.protobuf import field_mask_pb2
from qis.data.v1 import command_service_pb2, query_service_pb2, series_pb2, values_pb2
from qis_client import (
    Bar,
    InvalidArgument,
    QisClient,
    Scaled,
    User,
    ValueColumns,
    new_command_id,
    point_columns,
    rows_as_columns,
    source_name,
    volume,
)

from tests.support.qis_up import qis_up

pytestmark = pytest.mark.e2e

EST = timezone(timedelta(hours=-5), "EST")
DAY_0 = datetime(2024, 1, 1, 16, tzinfo=EST)
PAGE_SIZE = 3  # a few values a message, two messages a call: ranges span several calls


@pytest.fixture(scope="module")
def qis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QisClient]:
    root = tmp_path_factory.mktemp("columns-e2e")
    with (
        # No Arrow Flight endpoint: not what this tests, and its port is a fixed default.
        qis_up(
            root, {"QIS_QUERY_MAX_MESSAGES_PER_CALL": "2", "QIS_FLIGHT_ADDRESS": ""}
        ) as addresses,
        QisClient.connect(
            addresses["QIS_COMMAND_ADDRESS"],
            addresses["QIS_QUERY_ADDRESS"],
            User("columns-e2e"),
        ) as client,
    ):
        for source in ("a", "b"):
            client.register_source(source, provider="test")
        yield client


def define(
    qis: QisClient, series_id: str, data_type: int, unit: str, **settings: Any
) -> series_pb2.Series:
    sources = settings.pop("sources", ["a"])
    series = series_pb2.Series(
        data_type=data_type,  # type: ignore[arg-type]
        frequency=series_pb2.FREQUENCY_DAILY,
        unit=unit,
        sources=[
            series_pb2.SeriesSource(source=source_name(s), priority=i + 1)
            for i, s in enumerate(sources)
        ],
        **settings,
    )
    qis.define_series(series_id, series)
    return series


def days(n: int, start: int = 0) -> list[datetime]:
    return [DAY_0 + timedelta(days=start + i) for i in range(n)]


def micros(ts: Any) -> int:
    return int(ts.seconds) * 1_000_000 + int(ts.nanos) // 1000


def value_of(value: values_pb2.DataValue) -> tuple[str, ...]:
    kind = value.WhichOneof("kind")
    if kind == "price":
        return (value.price.value,)
    if kind == "volume":
        return (value.volume.quantity,)
    bar = value.bar
    return (bar.open, bar.high, bar.low, bar.close, bar.volume)


def point_rows(values: Sequence[query_service_pb2.OfficialValue]) -> list[tuple[Any, ...]]:
    return [
        (
            micros(v.snap_time),
            v.version,
            value_of(v.value),
            v.quality_score,
            micros(v.record_time),
            v.record_position,
            v.supersede_position,
            v.method,
            list(v.flags),
        )
        for v in values
    ]


def column_rows(columns: ValueColumns) -> list[tuple[Any, ...]]:
    if columns.kind == "bars":
        b = columns.bars
        values: list[tuple[str, ...]] = list(
            zip(b.open, b.high, b.low, b.close, b.volume, strict=True)
        )
    elif columns.kind == "other":
        values = [value_of(value) for value in columns.other]
    else:
        values = [(text,) for text in columns.values]
    return list(
        zip(
            columns.snap_time_micros,
            columns.versions,
            values,
            columns.quality_scores,
            columns.record_time_micros,
            columns.record_positions,
            columns.supersede_positions,
            columns.methods,
            columns.flags,
            strict=True,
        )
    )


def same_in_both_views(
    qis: QisClient, series_id: str, position: int, **range_: Any
) -> ValueColumns:
    """The range read in both views: the same rows, field for field, and the series' unit."""
    points = list(qis.query_range(series_id, page_size=PAGE_SIZE, min_position=position, **range_))
    columns = qis.query_range_columns(
        series_id, page_size=PAGE_SIZE, min_position=position, **range_
    )
    assert column_rows(columns) == point_rows(points)
    assert len(columns) == len(points) > 2 * PAGE_SIZE, "the range spans several calls"
    assert columns.read_position >= position
    return columns


def test_prices_with_flags_a_restatement_and_two_sources(qis: QisClient) -> None:
    define(
        qis,
        "COLS.PX",
        values_pb2.DATA_TYPE_PRICE,
        "USD",
        sources=["a", "b"],
        validation=series_pb2.ValidationRules(require_positive=True, stale_after_snaps=2),
        reconciliation=series_pb2.ReconciliationPolicy(
            method=series_pb2.RECONCILIATION_METHOD_MEDIAN,
            tolerance_bps="10",
            on_break=series_pb2.BREAK_ACTION_FLAG,
        ),
    )
    snaps = days(25)
    # Runs of equal values go stale (a warning: published, flagged).
    prices = [Decimal(100 + i // 4) + Decimal("0.25") for i in range(25)]
    answers = qis.bulk_ingest(
        "COLS.PX", "a", point_columns(snaps, prices), command_id="px-a", chunk_rows=10
    )
    assert [a.command_id for a in answers] == ["px-a:0", "px-a:1", "px-a:2"]
    assert [a.result.accepted for a in answers] == [10, 10, 5]
    # Source b per point, apart from a on a few days: medians and source breaks.
    b = {
        s: p + (Decimal(5) if i % 7 == 0 else 0)
        for i, (s, p) in enumerate(zip(snaps, prices, strict=True))
    }
    by_b = qis.ingest("COLS.PX", "b", b)
    restated = qis.restate("COLS.PX", snaps[3], Decimal("99.5"), reason="correction")
    columns = same_in_both_views(qis, "COLS.PX", restated.commit_position)
    assert columns.kind == "prices"
    assert columns.unit == "USD"
    assert {frozenset(f) for f in columns.flags} > {frozenset()}, "some rows have flags"
    assert len(set(columns.methods)) > 1, "median and manual values"
    assert columns.versions[3] == 2
    # As of the position before the restatement: version 1, the official one then, so not
    # superseded in that answer (the restatement came later).
    then = same_in_both_views(
        qis, "COLS.PX", restated.commit_position, as_of_position=by_b.commit_position
    )
    assert then.versions[3] == 1
    assert then.supersede_positions[3] == 0
    # A part of the range, [start, end).
    same_in_both_views(
        qis, "COLS.PX", restated.commit_position, start_time=snaps[2], end_time=snaps[22]
    )
    # GetValues: in the order asked, only the snaps that have a value.
    asked = [snaps[9], snaps[0] - timedelta(days=1), snaps[3]]
    got = qis.get_values_columns("COLS.PX", asked, min_position=restated.commit_position)
    assert column_rows(got) == point_rows(qis.get_values("COLS.PX", asked))
    assert len(got) == 2


def test_a_columnar_command_is_the_per_point_one(qis: QisClient) -> None:
    define(qis, "COLS.SAME", values_pb2.DATA_TYPE_PRICE, "USD")
    first = {s: Decimal("10.5") + i for i, s in enumerate(days(3))}
    # Two places each: at scale 2 they are the same decimals (20.5 would become 20.50, which
    # the service keeps as written: another value, so another command).
    second = {s: Decimal("20.25") + i for i, s in enumerate(days(3, start=3))}
    # Per point, then the same points in columns with the same command id: a duplicate...
    done = qis.ingest("COLS.SAME", "a", first, command_id="same-1")
    again = qis.ingest_columns("COLS.SAME", "a", rows_as_columns(first), command_id="same-1")
    assert (done.duplicate, again.duplicate) == (False, True)
    assert again.commit_position == done.commit_position
    # ...and the other way round, with the values as scaled integers.
    columns = rows_as_columns(second, scale=2)
    assert columns.prices.unscaled
    done = qis.ingest_columns("COLS.SAME", "a", columns, command_id="same-2")
    again_points = qis.ingest("COLS.SAME", "a", second, command_id="same-2")
    assert (done.duplicate, again_points.duplicate) == (False, True)


def test_volumes_in_scaled_integers(qis: QisClient) -> None:
    define(qis, "COLS.VOL", values_pb2.DATA_TYPE_VOLUME, "shares")
    snaps = days(10)
    done = qis.ingest_columns(
        "COLS.VOL", "a", point_columns(snaps, volumes=Scaled([1000 * i + 5 for i in range(10)], 1))
    )
    extra = qis.ingest("COLS.VOL", "a", {s: volume(Decimal(7)) for s in days(3, start=10)})
    columns = same_in_both_views(qis, "COLS.VOL", max(done.commit_position, extra.commit_position))
    assert columns.kind == "volumes"
    assert columns.unit == "shares"
    assert columns.decimals()[:2] == [Decimal("0.5"), Decimal("100.5")]


def test_bars_with_and_without_volumes(qis: QisClient) -> None:
    define(qis, "COLS.BAR", values_pb2.DATA_TYPE_OHLC_BAR, "USD")
    rows = {
        snap: Bar(
            Decimal(100 + i),
            Decimal(102 + i) + Decimal("0.5"),
            Decimal(99 + i),
            Decimal(101 + i),
            Decimal(1000 + i) if i % 2 else None,
        )
        for i, snap in enumerate(days(10))
    }
    done = qis.ingest_columns("COLS.BAR", "a", rows_as_columns(rows, scale=1))
    columns = same_in_both_views(qis, "COLS.BAR", done.commit_position)
    assert columns.kind == "bars"
    assert columns.bars.bars() == list(rows.values())
    assert columns.bars.volume[0] == ""


def test_the_service_names_the_refused_row(qis: QisClient) -> None:
    define(qis, "COLS.BAD", values_pb2.DATA_TYPE_PRICE, "USD")
    # Decimal strings pass the client's syntax check; the bounds are the service's.
    columns = point_columns(days(3), ["1", "1e400", "-0.000000000000000000001"])
    with pytest.raises(InvalidArgument) as refused:
        qis.ingest_columns("COLS.BAD", "a", columns)
    fields = [v.field for v in refused.value.field_violations]
    assert fields == ["columns.prices.texts[1]", "columns.prices.texts[2]"]
    assert datetime.now(UTC)  # the service is still there for the next test


def test_pages_before_and_after_a_change_of_unit_line_up(qis: QisClient) -> None:
    series = define(qis, "COLS.EVO", values_pb2.DATA_TYPE_PRICE, "USD")
    snaps = days(6)
    qis.ingest("COLS.EVO", "a", {s: Decimal("10.25") + i for i, s in enumerate(snaps[:2])})
    series.name = "series/COLS.EVO"
    series.unit = "EUR"
    qis.call(
        qis.commands.EvolveSeriesSchema,
        command_service_pb2.EvolveSeriesSchemaRequest(
            command_id=new_command_id(),
            series=series,
            reason="quoted in EUR from now on",
            update_mask=field_mask_pb2.FieldMask(paths=["unit"]),
        ),
    )
    done = qis.ingest("COLS.EVO", "a", {s: Decimal("20.5") + i for i, s in enumerate(snaps[2:])})
    points = list(qis.query_range("COLS.EVO", min_position=done.commit_position))
    assert [p.value.price.currency for p in points] == ["USD"] * 2 + ["EUR"] * 4
    # A page holding a USD value comes in `other`, the later ones in `prices`: page_size 2
    # gives other, prices, prices; page_size 1 other, other, then prices (across calls).
    for page_size, cases in (
        (1, ["other"] * 2 + ["prices"] * 4),
        (2, ["other", "prices", "prices"]),
    ):
        # The first call's messages (two a call here), as the service sends them.
        raw = [
            page.columns.WhichOneof("values")
            for page in qis.stream(
                qis.queries.QueryRange,
                query_service_pb2.QueryRangeRequest(
                    series="series/COLS.EVO",
                    page_size=page_size,
                    view=query_service_pb2.VALUE_VIEW_COLUMNS,
                    min_position=done.commit_position,
                ),
            )
            if len(page.columns.snap_time_micros)
        ]
        assert len(raw) == 2
        assert raw == cases[:2], "as the service sends them"
        columns = qis.query_range_columns(
            "COLS.EVO", page_size=page_size, min_position=done.commit_position
        )
        assert column_rows(columns) == point_rows(points)
        assert (columns.kind, columns.unit) == ("other", "EUR")
        assert columns.other == [p.value for p in points], "values and their currencies"
    # From the change on, every page is in EUR: the typed columns stay.
    after = qis.query_range_columns(
        "COLS.EVO", page_size=2, start_time=snaps[2], min_position=done.commit_position
    )
    assert (after.kind, after.unit, after.values) == (
        "prices",
        "EUR",
        ["20.5", "21.5", "22.5", "23.5"],
    )
