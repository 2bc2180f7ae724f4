"""What the projector measures (docs/observability.md): its own progress, and the business
figures it reads from the events it projects (ingestion, reconciliation, publication, quality,
timeliness against service levels: docs/service-levels.md).

Every figure comes from the events themselves (their commit times, the deciding command's
clock), never from the projector's clock, except the lag: a replay measures the same latencies
again. Counters count what this process projected: a restart or a rebuild projects, and counts,
part or all of the log again (read them with rate()).

Recording costs about 6 µs a call with the SDK (measured), about a point's whole projection
cost, so nothing here is recorded per point: the counts of a batch's events are added up first,
one call per counter and label set when the batch is written, and a publication event is one
latency sample (its worst point).
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from decimal import Decimal, InvalidOperation

from opentelemetry import metrics
from qis_adapters.eventstore.codec import DecodedEvent
from qis_domain.events import (
    DataIngested,
    DataPublished,
    DataReconciled,
    DataRestated,
    QualityIssueDetected,
)
from qis_domain.quality import PointStatus
from qis_domain.service_levels import LATE_ARRIVAL, LATE_PUBLICATION

SCOPE = "qis.projector"
LATENCY_BUCKETS_S = (
    0.01, 0.1, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3_600.0, 14_400.0, 43_200.0,
    86_400.0, 172_800.0, 604_800.0, 2_592_000.0,
)  # fmt: skip
"""Publication latencies range from nothing (published as received) to days (a late approval,
a history load): buckets up to 30 days."""
QUALITY_BANDS = ((Decimal("0.5"), "<0.5"), (Decimal("0.8"), "<0.8"), (Decimal("0.95"), "<0.95"))
"""Upper bounds (exclusive) of the quality-score bands; what is left is `<1`, and `1`."""
HELD_POINTS = 100_000
"""Points received but not published that are remembered for the received → published latency;
beyond it the oldest are forgotten (their publication then counts as received → published 0)."""
LATE_VALUES = 100_000
"""Values found late (a late_arrival issue) and not arrived yet that are remembered for the delay
past their deadline; beyond it the oldest are forgotten (their arrival then is not sampled)."""
_LATE = {LATE_ARRIVAL: "arrival", LATE_PUBLICATION: "publication"}
_US = 1_000_000


class ProjectorMetrics:
    def __init__(self, meter: metrics.Meter | None = None, *, series_labels: bool = False) -> None:
        """`meter`: the OpenTelemetry global's by default. `series_labels`: label the business
        figures by series too (QIS_METRICS_SERIES_LABELS; one time series per series id)."""
        meter = meter or metrics.get_meter(SCOPE)
        self._series_labels = series_labels
        self._lag = meter.create_gauge(
            "qis.projector.lag",
            unit="{position}",
            description="Commit positions written to the log and not yet projected.",
        )
        self._lag_time = meter.create_gauge(
            "qis.projector.lag.time",
            unit="s",
            description="0 when caught up; else the age of the newest projected event.",
        )
        self._checkpoint = meter.create_gauge(
            "qis.projector.checkpoint", unit="{position}", description="The projector's checkpoint."
        )
        self._events = meter.create_counter(
            "qis.projector.events", unit="{event}", description="Events projected."
        )
        self._ingested = meter.create_counter(
            "qis.points.ingested", unit="{point}", description="Points received, by source."
        )
        self._reconciled = meter.create_counter(
            "qis.reconciliation.points",
            unit="{point}",
            description="Reconciled points by outcome (published, held, pending, withdrawn).",
        )
        self._published = meter.create_counter(
            "qis.points.published", unit="{point}", description="Points published (version 1)."
        )
        self._restated = meter.create_counter(
            "qis.points.restated", unit="{point}", description="Points restated (version > 1)."
        )
        self._quality = meter.create_counter(
            "qis.quality.points",
            unit="{point}",
            description="Official values by quality-score band.",
        )
        self._issues = meter.create_counter(
            "qis.quality.issues", unit="{issue}", description="Quality issues by rule and severity."
        )
        self._latency = meter.create_histogram(
            "qis.publication.latency",
            unit="s",
            description="Per publication event, its slowest point: from its snap, or from its"
            " receipt, to its publication.",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS_S,
        )
        self._late_count = meter.create_counter(
            "qis.lateness",
            unit="{point}",
            description="Service-level deadlines missed, by kind (arrival, by source; publication).",
        )
        self._arrival_delay = meter.create_histogram(
            "qis.arrival.delay",
            unit="s",
            description="Per ingest event, its slowest point: from its snap to its arrival; and a"
            " late value's arrival past its service-level deadline.",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS_S,
        )
        self._held: OrderedDict[tuple[str, int], int] = OrderedDict()
        self._late: OrderedDict[tuple[str, int, str], int] = OrderedDict()
        self._counts: Counter[tuple[metrics.Counter, tuple[tuple[str, str], ...]]] = Counter()
        self._newest_projected_us = 0

    def observe(self, decoded: DecodedEvent) -> None:
        """The business figures of one projected event."""
        event = decoded.event
        if isinstance(event, DataIngested):
            self._add(self._ingested, len(event.snaps), event.series_id, source=event.source_id)
            self._arrived(event, decoded.record.recorded_at_us)
        elif isinstance(event, DataReconciled):
            self._reconciled_points(event, decoded.record.recorded_at_us)
        elif isinstance(event, DataPublished):
            self._add(self._published, len(event.snaps), event.series_id, mode=event.mode)
            self._official(event)
        elif isinstance(event, DataRestated):
            self._add(self._restated, len(event.snaps), event.series_id)
            self._official(event)
        elif isinstance(event, QualityIssueDetected):
            kinds = Counter((i.rule, i.severity) for i in event.issues)
            for (rule, severity), n in kinds.items():
                self._add(self._issues, n, event.series_id, rule=rule, severity=severity)
            self._lateness(event)

    def written(self, events: int, checkpoint: int, newest_recorded_us: int) -> None:
        """A batch ending at `checkpoint` was written: what its events counted is added."""
        for (counter, labels), n in self._counts.items():
            counter.add(n, dict(labels))
        self._counts.clear()
        self._events.add(events)
        self._checkpoint.set(checkpoint)
        self._newest_projected_us = newest_recorded_us

    def lag(self, positions: int) -> None:
        """How far behind the log the projector is, as last seen."""
        self._lag.set(positions)
        if positions == 0:
            self._lag_time.set(0.0)
        elif self._newest_projected_us:
            self._lag_time.set(max(0.0, time.time() - self._newest_projected_us / _US))

    def _lateness(self, event: QualityIssueDetected) -> None:
        late = Counter((i.rule, i.source_id) for i in event.issues if i.rule in _LATE)
        for (rule, source), n in late.items():
            source_label = {"source": source} if source else {}
            self._add(self._late_count, n, event.series_id, kind=_LATE[rule], **source_label)
        past_us: dict[str, int] = {}
        for i in event.issues:
            if i.rule != LATE_ARRIVAL or not isinstance(
                deadline := i.evidence.get("deadline_us"), int
            ):
                continue
            arrived = i.evidence.get("arrived_at_us")
            if isinstance(arrived, int):
                # Raised by the value's own arrival: it is here, nothing is left to wait for.
                past_us[i.source_id] = max(past_us.get(i.source_id, 0), arrived - deadline)
            else:
                self._late[event.series_id, i.snap_us, i.source_id] = deadline
        for source, past in past_us.items():
            self._past_deadline(event.series_id, source, past)
        while len(self._late) > LATE_VALUES:
            self._late.popitem(last=False)

    def _arrived(self, event: DataIngested, arrived_us: int) -> None:
        labels = self._labels(event.series_id, source=event.source_id)
        since_snap_us = max(0, arrived_us - min(event.snaps, default=arrived_us))
        self._arrival_delay.record(since_snap_us / _US, {**labels, "since": "snap"})
        if not self._late:
            return
        past_us = -1
        for snap_us in event.snaps:
            deadline = self._late.pop((event.series_id, snap_us, event.source_id), None)
            if deadline is not None:
                past_us = max(past_us, arrived_us - deadline)
        if past_us >= 0:
            self._past_deadline(event.series_id, event.source_id, past_us)

    def _past_deadline(self, series_id: str, source_id: str, past_us: int) -> None:
        """How late past its deadline an event's latest value of a source came."""
        labels = self._labels(series_id, source=source_id)
        self._arrival_delay.record(past_us / _US, {**labels, "since": "deadline"})

    def _reconciled_points(self, event: DataReconciled, received_us: int) -> None:
        for status, n in Counter(event.statuses).items():
            self._add(self._reconciled, n, event.series_id, status=status)
        held = self._held
        for snap_us, status in zip(event.snaps, event.statuses, strict=True):
            if status != PointStatus.PUBLISHED:
                held.setdefault((event.series_id, snap_us), received_us)
        while len(held) > HELD_POINTS:
            held.popitem(last=False)

    def _official(self, event: DataPublished | DataRestated) -> None:
        labels = self._labels(event.series_id)
        decided_us = event.decided_at_us
        if decided_us:  # 0 in events from before it was recorded
            waited_us = 0
            if self._held:
                for snap_us in event.snaps:
                    received_us = self._held.pop((event.series_id, snap_us), decided_us)
                    waited_us = max(waited_us, decided_us - received_us)
            self._latency.record(waited_us / _US, {**labels, "since": "received"})
            since_snap_us = decided_us - min(event.snaps)
            self._latency.record(max(0, since_snap_us) / _US, {**labels, "since": "snap"})
        for score, n in Counter(event.quality_scores).items():
            self._add(self._quality, n, event.series_id, band=_band(score))

    def _labels(self, series_id: str, **labels: str) -> dict[str, str]:
        if self._series_labels:
            labels["series"] = series_id
        return labels

    def _add(self, counter: metrics.Counter, n: int, series_id: str, **labels: str) -> None:
        self._counts[counter, tuple(sorted(self._labels(series_id, **labels).items()))] += n


def _band(score: str) -> str:
    try:
        value = Decimal(score)
    except InvalidOperation:
        return "unknown"
    for bound, band in QUALITY_BANDS:
        if value < bound:
            return band
    return "1" if value >= 1 else "<1"
