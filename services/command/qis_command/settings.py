"""Configuration of the command process (QIS_* environment variables)."""

from __future__ import annotations

from qis_runtime.settings import CommonSettings


class CommandSettings(CommonSettings):
    command_address: str = "127.0.0.1:50051"
    """host:port the command service listens on (QIS_COMMAND_ADDRESS); port 0 picks a free one."""
    aggregate_cache_size: int = 4096
    """Aggregates kept in memory between commands (QIS_AGGREGATE_CACHE_SIZE)."""
