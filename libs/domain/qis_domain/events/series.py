"""Events of the ReferenceData aggregate (one stream per series definition)."""

from __future__ import annotations

from typing import ClassVar

from qis_domain.definitions import SeriesDefinition
from qis_domain.events.base import DomainEvent


class SeriesDefined(DomainEvent):
    event_type: ClassVar[str] = "SeriesDefined"
    series_id: str
    definition: SeriesDefinition


class SchemaEvolved(DomainEvent):
    event_type: ClassVar[str] = "SchemaEvolved"
    series_id: str
    definition: SeriesDefinition
    schema_version: int
    reason: str


class SourceAdded(DomainEvent):
    event_type: ClassVar[str] = "SourceAdded"
    series_id: str
    source_id: str
    priority: int
