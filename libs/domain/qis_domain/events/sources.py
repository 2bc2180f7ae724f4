"""Events of the DataSource aggregate (one stream per provider configuration)."""

from __future__ import annotations

from typing import ClassVar

from qis_domain.definitions import DataSourceConfig
from qis_domain.events.base import DomainEvent


class DataSourceRegistered(DomainEvent):
    event_type: ClassVar[str] = "DataSourceRegistered"
    source_id: str
    config: DataSourceConfig


class DataSourceConfigured(DomainEvent):
    event_type: ClassVar[str] = "DataSourceConfigured"
    source_id: str
    config: DataSourceConfig
