"""What the command side's aggregate cache counts (Aggregate.size): every aggregate counts the
command outcomes it remembers, which grow with its stream, so that a hot aggregate of few points
(a source that reports its health every few seconds, a series redefined again and again) cannot
grow past the cache's budget unseen."""

from __future__ import annotations

from qis_domain.data_source import DataSource
from qis_domain.definitions import DataSourceConfig
from qis_domain.events import DataSourceConfigured, DataSourceRegistered
from qis_domain.series_bucket import Recorded


def test_a_data_source_counts_each_command_it_remembers() -> None:
    source = DataSource("vendor")
    source.apply(
        DataSourceRegistered(source_id="vendor", config=DataSourceConfig(provider="p")),
        Recorded("register", "alice", 1, 0),
    )
    registered = source.size
    for n in range(1, 51):
        config = DataSourceConfig(provider="p", description=f"take {n}")
        source.apply(
            DataSourceConfigured(source_id="vendor", config=config),
            Recorded(f"configure-{n}", "alice", 1 + n, n),
        )
    assert source.size == registered + 50
    # A copy counts the same, and its own memory: it is what the cache holds.
    assert source.clone().size == source.size
