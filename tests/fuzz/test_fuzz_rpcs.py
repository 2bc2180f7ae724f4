"""Never UNKNOWN: every RPC of CommandService, QueryService and TopicService answers any
request, structured or raw bytes, with a clear status in time, and what the command side
accepts projects.

Against the three real processes (one cluster for the module, seeded with two series, their
sources, points and the quality issues those raise), each RPC gets generated requests built
from its descriptor (see fuzz_messages) and raw bytes. Every call must end in a status a client
can act on (not UNKNOWN, not INTERNAL; UNAVAILABLE with RetryInfo) in under 5 s. Afterwards the
event log must have grown by exactly the commands answered OK (and the whole records the query
service makes for its consumer groups), the projector must be healthy, and a query at the
highest accepted position must be answered. TopicService.Consume also gets streams shaped to
reach past its first message: a subscription, then settlements of unknown deliveries, nacks
sent twice, oversized reasons, and later messages that try to subscribe again.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf.descriptor import EnumDescriptor
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import given, settings
from hypothesis import strategies as st
from qis.data.v1 import access_pb2, quality_pb2, routing_pb2, series_pb2, values_pb2
from qis.data.v1 import command_service_pb2 as cmd
from qis.data.v1 import query_service_pb2 as q
from qis.data.v1 import topic_service_pb2 as topics
from qis_command.application.scheduler import SCHEDULER_USER
from qis_domain.bounds import MAX_INSTANT_US, MIN_INSTANT_US
from qis_domain.events import ALL_EVENT_TYPES
from qis_domain.routing import MAX_ERROR_LENGTH
from qis_projector.main import LAG_SERVICE
from qis_query.settings import QuerySettings

from tests.e2e.harness import (
    COMMAND,
    DAY_US,
    PROJECTOR,
    QUERY,
    US,
    Clients,
    Cluster,
    as_user,
    head_position,
    ingest_request,
    price_series,
    read_only,
    rfc3339,
    setup_series,
    timestamp,
)
from tests.fuzz.fuzz_calls import (
    LEDGER,
    C,
    Metadata,
    Request,
    Rpc,
    call,
    describe,
    problems,
    rpcs,
    server_trace,
)
from tests.fuzz.fuzz_messages import (
    COMPARISONS,
    EXTREMES,
    FilterField,
    Pools,
    RequestFuzzer,
    aip160_filters,
    decimal_like,
    enum_words,
    quoted,
    rfc3339_like,
    snap_times,
    spans,
    utc_offsets,
    weighted,
)

pytestmark = [pytest.mark.e2e, pytest.mark.fuzz]

PROFILE = settings.get_profile("qis-fuzz")
RPCS = rpcs()
GET_SERIES = next(r for r in RPCS if r.name == "QueryService.GetSeries")
CONSUME = next(r for r in RPCS if r.name == "TopicService.Consume")
PX, BAR = "fz-px", "fz-bar"  # the seeded series: prices (rules), OHLC bars (manual publication)
SOURCES = ("fz-src-a", "fz-src-b")
# Not defined by the seed: the fuzzer defines them, each in its own (odd) way.
NEW_SERIES = tuple(f"fz-new-{i}" for i in range(1, 13))
NEW_SOURCES = ("fz-src-new-1", "fz-src-new-2")
USERS = ("fz-alice", "fz-bob", "fz-carol")  # the seed ingests as alice: bob may approve
POLICIES = ("fz-policy-1", "fz-policy-2")  # set by the seed; the fuzzer changes and deletes them
TOPIC = "fz.alerts"  # set by the seed, fed by the seeded publications and issues
GROUPS = ("fz-g1", "fz-g2")
QUERY_SERVICE_USER = QuerySettings.model_fields["query_user"].default
"""Who the query service is when it records its consumer groups' state (the cluster's default)."""
BASE_US = 1_704_229_200 * US  # 2024-01-02T21:00:00Z
SEEDED_US = [BASE_US + d * DAY_US for d in range(30)]
FRESH_US = [BASE_US + d * DAY_US for d in range(30, 400)]  # days the seed left empty


@dataclass(frozen=True)
class World:
    """The seeded cluster as the fuzzer sees it."""

    cluster: Cluster
    command: grpc.Channel
    query: grpc.Channel
    fuzzer: RequestFuzzer
    head_after_seed: int

    def channel(self, rpc: Rpc) -> grpc.Channel:
        return self.command if rpc.is_command else self.query


# --- seeding ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seeded:
    positions: list[int]
    issue_ids: list[str]
    tokens: list[str]


async def seed(c: Clients) -> Seeded:
    positions: list[int] = []
    topic = routing_pb2.Topic(
        name=f"topics/{TOPIC}",
        event_types=[
            routing_pb2.ROUTED_EVENT_TYPE_DATA_PUBLISHED,
            routing_pb2.ROUTED_EVENT_TYPE_QUALITY_ISSUE_DETECTED,
        ],
        max_delivery_attempts=2,
    )
    set_topic = cmd.SetTopicRequest(command_id="seed-topic", topic=topic)
    positions.append(
        (await c.command.SetTopic(set_topic, metadata=as_user(USERS[0]))).commit_position
    )
    prices = price_series([(SOURCES[0], 1), (SOURCES[1], 2)], require_positive=True)
    prices.validation.max_jump_percent = "20"
    positions.append(await setup_series(c, PX, prices))
    bars = price_series([(SOURCES[0], 1), (SOURCES[1], 2)], mode=series_pb2.PUBLICATION_MODE_MANUAL)
    bars.data_type = values_pb2.DATA_TYPE_OHLC_BAR
    positions.append(await setup_series(c, BAR, bars, register_sources=False))

    # A negative price and a jump raise issues on PX; source b disagrees with a (breaks).
    a = [
        (us, "-5" if d == 10 else "300" if d == 20 else f"{100 + d}")
        for d, us in enumerate(SEEDED_US)
    ]
    b = [(us, f"{101.5 + d}") for d, us in enumerate(SEEDED_US[:10])]
    md = as_user(USERS[0])
    for i, (source, items) in enumerate([(SOURCES[0], a), (SOURCES[1], b)]):
        reply = await c.command.IngestPoints(
            ingest_request(f"seed-px-{i}", PX, source, items), metadata=md
        )
        positions.append(reply.commit_position)
    # Bar 5 is inconsistent (high below low).
    bar_points = [
        values_pb2.DataPoint(
            snap_time=timestamp(us),
            value=values_pb2.DataValue(
                bar=values_pb2.OhlcBar(
                    open="10", high="9" if d == 5 else "12", low="10" if d == 5 else "8", close="11"
                )
            ),
        )
        for d, us in enumerate(SEEDED_US[:10])
    ]
    reply = await c.command.IngestPoints(
        cmd.IngestPointsRequest(
            command_id="seed-bar",
            series=f"series/{BAR}",
            source=f"sources/{SOURCES[0]}",
            points=bar_points,
        ),
        metadata=md,
    )
    positions.append(reply.commit_position)
    for policy_id in POLICIES:
        policy = access_pb2.AccessPolicy(
            name=f"accessPolicies/{policy_id}",
            principals=[f"user:{USERS[1]}"],
            resources=[f"series/{PX}"],
            permissions=[access_pb2.PERMISSION_READ],
        )
        set_policy = cmd.SetAccessPolicyRequest(
            command_id=f"seed-{policy_id}", policy=policy, reason="seed"
        )
        set_reply = await c.command.SetAccessPolicy(set_policy, metadata=md)
        positions.append(set_reply.commit_position)
    return Seeded(positions, *await harvest(c, max(positions)))


async def harvest(c: Clients, head: int) -> tuple[list[str], list[str]]:
    """Issue ids and genuine page and resume tokens, so that fuzzed requests also carry ones
    the service issued (for other requests, mostly: it must refuse those clearly)."""
    md = as_user(USERS[1])
    issues: list[str] = []
    tokens: list[str] = []
    for series in (PX, BAR):
        listed = await c.query.ListQualityIssues(  # an empty filter: every status
            q.ListQualityIssuesRequest(
                parent=f"series/{series}", page_size=1_000, min_position=head
            ),
            metadata=md,
        )
        issues += [i.issue_id for i in listed.issues]
        page = await c.query.ListQualityIssues(
            q.ListQualityIssuesRequest(parent=f"series/{series}", page_size=1), metadata=md
        )
        tokens.append(page.next_page_token)
    for parent, filter_ in (("series/-", "status = OPEN"), ("series/-", "")):
        page = await c.query.ListQualityIssues(
            q.ListQualityIssuesRequest(parent=parent, filter=filter_, page_size=1), metadata=md
        )
        tokens.append(page.next_page_token)
    history = await c.query.GetPointHistory(  # two sources' observations and a version
        q.GetPointHistoryRequest(
            series=f"series/{PX}", snap_time=timestamp(SEEDED_US[0]), page_size=1
        ),
        metadata=md,
    )
    tokens.append(history.next_page_token)
    async for reply in c.query.QueryRange(
        q.QueryRangeRequest(series=f"series/{PX}", page_size=2), metadata=md
    ):
        tokens.append(reply.next_page_token)
        break
    tokens.append(
        (await c.query.ListSeries(q.ListSeriesRequest(page_size=1), metadata=md)).next_page_token
    )
    for parent, filter_ in (
        (f"series/{PX}", ""),
        ("-", f'user = "{USERS[0]}"'),
        (f"sources/{SOURCES[0]}", ""),
    ):
        audit = await c.query.ListAuditEntries(
            q.ListAuditEntriesRequest(parent=parent, filter=filter_, page_size=1), metadata=md
        )
        tokens.append(audit.next_page_token)
    async for update in c.query.Subscribe(q.SubscribeRequest(), metadata=md):
        tokens.append(update.resume_token)
        break
    assert issues, "the seed raises quality issues"
    return issues, [t for t in tokens if t]


def crafted_tokens() -> st.SearchStrategy[str]:
    """Tokens shaped like the service's own (base64 of JSON naming their kind) with numbers
    at and beyond what the stores hold."""
    number = st.sampled_from(EXTREMES) | st.integers(-5, 50)
    payload = st.fixed_dictionaries(
        {"k": st.sampled_from(["range", "feed", "series", "audit", "issues", "history", "x"])},
        optional={
            "position": number,
            "index": number,
            "after": number | st.text(max_size=8),
            "q": st.text(max_size=16),
            "parent": st.sampled_from(["-", "series/-", f"series/{PX}", f"sources/{SOURCES[0]}"]),
            "filter": st.sampled_from(["", "status = OPEN", 'user = "x"']),
        },
    )
    return payload.map(lambda p: base64.urlsafe_b64encode(json.dumps(p).encode()).decode())


def pools(seeded: Seeded) -> Pools:
    def names(kind: str, ids: Sequence[str]) -> list[str]:
        return [f"{kind}/{i}" for i in ids]

    series_names = weighted(
        (6, st.sampled_from(names("series", (PX, BAR)))),
        (4, st.sampled_from(names("series", NEW_SERIES))),
        (1, st.sampled_from(["series/-", "series/fz-nope"])),
    )
    source_names = weighted(
        (4, st.sampled_from(names("sources", SOURCES))),
        (1, st.sampled_from(names("sources", NEW_SOURCES))),
    )
    # Parents: one collection, every one (AIP-159's "-"), then malformed or unknown ones.
    issue_parents = weighted(
        (5, st.sampled_from(names("series", (PX, BAR)))),
        (3, st.just("series/-")),
        (1, st.sampled_from(["-", "series/fz-nope", f"sources/{SOURCES[0]}", "sources/-"])),
    )
    audit_parents = weighted(
        (4, st.sampled_from(names("series", (PX, BAR)))),
        (3, st.sampled_from(names("sources", SOURCES))),
        (3, st.just("-")),
        (1, st.sampled_from(["series/-", "sources/-", "series/fz-nope", "sources/fz-nope"])),
    )
    policy_names = weighted(
        (5, st.sampled_from(names("accessPolicies", (*POLICIES, "fz-policy-new")))),
        (1, st.sampled_from(["accessPolicies/-", "accessPolicies/", f"series/{PX}"])),
    )
    topic_names = weighted(
        (6, st.just(f"topics/{TOPIC}")),
        (
            1,
            st.sampled_from(["topics/fz.nope", TOPIC, "topics/", "topics/FZ.UPPER", "topics/a..b"]),
        ),
    )
    group_names = weighted((6, st.sampled_from(GROUPS)), (1, st.sampled_from(["", "-g", "g" * 65])))
    delivery_ids = st.sampled_from(["1", "fz-c1#1:1", "", "x" * 300])
    snaps = snap_times(SEEDED_US, FRESH_US)
    decimals = decimal_like()
    positions = weighted(
        (6, st.just(0)), (3, st.sampled_from(seeded.positions)), (1, st.integers(0, 2**63 - 1))
    )
    strings = {
        "command_id": weighted(
            (6, st.uuids().map(str)),
            (3, st.sampled_from(["fz-cmd-1", "fz-cmd-2", "seed-px-0", "seed-bar"])),
        ),
        "series": series_names,
        "Series.name": series_names,
        "GetSeriesRequest.name": series_names,
        "DataSource.name": source_names,
        "source": source_names,
        "series_id": st.sampled_from([*NEW_SERIES, PX]),
        "source_id": st.sampled_from([*NEW_SOURCES, SOURCES[0]]),
        "AccessPolicy.name": policy_names,
        "DeleteAccessPolicyRequest.name": policy_names,
        # Principals and resource patterns: of each kind, then near misses.
        "principals": weighted(
            (5, st.sampled_from(["*", f"user:{USERS[0]}", "role:reader", "role:data-ops"])),
            (1, st.sampled_from(["user:", "group:x", "user:two words", "**"])),
        ),
        "resources": weighted(
            (5, st.sampled_from(["*", "series/*", f"series/{PX}", "series/fz-*/issues"])),
            (3, st.sampled_from(["sources/fz-src-?", "accessPolicies"])),
            (1, st.sampled_from(["sources/a/issues", "series/a/b", "policies", "series/"])),
        ),
        "SourceRestriction.sources": weighted(
            (4, st.sampled_from([f"sources/{SOURCES[0]}", "sources/fz-*"])),
            (1, st.sampled_from([f"series/{PX}", "sources/", "*"])),
        ),
        # A denial the query service would record (RecordAccessDenial).
        "AccessDenial.user": weighted(
            (4, st.sampled_from(USERS)), (1, st.sampled_from(["two words", "", "x" * 129]))
        ),
        "AccessDenial.method": st.sampled_from(["QueryRange", "DoGet", "ListSeries", ""]),
        "AccessDenial.resource": st.sampled_from(
            [f"series/{PX}", f"series/{PX}/issues", f"sources/{SOURCES[0]}", "*", ""]
        ),
        "AccessDenial.peer": st.sampled_from(["ipv4:127.0.0.1:5000", ""]),
        "roles": st.sampled_from(["reader", "data-ops", "", "two words"]),
        "PolicyRefusal.policy_id": st.sampled_from([*POLICIES, "QIS_ADMINS", ""]),
        "ListQualityIssuesRequest.parent": issue_parents,
        "ListAuditEntriesRequest.parent": audit_parents,
        "ListQualityIssuesRequest.filter": aip160_filters(issue_filter_fields()),
        "ListAuditEntriesRequest.filter": aip160_filters(audit_filter_fields()),
        "issue_ids": st.sampled_from(seeded.issue_ids),
        # TopicService: the seeded topic and a few groups, then unknown and malformed ones.
        **{f"{m}.topic": topic_names for m in ("ConsumeRequest", "ListParkedRequest", "ReplayParkedRequest")},
        **{f"{m}.group": group_names for m in ("ConsumeRequest", "ListParkedRequest", "ReplayParkedRequest")},
        "ConsumeRequest.consumer": st.sampled_from(["fz-c1", "fz-c2", "", "two words", "c" * 65]),
        "ack_ids": delivery_ids,
        "delivery_id": delivery_ids,
        "page_token": st.sampled_from(seeded.tokens) | crafted_tokens(),
        "resume_token": st.sampled_from(seeded.tokens) | crafted_tokens(),
        "currency": st.sampled_from(["USD", "EUR", "usd"]),
        "unit": weighted((4, st.just("USD")), (1, st.sampled_from(["shares", "EUR"]))),
        "time_zone": st.sampled_from(
            ["America/New_York", "UTC", "Asia/Tokyo", "Nowhere/Land", "../../etc/passwd"]
        ),
        "calendar": st.sampled_from(["XNYS", "XTKS", "XLON", "XXXX", "24/7"]),
        "provider": st.sampled_from(["synthetic", "bloomberg", "file"]),
        "reason_code": st.just("EXCHANGE_CORRECTION"),
        **{
            name: st.text(min_size=1, max_size=40)
            for name in ("reason", "comment", "description")
        },
        **{
            name: decimals
            for name in (
                "value", "quantity", "open", "high", "low", "close", "volume", "strike", "bid",
                "ask", "implied_volatility", "underlying_price", "ratio", "amount",
                "max_jump_percent", "max_zscore", "max_spike_percent", "tolerance_bps",
                "tolerance_abs", "min_quality_score", "cost_per_request",
            )
        },
    }  # fmt: skip
    ints = {
        "min_position": positions,
        "as_of_position": positions,
        "after_position": positions,
        # The seeded series' versions (1, 2 after an evolution...), then ones no series has.
        "expected_schema_version": weighted(
            (3, st.sampled_from([0, 1, 2, 3])), (1, st.sampled_from([99, -1, 2**31 - 1]))
        ),
        "policy_version": st.sampled_from([-1, 0, 3, -2, 2**62]),
        "expected_revision": weighted(
            (3, st.sampled_from([0, 1, 2])), (1, st.sampled_from([99, -1, 2**31 - 1]))
        ),
        # Times of day of a time window: in range, at the ends, and beyond.
        "TimeOfDay.hours": st.sampled_from([0, 7, 19, 23, 24, 25, -1]),
        "TimeOfDay.minutes": st.sampled_from([0, 30, 59, 60]),
        "TimeOfDay.seconds": st.sampled_from([0, 59, 60]),
        "TimeOfDay.nanos": weighted((5, st.just(0)), (1, st.just(1))),
        "page_size": st.sampled_from([0, 1, 2, 3, 10, 1_000, 1_001, 10_000, 10_001, -1]),
        "max_in_flight": st.sampled_from([0, 1, 10, 100, 101, -1, 2**31 - 1]),
        "max_count": st.sampled_from([0, 1, 100, 1_000_000, 1_000_001, -1, 2**31 - 1]),
        "priority": st.sampled_from([1, 2, 3, 0]),
        "precision": st.sampled_from([0, 2, 4, 18, 19]),
        "zscore_window": st.sampled_from([0, 2, 20, 1_000, 1_001, 1]),
        "stale_after_snaps": st.sampled_from([0, 3, 1_000, 1_001]),
        "min_sources": st.sampled_from([0, 1, 2, 3]),
        # The seeded prices' own, so that an evolution of PX (both immutable) can be accepted.
        "Series.data_type": st.just(values_pb2.DATA_TYPE_PRICE),
        "Series.frequency": st.just(series_pb2.FREQUENCY_DAILY),
    }
    # A window over the seeded days (the fuzzer's own draws put start and end in any order).
    window = {
        "start_time": st.sampled_from(SEEDED_US[:10]).map(timestamp),
        "end_time": st.sampled_from(SEEDED_US[10:]).map(timestamp),
    }
    messages: dict[str, st.SearchStrategy[Message]] = {
        **{f"CalculateQualityMetricsRequest.{name}": s for name, s in window.items()},
        "snap_time": snaps,
        "snap_times": snaps,
        "utc_offset": utc_offsets(),
        "IngestPointsRequest.columns": point_columns(decimals),
        "cutoff": spans(),
        "timeliness_sla": spans(),
    }
    return Pools(
        strings=strings,
        ints=ints,
        messages=messages,
        oneofs={"qis.data.v1.DataValue.kind": "price"},
        needed=frozenset(
            {
                "Series.name",
                "Series.unit",
                "DataSource.name",
                "SeriesSource.source",
                "DataPoint.snap_time",
                "DataPoint.value",
                "RestatePointRequest.value",
                "Price.value",
                "Volume.quantity",
                "OhlcBar.open",
                "OhlcBar.high",
                "OhlcBar.low",
                "OhlcBar.close",
            }
        ),
        seeded_seconds=[us // US for us in SEEDED_US],
    )


def point_columns(decimals: st.SearchStrategy[str]) -> st.SearchStrategy[values_pb2.PointColumns]:
    """Prices in columns on the seeded days and the ones the seed left empty (now and then an
    instant out of range), with no offset, one for every row, one per row, or a count that is
    none of those: left to the fuzzer's own draws, a count of offsets that fits neither form
    was sent about once in 500 requests, and the offsets' check refused none in some runs."""
    snaps = weighted(
        (8, st.sampled_from([*SEEDED_US, *FRESH_US])),
        (1, st.sampled_from([MIN_INSTANT_US - 1, MAX_INSTANT_US + 1, -(2**63), 2**63 - 1])),
    )
    minutes = st.sampled_from([0, -300, 330, 60, -1_439, 1_439, 1_440])

    def offsets(n: int) -> st.SearchStrategy[list[int]]:
        wrong = st.sampled_from([k for k in range(2, 6) if k != n])
        return weighted(
            (3, st.just([])),
            (3, st.lists(minutes, min_size=1, max_size=1)),
            (3, st.lists(minutes, min_size=n, max_size=n)),
            (2, wrong.flatmap(lambda k: st.lists(minutes, min_size=k, max_size=k))),
        )

    def rows(utc_us: list[int]) -> st.SearchStrategy[values_pb2.PointColumns]:
        n = len(utc_us)
        return st.builds(
            lambda offs, texts: values_pb2.PointColumns(
                snap_time_micros=utc_us,
                utc_offset_minutes=offs,
                prices=values_pb2.DecimalColumn(texts=texts),
            ),
            offsets(n),
            st.lists(decimals, min_size=n, max_size=n),
        )

    return st.lists(snaps, min_size=1, max_size=5).flatmap(rows)


def time_values() -> st.SearchStrategy[str]:
    """Times in a filter: quoted RFC 3339 around the seeded days, and near misses."""
    return weighted(
        (4, st.sampled_from([*SEEDED_US[:3], SEEDED_US[-1], FRESH_US[0]]).map(rfc3339)),
        (1, st.just(rfc3339(2**50))),  # after the seed's commits: their commit times are now
        (2, rfc3339_like()),
    ).map(quoted)


def issue_filter_fields() -> list[FilterField]:
    """What ListQualityIssuesRequest.filter compares (see its proto comment)."""

    def words(enum: EnumDescriptor) -> st.SearchStrategy[str]:
        return st.sampled_from(enum_words(enum))

    equality = ("=", "!=")
    return [
        FilterField("rule", equality, words(quality_pb2.QualityRule.DESCRIPTOR)),
        FilterField("severity", equality, words(quality_pb2.Severity.DESCRIPTOR)),
        FilterField("status", equality, words(quality_pb2.QualityIssueStatus.DESCRIPTOR)),
        FilterField(
            "source",
            equality,
            st.sampled_from([f"sources/{s}" for s in (*SOURCES, *NEW_SOURCES)]).map(quoted),
        ),
        FilterField("snap_time", COMPARISONS, time_values()),
        FilterField("raise_time", COMPARISONS, time_values()),
    ]


def audit_filter_fields() -> list[FilterField]:
    """What ListAuditEntriesRequest.filter compares (see its proto comment)."""
    actions = [event.event_type for event in ALL_EVENT_TYPES]
    equality = ("=", "!=")
    return [
        FilterField("snap_time", ("=",), time_values()),
        FilterField("commit_time", COMPARISONS, time_values()),
        FilterField("user", equality, st.sampled_from([*USERS, SCHEDULER_USER]).map(quoted)),
        FilterField("action", equality, st.sampled_from(actions).map(quoted)),
        FilterField(
            "resource",
            equality,
            st.sampled_from(
                [f"series/{PX}", f"sources/{SOURCES[0]}", f"accessPolicies/{POLICIES[0]}"]
            ).map(quoted),
        ),
    ]


@pytest.fixture(scope="module")
def world(cluster: Cluster) -> Iterator[World]:
    async def seeded() -> Seeded:
        async with cluster.clients() as c:
            return await seed(c)

    state = asyncio.run(seeded())
    head = head_position(cluster.events_db)
    with (
        grpc.insecure_channel(cluster.address(COMMAND)) as command,
        grpc.insecure_channel(cluster.address(QUERY)) as query,
    ):
        yield World(cluster, command, query, RequestFuzzer(pools(state)), head)


# --- the fuzz tests ---------------------------------------------------------------------------


def identities() -> st.SearchStrategy[Metadata]:
    """One user of three, so four-eyes paths are reached; now and then the header twice (which
    the service must refuse clearly)."""
    one = st.sampled_from(USERS).map(as_user)
    two = st.tuples(st.sampled_from(USERS), st.sampled_from(USERS)).map(
        lambda u: (*as_user(u[0]), *as_user(u[1]))
    )
    return weighted((19, one), (1, two))


def exercise(
    world: World, rpc: Rpc, kind: str, requests: Sequence[Request], metadata: Metadata
) -> None:
    outcome = call(world.channel(rpc), rpc, requests, metadata)
    LEDGER.record(rpc, kind, requests, metadata, outcome)
    found = problems(rpc, outcome, len(requests))
    if not found:
        return
    logs = [p.log_path for p in world.cluster.processes.values()]
    trace = server_trace(logs, outcome) if outcome.code == C.INTERNAL else ""
    raise AssertionError(
        f"{rpc.name}{kind}: "
        + "; ".join(found)
        + f"\nmetadata: {metadata}\nrequest:\n{describe(requests)}\n{trace}"
    )


@pytest.mark.parametrize("rpc", RPCS, ids=lambda r: r.name)
@settings(PROFILE)
@given(data=st.data())
def test_generated_requests_answer_clearly(world: World, rpc: Rpc, data: st.DataObject) -> None:
    messages = world.fuzzer.messages(rpc.method.input_type)
    if rpc.method.client_streaming:
        requests: list[Request] = data.draw(
            st.lists(messages, min_size=1, max_size=4), label="chunks"
        )
    else:
        requests = [data.draw(messages, label="request")]
    exercise(world, rpc, "", requests, data.draw(identities(), label="metadata"))


@pytest.mark.parametrize("rpc", RPCS, ids=lambda r: r.name)
@settings(PROFILE)
@given(data=st.data())
def test_raw_bytes_answer_clearly(world: World, rpc: Rpc, data: st.DataObject) -> None:
    raw = world.fuzzer.raw(rpc.method.input_type)
    size = (1, 3) if rpc.method.client_streaming else (1, 1)
    requests: list[Request] = data.draw(
        st.lists(raw, min_size=size[0], max_size=size[1]), label="raw"
    )
    exercise(world, rpc, " (raw)", requests, data.draw(identities(), label="metadata"))


def consume_streams(fuzzer: RequestFuzzer) -> st.SearchStrategy[list[Request]]:
    """A subscription (valid, or drawn by the fuzzer), then settlements: acks of deliveries
    that were never made, the same nack twice, reasons too long, fuzzer-drawn requests (which
    may try to subscribe again)."""
    subscribe = st.builds(
        topics.ConsumeRequest,
        topic=st.just(f"topics/{TOPIC}"),
        group=st.sampled_from(GROUPS),
        consumer=st.sampled_from(["fz-c1", "fz-c2"]),
        max_in_flight=st.sampled_from([0, 1, 100]),
    )
    ids = st.lists(st.sampled_from(["1", "fz-c1#1:1", "x" * 300, ""]), max_size=3)
    nack = st.builds(
        topics.ConsumeNack,
        delivery_id=st.sampled_from(["1", "fz-c1#1:1"]),
        reason=st.sampled_from(["", "cannot parse", "r" * (MAX_ERROR_LENGTH + 1)]),
    )
    settle = st.builds(topics.ConsumeRequest, ack_ids=ids, nacks=st.lists(nack, max_size=2))
    nack_twice = nack.map(lambda n: topics.ConsumeRequest(nacks=[n, n]))
    drawn = fuzzer.messages(CONSUME.method.input_type)
    later = weighted((4, settle), (2, nack_twice), (2, drawn))
    first = weighted((4, subscribe), (1, drawn))
    return st.tuples(first, st.lists(later, max_size=5)).map(lambda fl: [fl[0], *fl[1]])


@settings(PROFILE)
@given(data=st.data())
def test_consume_streams_answer_clearly(world: World, data: st.DataObject) -> None:
    requests = data.draw(consume_streams(world.fuzzer), label="stream")
    exercise(world, CONSUME, " (streams)", requests, data.draw(identities(), label="metadata"))


# --- after the run ----------------------------------------------------------------------------


def ledger_row(item: pytest.Item) -> str | None:
    """The LEDGER row a fuzz test of this module fills; None for the other tests."""
    if not isinstance(item, pytest.Function) or item.module is not sys.modules[__name__]:
        return None
    if item.originalname == test_consume_streams_answer_clearly.__name__:
        return f"{CONSUME.name} (streams)"
    kinds = {
        test_generated_requests_answer_clearly.__name__: "",
        test_raw_bytes_answer_clearly.__name__: " (raw)",
    }
    kind = kinds.get(item.originalname)
    if kind is None:
        return None
    rpc = item.callspec.params["rpc"]
    assert isinstance(rpc, Rpc)
    return f"{rpc.name}{kind}"


def test_every_fuzz_test_ran_in_this_process(request: pytest.FixtureRequest) -> None:
    """The checks below read what the fuzz tests recorded in this process: a fuzz test that ran
    in another (pytest-xdist handing out the module's tests one by one) would go unchecked,
    silently. scripts/test.sh keeps the module on one worker (--dist loadfile)."""
    recorded = {row for row, _ in LEDGER.calls}
    elsewhere = [
        item.nodeid
        for item in request.session.items
        if (row := ledger_row(item)) is not None and row not in recorded
    ]
    assert not elsewhere, f"fuzz tests that ran in another process: {elsewhere[:5]}"


@dataclass(frozen=True)
class Append:
    """One atomic append of the log: a command's record (stream `commands/...`, first in every
    command's append) and the events appended with it."""

    command_id: str
    user: str
    position: int  # of its last event: the position its command was answered with
    mixed: bool  # events of other commands inside it: nothing may interleave an append


def appends_since(events_db: Path, position: int) -> list[Append]:
    with contextlib.closing(read_only(events_db)) as conn:
        rows = conn.execute(
            "SELECT position, stream, metadata FROM events WHERE position > ? ORDER BY position",
            (position,),
        ).fetchall()
    # Every command's append ends with its record ("{resource}/commands/{id}", command_log.py).
    out: list[Append] = []
    keys: set[tuple[str, str]] = set()
    for at, stream, metadata in rows:
        meta = json.loads(metadata)
        keys.add((meta["command_id"], meta["user_id"]))
        if "/commands/" in stream:
            out.append(Append(meta["command_id"], meta["user_id"], at, mixed=len(keys) > 1))
            keys = set()
    return out


def test_the_log_grew_only_by_accepted_commands(world: World) -> None:
    """Every append since the seed is a command answered OK as new (or the scheduler's, which
    issues its own), at the position it was answered with, and each such answer is one append
    at most (a command that changed nothing appends its record alone); a duplicate's position
    must be in the log."""
    head = head_position(world.cluster.events_db)
    every = appends_since(world.cluster.events_db, world.head_after_seed)
    appends = [a for a in every if a.user not in (SCHEDULER_USER, QUERY_SERVICE_USER)]
    # The query service records its groups' checkpoints and parkings as commands of its own:
    # each a whole append of the command ids it makes, never interleaved with another.
    groups = [a for a in every if a.user == QUERY_SERVICE_USER]
    torn = [a for a in groups if a.mixed or not a.command_id.startswith("group-")]
    assert not torn, f"records of the consumer groups not made whole: {torn[:20]}"
    accepted = {(a.command_id, a.user, a.position) for a in LEDGER.accepted if not a.duplicate}
    unaccounted = [
        a for a in appends if a.mixed or (a.command_id, a.user, a.position) not in accepted
    ]
    assert not unaccounted, f"appends of no command answered OK: {unaccounted[:20]}"
    appended = {(a.command_id, a.user, a.position) for a in appends}
    assert len(appended) == len(appends), "two appends answered as one command"
    beyond = [a for a in LEDGER.accepted if not 0 < a.position <= head]
    assert not beyond, f"commands answered with positions not in the log: {beyond[:20]}"


def test_everything_accepted_projects(world: World) -> None:
    """The projector stays healthy and catches up with the highest accepted position: a query
    that asks for it is answered (each try waits QIS_QUERY_MAX_WAIT_S, then UNAVAILABLE)."""
    wanted = max([world.head_after_seed, *(a.position for a in LEDGER.accepted)])
    request = q.GetSeriesRequest(name=f"series/{PX}", min_position=wanted)
    start = time.monotonic()
    outcome = call(world.query, GET_SERIES, [request], as_user(USERS[1]))
    while outcome.code == C.UNAVAILABLE and time.monotonic() - start < 15:
        outcome = call(world.query, GET_SERIES, [request], as_user(USERS[1]))
    waited = time.monotonic() - start
    LEDGER.notes.append(
        f"read model at the highest accepted position {wanted} after {waited:.2f} s"
    )
    assert outcome.code == C.OK, (outcome, world.cluster.log_tail(PROJECTOR))
    with grpc.insecure_channel(world.cluster.address(PROJECTOR)) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=LAG_SERVICE), timeout=5
        )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING, world.cluster.log_tail(PROJECTOR)
    assert all(p.running() for p in world.cluster.processes.values())


def test_no_process_logged_an_error(world: World) -> None:
    """What no call's status shows (a failure after the answer, in a stream's finaliser, in
    the scheduler or the projector) still reaches the log at ERROR. Warnings are counted for
    the summary: some are expected (undecodable requests), others point at a problem."""
    errors = []
    warnings: Counter[str] = Counter()
    for process in world.cluster.processes.values():
        for line in process.log_path.read_text(errors="replace").splitlines():
            entry = json.loads(line) if line.startswith("{") else {}
            if entry.get("level") in ("ERROR", "CRITICAL"):
                errors.append(f"{process.name}: {entry.get('msg')}\n{entry.get('exc', '')}")
            elif entry.get("level") == "WARNING":
                # One count per kind: numbers and parentheses (peers, ids, errors) left out.
                kind = re.sub(r"\d+", "N", entry["msg"].split(" (")[0])[:110]
                warnings[f"{process.name}: {kind}"] += 1
    LEDGER.notes.extend(f"log warnings {n:>5}  {kind}" for kind, n in sorted(warnings.items()))
    assert not errors, "\n".join(errors[:10])


# What the generated requests must keep reaching: the checks of the contract's newer shapes
# (Timestamp snaps, Duration offsets and spans, update masks, AIP-160 filters, parents, paged
# histories, columns and views), each named by at least one INVALID_ARGUMENT answer; and the statuses only a
# request that got past them can see.
REACHED_FIELDS = {
    "CommandService.IngestPoints": ("points[i].snap_time", "points[i].utc_offset", "columns.snap_time_micros[i]", "columns.utc_offset_minutes"),
    "CommandService.BulkIngest": ("points[i].snap_time", "points[i].utc_offset", "columns.snap_time_micros[i]", "columns.utc_offset_minutes"),
    "CommandService.PublishPoints": ("snap_times[i]",),
    "CommandService.RestatePoint": ("snap_time",),
    "CommandService.DefineSeries": ("series.publication.cutoff", "series.publication.timeliness_sla"),
    "CommandService.EvolveSeriesSchema": ("update_mask.paths[i]", "expected_schema_version"),
    "CommandService.ConfigureDataSource": ("update_mask.paths[i]",),
    "QueryService.ListQualityIssues": ("parent", "filter", "page_token"),
    "QueryService.ListAuditEntries": ("parent", "filter", "page_token"),
    "QueryService.GetPointHistory": ("snap_time", "page_token", "page_size"),
    "QueryService.GetValues": ("snap_times[i]", "view"),
    "QueryService.QueryRange": ("view",),
    "CommandService.SetAccessPolicy": ("policy.name", "policy.principals[i]", "policy.resources[i]", "expected_revision"),
    "CommandService.DeleteAccessPolicy": ("name", "expected_revision"),
    "CommandService.RecordAccessDenial": ("command_id", "denial.user", "denial.permission"),
    "TopicService.Consume": ("topic", "group", "consumer", "max_in_flight", "ack_ids"),
    "TopicService.ListParked": ("topic", "group", "page_token"),
    "TopicService.ReplayParked": ("topic", "group", "max_count"),
}  # fmt: skip
REACHED_STATUSES = {
    "CommandService.EvolveSeriesSchema": ("OK", "ABORTED", "FAILED_PRECONDITION"),
    "CommandService.ConfigureDataSource": ("OK",),
    "QueryService.ListQualityIssues": ("OK",),
    "QueryService.ListAuditEntries": ("OK",),
    "QueryService.GetPointHistory": ("OK", "NOT_FOUND"),
    "CommandService.SetAccessPolicy": ("OK", "ABORTED"),
    "CommandService.DeleteAccessPolicy": ("OK", "NOT_FOUND"),
    "CommandService.RecordAccessDenial": ("OK",),
    "TopicService.Consume (streams)": ("OK", "INVALID_ARGUMENT"),
    "TopicService.ListTopics": ("OK",),
    "TopicService.ListParked": ("OK",),
    "TopicService.ReplayParked": ("OK",),
}


def test_the_generated_requests_reached_the_checks_of_every_rpc(world: World) -> None:
    """A fuzzer whose requests all die at the first check tests nothing behind it: every RPC
    fuzzed in full (the CI profile or more) must have had each of its newer fields refused at
    least once, and must have seen the answers that only valid requests get."""
    fuzzed = Counter[str]()
    for (row, _), n in LEDGER.calls.items():
        fuzzed[row] += n
    missing: list[str] = []
    for row, fields in REACHED_FIELDS.items():
        if fuzzed[row] < min(PROFILE.max_examples, 500):
            continue  # not fuzzed in full in this run (e.g. -k, or QIS_FUZZ_CASES below 500)
        refused = LEDGER.refused_fields.get(row, Counter[str]())
        missing += [
            f"{row}: {name}"
            for name in fields
            if not any(f == name or f.startswith(f"{name}.") for f in refused)
        ]
    for row, labels in REACHED_STATUSES.items():
        if fuzzed[row] >= min(PROFILE.max_examples, 500):
            missing += [f"{row}: {label}" for label in labels if not LEDGER.calls[(row, label)]]
    assert not missing, f"never reached: {missing}"
