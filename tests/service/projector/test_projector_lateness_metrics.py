"""Timeliness against service levels in the projector's metrics: missed deadlines counted by
kind (arrivals by source), and arrival delays from the snap and, for a value found late, past
its deadline, from the events' commit times (a replay measures the same)."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from qis_domain.events import Issue, QualityIssueDetected
from qis_projector.application.metrics import ProjectorMetrics

from tests.service.projector.projector_support import US, ingested
from tests.service.projector.test_projector_telemetry import T0, decoded, figures

DEADLINE = T0 + 3_600 * US


def late(rule: str, snap_us: int, source: str) -> Issue:
    return Issue(
        issue_id=f"{snap_us}-{rule}-{source}",
        snap_us=snap_us,
        source_id=source,
        rule=rule,
        severity="warning",
        blocking=False,
        evidence={"source_id": source, "deadline_us": DEADLINE, "checked_at_us": DEADLINE},
    )


@pytest.mark.parametrize("series_labels", [False, True])
def test_missed_deadlines_and_how_late_the_values_came(series_labels: bool) -> None:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("t")
    metrics = ProjectorMetrics(meter, series_labels=series_labels)
    issues = [
        late("late_arrival", T0, "feed"),
        late("late_arrival", T0 + US, "feed"),
        late("late_arrival", T0, "other"),
        late("late_publication", T0, ""),
        late("stale", T0, "feed"),  # not a service level's
    ]
    metrics.observe(decoded(QualityIssueDetected(series_id="SPX", issues=issues), DEADLINE))
    # feed's two late values come 90 s past the deadline, with a third on time
    metrics.observe(decoded(ingested("SPX", T0, 3), DEADLINE + 90 * US))
    metrics.observe(decoded(ingested("SPX", T0, 1), DEADLINE + 900 * US))  # a correction
    metrics.written(3, 3, DEADLINE + 900 * US)
    seen = figures(reader)
    series = {"series": "SPX"} if series_labels else {}

    def label(**labels: str) -> frozenset[tuple[str, str]]:
        return frozenset({**labels, **series}.items())

    assert seen[("qis.lateness", label(kind="arrival", source="feed"))] == 2
    assert seen[("qis.lateness", label(kind="arrival", source="other"))] == 1
    assert seen[("qis.lateness", label(kind="publication"))] == 1
    assert len([k for k in seen if k[0] == "qis.lateness"]) == 3
    past = label(source="feed", since="deadline")
    assert (seen[("qis.arrival.delay.count", past)], seen[("qis.arrival.delay.max", past)]) == (
        1,
        90.0,
    )  # the correction is not a late arrival again
    since_snap = label(source="feed", since="snap")
    assert seen[("qis.arrival.delay.count", since_snap)] == 2
    assert seen[("qis.arrival.delay.max", since_snap)] == 3_600 + 900.0


def test_a_value_found_late_on_its_arrival_is_sampled_once_and_not_awaited() -> None:
    reader = InMemoryMetricReader()
    metrics = ProjectorMetrics(MeterProvider(metric_readers=[reader]).get_meter("t"))
    arrived = DEADLINE + 45 * US
    on_arrival = [
        Issue(
            issue_id=f"{T0 + n * US}-late_arrival-feed",
            snap_us=T0 + n * US,
            source_id="feed",
            rule="late_arrival",
            severity="warning",
            blocking=False,
            evidence={"source_id": "feed", "deadline_us": DEADLINE, "arrived_at_us": arrived},
        )
        for n in range(2)
    ]
    metrics.observe(decoded(ingested("SPX", T0, 2), arrived))
    metrics.observe(decoded(QualityIssueDetected(series_id="SPX", issues=on_arrival), arrived))
    metrics.observe(decoded(ingested("SPX", T0, 2), arrived + 600 * US))  # a correction
    metrics.written(3, 3, arrived + 600 * US)
    seen = figures(reader)
    past = frozenset({"source": "feed", "since": "deadline"}.items())
    assert seen[("qis.arrival.delay.count", past)] == 1
    assert seen[("qis.arrival.delay.max", past)] == 45.0
    assert seen[("qis.lateness", frozenset({"kind": "arrival", "source": "feed"}.items()))] == 2
