"""Configuration of the command process (QIS_* environment variables)."""

from __future__ import annotations

from qis_runtime.settings import CommonSettings


class CommandSettings(CommonSettings):
    command_address: str = "127.0.0.1:50051"
    """host:port the command service listens on (QIS_COMMAND_ADDRESS); port 0 picks a free one."""
    aggregate_cache_points: int = 200_000
    """Points of aggregate state kept in memory between commands, about 1 KiB each
    (QIS_AGGREGATE_CACHE_POINTS)."""
    scheduler_enabled: bool = True
    """Run the process manager for time-driven work in this process (QIS_SCHEDULER_ENABLED).
    Safe to run in several instances: its commands have deterministic ids."""
    scheduler_tick_s: float = 1.0
    """How often it looks for work that fell due (QIS_SCHEDULER_TICK_S)."""
    metrics_grace_s: float = 3600.0
    """Quality metrics of a window are calculated this long after it closes, so that late
    values count (QIS_METRICS_GRACE_S)."""
    metrics_quiet_s: float = 60.0
    """...and only once no new value has been published in it for this long
    (QIS_METRICS_QUIET_S)."""
