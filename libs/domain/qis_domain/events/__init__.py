"""Every event type the domain records, and the registry that decodes them."""

from qis_domain.events.access import (
    AccessDenied,
    AccessPolicyAdded,
    AccessPolicyChanged,
    AccessPolicyRemoved,
    PolicyRefusal,
)
from qis_domain.events.base import (
    DomainEvent,
    EventMetadata,
    EventRegistry,
    JsonDict,
    UnknownEventType,
)
from qis_domain.events.commands import CommandAccepted
from qis_domain.events.points import (
    DataIngested,
    DataPublished,
    DataReconciled,
    DataRestated,
    Issue,
    ManualOverrideExpired,
    ManualOverrideSet,
    OfficialRow,
    PublicationScheduled,
    QualityApproved,
    QualityIssueDetected,
    QualityOverridden,
    QualityRejected,
    QualityRetracted,
    RawValue,
)
from qis_domain.events.quality import QualityMetricsCalculated
from qis_domain.events.routing import (
    ConsumerGroupCheckpointed,
    EntryRef,
    ParkedEntriesReplayed,
    TopicDefinition,
    TopicDeleted,
    TopicEntryParked,
    TopicSet,
)
from qis_domain.events.scheduler import SchedulerCheckpointed
from qis_domain.events.series import SchemaEvolved, SeriesDefined, SourceAdded
from qis_domain.events.sources import (
    DataSourceConfigured,
    DataSourceHealthReported,
    DataSourceRegistered,
    DataSourceStatusChanged,
)

ALL_EVENT_TYPES: tuple[type[DomainEvent], ...] = (
    SeriesDefined,
    SchemaEvolved,
    SourceAdded,
    DataSourceRegistered,
    DataSourceConfigured,
    DataSourceHealthReported,
    DataSourceStatusChanged,
    DataIngested,
    QualityIssueDetected,
    DataReconciled,
    DataPublished,
    DataRestated,
    PublicationScheduled,
    QualityApproved,
    QualityRejected,
    QualityOverridden,
    QualityRetracted,
    ManualOverrideSet,
    ManualOverrideExpired,
    QualityMetricsCalculated,
    CommandAccepted,
    AccessPolicyAdded,
    AccessPolicyChanged,
    AccessPolicyRemoved,
    AccessDenied,
    TopicSet,
    TopicDeleted,
    ConsumerGroupCheckpointed,
    TopicEntryParked,
    ParkedEntriesReplayed,
    SchedulerCheckpointed,
)


def default_registry() -> EventRegistry:
    registry = EventRegistry(ALL_EVENT_TYPES)
    # Version 1 of these events called the jump rule (a move beyond max_jump_percent, then
    # measured against the previous official value) "spike", an error; "spike" now names the
    # out-and-back rule, a warning. Stored v1 events read with the rule's current name, so the
    # exception queue and a rebuilt read model never mix the two.
    registry.register_upcaster(QualityIssueDetected.event_type, 1, _jump_issues)
    for official in (DataPublished, DataRestated):
        registry.register_upcaster(official.event_type, 1, _jump_flags)
    return registry


def _jump(rule: str) -> str:
    return "jump" if rule == "spike" else rule


def _jump_issues(payload: JsonDict) -> JsonDict:
    issues = [{**i, "rule": _jump(i["rule"])} for i in payload["issues"]]
    return {**payload, "issues": issues}


def _jump_flags(payload: JsonDict) -> JsonDict:
    return {**payload, "flags": [[_jump(f) for f in flags] for flags in payload["flags"]]}


__all__ = [
    "ALL_EVENT_TYPES",
    "AccessDenied",
    "AccessPolicyAdded",
    "AccessPolicyChanged",
    "AccessPolicyRemoved",
    "CommandAccepted",
    "ConsumerGroupCheckpointed",
    "DataIngested",
    "DataPublished",
    "DataReconciled",
    "DataRestated",
    "DataSourceConfigured",
    "DataSourceHealthReported",
    "DataSourceRegistered",
    "DataSourceStatusChanged",
    "DomainEvent",
    "EntryRef",
    "EventMetadata",
    "EventRegistry",
    "Issue",
    "ManualOverrideExpired",
    "ManualOverrideSet",
    "OfficialRow",
    "ParkedEntriesReplayed",
    "PolicyRefusal",
    "PublicationScheduled",
    "QualityApproved",
    "QualityIssueDetected",
    "QualityMetricsCalculated",
    "QualityOverridden",
    "QualityRejected",
    "QualityRetracted",
    "RawValue",
    "SchemaEvolved",
    "SeriesDefined",
    "SourceAdded",
    "TopicDefinition",
    "TopicDeleted",
    "TopicEntryParked",
    "TopicSet",
    "UnknownEventType",
    "default_registry",
]
