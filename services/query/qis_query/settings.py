"""Configuration of the query process (QIS_* environment variables)."""

from __future__ import annotations

from qis_runtime.settings import CommonSettings


class QuerySettings(CommonSettings):
    query_address: str = "127.0.0.1:50052"
    """host:port the query service listens on (QIS_QUERY_ADDRESS); port 0 picks a free one."""
    query_max_wait_s: float = 2.0
    """How long a query with min_position waits for the projector (QIS_QUERY_MAX_WAIT_S)."""
    subscribe_poll_s: float = 0.02
    """How often a live subscription looks for new changes (QIS_SUBSCRIBE_POLL_S)."""
    subscribe_stall_timeout_s: float = 10.0
    """A subscriber that accepts no message for this long is disconnected with
    RESOURCE_EXHAUSTED, so a stalled client never makes the server buffer without bound
    (QIS_SUBSCRIBE_STALL_TIMEOUT_S)."""
