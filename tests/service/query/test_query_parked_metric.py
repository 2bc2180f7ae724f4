"""The consumer groups' counters (qis_query.application.topics): an entry a group parks counts
once in `qis.topic.parked` by topic and group, every time it is parked; an operator's replay
counts the entries it moved in `qis.topic.replayed`."""

from __future__ import annotations

import asyncio

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint
from qis_adapters.readstore.memory import InMemoryReadDatabase, InMemoryReadStore
from qis_adapters.readstore.port import ProjectionBatch, TopicVersion
from qis_query.application.dispatch import Delivery
from qis_query.application.topics import TopicGroups

from tests.service.query.test_query_topic_groups import DEFINITION, FAST, TOPIC, WAIT_S, Log

GROUP = "g"
LABELS = {"topic": TOPIC, "group": GROUP}
ATTEMPTS = 2
assert DEFINITION["max_attempts"] == ATTEMPTS


def counts(reader: InMemoryMetricReader) -> dict[str, dict[frozenset[tuple[str, str]], float]]:
    """Counter name -> labels -> value."""
    data = reader.get_metrics_data()
    found: dict[str, dict[frozenset[tuple[str, str]], float]] = {}
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    assert isinstance(point, NumberDataPoint)
                    labels = frozenset((k, str(v)) for k, v in (point.attributes or {}).items())
                    found.setdefault(metric.name, {})[labels] = point.value
    return found


def counted(reader: InMemoryMetricReader, name: str) -> float:
    return counts(reader).get(name, {}).get(frozenset(LABELS.items()), 0)


async def until_counted(reader: InMemoryMetricReader, name: str, value: float) -> None:
    for _ in range(int(WAIT_S / 0.01)):
        if counted(reader, name) == value:
            return
        await asyncio.sleep(0.01)
    assert counted(reader, name) == value


async def test_parked_and_replayed_entries_are_counted_by_topic_and_group() -> None:
    database = InMemoryReadDatabase()
    writer = InMemoryReadStore(database, "g1")
    await writer.set_active_generation("g1")
    the_log = Log(writer)
    await the_log.write(ProjectionBatch(topics=[TopicVersion(TOPIC, 1, 0, DEFINITION)]))
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("t")
    groups = TopicGroups(InMemoryReadStore(database), the_log, FAST, meter)
    runner, consumer = await groups.join(TOPIC, GROUP, "c", 10)

    async def fail_until_parked() -> None:
        for _ in range(ATTEMPTS):
            delivery: Delivery = await asyncio.wait_for(consumer.deliveries.get(), WAIT_S)
            assert delivery.entry.key == bad
            runner.settle(consumer, [], [(delivery.delivery_id, "cannot parse")])

    try:
        # Exported at 0 from the group's start: Prometheus's increase() then sees the first park.
        assert counts(reader)["qis.topic.parked"] == {frozenset(LABELS.items()): 0}
        bad = await the_log.entry("S1")
        await fail_until_parked()
        await until_counted(reader, "qis.topic.parked", 1)
        assert counted(reader, "qis.topic.replayed") == 0

        assert (await groups.replay(TOPIC, GROUP, 10))[0] == 1
        assert counted(reader, "qis.topic.replayed") == 1
        await fail_until_parked()  # delivered again, failing again: parked again
        await until_counted(reader, "qis.topic.parked", 2)
        assert set(counts(reader)) == {"qis.topic.parked", "qis.topic.replayed"}
    finally:
        await groups.close()
