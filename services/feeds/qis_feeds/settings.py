"""Configuration of the qis-feeds process (QIS_* environment variables); which feeds run is in
the feed configuration file (qis_feeds.config)."""

from __future__ import annotations

from pathlib import Path

from pydantic import PositiveFloat, PositiveInt, SecretStr
from qis_runtime.settings import CommonSettings

from qis_feeds.application.runner import HEALTH_INTERVAL_S


class FeedsSettings(CommonSettings):
    feeds_config: Path | None = None
    """The feed configuration file, TOML (QIS_FEEDS_CONFIG); default DATA_DIR/feeds.toml."""
    feeds_address: str = "127.0.0.1:50055"
    """host:port of the process's health endpoint (QIS_FEEDS_ADDRESS): SERVING while it runs,
    and per feed `qis.feeds.NAME`, NOT_SERVING while its provider fails."""
    command_address: str = "127.0.0.1:50051"
    """The command service the feeds send to (QIS_COMMAND_ADDRESS); over TLS when
    QIS_TLS_CA_FILE is set, as for `qis`."""
    query_address: str = "127.0.0.1:50052"
    """The query service the feeds read their sources' configuration from, at start
    (QIS_QUERY_ADDRESS; GetDataSource: enabled, rate limit, retry policy, credentials)."""
    feeds_user: str = "qis-feeds"
    """Who the feeds are, in development mode (QIS_FEEDS_USER)."""
    feeds_token: SecretStr | None = None
    """A bearer token for a command service in jwt mode (QIS_FEEDS_TOKEN)."""
    feeds_batch_points: PositiveInt = 1_000
    """A chunk closes at this many points (QIS_FEEDS_BATCH_POINTS), at most 10,000."""
    feeds_batch_delay_s: PositiveFloat = 0.1
    """... or when its first point has waited this long (QIS_FEEDS_BATCH_DELAY_S)."""
    feeds_queue_points: PositiveInt = 10_000
    """Points received and waiting to be batched (QIS_FEEDS_QUEUE_POINTS): the bound that makes
    a slow command service slow the providers down."""
    feeds_in_flight: PositiveInt = 8
    """Chunks sent and not yet acknowledged (QIS_FEEDS_IN_FLIGHT)."""
    feeds_health_s: PositiveFloat = 5.0
    """How often each feed's health is looked at (QIS_FEEDS_HEALTH_S)."""
    feeds_health_report_s: PositiveFloat = HEALTH_INTERVAL_S
    """How often each live feed reports its source's health to the command service
    (CommandService.ReportDataSourceHealth; QIS_FEEDS_HEALTH_REPORT_S): one event per source and
    interval, with its requests, failures and cost (docs/data-sources.md)."""

    def resolved_config(self) -> Path:
        return self.feeds_config or self.data_dir / "feeds.toml"
