"""Quality metrics reach the read model whole: an unknown completeness ("" in the event, a window
partly outside the exchange calendar's coverage) is stored as unknown, never halts the projector,
and the sessions without a value travel with it."""

from __future__ import annotations

import asyncio

from qis_adapters.eventstore.memory import InMemoryEventStore
from qis_adapters.readstore.memory import InMemoryReadDatabase, InMemoryReadStore
from qis_adapters.readstore.port import QualityMetrics
from qis_domain.events import QualityMetricsCalculated
from qis_domain.quality_window import quality_stream
from qis_projector.application.projector import Projector

from tests.service.projector.projector_support import BASE_US, append

DAY_US = 86_400 * 1_000_000
START, END = BASE_US, BASE_US + 7 * DAY_US


def calculated(completeness: str, missing: list[str], uncovered: int) -> QualityMetricsCalculated:
    return QualityMetricsCalculated(
        series_id="SPX",
        window_start_us=START,
        window_end_us=END,
        accuracy="1",
        completeness=completeness,
        timeliness="0.5",
        consistency="0.75",
        expected_snaps=4,
        received_snaps=2,
        compared_points=0,
        agreeing_points=0,
        publications=2,
        on_time=1,
        checked_values=4,
        clean_values=3,
        missing_sessions=missing,
        uncovered_days=uncovered,
    )


async def project(event: QualityMetricsCalculated) -> tuple[int, list[QualityMetrics]]:
    """Projects `event` alone; returns its position and the metrics the read store then serves."""
    events = InMemoryEventStore()
    writer = InMemoryReadStore(InMemoryReadDatabase(), "g1")
    await writer.set_active_generation("g1")
    position = await append(events, quality_stream("SPX", START, END), event)
    await asyncio.wait_for(Projector(events, writer).run(until_position=position), 10)
    reader = InMemoryReadStore(writer.database)
    return position, await reader.metrics("SPX", START, START + 1)


async def test_an_unknown_completeness_is_projected_as_unknown_with_its_missing_sessions() -> None:
    position, metrics = await project(calculated("", ["2024-01-02", "2024-01-04"], 3))
    assert len(metrics) == 1
    assert metrics == [
        QualityMetrics(
            series_id="SPX",
            window_start_us=START,
            window_end_us=END,
            accuracy=1.0,
            completeness=None,
            timeliness=0.5,
            consistency=0.75,
            calculated_at_us=metrics[0].calculated_at_us,  # the commit time: the store's clock
            position=position,
            expected_snaps=4,
            received_snaps=2,
            missing_sessions=("2024-01-02", "2024-01-04"),
            uncovered_days=3,
        )
    ]


async def test_a_known_completeness_is_a_number() -> None:
    _, metrics = await project(calculated("0.5", ["2024-01-03"], 0))
    assert [(m.completeness, m.missing_sessions, m.uncovered_days) for m in metrics] == [
        (0.5, ("2024-01-03",), 0)
    ]
