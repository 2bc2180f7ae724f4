"""What the projector measures (qis_projector.application.metrics): its progress as it projects,
and the business figures read from the events: ingestion by source, reconciliation outcomes,
publication latency from the snap and from the receipt, quality-score bands."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    HistogramDataPoint,
    InMemoryMetricReader,
    NumberDataPoint,
)
from qis_adapters.eventstore.codec import DecodedEvent
from qis_adapters.eventstore.memory import InMemoryEventStore
from qis_adapters.eventstore.port import RecordedEvent
from qis_adapters.readstore.memory import InMemoryReadDatabase, InMemoryReadStore
from qis_domain.events import DataPublished, DataReconciled, DomainEvent, EventMetadata
from qis_domain.values import DataType
from qis_projector.application.metrics import ProjectorMetrics
from qis_projector.application.projector import Projector

from tests.service.projector.projector_support import US, ingested, write_log

T0 = 1_704_229_200 * US
SNAPS = [T0 - 3_600 * US, T0 - 1_800 * US, T0 - 60 * US]

Figures = dict[tuple[str, frozenset[tuple[str, Any]]], float]


def figures(reader: InMemoryMetricReader) -> Figures:
    """Sums, counts of histograms and gauge values, by metric and labels."""
    data = reader.get_metrics_data()
    assert data is not None
    out: Figures = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    labels = frozenset((point.attributes or {}).items())
                    if isinstance(point, HistogramDataPoint):
                        out[(metric.name + ".count", labels)] = point.count
                        out[(metric.name + ".max", labels)] = point.max
                    elif isinstance(point, NumberDataPoint):
                        out[(metric.name, labels)] = point.value
    return out


def decoded(event: DomainEvent, recorded_at_us: int) -> DecodedEvent:
    metadata = EventMetadata(command_id="c", user_id="u", correlation_id="c", causation_id="c")
    record = RecordedEvent(
        "series/SPX", 0, 1, uuid.uuid4(), event.event_type, b"", b"", recorded_at_us
    )
    return DecodedEvent(event, metadata, record)


def reconciled(statuses: list[str]) -> DataReconciled:
    n = len(SNAPS)
    return DataReconciled(
        snaps=SNAPS,
        series_id="SPX",
        data_type=DataType.PRICE,
        unit="USD",
        values=["1.5"] * n,
        methods=["priority"] * n,
        contributions=[{"bbg": "1.5"}] * n,
        excluded=[[]] * n,
        quality_scores=["1"] * n,
        statuses=statuses,
    )


def published(indexes: list[int], decided_us: int, scores: list[str]) -> DataPublished:
    n = len(indexes)
    return DataPublished(
        snaps=[SNAPS[i] for i in indexes],
        series_id="SPX",
        data_type=DataType.PRICE,
        unit="USD",
        versions=[1] * n,
        values=["1.5"] * n,
        quality_scores=scores,
        sources=[["bbg"]] * n,
        methods=["priority"] * n,
        flags=[[]] * n,
        reasons=[""] * n,
        causes=[""] * n,
        decided_at_us=decided_us,
        mode="automatic",
    )


def test_publication_latency_from_the_snap_and_from_the_receipt() -> None:
    reader = InMemoryMetricReader()
    metrics = ProjectorMetrics(MeterProvider(metric_readers=[reader]).get_meter("t"))
    # Received at T0: the first point published at once, the two others held, then published
    # 90 s later (say, by an approver).
    metrics.observe(decoded(reconciled(["published", "held", "pending"]), T0))
    metrics.observe(decoded(published([0], T0, ["1"]), T0))
    metrics.observe(decoded(published([1, 2], T0 + 90 * US, ["0.9", "0.3"]), T0 + 90 * US))
    assert not any(name == "qis.points.published" for name, _ in figures(reader))  # not written
    metrics.written(3, 3, T0 + 90 * US)
    seen = figures(reader)

    def label(**labels: str) -> frozenset[tuple[str, str]]:
        return frozenset(labels.items())

    statuses = {"published": 1, "held": 1, "pending": 1}
    for status, n in statuses.items():
        assert seen[("qis.reconciliation.points", label(status=status))] == n
    assert seen[("qis.publication.latency.count", label(since="received"))] == 2
    assert seen[("qis.publication.latency.max", label(since="received"))] == 90.0
    # From the snap: the oldest point of each publication (3600 s; 1800 + 90 s).
    assert seen[("qis.publication.latency.max", label(since="snap"))] == 3_600.0
    assert seen[("qis.points.published", label(mode="automatic"))] == 3
    bands = {"1": 1, "<0.95": 1, "<0.5": 1}
    for band, n in bands.items():
        assert seen[("qis.quality.points", label(band=band))] == n


def test_series_labels_only_when_asked() -> None:
    for series_labels, expected in (
        (False, {"source": "bbg"}),
        (True, {"source": "bbg", "series": "SPX"}),
    ):
        reader = InMemoryMetricReader()
        meter = MeterProvider(metric_readers=[reader]).get_meter("t")
        metrics = ProjectorMetrics(meter, series_labels=series_labels)
        event = ingested("SPX", T0, 5).model_copy(update={"source_id": "bbg"})
        metrics.observe(decoded(event, T0))
        metrics.observe(decoded(event, T0))
        metrics.written(2, 2, T0)
        assert {k: v for k, v in figures(reader).items() if k[0] == "qis.points.ingested"} == {
            ("qis.points.ingested", frozenset(expected.items())): 10
        }


async def test_the_projector_counts_what_it_wrote_and_its_lag() -> None:
    reader = InMemoryMetricReader()
    metrics = ProjectorMetrics(MeterProvider(metric_readers=[reader]).get_meter("t"))
    events = InMemoryEventStore()
    positions = await write_log(events, 6, 10)
    writer = InMemoryReadStore(InMemoryReadDatabase(), "g1")
    await writer.set_active_generation("g1")
    projector = Projector(events, writer, metrics=metrics)
    assert await projector.lag() == positions[-1]
    assert figures(reader)[("qis.projector.lag", frozenset())] == positions[-1]
    await asyncio.wait_for(projector.run(until_position=positions[-1]), 10)
    assert await projector.lag() == 0
    seen = figures(reader)
    assert seen[("qis.projector.lag", frozenset())] == 0
    assert seen[("qis.projector.lag.time", frozenset())] == 0
    assert seen[("qis.projector.events", frozenset())] == 6
    assert seen[("qis.projector.checkpoint", frozenset())] == positions[-1]
    assert seen[("qis.points.ingested", frozenset({("source", "feed")}))] == 60
