"""A data source's health names the series its feed's instruments feed: a reader whose policy
limits classifications sees among them only the series it may read, through GetDataSource and
ListDataSources, as the listings of series hold the others back; nor is it shown the feed's
traffic (its counts, cost and last error), which tells of the others. Through the real
services, as tests/integration/test_access_existence_paths.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qis.data.v1 import command_service_pb2 as pb
from qis.data.v1 import query_service_pb2 as q
from qis.data.v1 import series_pb2

from tests.integration.test_access_existence_paths import CARL, _define, _set_policy
from tests.integration.test_authz_command_matrix import CALLERS, _at
from tests.integration.test_authz_query_matrix import Cluster, cluster


async def _report(c: Cluster, *series: str, n: int = 1, **traffic: Any) -> int:
    """The `n`th health report of the source feed, naming `series` as its instruments, with
    `traffic` (fields of the request); its position."""
    done = await c.command.ReportDataSourceHealth(
        pb.ReportDataSourceHealthRequest(
            command_id=f"health-{n}",
            source="sources/feed",
            status=series_pb2.DATA_SOURCE_STATUS_HEALTHY,
            start_time=_at(n),
            end_time=_at(n + 1),
            request_count=traffic.pop("request_count", 1),
            instruments=[
                series_pb2.DataSourceInstrumentHealth(
                    series=f"series/{s}", latest_value_time=_at(2)
                )
                for s in series
            ],
            **traffic,
        ),
        metadata=CALLERS["writer"](),
    )
    return done.commit_position


def _instruments(source: series_pb2.DataSource) -> list[str]:
    return [i.series for i in source.health.instruments]


async def test_a_source_health_does_not_name_a_series_above_the_caller_cap(
    tmp_path: Path,
) -> None:
    """Carl, capped at CONFIDENTIAL, may read the source feed; its health names PX and the
    RESTRICTED SECRET: he is shown PX alone, the staleness of what he is shown kept."""
    async with cluster(tmp_path) as c:
        await _set_policy(
            c, "capped", ["series/*", "sources/*"], series_pb2.DATA_CLASSIFICATION_CONFIDENTIAL
        )
        await _define(c, "SECRET", series_pb2.DATA_CLASSIFICATION_RESTRICTED)
        at = await _report(c, "PX", "SECRET")
        stub = c.ports.stub
        get = q.GetDataSourceRequest(name="sources/feed", min_position=at)
        unbounded = await stub.GetDataSource(get, metadata=CALLERS["reader"]())
        assert _instruments(unbounded) == ["series/PX", "series/SECRET"]
        capped = await stub.GetDataSource(get, metadata=CARL)
        assert _instruments(capped) == ["series/PX"]
        assert capped.health.instruments[0].HasField("staleness")
        listed = await stub.ListDataSources(
            q.ListDataSourcesRequest(min_position=at), metadata=CARL
        )
        feed = [s for s in listed.data_sources if s.name == "sources/feed"]
        assert [_instruments(s) for s in feed] == [["series/PX"]]
        assert "SECRET" not in str(capped) + str(listed)


TRAFFIC: dict[str, Any] = {
    "request_count": 40,
    "failure_count": 3,
    "retry_count": 2,
    "points_received": 70,
    "points_sent": 70,
    "last_error": "GET /quote/SECRET: 404",
}


def _traffic(source: series_pb2.DataSource) -> dict[str, Any]:
    health = source.health
    return {
        "request_count": health.request_count,
        "failure_count": health.failure_count,
        "retry_count": health.retry_count,
        "points_received": health.points_received,
        "points_sent": health.points_sent,
        "last_error": health.last_error,
        "cost": health.cost,
        "usage": (source.HasField("total_usage"), source.HasField("day_usage")),
    }


HIDDEN = {name: type(value)() for name, value in TRAFFIC.items()} | {
    "cost": "",
    "usage": (False, False),
}


async def test_a_source_traffic_is_shown_only_to_a_reader_of_every_series_it_feeds(
    tmp_path: Path,
) -> None:
    """The feed's counts add up the requests and points of every series it feeds, and its last
    error is the provider's free text, here naming SECRET: Carl, capped at CONFIDENTIAL, is
    shown the status and PX, not the traffic; the unbounded reader all of it; and Carl all of
    it once the feed feeds PX alone. Fails today: Carl is shown the traffic."""
    async with cluster(tmp_path) as c:
        await _set_policy(
            c, "capped", ["series/*", "sources/*"], series_pb2.DATA_CLASSIFICATION_CONFIDENTIAL
        )
        await _define(c, "SECRET", series_pb2.DATA_CLASSIFICATION_RESTRICTED)
        at = await _report(c, "PX", "SECRET", **TRAFFIC)
        stub = c.ports.stub
        get = q.GetDataSourceRequest(name="sources/feed", min_position=at)
        unbounded = await stub.GetDataSource(get, metadata=CALLERS["reader"]())
        assert {k: v for k, v in _traffic(unbounded).items() if k in TRAFFIC} == TRAFFIC
        assert _traffic(unbounded)["usage"] == (True, True)
        capped = await stub.GetDataSource(get, metadata=CARL)
        assert _traffic(capped) == HIDDEN
        assert capped.health.status == series_pb2.DATA_SOURCE_STATUS_HEALTHY
        assert _instruments(capped) == ["series/PX"]
        listed = await stub.ListDataSources(
            q.ListDataSourcesRequest(min_position=at), metadata=CARL
        )
        feed = [s for s in listed.data_sources if s.name == "sources/feed"]
        assert [_traffic(s) for s in feed] == [HIDDEN]
        assert "SECRET" not in str(capped) + str(listed)

        at = await _report(c, "PX", n=3, **TRAFFIC)
        get = q.GetDataSourceRequest(name="sources/feed", min_position=at)
        alone = await stub.GetDataSource(get, metadata=CARL)
        assert alone.health.last_error == TRAFFIC["last_error"]
        assert alone.total_usage.request_count == 2 * TRAFFIC["request_count"]
