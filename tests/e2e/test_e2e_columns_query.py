"""QueryRange and GetValues in columns (VALUE_VIEW_COLUMNS) through the three processes: values
ingested over gRPC, projected, and read back in both views, which must carry the same rows in
the same pages with the same tokens: a price series with flags, restatements and a unit changed
by a schema evolution (its older values in their own currency travel in `other`), OHLC bars
with and without a volume, and an options chain (always `other`)."""

from __future__ import annotations

import grpc
import grpc.aio
import pytest
from google.protobuf import field_mask_pb2
from google.type.date_pb2 import Date
from qis.data.v1 import command_service_pb2 as cmd
from qis.data.v1 import query_service_pb2 as q
from qis.data.v1 import series_pb2, values_pb2

from tests.e2e.harness import (
    DAY_US,
    US,
    Clients,
    Cluster,
    as_user,
    bulk_ingest,
    point,
    price,
    price_series,
    setup_series,
    timestamp,
    unique,
)
from tests.e2e.test_e2e_malformed_input import rich_status, violations
from tests.service.query.views import Row, column_rows, point_rows

pytestmark = pytest.mark.e2e

FIRST_SNAP = 1_704_229_200 * US  # 2024-01-02T21:00:00Z
POINTS = 2_300  # more than two default pages
RESTATED = (5, 1_000, 2_299)
READER = as_user("reader")
VIEWS = (q.VALUE_VIEW_POINTS, q.VALUE_VIEW_COLUMNS)


def snap(i: int) -> int:
    return FIRST_SNAP + i * DAY_US


def close(i: int) -> str:
    """Every ten days a run of three equal closes (the third is flagged stale)."""
    run_start = i - i % 10 if i % 10 < 3 else i
    return f"{100 + run_start % 97 / 4:.2f}"


Calls = list[list[q.QueryRangeResponse]]


async def read_range(
    c: Clients, request: q.QueryRangeRequest, view: q.ValueView.ValueType
) -> Calls:
    """Every call's messages in `view`, each call resuming with the previous one's token."""
    out: Calls = []
    request.view = view
    request.page_token = ""
    while True:
        messages = [m async for m in c.query.QueryRange(request, metadata=READER)]
        out.append(messages)
        request.page_token = messages[-1].next_page_token
        if not request.page_token:
            return out


async def same_rows(
    c: Clients, request: q.QueryRangeRequest, unit: str, case: str
) -> tuple[list[Row], set[str]]:
    """Both views of a range: the same calls and messages, a token where the other view has one
    (each resumes its own view: they differ by their issue times), each message the same rows.
    Returns the rows and the cases the columns came in."""
    points, columns = [await read_range(c, request, view) for view in VIEWS]
    assert [len(call) for call in columns] == [len(call) for call in points]
    rows: list[Row] = []
    cases: set[str] = set()
    for points_call, columns_call in zip(points, columns, strict=True):
        for by_point, in_columns in zip(points_call, columns_call, strict=True):
            assert bool(in_columns.next_page_token) == bool(by_point.next_page_token)
            assert not in_columns.values
            assert in_columns.columns.unit == unit
            page = point_rows(by_point.values, request.series, unit)
            assert column_rows(in_columns.columns, case) == page
            cases.add(str(in_columns.columns.WhichOneof("values")))
            rows.extend(page)
    return rows, cases


async def same_values(c: Clients, request: q.GetValuesRequest, unit: str, case: str) -> list[Row]:
    answers = []
    for view in VIEWS:
        request.view = view
        answers.append(await c.query.GetValues(request, metadata=READER))
    by_point, in_columns = answers
    assert not in_columns.values
    rows = point_rows(by_point.values, request.series, unit)
    assert column_rows(in_columns.columns, case) == rows
    return rows


async def test_a_price_series_reads_the_same_in_columns(cluster: Cluster) -> None:
    series_id, source = unique("cols"), unique("feed")
    name = f"series/{series_id}"
    series = price_series([(source, 1)])
    series.validation.stale_after_snaps = 2
    async with cluster.clients() as c:
        await setup_series(c, series_id, series)
        acks = await bulk_ingest(
            c, series_id, source, [(snap(i), close(i)) for i in range(POINTS)], chunk=1_000
        )
        assert all(a.HasField("result") for a in acks), acks
        ingested = max(a.result.commit_position for a in acks)
        head = ingested
        for i in RESTATED:
            reply = await c.command.RestatePoint(
                cmd.RestatePointRequest(
                    command_id=unique("fix"),
                    series=name,
                    snap_time=timestamp(snap(i)),
                    value=price(f"{i}.125"),
                    reason="vendor correction",
                ),
                metadata=as_user("carol"),
            )
            head = reply.commit_position

        latest = q.QueryRangeRequest(series=name, min_position=head)
        rows: list[Row] = []
        for page_size in (0, 7, 1_000):
            latest.page_size = page_size
            rows, cases = await same_rows(c, latest, "USD", "prices")
            assert cases == {"prices"}
        assert len(rows) == POINTS
        assert [r[1] for r in rows if r[1] > 1] == [2] * len(RESTATED)
        assert any(r[8] for r in rows), "no flagged value: the stale rule did not fire"
        assert {r[2][1] for r in rows if r[1] == 2} == {f"{i}.125" for i in RESTATED}

        # As known before the restatements, by position and by time: versions 1, each the
        # official one then, so none superseded (what came later is not part of that answer).
        by_position = q.QueryRangeRequest(series=name, as_of_position=ingested, page_size=500)
        before, _ = await same_rows(c, by_position, "USD", "prices")
        assert {r[1] for r in before} == {1}
        assert len(before) == POINTS
        assert not any(r[6] for r in before)  # their supersede positions
        restated_at = max(r[4] for r in rows)
        by_time = q.QueryRangeRequest(
            series=name, as_of_time=timestamp(restated_at - 1), page_size=333
        )
        known, _ = await same_rows(c, by_time, "USD", "prices")
        assert 1 <= sum(r[1] == 2 for r in known) < len(RESTATED)

        # A range inside the series, and GetValues of some snaps (one without a value).
        part = q.QueryRangeRequest(
            series=name, start_time=timestamp(snap(990)), end_time=timestamp(snap(1_010))
        )
        assert len((await same_rows(c, part, "USD", "prices"))[0]) == 20
        lookup = q.GetValuesRequest(
            series=name,
            snap_times=[timestamp(snap(1_000)), timestamp(snap(POINTS + 5)), timestamp(snap(0))],
        )
        assert [r[1] for r in await same_values(c, lookup, "USD", "prices")] == [2, 1]
        lookup.as_of_position = ingested
        assert [r[1] for r in await same_values(c, lookup, "USD", "prices")] == [1, 1]

        # The unit changes: the older values keep their currency, so a page holding one comes in
        # `other`; a page of values in the new unit only comes in `prices`.
        evolved = await c.command.EvolveSeriesSchema(
            cmd.EvolveSeriesSchemaRequest(
                command_id=unique("evo"),
                series=series_pb2.Series(name=name, unit="EUR"),
                reason="the listing moved",
                update_mask=field_mask_pb2.FieldMask(paths=["unit"]),
            ),
            metadata=as_user("admin"),
        )
        later = [(snap(POINTS + i), f"{90 + i}.5") for i in range(3)]
        acks = await bulk_ingest(c, series_id, source, later, prefix=unique("eur"))
        head = max(evolved.commit_position, *(a.result.commit_position for a in acks))
        whole = q.QueryRangeRequest(series=name, min_position=head, page_size=POINTS)
        rows, cases = await same_rows(c, whole, "EUR", "prices")
        assert cases == {"other", "prices"}  # a page of the older values, one of the 3 new
        assert {r[2][2] for r in rows} == {"USD", "EUR"}
        recent = q.QueryRangeRequest(series=name, start_time=timestamp(snap(POINTS)))
        rows, cases = await same_rows(c, recent, "EUR", "prices")
        assert (len(rows), cases) == (3, {"prices"})


async def test_bars_and_options_chains_read_the_same_in_columns(cluster: Cluster) -> None:
    async with cluster.clients() as c:
        bars_id, chains_id, source = unique("bars"), unique("chains"), unique("feed")
        bars = price_series([(source, 1)])
        bars.data_type = values_pb2.DATA_TYPE_OHLC_BAR
        chains = price_series([(source, 1)])
        chains.data_type = values_pb2.DATA_TYPE_OPTIONS_CHAIN
        await setup_series(c, bars_id, bars)
        await setup_series(c, chains_id, chains, register_sources=False)

        def bar(i: int) -> values_pb2.DataValue:
            volume = f"{1000 * i}" if i % 2 else ""
            prices = (f"{100 + i}", f"{102 + i}.5", f"{99 + i}", f"{101 + i}")
            return values_pb2.DataValue(
                bar=values_pb2.OhlcBar(
                    open=prices[0], high=prices[1], low=prices[2], close=prices[3], volume=volume
                )
            )

        def chain(i: int) -> values_pb2.DataValue:
            quote = values_pb2.OptionQuote(
                expiry=Date(year=2024, month=3, day=15),
                strike=f"{100 + i}",
                right=values_pb2.OPTION_RIGHT_CALL,
                bid="1.5",
                ask="1.75",
            )
            return values_pb2.DataValue(
                options_chain=values_pb2.OptionsChain(underlying_price=f"{101 + i}", quotes=[quote])
            )

        heads = []
        for series_id, make in ((bars_id, bar), (chains_id, chain)):
            reply = await c.command.IngestPoints(
                cmd.IngestPointsRequest(
                    command_id=unique("ing"),
                    series=f"series/{series_id}",
                    source=f"sources/{source}",
                    points=[point(snap(i), make(i)) for i in range(6)],
                ),
                metadata=as_user("feed"),
            )
            assert reply.published == 6, reply
            heads.append(reply.commit_position)

        for page_size in (0, 4):
            request = q.QueryRangeRequest(
                series=f"series/{bars_id}", min_position=max(heads), page_size=page_size
            )
            rows, cases = await same_rows(c, request, "USD", "bars")
            assert cases == {"bars"}
            assert [r[2][5] for r in rows] == ["", "1000", "", "3000", "", "5000"]
            request.series = f"series/{chains_id}"
            rows, cases = await same_rows(c, request, "USD", "other")
            assert (len(rows), cases) == (6, {"other"})
        lookup = q.GetValuesRequest(
            series=f"series/{chains_id}", snap_times=[timestamp(snap(3)), timestamp(snap(1))]
        )
        assert [r[0] for r in await same_values(c, lookup, "USD", "other")] == [snap(3), snap(1)]


async def test_a_view_the_contract_does_not_know_is_refused(cluster: Cluster) -> None:
    async with cluster.clients() as c:
        call = c.query.QueryRange(
            q.QueryRangeRequest(series="series/any", view=9),  # type: ignore[arg-type]
            metadata=READER,
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call.read()
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert [v.field for v in violations(await rich_status(call))] == ["view"]
