"""The real command side in one process (CommandHandlers over a Repository over the in-memory
event store, with the real exchange calendars), the commands a history becomes, and what they
did, read back from the store's log.
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from collections.abc import AsyncGenerator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import hypothesis
from hypothesis import strategies as st
from qis_adapters.calendars.exchange import ExchangeCalendars
from qis_adapters.eventstore.codec import EventCodec
from qis_adapters.eventstore.memory import InMemoryEventStore
from qis_adapters.eventstore.port import RecordedEvent
from qis_command.application.commands import (
    CalculateQualityMetrics,
    CommandResult,
    DefineSeries,
    IngestPoints,
    RegisterSource,
)
from qis_command.application.handlers import CommandHandlers
from qis_command.application.repository import Repository
from qis_domain.commands import CommandContext
from qis_domain.definitions import DataSourceConfig, SeriesDefinition
from qis_domain.events import (
    DataIngested,
    DataPublished,
    DataReconciled,
    DataRestated,
    PublicationScheduled,
    QualityIssueDetected,
    QualityMetricsCalculated,
)

from tests.property.history import (
    BOUNDARY_CUTS,
    MAX_PLACES,
    NEW_YORK,
    RICH_RULES,
    RICH_SHAPE,
    SERIES,
    Cuts,
    History,
    Rules,
    Shape,
    cuts,
    history,
    local_day,
    price_columns,
    prices,
    rules,
    shapes,
)
from tests.property.profiles import PROPERTY as PROPERTY  # the tests take it from here

COVERED_FROM = date(1970, 1, 1)  # ExchangeCalendars' fixed coverage starts here

Command = RegisterSource | DefineSeries | IngestPoints | CalculateQualityMetrics
CODEC = EventCodec()
USER = "loader"


def instant_us(year: int) -> int:
    """1 January of `year`, UTC, in µs."""
    return int(datetime(year, 1, 1, tzinfo=UTC).timestamp()) * 1_000_000


@dataclass(frozen=True, slots=True)
class Step:
    command: Command
    ctx: CommandContext


class Clock:
    """A store clock that starts at a given instant and moves 1 ms per commit."""

    def __init__(self, start_us: int) -> None:
        self._now_us = start_us

    def __call__(self) -> int:
        self._now_us += 1_000
        return self._now_us


@dataclass
class Service:
    store: InMemoryEventStore
    handlers: CommandHandlers

    @classmethod
    def start(cls, clock_us: int) -> Service:
        store = InMemoryEventStore(clock=Clock(clock_us))
        return cls(store, cls.handlers_on(store))

    @staticmethod
    def handlers_on(store: InMemoryEventStore) -> CommandHandlers:
        """Handlers with a cold aggregate cache, as another command process would have."""
        return CommandHandlers(Repository(store, EventCodec()), ExchangeCalendars())

    async def run(self, steps: Iterable[Step]) -> list[CommandResult]:
        return [await send(self.handlers, step) for step in steps]

    async def log(self) -> list[RecordedEvent]:
        """Every event of the store, in log order."""
        head = await self.store.head_position()
        out: list[RecordedEvent] = []
        if not head:
            return out
        events = self.store.subscribe()
        try:
            async for record in events:
                out.append(record)
                if record.position >= head:
                    break
        finally:
            if isinstance(events, AsyncGenerator):
                await events.aclose()
        return out


async def send(handlers: CommandHandlers, step: Step) -> CommandResult:
    command, ctx = step.command, step.ctx
    if isinstance(command, RegisterSource):
        return await handlers.register_source(command, ctx)
    if isinstance(command, DefineSeries):
        return await handlers.define_series(command, ctx)
    if isinstance(command, IngestPoints):
        return await handlers.ingest(command, ctx)
    return await handlers.calculate_metrics(command, ctx)


def month_window(year: int, month: int) -> tuple[int, int]:
    """A daily series' metrics window: a month between local midnights."""
    after = (year + month // 12, month % 12 + 1)
    start = datetime(year, month, 1, tzinfo=NEW_YORK)
    end = datetime(*after, 1, tzinfo=NEW_YORK)
    return int(start.timestamp()) * 1_000_000, int(end.timestamp()) * 1_000_000


def metric_months(history: History, *, uncovered: bool = True) -> list[tuple[int, int]]:
    """The first and last month, some months with missing sessions, and (`uncovered`) the month
    of a print before the calendar's coverage: its completeness is unknown, and its window
    starts before 1970 (at a negative instant)."""
    gaps = sorted({(d.year, d.month) for d in history.missing})
    months = {(2003, 1), (2024, 12), *gaps[:: max(1, len(gaps) // 3)][:3]}
    if uncovered and history.primary and local_day(history.primary[0][0]) < COVERED_FROM:
        months.add((COVERED_FROM.year - 1, 12))
    return sorted(months)


def steps(
    history: History,
    definition: SeriesDefinition,
    cuts: Sequence[Cuts],
    now_us: int,
    months: Sequence[tuple[int, int]] | None = None,
    *,
    columns: bool = False,
) -> list[Step]:
    """Register the sources, define the series, ingest each delivery split at its cuts (the
    last cuts serve the deliveries beyond them; `columns`: each chunk's points kept in columns,
    as the columnar form brings them), then calculate the metrics of some months (default:
    `metric_months`)."""

    def ctx(command_id: str) -> CommandContext:
        return CommandContext(command_id, USER, now_us)

    out = [
        Step(RegisterSource(s, DataSourceConfig(provider="test")), ctx(f"register-{s}"))
        for s in history.sources
    ]
    out.append(Step(DefineSeries(SERIES, definition), ctx("define")))
    for k, (source, points) in enumerate(history.deliveries):
        for j, chunk in enumerate(cuts[min(k, len(cuts) - 1)].split(points)):
            ingest = IngestPoints(SERIES, source, (price_columns if columns else prices)(chunk))
            out.append(Step(ingest, ctx(f"ingest-{k}-{j}")))
    for year, month in metric_months(history) if months is None else months:
        start, end = month_window(year, month)
        metrics = CalculateQualityMetrics(SERIES, start, end)
        out.append(Step(metrics, ctx(f"metrics-{year}-{month}")))
    return out


@dataclass(frozen=True, slots=True)
class Scenario:
    """A history, the series' rules, and where each delivery is split into commands."""

    shape: Shape
    rules: Rules
    cuts: tuple[Cuts, ...]

    @property
    def history(self) -> History:
        return history(self.shape)

    @property
    def definition(self) -> SeriesDefinition:
        return self.rules.definition(self.history)

    def steps(
        self,
        now_us: int,
        months: Sequence[tuple[int, int]] | None = None,
        *,
        columns: bool = False,
    ) -> list[Step]:
        return steps(self.history, self.definition, self.cuts, now_us, months, columns=columns)

    def with_band(self, rise: str | None, fall: str | None) -> Scenario:
        """With an asymmetric jump band."""
        rules = dataclasses.replace(self.rules, rise=rise, fall=fall)
        return dataclasses.replace(self, rules=rules)

    def with_window(self, window: tuple[int, int, str]) -> Scenario:
        """With a jump window (start s, end s, multiplier)."""
        return dataclasses.replace(self, rules=dataclasses.replace(self.rules, window=window))

    def one_source(self) -> Scenario:
        """The primary source alone, with a precision its values already have."""
        shape = dataclasses.replace(self.shape, second=0.0)
        precision = 0 if self.rules.precision == 0 else MAX_PLACES
        return Scenario(shape, dataclasses.replace(self.rules, precision=precision), self.cuts)


def scenarios(*, one_source: bool = False) -> st.SearchStrategy[Scenario]:
    return st.builds(
        Scenario,
        shapes(second_source=not one_source),
        rules(one_source=one_source),
        st.lists(cuts(), min_size=1, max_size=4).map(tuple),
    )


RICH = Scenario(RICH_SHAPE, RICH_RULES, (BOUNDARY_CUTS,))
"""Explicit example every profile runs first (see RICH_SHAPE)."""
WHOLE = Cuts((), ())
"""Each delivery (up to 5,537 points) in one command."""


@dataclass(frozen=True, slots=True)
class _Delivered(Scenario):
    given: History | None = None

    @property
    def history(self) -> History:
        assert self.given is not None
        return self.given


def delivered(scenario: Scenario, h: History, cuts: Cuts) -> Scenario:
    """`scenario`'s rules over `h` (its points or deliveries changed) rather than the history
    its shape makes, each delivery cut by `cuts`."""
    return _Delivered(scenario.shape, scenario.rules, (cuts,), h)


def metrics_before_1970(rules: Rules, now_us: int) -> list[Step]:
    """Register a source, define a series of it, and calculate the metrics of December 1969: a
    window that starts at a negative instant and that the calendar does not cover."""
    empty = History(None, (), (), (), frozenset())
    return steps(empty, rules.definition(empty), [], now_us, [(COVERED_FROM.year - 1, 12)])


IssueKey = tuple[str, str, str, bool, str]
"""(source, rule, severity, blocking, evidence as canonical JSON): an issue without its id, which
names the command that raised it."""


@dataclass
class Effect:
    """What the commands did to the series, per snap, from the events alone."""

    observed: dict[tuple[int, str], list[str]] = field(default_factory=lambda: defaultdict(list))
    reconciled: dict[int, list[tuple[Any, ...]]] = field(default_factory=lambda: defaultdict(list))
    versions: dict[int, list[tuple[Any, ...]]] = field(default_factory=lambda: defaultdict(list))
    issues: dict[int, list[IssueKey]] = field(default_factory=lambda: defaultdict(list))
    scheduled: dict[int, int] = field(default_factory=dict)
    metrics: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)

    @property
    def statuses(self) -> dict[int, str]:
        """Each point's reconciled status after the last command."""
        return {snap: rows[-1][-1] for snap, rows in self.reconciled.items()}

    @property
    def officials(self) -> dict[int, tuple[Any, ...]]:
        """Each published point's latest version: (version, value, flags, ...)."""
        return {snap: rows[-1] for snap, rows in self.versions.items()}

    def rules_by_day(self, *, source: str | None = None) -> dict[date, set[str]]:
        out: dict[date, set[str]] = defaultdict(set)
        for snap, issues in self.issues.items():
            for issue in issues:
                if source is None or issue[0] == source:
                    out[local_day(snap)].add(issue[1])
        return dict(out)


def assert_same_effect(first: Effect, second: Effect) -> None:
    assert first.observed == second.observed
    assert first.issues == second.issues
    assert first.versions == second.versions
    assert first.reconciled == second.reconciled
    assert first.statuses == second.statuses
    assert first.scheduled == second.scheduled
    assert first.metrics == second.metrics


def effect_of(log: Sequence[RecordedEvent]) -> Effect:
    out = Effect()
    for record in log:
        if not record.stream.startswith(f"series/{SERIES}/"):
            continue
        event = CODEC.decode(record).event
        if isinstance(event, DataIngested):
            for snap, raw in zip(event.snaps, event.values, strict=True):
                out.observed[(snap, event.source_id)].append(_canonical(raw))
        elif isinstance(event, QualityIssueDetected):
            for i in event.issues:
                key = (i.source_id, i.rule, i.severity, i.blocking, _canonical(i.evidence))
                out.issues[i.snap_us].append(key)
        elif isinstance(event, DataReconciled):
            columns = zip(
                event.values,
                event.methods,
                map(_canonical, event.contributions),
                map(tuple, event.excluded),
                event.quality_scores,
                event.statuses,
                strict=True,
            )
            for snap, (value, *rest) in zip(event.snaps, columns, strict=True):
                out.reconciled[snap].append((_canonical(value), *rest))
        elif isinstance(event, DataPublished | DataRestated):
            for r in event.rows():
                value, flags, sources = _canonical(r.value), tuple(r.flags), tuple(r.sources)
                version = (r.version, value, flags, r.quality_score, sources, r.method)
                out.versions[r.snap_us].append((*version, r.reason, r.cause))
        elif isinstance(event, PublicationScheduled):
            out.scheduled.update(zip(event.snaps, event.due_us, strict=True))
        elif isinstance(event, QualityMetricsCalculated):
            window = (event.window_start_us, event.window_end_us)
            out.metrics[window] = event.model_dump()
    for issues in out.issues.values():
        issues.sort()
    return out


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True)


def payload_without_decision_time(record: RecordedEvent) -> dict[str, Any]:
    """An event's payload without `decided_at_us`, the deciding command's clock."""
    payload: dict[str, Any] = json.loads(record.data)
    payload.pop("decided_at_us", None)
    return payload


def describe(history: History, effect: Effect) -> None:
    """What an example exercised, for `pytest --hypothesis-show-statistics`."""
    hypothesis.event(f"sources: {len(history.sources)}")
    hypothesis.event(f"deliveries: {len(history.deliveries)}")
    if history.shape is not None and history.shape.outage:
        hypothesis.event("an outage longer than the look-back")
    fired = {issue[1] for issues in effect.issues.values() for issue in issues}
    for rule in sorted(fired):
        hypothesis.event(f"rule fired: {rule}")
    if any(len(v) > 1 for v in effect.versions.values()):
        hypothesis.event("restatements")
