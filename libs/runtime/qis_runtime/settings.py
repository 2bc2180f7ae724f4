"""Configuration shared by the processes: every setting is a QIS_* environment variable."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QIS_", extra="ignore")

    data_dir: Path = Path(".qis-data")
    """Where embedded stores keep their files (QIS_DATA_DIR)."""
    event_store_uri: str = ""
    """sqlite:///path/events.db (default: DATA_DIR/events.db), or kdb://... / esdb://... for
    KurrentDB/EventStoreDB (QIS_EVENT_STORE_URI)."""
    read_store_uri: str = ""
    """sqlite:///path/read.db (default: DATA_DIR/read.db), or mongodb://... (QIS_READ_STORE_URI)."""
    mongo_database: str = "qis"
    """Database holding the read models when the read store is MongoDB (QIS_MONGO_DATABASE)."""
    log_level: str = "INFO"
    """QIS_LOG_LEVEL."""
    shutdown_grace_s: float = 10.0
    """Seconds in-flight calls get to finish after SIGTERM (QIS_SHUTDOWN_GRACE_S)."""

    def resolved_read_store_uri(self) -> str:
        return self.read_store_uri or f"sqlite:///{self.data_dir / 'read.db'}"

    def resolved_event_store_uri(self) -> str:
        return self.event_store_uri or f"sqlite:///{self.data_dir / 'events.db'}"
