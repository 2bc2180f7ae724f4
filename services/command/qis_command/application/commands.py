"""The write side's use cases, as plain data (already parsed from the transport)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from qis_domain.commands import CommandOutcome
from qis_domain.definitions import (
    AccessPolicy,
    DataSourceConfig,
    HealthReport,
    SeriesDefinition,
    Update,
)
from qis_domain.events import AccessDenied, EntryRef, TopicDefinition
from qis_domain.events.scheduler import SchedulerSnapshot
from qis_domain.rules import Severity
from qis_domain.snaps import Snap
from qis_domain.values import DataValue


@dataclass(frozen=True, slots=True)
class DefineSeries:
    series_id: str
    definition: SeriesDefinition


@dataclass(frozen=True, slots=True)
class EvolveSeries:
    """Applied to the definition the command is decided on (see qis_domain.definitions.Update)."""

    series_id: str
    update: Update
    reason: str
    expected_schema_version: int = 0  # 0: no check


@dataclass(frozen=True, slots=True)
class RegisterSource:
    source_id: str
    config: DataSourceConfig


@dataclass(frozen=True, slots=True)
class ConfigureSource:
    source_id: str
    update: Update


@dataclass(frozen=True, slots=True)
class ReportSourceHealth:
    """A feed's report of how its source fared over an interval."""

    source_id: str
    report: HealthReport


@dataclass(frozen=True, slots=True)
class IngestPoints:
    series_id: str
    source_id: str
    points: Sequence[tuple[Snap, DataValue]]
    # Prices or volumes that came in columns are kept in them (ScalarPoints): the fingerprint
    # hashes them from their columns, as the list of pairs they stand for.


@dataclass(frozen=True, slots=True)
class PublishPoints:
    series_id: str
    snaps: Sequence[Snap]
    comment: str


@dataclass(frozen=True, slots=True)
class RestatePoint:
    series_id: str
    snap: Snap
    value: DataValue
    reason: str
    reason_code: str = ""
    expires_us: int = 0  # 0: the manual value stands until the next manual decision


@dataclass(frozen=True, slots=True)
class ResolveIssues:
    """The exception queue: approve, reject or override open quality issues of one series."""

    series_id: str
    issue_ids: Sequence[str]
    action: str  # "approve" | "reject" | "override"
    reason: str
    value: DataValue | None = None  # the manual value of an override
    reason_code: str = ""
    expires_us: int = 0


@dataclass(frozen=True, slots=True)
class PublishDue:
    """Time-driven: publish what reached its cut-off in one bucket (issued by the scheduler)."""

    series_id: str
    bucket_us: int


@dataclass(frozen=True, slots=True)
class ExpireOverrides:
    series_id: str
    bucket_us: int


@dataclass(frozen=True, slots=True)
class CalculateQualityMetrics:
    series_id: str
    start_us: int
    end_us: int


@dataclass(frozen=True, slots=True)
class SetAccessPolicy:
    policy_id: str
    policy: AccessPolicy
    reason: str
    expected_revision: int = 0  # 0: no check


@dataclass(frozen=True, slots=True)
class DeleteAccessPolicy:
    policy_id: str
    reason: str
    expected_revision: int = 0


@dataclass(frozen=True, slots=True)
class RecordDenial:
    """A refusal by another service's access checks, to be recorded (its command id names the
    denial): the refused caller is in `denial`, the recording service is the command's caller."""

    denial: AccessDenied


@dataclass(frozen=True, slots=True)
class SetTopic:
    name: str  # the topic, without "topics/"
    definition: TopicDefinition


@dataclass(frozen=True, slots=True)
class DeleteTopic:
    name: str


@dataclass(frozen=True, slots=True)
class CheckpointConsumerGroup:
    """Sent by the query service serving the group (docs/routing.md)."""

    topic: str  # without "topics/"
    group: str
    position: int
    index: int
    settled: tuple[EntryRef, ...] = ()  # replayed entries settled


@dataclass(frozen=True, slots=True)
class ReplayParkedEntries:
    """Sent by the query service for an operator's TopicService.ReplayParked, in chunks."""

    topic: str
    group: str
    entries: tuple[EntryRef, ...]


@dataclass(frozen=True, slots=True)
class ParkTopicEntry:
    """Sent by the query service serving the group: the entry failed `attempts` deliveries."""

    topic: str
    group: str
    position: int
    index: int
    attempts: int
    last_error: str


ServiceCommand = RecordDenial | CheckpointConsumerGroup | ParkTopicEntry | ReplayParkedEntries
"""Commands of the other services about their own work, not the caller's: only the principals
of QIS_SERVICE_PRINCIPALS, or an administrator of everything, send them."""


@dataclass(frozen=True, slots=True)
class CommandResult:
    outcome: CommandOutcome
    duplicate: bool


@dataclass(frozen=True, slots=True)
class RaiseLateness:
    """Time-driven: service-level deadlines of one bucket's points passed (issued by the
    scheduler, docs/service-levels.md). `due`: (snap, deadline) pairs, UTC µs."""

    series_id: str
    bucket_us: int
    rule: str  # qis_domain.service_levels.LATE_ARRIVAL or LATE_PUBLICATION
    source_id: str  # "" for a late publication
    due: tuple[tuple[int, int], ...]
    severity: Severity


@dataclass(frozen=True, slots=True)
class CheckpointScheduler:
    """Sent by the scheduler about its own state (qis_domain.scheduler_state). `known_version`:
    the version of the checkpoint stream's last event as it last read it (None: no event), from
    which the handler loads the aggregate instead of from the stream's start."""

    snapshot: SchedulerSnapshot
    known_version: int | None
