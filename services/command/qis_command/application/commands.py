"""The write side's use cases, as plain data (already parsed from the transport)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from qis_domain.commands import CommandOutcome
from qis_domain.definitions import DataSourceConfig, SeriesDefinition
from qis_domain.snaps import Snap
from qis_domain.values import DataValue


@dataclass(frozen=True, slots=True)
class DefineSeries:
    series_id: str
    definition: SeriesDefinition


@dataclass(frozen=True, slots=True)
class EvolveSeries:
    series_id: str
    definition: SeriesDefinition
    reason: str


@dataclass(frozen=True, slots=True)
class RegisterSource:
    source_id: str
    config: DataSourceConfig


@dataclass(frozen=True, slots=True)
class ConfigureSource:
    source_id: str
    config: DataSourceConfig


@dataclass(frozen=True, slots=True)
class IngestPoints:
    series_id: str
    source_id: str
    points: Sequence[tuple[Snap, DataValue]]


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


@dataclass(frozen=True, slots=True)
class CommandResult:
    outcome: CommandOutcome
    duplicate: bool
