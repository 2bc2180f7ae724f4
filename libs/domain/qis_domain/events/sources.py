"""Events of the DataSource aggregate: its configuration (one stream per source), and its
feed's health reports (one stream per source and UTC day, see qis_domain.data_source)."""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar

from qis_domain.definitions import DataSourceConfig, HealthReport, SourceStatus, SourceUsage
from qis_domain.events.base import DomainEvent


class DataSourceRegistered(DomainEvent):
    event_type: ClassVar[str] = "DataSourceRegistered"
    source_id: str
    config: DataSourceConfig


class DataSourceConfigured(DomainEvent):
    event_type: ClassVar[str] = "DataSourceConfigured"
    source_id: str
    config: DataSourceConfig


class DataSourceHealthReported(DomainEvent):
    """A feed's report of one interval, with what the domain derived from it: its `cost`
    (requests x the source's cost_per_request then), since when the source has had its
    status, and the usage of the report's UTC day including it. Every figure a read model
    shows is here, so a projection needs no state of its own."""

    event_type: ClassVar[str] = "DataSourceHealthReported"
    source_id: str
    day_us: int
    report: HealthReport
    cost: Decimal
    status_since_us: int
    day_usage: SourceUsage


class DataSourceStatusChanged(DomainEvent):
    """The source's status differs from the one of its previous report (`previous` None: its
    first report). In the source's own stream: the transitions an operator lists."""

    event_type: ClassVar[str] = "DataSourceStatusChanged"
    source_id: str
    previous: SourceStatus | None
    status: SourceStatus
    at_us: int  # the end of the interval of the report that showed the change
    last_error: str = ""
