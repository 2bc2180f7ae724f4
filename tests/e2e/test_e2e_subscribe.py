"""Subscribe: catch-up in commit order, resumable without gap from any token, then live; and
the opaque page/resume tokens of the query service."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import time
from pathlib import Path

import grpc.aio
import pytest
from qis.data.v1 import query_service_pb2 as q
from qis.data.v1 import series_pb2

from tests.e2e.harness import (
    DAY_US,
    QUERY,
    US,
    Clients,
    Cluster,
    as_user,
    ingest_request,
    micros,
    price_series,
    setup_series,
    unique,
)

pytestmark = pytest.mark.e2e

MINUTE_US = 60 * US
DAY0 = 19_786 * DAY_US  # 2024-03-04T00:00:00Z: one MINUTE bucket (a day) holds every snap below
LIVE_WITHIN_S = 5.0

Change = tuple[int, int, str]  # (snap µs, version, value)


def token_key(token: str) -> tuple[int, int]:
    """The service's resume tokens are (commit position, index in the event); opaque to
    clients, decoded here only to check that they strictly increase."""
    fields = json.loads(base64.urlsafe_b64decode(token))
    return int(fields["position"]), int(fields["index"])


def change(v: q.OfficialValue) -> Change:
    return micros(v.snap_time), v.version, v.value.price.value


class Feed:
    """One Subscribe call, read message by message with a bound on each wait."""

    def __init__(self, c: Clients, request: q.SubscribeRequest) -> None:
        self.call = c.query.Subscribe(request, metadata=as_user("subscriber"))
        self.values: list[q.OfficialValue] = []
        self.tokens: list[str] = []

    async def next(self, within_s: float = LIVE_WITHIN_S) -> q.SubscribeResponse:
        reply = await asyncio.wait_for(self.call.read(), within_s)
        assert isinstance(reply, q.SubscribeResponse), f"stream ended: {reply!r}"
        assert reply.values, "an empty message"
        assert reply.resume_token
        self.values.extend(reply.values)
        self.tokens.append(reply.resume_token)
        return reply

    async def until(self, count: int, within_s: float = LIVE_WITHIN_S) -> None:
        deadline = time.monotonic() + within_s
        while len(self.values) < count:
            await self.next(max(0.01, deadline - time.monotonic()))

    def close(self) -> None:
        self.call.cancel()


def assert_in_order(feed: Feed) -> None:
    keys = [token_key(t) for t in feed.tokens]
    assert all(a < b for a, b in itertools.pairwise(keys)), keys
    positions = [v.record_position for v in feed.values]
    assert positions == sorted(positions)


async def test_subscribe_catch_up_resume_and_live(cluster: Cluster) -> None:
    series_id, source = unique("sub"), unique("feed")
    name = f"series/{series_id}"

    def minutes(first: int, count: int, shift: int = 0) -> list[tuple[int, str]]:
        return [
            (DAY0 + m * MINUTE_US, f"{100 + m / 100 + shift:.2f}")
            for m in range(first, first + count)
        ]

    async with cluster.clients() as c:
        series = price_series([(source, 1)], series_pb2.FREQUENCY_MINUTE)
        defined = await setup_series(c, series_id, series)
        # Three commands: 700 new points, 600 new points, 300 corrected values (version 2).
        batches = [minutes(0, 700), minutes(700, 600), minutes(100, 300, shift=1)]
        expected: list[Change] = []
        positions: list[int] = []
        for i, batch in enumerate(batches):
            reply = await c.command.IngestPoints(
                ingest_request(unique(f"b{i}"), series_id, source, batch),
                metadata=as_user("loader"),
            )
            assert reply.published == len(batch)
            positions.append(reply.commit_position)
            expected += [(s, 2 if i == 2 else 1, v) for s, v in batch]
        # Make sure the catch-up part is all projected before subscribing.
        await c.query.GetSeries(
            q.GetSeriesRequest(name=name, min_position=positions[-1]), metadata=as_user("r")
        )

        # From the beginning, every change of the series in commit order; disconnect midway.
        first = Feed(c, q.SubscribeRequest(series=[name], after_position=0))
        try:
            await first.until(900)
        finally:
            first.close()
        assert_in_order(first)
        received = len(first.values)
        assert 900 <= received < len(expected), "the cut must fall inside the catch-up"
        assert [change(v) for v in first.values] == expected[:received]
        # Each value comes from the command that made it official (one of its events).
        bounds = [defined, *positions]
        batch_of = [0] * 700 + [1] * 600 + [2] * 300
        for i, v in enumerate(first.values):
            b = batch_of[i]
            assert bounds[b] < v.record_position <= bounds[b + 1], (i, v.record_position, bounds)

        # Resume from the last token: the rest, then live values as they are committed.
        second = Feed(c, q.SubscribeRequest(series=[name], resume_token=first.tokens[-1]))
        try:
            await second.until(len(expected) - received)
            live = minutes(1300, 40)
            sent = time.monotonic()
            reply = await c.command.IngestPoints(
                ingest_request(unique("live"), series_id, source, live),
                metadata=as_user("loader"),
            )
            expected += [(s, 1, v) for s, v in live]
            await second.until(len(expected) - received, within_s=LIVE_WITHIN_S)
            latency = time.monotonic() - sent
        finally:
            second.close()
        assert_in_order(second)
        assert token_key(first.tokens[-1]) < token_key(second.tokens[0])
        assert positions[-1] < second.values[-1].record_position <= reply.commit_position
        print(f"\nlive value latency {latency * 1000:.0f} ms")

        union = [change(v) for v in first.values + second.values]
        deduplicated = list(dict.fromkeys(union))
        assert deduplicated == expected  # nothing missing, nothing out of order
        assert len(union) - len(deduplicated) <= 1000  # at most one message seen twice

        # Without a series filter, from the definition on: the same changes (nothing else was
        # written meanwhile by this session's tests, which run one at a time).
        everything = Feed(c, q.SubscribeRequest(after_position=defined))
        try:
            await everything.until(len(expected))
        finally:
            everything.close()
        assert_in_order(everything)
        assert [change(v) for v in everything.values if v.series == name] == expected


async def test_subscribe_rejects_a_forged_token(cluster: Cluster) -> None:
    async with cluster.clients() as c:
        call = c.query.Subscribe(
            q.SubscribeRequest(resume_token="not-a-token"), metadata=as_user("subscriber")
        )
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await asyncio.wait_for(call.read(), 5)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def test_disconnected_subscribers_cost_nothing(cluster: Cluster) -> None:
    """Subscribers that go away (cancel, deadline) leave no polling loop behind."""
    pid = cluster.pid(QUERY)
    async with cluster.clients() as c:
        # a series nobody writes to: its subscribers only wait (an unknown one is NOT_FOUND)
        series_id = unique("nobody")
        defined = await setup_series(c, series_id, price_series([(unique("src"), 1)]))
        request = q.SubscribeRequest(series=[f"series/{series_id}"], after_position=defined)
        calls = [c.query.Subscribe(request, metadata=as_user("s")) for _ in range(40)]
        calls += [c.query.Subscribe(request, metadata=as_user("s"), timeout=0.5) for _ in range(10)]
        await asyncio.sleep(1.0)
        before = cpu_seconds(pid)
        await asyncio.sleep(1.0)
        busy_open = cpu_seconds(pid) - before
        for call in calls:
            call.cancel()
        await asyncio.sleep(0.5)
        before = cpu_seconds(pid)
        await asyncio.sleep(1.5)
        busy_after = (cpu_seconds(pid) - before) / 1.5
    print(f"\nquery CPU: {busy_open:.2f} cores with 40 idle subscribers, {busy_after:.2f} after")
    assert busy_open > 0.05  # the 40 open ones do poll (so the measure means something)
    assert busy_after < 0.05


@pytest.mark.parametrize(
    ("call", "token_of"),
    [
        pytest.param("QueryRange", "Subscribe", id="subscribe-token-to-range"),
        pytest.param("Subscribe", "QueryRange", id="range-token-to-subscribe"),
        pytest.param("ListAuditEntries", "QueryRange", id="range-token-to-audit"),
        pytest.param("ListSeries", "ListAuditEntries", id="audit-token-to-list"),
        pytest.param("QueryRange", "empty-object", id="empty-object-to-range"),
        pytest.param("QueryRange", "garbage", id="garbage-to-range"),
    ],
)
async def test_a_token_from_another_call_is_invalid_argument(
    cluster: Cluster, call: str, token_of: str
) -> None:
    """Tokens are opaque strings: a client that mixes them up must get INVALID_ARGUMENT naming
    the field, never an internal error."""
    series_id, source = unique("tok"), unique("src")
    name = f"series/{series_id}"
    md = as_user("reader")
    async with cluster.clients() as c:
        await setup_series(c, series_id, price_series([(source, 1)]))
        reply = await c.command.IngestPoints(
            ingest_request(unique("t"), series_id, source, [(DAY0, "1"), (DAY0 + DAY_US, "2")]),
            metadata=as_user("loader"),
        )
        at = reply.commit_position
        tokens = {"garbage": "not a token!", "empty-object": "e30="}  # base64 of "{}"
        range_call = c.query.QueryRange(
            q.QueryRangeRequest(series=name, page_size=1, min_position=at), metadata=md
        )
        first = await range_call.read()
        assert isinstance(first, q.QueryRangeResponse)
        tokens["QueryRange"] = first.next_page_token
        range_call.cancel()
        feed = Feed(c, q.SubscribeRequest(series=[name], after_position=0))
        tokens["Subscribe"] = (await feed.next()).resume_token
        feed.close()
        audit = await c.query.ListAuditEntries(
            q.ListAuditEntriesRequest(parent=name, page_size=1, min_position=at), metadata=md
        )
        tokens["ListAuditEntries"] = audit.next_page_token
        token = tokens[token_of]
        assert token

        with pytest.raises(grpc.aio.AioRpcError) as error:
            await call_with_token(c, call, name, token)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, error.value.details()
        assert "token" in (error.value.details() or "")


async def call_with_token(c: Clients, call: str, name: str, token: str) -> None:
    md = as_user("reader")
    if call == "QueryRange":
        request = q.QueryRangeRequest(series=name, page_token=token)
        async for _ in c.query.QueryRange(request, metadata=md):
            pass
    elif call == "Subscribe":
        subscription = c.query.Subscribe(
            q.SubscribeRequest(series=[name], resume_token=token), metadata=md
        )
        try:
            await asyncio.wait_for(subscription.read(), 5)
        finally:
            subscription.cancel()
    elif call == "ListAuditEntries":
        audit = q.ListAuditEntriesRequest(parent=name, page_token=token)
        await c.query.ListAuditEntries(audit, metadata=md)
    else:
        await c.query.ListSeries(q.ListSeriesRequest(page_token=token), metadata=md)
