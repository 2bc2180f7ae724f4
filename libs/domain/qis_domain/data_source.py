"""The DataSource aggregate: a provider's configuration."""

from __future__ import annotations

from qis_domain.commands import CommandContext, CommandOutcome, RemembersCommands
from qis_domain.definitions import DataSourceConfig, Update
from qis_domain.errors import AlreadyExists, NotFound
from qis_domain.events import DataSourceConfigured, DataSourceRegistered, DomainEvent
from qis_domain.names import source_resource
from qis_domain.series_bucket import Recorded


def source_stream(source_id: str) -> str:
    return f"sources/{source_id}"


class DataSource(RemembersCommands):
    def __init__(self, source_id: str) -> None:
        self.source_id = source_id
        self.version: int | None = None
        self.config: DataSourceConfig | None = None
        self._outcomes: dict[str, CommandOutcome] = {}

    @property
    def stream(self) -> str:
        return source_stream(self.source_id)

    @property
    def exists(self) -> bool:
        return self.config is not None

    @property
    def size(self) -> int:
        return 1

    def register(self, config: DataSourceConfig, ctx: CommandContext) -> list[DomainEvent]:
        if self.config is not None:
            raise AlreadyExists(source_resource(self.source_id))
        return [DataSourceRegistered(source_id=self.source_id, config=config)]

    def configure(self, update: Update, ctx: CommandContext) -> list[DomainEvent]:
        """`update` applies to the configuration this decision is made on (see Update)."""
        if self.config is None:
            raise NotFound(source_resource(self.source_id), "source.name")
        config = update.applied_to(self.config)
        if config == self.config:
            return []
        return [DataSourceConfigured(source_id=self.source_id, config=config)]

    def apply(self, event: DomainEvent, meta: Recorded) -> None:
        self.version = meta.stream_version
        if isinstance(event, DataSourceRegistered | DataSourceConfigured):
            self.config = event.config
        self._outcomes[meta.command_id] = CommandOutcome(meta.position)
