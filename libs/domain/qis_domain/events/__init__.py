"""Every event type the domain records, and the registry that decodes them."""

from qis_domain.events.base import DomainEvent, EventMetadata, EventRegistry, UnknownEventType
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
    RawValue,
)
from qis_domain.events.quality import QualityMetricsCalculated
from qis_domain.events.series import SchemaEvolved, SeriesDefined, SourceAdded
from qis_domain.events.sources import DataSourceConfigured, DataSourceRegistered

ALL_EVENT_TYPES: tuple[type[DomainEvent], ...] = (
    SeriesDefined,
    SchemaEvolved,
    SourceAdded,
    DataSourceRegistered,
    DataSourceConfigured,
    DataIngested,
    QualityIssueDetected,
    DataReconciled,
    DataPublished,
    DataRestated,
    PublicationScheduled,
    QualityApproved,
    QualityRejected,
    QualityOverridden,
    ManualOverrideSet,
    ManualOverrideExpired,
    QualityMetricsCalculated,
    CommandAccepted,
)


def default_registry() -> EventRegistry:
    return EventRegistry(ALL_EVENT_TYPES)


__all__ = [
    "ALL_EVENT_TYPES",
    "CommandAccepted",
    "DataIngested",
    "DataPublished",
    "DataReconciled",
    "DataRestated",
    "DataSourceConfigured",
    "DataSourceRegistered",
    "DomainEvent",
    "EventMetadata",
    "EventRegistry",
    "Issue",
    "ManualOverrideExpired",
    "ManualOverrideSet",
    "OfficialRow",
    "PublicationScheduled",
    "QualityApproved",
    "QualityIssueDetected",
    "QualityMetricsCalculated",
    "QualityOverridden",
    "QualityRejected",
    "RawValue",
    "SchemaEvolved",
    "SeriesDefined",
    "SourceAdded",
    "UnknownEventType",
    "default_registry",
]
