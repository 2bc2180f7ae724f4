"""The ReferenceData aggregate: the definition of one series (schema, sources, rules, policies)."""

from __future__ import annotations

from typing import NamedTuple

from qis_domain.commands import CommandContext, CommandOutcome, RemembersCommands
from qis_domain.definitions import SeriesDefinition, Update, known_time_zones
from qis_domain.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
)
from qis_domain.events import DomainEvent, SchemaEvolved, SeriesDefined, SourceAdded
from qis_domain.events.scheduler import ScheduledLevel
from qis_domain.names import series_resource, source_resource
from qis_domain.series_bucket import Recorded
from qis_domain.service_levels import contract_path
from qis_domain.service_levels import problems as service_level_problems
from qis_domain.structures import check_schema_fits
from qis_domain.values import DataType, check_series_unit


def definition_stream(series_id: str) -> str:
    return f"series/{series_id}"


def validate_definition(
    series_id: str,
    definition: SeriesDefinition,
    known_sources: set[str],
    unknown_calendar: bool = False,
) -> None:
    """Field paths are relative to the `series` message of the request. Every violation is
    reported at once. `unknown_calendar`: the application found no calendar of that name."""
    violations: list[FieldViolation] = []
    for name, check in (
        ("benchmark", definition.validation.benchmark),
        ("underlying", definition.validation.underlying),
    ):
        # The edge maps `validation` without knowing whose it is: a series compared with
        # itself would always move exactly as its "benchmark" and hide every move.
        if check is not None and check.series_id == series_id:
            violations.append(
                FieldViolation(f"series.validation.{name}.series", "the series itself")
            )
    if (
        definition.validation.day_over_day is not None
        and not definition.calendar
        and definition.service_level is None
    ):
        # Without sessions a Monday would compare with the Sunday before, never checked.
        violations.append(
            FieldViolation(
                "series.validation.day_over_day",
                "compares with the previous session: needs a calendar or a service level's"
                " weekdays",
            )
        )
    if unknown_calendar:
        violations.append(
            FieldViolation("series.calendar", f"unknown exchange calendar {definition.calendar!r}")
        )
    if not definition.sources:
        violations.append(FieldViolation("series.sources", "at least one source is required"))
    seen: set[str] = set()
    priorities: set[int] = set()
    for i, source in enumerate(definition.sources):
        if source.source_id in seen:
            violations.append(FieldViolation(f"series.sources[{i}].source", "listed twice"))
        if source.priority < 1 or source.priority in priorities:
            violations.append(
                FieldViolation(f"series.sources[{i}].priority", "priorities are unique and >= 1")
            )
        seen.add(source.source_id)
        priorities.add(source.priority)
    if definition.unit:
        # Checked at the edge too when the request states the data type; an update that does
        # not name it is checked here, against the series' own.
        check_series_unit(definition.unit, definition.data_type, "series.unit", violations)
    elif definition.data_type in (DataType.PRICE, DataType.VOLUME):
        violations.append(FieldViolation("series.unit", "a currency or unit is required"))
    check_schema_fits(definition.structure, definition.data_type, "series.structure", violations)
    if definition.time_zone not in known_time_zones():
        violations.append(
            FieldViolation("series.time_zone", f"unknown time zone {definition.time_zone!r}")
        )
    if definition.publication.min_sources > max(1, len(definition.sources)):
        violations.append(
            FieldViolation("series.publication.min_sources", "more than the sources configured")
        )
    if definition.service_level is not None:
        # Checked at the edge when the request states the frequency and sources; an update
        # that names the service level alone is checked here, against the series' own.
        sources = tuple(s.source_id for s in definition.sources)
        for at, reason in service_level_problems(
            definition.service_level, definition.frequency, sources
        ):
            path = f"series.service_level.{contract_path(at)}" if at else "series.service_level"
            violations.append(FieldViolation(path, reason))
    if violations:
        raise InvalidArgument(violations)
    for i, source in enumerate(definition.sources):
        if source.source_id not in known_sources:
            raise NotFound(source_resource(source.source_id), f"series.sources[{i}].source")


def scheduled_level(definition: SeriesDefinition) -> ScheduledLevel | None:
    """The series' service level with what its expected snaps depend on: a change of any of
    it is a new level, in force from the commit time of the event that made it."""
    if definition.service_level is None:
        return None
    return ScheduledLevel(
        level=definition.service_level,
        frequency=definition.frequency,
        time_zone=definition.time_zone,
        calendar=definition.calendar,
        sources=tuple(s.source_id for s in definition.sources),
    )


MAX_LEVELS = 16
"""Service levels a series remembers (the latest): a value for a snap before the oldest one's
start is not judged late on arrival (the scheduler judges it by its deadline, when it runs)."""


class LevelChange(NamedTuple):
    """A service level (None: none) in force from `since_us`: the commit time of the event
    that set it, None in a copy that applied the event right after appending it (an append
    does not return its commit time)."""

    since_us: int | None
    level: ScheduledLevel | None


class ReferenceData(RemembersCommands):
    def __init__(self, series_id: str) -> None:
        self.series_id = series_id
        self.version: int | None = None
        self.definition: SeriesDefinition | None = None
        self.schema_version = 0
        # The service levels in force one after the other, oldest first, the last MAX_LEVELS:
        # a value is judged by the level in force at its snap (a level that changed since
        # does not excuse it), so a replay knows them too.
        self.levels: list[LevelChange] = []
        self._outcomes: dict[str, CommandOutcome] = {}

    @property
    def level(self) -> ScheduledLevel | None:
        """The service level in force now."""
        return self.levels[-1].level if self.levels else None

    def level_periods(self) -> list[tuple[int, int | None, ScheduledLevel]]:
        """The levels remembered, as (start, end or None: still in force, level), oldest
        first; each starts at the commit time of the event that set it (all known: see
        LevelChange)."""
        ends = [c.since_us for c in self.levels[1:]]
        return [
            (c.since_us, ends[i] if i < len(ends) else None, c.level)
            for i, c in enumerate(self.levels)
            if c.level is not None and c.since_us is not None
        ]

    @property
    def stream(self) -> str:
        return definition_stream(self.series_id)

    def require_definition(self, field: str = "series") -> SeriesDefinition:
        if self.definition is None:
            raise NotFound(series_resource(self.series_id), field)
        return self.definition

    def define(
        self,
        definition: SeriesDefinition,
        known_sources: set[str],
        ctx: CommandContext,
        unknown_calendar: bool = False,
    ) -> list[DomainEvent]:
        if self.definition is not None:
            raise AlreadyExists(series_resource(self.series_id))
        validate_definition(self.series_id, definition, known_sources, unknown_calendar)
        return [SeriesDefined(series_id=self.series_id, definition=definition)]

    def updated(self, update: Update, expected_schema_version: int = 0) -> SeriesDefinition:
        """The definition `update` makes of the current one, for `evolve`. Refused when the
        client made the update from another schema version than the current one (0: no
        check): its change may rest on what it read, so a blind retry cannot succeed."""
        current = self.require_definition("series.name")
        if expected_schema_version not in (0, self.schema_version):
            raise Aborted(
                f"{series_resource(self.series_id).name} is at schema version"
                f" {self.schema_version}, not {expected_schema_version}: read it again and"
                " reapply the change",
                "SCHEMA_VERSION_MISMATCH",
            )
        return update.applied_to(current)

    def evolve(
        self,
        definition: SeriesDefinition,
        reason: str,
        known_sources: set[str],
        ctx: CommandContext,
        unknown_calendar: bool = False,
    ) -> list[DomainEvent]:
        current = self.require_definition("series.name")
        if not reason.strip():
            raise InvalidArgument.single("reason", "a schema evolution needs a reason")
        if (definition.data_type, definition.frequency) != (current.data_type, current.frequency):
            raise FailedPrecondition(
                "data type and frequency of a series are immutable: define a new series instead",
                "IMMUTABLE_FIELD",
            )
        validate_definition(self.series_id, definition, known_sources, unknown_calendar)
        if definition == current:
            return []
        before = {s.source_id for s in current.sources}
        events: list[DomainEvent] = [
            SchemaEvolved(
                series_id=self.series_id,
                definition=definition,
                schema_version=self.schema_version + 1,
                reason=reason,
            )
        ]
        events.extend(
            SourceAdded(series_id=self.series_id, source_id=s.source_id, priority=s.priority)
            for s in definition.sources
            if s.source_id not in before
        )
        return events

    def apply(self, event: DomainEvent, meta: Recorded) -> None:
        self.version = meta.stream_version
        if isinstance(event, SeriesDefined | SchemaEvolved):
            self.definition = event.definition
            self.schema_version = 1 if isinstance(event, SeriesDefined) else event.schema_version
            level = scheduled_level(event.definition)
            if level != self.level:
                self.levels.append(LevelChange(meta.recorded_at_us, level))
                del self.levels[:-MAX_LEVELS]
        self._outcomes[meta.command_id] = CommandOutcome(meta.position)
