"""A data source's health names the series its feed's instruments feed: a reader whose policy
limits classifications sees among them only the series it may read, through GetDataSource and
ListDataSources, as the listings of series hold the others back. Through the real services, as
tests/integration/test_access_existence_paths.py.
"""

from __future__ import annotations

from pathlib import Path

from qis.data.v1 import command_service_pb2 as pb
from qis.data.v1 import query_service_pb2 as q
from qis.data.v1 import series_pb2

from tests.integration.test_access_existence_paths import CARL, _define, _set_policy
from tests.integration.test_authz_command_matrix import CALLERS, _at
from tests.integration.test_authz_query_matrix import Cluster, cluster


async def _report(c: Cluster, *series: str) -> int:
    """A health report of the source feed naming `series` as its instruments; its position."""
    done = await c.command.ReportDataSourceHealth(
        pb.ReportDataSourceHealthRequest(
            command_id="health-1",
            source="sources/feed",
            status=series_pb2.DATA_SOURCE_STATUS_HEALTHY,
            start_time=_at(1),
            end_time=_at(2),
            request_count=1,
            instruments=[
                series_pb2.DataSourceInstrumentHealth(
                    series=f"series/{s}", latest_value_time=_at(2)
                )
                for s in series
            ],
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
