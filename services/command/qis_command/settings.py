"""Configuration of the command process (QIS_* environment variables)."""

from __future__ import annotations

from pydantic import PositiveFloat, PositiveInt
from qis_runtime.settings import CommonSettings

from qis_command.entrypoints.grpc_service import BULK_IDLE_TIMEOUT_S


class CommandSettings(CommonSettings):
    command_address: str = "127.0.0.1:50051"
    """host:port the command service listens on (QIS_COMMAND_ADDRESS); port 0 picks a free one."""
    command_max_request_bytes: PositiveInt = 4 * 1024 * 1024
    """The largest request accepted (QIS_COMMAND_MAX_REQUEST_BYTES); a larger one is refused
    with RESOURCE_EXHAUSTED before it is parsed. 10,000 points (the most a request may hold) of
    OHLC bars with every decimal at its widest take 2.3 MiB, of typical bars 0.8 MiB; an options
    chain of 20,000 typical quotes takes 0.8 MiB."""
    bulk_idle_timeout_s: PositiveFloat = BULK_IDLE_TIMEOUT_S
    """A BulkIngest stream that sends no chunk for this long is ended with DEADLINE_EXCEEDED
    (QIS_BULK_IDLE_TIMEOUT_S); every chunk acknowledged before is committed."""
    aggregate_cache_points: int = 200_000
    """Points of aggregate state kept in memory between commands (QIS_AGGREGATE_CACHE_POINTS;
    a bucket's remembered commands and issues count as points too). What bounds the process's
    memory: measured about 1 KiB a point with two sources' values, so ~370 MiB at this default
    (~170 MiB of it before any data), flat from 400,000 to 10,000,000 points ingested, ~60 MiB
    more once the scheduler calculates the quality metrics of the days loaded
    (bench/ingest_memory.py)."""
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
    scheduler_checkpoint_s: PositiveFloat = 10.0
    """How often the scheduler saves its state (QIS_SCHEDULER_CHECKPOINT_S), when it changed, as
    an event of stream `scheduler/state`: a start reads the log only after the last one saved.
    Shorter: less to read again and fewer commands sent again after a restart; each costs one
    small append."""
    scheduler_checkpoint_events: PositiveInt = 10_000
    """...or sooner, once it observed this many events since the last one
    (QIS_SCHEDULER_CHECKPOINT_EVENTS): a bulk load does not leave a long log to read again."""
