"""A user's day, end to end: sources, a two-source price series, ingestion with a break held for
approval, a four-eyes publication, a restatement, then bitemporal reads over QueryService."""

from __future__ import annotations

import itertools
from datetime import timedelta

import grpc
import grpc.aio
import pytest
from qis.data.v1 import command_service_pb2 as cmd
from qis.data.v1 import query_service_pb2 as q
from qis.data.v1 import series_pb2

from tests.e2e.harness import (
    DAY_US,
    US,
    Cluster,
    as_user,
    ingest_request,
    list_audit,
    micros,
    point,
    point_history,
    price,
    price_series,
    query_all,
    rfc3339,
    setup_series,
    timestamp,
    unique,
)

pytestmark = pytest.mark.e2e

FIRST_SNAP = 1_704_229_200 * US  # 2024-01-02T21:00:00Z, a US close
DAYS = 5
RESTATED = 2  # index of the restated point


def values(rows: list[q.OfficialValue]) -> list[tuple[int, int, str]]:
    return [(micros(v.snap_time), v.version, v.value.price.value) for v in rows]


async def test_ingest_publish_restate_then_bitemporal_reads(cluster: Cluster) -> None:
    series_id, primary, secondary = unique("spx"), unique("bbg"), unique("lseg")
    name = f"series/{series_id}"
    snaps = [FIRST_SNAP + d * DAY_US for d in range(DAYS)]
    secondary_values = [f"{4700 + d}.00" for d in range(DAYS)]
    primary_values = [f"{4700 + d}.75" for d in range(DAYS)]  # ~1.6 bp away: beyond 1 bp
    restated_snap, restated_value = snaps[RESTATED], "4702.50"
    reason = "vendor correction, ticket 42"

    async with cluster.clients() as c:
        # A break between the sources blocks publication until someone approves it.
        series = price_series(
            [(primary, 1), (secondary, 2)], on_break=series_pb2.BREAK_ACTION_BLOCK
        )
        defined = await setup_series(c, series_id, series)

        # The lower-priority source arrives first and is published as the only value.
        first_ingest = unique("ing2")
        r1 = await c.command.IngestPoints(
            ingest_request(
                first_ingest, series_id, secondary, zip(snaps, secondary_values, strict=True)
            ),
            metadata=as_user("alice"),
        )
        assert (r1.accepted, r1.flagged, r1.published, r1.duplicate) == (DAYS, 0, DAYS, False)
        latest = await query_all(c, series_id, min_position=r1.commit_position)
        assert values(latest) == [(s, 1, v) for s, v in zip(snaps, secondary_values, strict=True)]
        assert {tuple(v.sources) for v in latest} == {(f"sources/{secondary}",)}
        assert {v.method for v in latest} == {q.VALUE_METHOD_PRIORITY}
        assert {v.user for v in latest} == {"alice"}

        # The same request again is a duplicate: same outcome, nothing new.
        again = await c.command.IngestPoints(
            ingest_request(
                first_ingest, series_id, secondary, zip(snaps, secondary_values, strict=True)
            ),
            metadata=as_user("alice"),
        )
        assert again.duplicate
        assert again.commit_position == r1.commit_position

        # The primary source disagrees beyond tolerance: flagged and held, nothing changes.
        second_ingest = unique("ing1")
        r2 = await c.command.IngestPoints(
            ingest_request(
                second_ingest, series_id, primary, zip(snaps, primary_values, strict=True)
            ),
            metadata=as_user("bob"),
        )
        assert (r2.accepted, r2.flagged, r2.published) == (DAYS, DAYS, 0)
        assert r2.commit_position > r1.commit_position
        held = await query_all(c, series_id, min_position=r2.commit_position)
        assert values(held) == values(latest)

        # Four-eyes: bob sent the primary values, so he may not approve them.
        publish = cmd.PublishPointsRequest(
            command_id=unique("pub"),
            series=name,
            snap_times=[timestamp(s) for s in snaps],
            comment="breaks checked against the exchange",
        )
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await c.command.PublishPoints(publish, metadata=as_user("bob"))
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        r3 = await c.command.PublishPoints(publish, metadata=as_user("dave"))
        assert r3.commit_position > r2.commit_position
        published = await query_all(c, series_id, min_position=r3.commit_position)
        assert values(published) == [(s, 2, v) for s, v in zip(snaps, primary_values, strict=True)]
        assert {(tuple(v.sources), v.user, v.reason) for v in published} == {
            ((f"sources/{primary}",), "dave", publish.comment)
        }

        # carol corrects one point by hand.
        r4 = await c.command.RestatePoint(
            cmd.RestatePointRequest(
                command_id=unique("fix"),
                series=name,
                snap_time=timestamp(restated_snap),
                value=price(restated_value),
                reason=reason,
            ),
            metadata=as_user("carol"),
        )
        assert r4.commit_position > r3.commit_position

        # Latest: the restated point at its latest version and value, the others unchanged.
        final = await query_all(c, series_id, min_position=r4.commit_position)
        expected_final = [(s, 2, v) for s, v in zip(snaps, primary_values, strict=True)]
        expected_final[RESTATED] = (restated_snap, 3, restated_value)
        assert values(final) == expected_final
        fixed = final[RESTATED]
        # A manual value: no source (the domain's "manual" source id is not a resource).
        assert (fixed.user, fixed.reason, fixed.method, list(fixed.sources)) == (
            "carol",
            reason,
            q.VALUE_METHOD_MANUAL,
            [],
        )
        # A command may append several events: its version comes from one of them.
        assert r3.commit_position < fixed.record_position <= r4.commit_position
        assert not fixed.HasField("supersede_time")
        assert fixed.supersede_position == 0

        # History: every version ascending, knowledge intervals chained without gap or overlap.
        history, pages = await point_history(
            c, series_id, restated_snap, min_position=r4.commit_position
        )
        assert pages == 1  # five items: one page of the default size (100)
        versions = list(history.versions)
        assert [v.version for v in versions] == [1, 2, 3]
        assert [v.value.price.value for v in versions] == [
            secondary_values[RESTATED],
            primary_values[RESTATED],
            restated_value,
        ]
        assert [v.user for v in versions] == ["alice", "dave", "carol"]
        assert [v.reason for v in versions] == ["", publish.comment, reason]
        assert defined < versions[0].record_position <= r1.commit_position
        assert r2.commit_position < versions[1].record_position <= r3.commit_position
        assert r3.commit_position < versions[2].record_position <= r4.commit_position
        for older, newer in itertools.pairwise(versions):
            assert older.HasField("supersede_time")
            assert older.supersede_time == newer.record_time
            assert older.supersede_position == newer.record_position
            assert micros(older.record_time) < micros(newer.record_time)
        assert not versions[-1].HasField("supersede_time")
        assert history.read_position >= r4.commit_position

        # Lineage: both sources' observations, by commit position, with who sent them.
        observations = list(history.observations)
        assert [(o.source, o.user, o.command_id, o.value.price.value) for o in observations] == [
            (f"sources/{secondary}", "alice", first_ingest, secondary_values[RESTATED]),
            (f"sources/{primary}", "bob", second_ingest, primary_values[RESTATED]),
        ]
        assert defined < observations[0].record_position <= r1.commit_position
        assert r1.commit_position < observations[1].record_position <= r2.commit_position
        # Sent without a UTC offset: UTC (unset and zero are the same offset).
        assert (observations[0].utc_offset.seconds, observations[0].utc_offset.nanos) == (0, 0)

        # As of a knowledge time just before the restatement: the approved version.
        v1, v2, v3 = versions
        before_fix = await query_all(c, series_id, as_of_us=micros(v3.record_time) - 1)
        assert values(before_fix) == [(s, 2, v) for s, v in zip(snaps, primary_values, strict=True)]
        before_approval = await query_all(c, series_id, as_of_us=micros(v2.record_time) - 1)
        assert values(before_approval) == values(latest)
        at_fix = await query_all(c, series_id, as_of_us=micros(v3.record_time))
        assert values(at_fix) == expected_final
        assert await query_all(c, series_id, as_of_us=micros(v1.record_time) - 1) == []

        # As of commit positions: exactly what was official right after each command.
        assert values(await query_all(c, series_id, as_of_position=r3.commit_position)) == [
            (s, 2, v) for s, v in zip(snaps, primary_values, strict=True)
        ]
        at_r2 = await query_all(c, series_id, as_of_position=r2.commit_position)
        assert values(at_r2) == values(latest)
        at_r1 = await query_all(c, series_id, as_of_position=r1.commit_position)
        assert values(at_r1) == values(latest)
        assert values(await query_all(c, series_id, as_of_position=r4.commit_position)) == (
            expected_final
        )
        # ...and paging does not change an answer.
        paged = await query_all(c, series_id, as_of_position=r3.commit_position, page_size=2)
        assert values(paged) == values(
            await query_all(c, series_id, as_of_position=r3.commit_position)
        )

        # A range is [start_time, end_time) in valid time.
        window = q.QueryRangeRequest(
            series=name, start_time=timestamp(snaps[1]), end_time=timestamp(snaps[3]), page_size=1
        )
        replies = [r async for r in c.query.QueryRange(window, metadata=as_user("reader"))]
        assert [micros(v.snap_time) for r in replies for v in r.values] == snaps[1:3]
        assert all(r.read_position >= r4.commit_position for r in replies)

        # The catalogue lists the series, page by page, once.
        listed: list[str] = []
        token = ""
        while True:
            page = await c.query.ListSeries(
                q.ListSeriesRequest(page_size=2, page_token=token), metadata=as_user("reader")
            )
            listed += [s.name for s in page.series]
            if not (token := page.next_page_token):
                break
        assert listed == sorted(set(listed))
        assert name in listed
        described = await c.query.GetSeries(q.GetSeriesRequest(name=name), metadata=as_user("r"))
        assert (described.schema_version, described.unit, len(described.sources)) == (1, "USD", 2)

        # The audit trail of the point names the restatement, who made it and why.
        audit = await list_audit(
            c,
            name,
            f'snap_time = "{rfc3339(restated_snap)}"',
            min_position=r4.commit_position,
        )
        assert audit
        assert {(e.resource, micros(e.snap_time)) for e in audit} == {(name, restated_snap)}
        restatements = [e for e in audit if e.action == "DataRestated"]
        assert [(e.user, e.details["reason"]) for e in restatements] == [
            ("dave", publish.comment),
            ("carol", reason),
        ]
        assert [e.commit_position for e in restatements] == [
            v2.record_position,
            v3.record_position,
        ]


async def test_decimals_offsets_and_source_audit_are_kept_exactly(cluster: Cluster) -> None:
    """Values travel as decimal strings (never floats), the series' precision rounds official
    values half-even while observations keep what was sent, snaps are normalised to UTC with
    the source's offset kept as lineage, and data-source registration is audited."""
    raw_id, rounded_id, source = unique("raw"), unique("cents"), unique("vendor")
    day = FIRST_SNAP - 21 * 3600 * US  # 2024-01-02T00:00:00Z
    # (snap in UTC µs, the offset the source stated, the value)
    sent = [
        (day + 5 * 3600 * US, 5 * 3600 + 1800, "1E+3"),  # 2024-01-02T10:30:00+05:30
        (day + DAY_US + 5 * 3600 * US + 1, -5 * 3600, "-0.5"),  # 2024-01-03T00:00:00.000001-05:00
        (day + 2 * DAY_US + 5 * 3600 * US, None, "123456789.123456789"),  # 2024-01-04T05:00:00Z
    ]
    async with cluster.clients() as c:
        raw = price_series([(source, 1)])
        registered = await setup_series(c, raw_id, raw)
        cents = price_series([(source, 1)])
        cents.precision = 2
        await setup_series(c, rounded_id, cents, register_sources=False)
        positions = []
        for series_id in (raw_id, rounded_id):
            reply = await c.command.IngestPoints(
                cmd.IngestPointsRequest(
                    command_id=unique("exact"),
                    series=f"series/{series_id}",
                    source=f"sources/{source}",
                    points=[point(us, price(v), offset_s) for us, offset_s, v in sent],
                ),
                metadata=as_user("alice"),
            )
            positions.append(reply.commit_position)
        exact = await query_all(c, raw_id, min_position=positions[-1])
        assert [(micros(v.snap_time), v.value.price.value) for v in exact] == [
            (day + 5 * 3600 * US, "1E+3"),
            (day + DAY_US + 5 * 3600 * US + 1, "-0.5"),
            (day + 2 * DAY_US + 5 * 3600 * US, "123456789.123456789"),
        ]
        assert {v.value.price.currency for v in exact} == {"USD"}
        rounded = await query_all(c, rounded_id, min_position=positions[-1])
        assert [v.value.price.value for v in rounded] == ["1000.00", "-0.50", "123456789.12"]
        for (snap_us, offset_s, value), official in zip(sent, rounded, strict=True):
            history, _ = await point_history(c, rounded_id, snap_us)
            (observation,) = history.observations
            assert observation.value.price.value == value  # as sent, not rounded
            # The offset the source stated is lineage; the snap is the UTC instant.
            assert observation.utc_offset.ToTimedelta() == timedelta(seconds=offset_s or 0)
            assert micros(official.snap_time) == snap_us

        sources_audit = await list_audit(c, f"sources/{source}", min_position=registered)
        assert [(e.action, e.user, e.resource) for e in sources_audit] == [
            ("DataSourceRegistered", "admin", f"sources/{source}")
        ]
        assert sources_audit[0].details["source"] == source
