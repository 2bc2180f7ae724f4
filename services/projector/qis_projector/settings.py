"""Configuration of the projector process (QIS_* environment variables)."""

from __future__ import annotations

from pydantic import PositiveInt
from qis_runtime.settings import CommonSettings


class ProjectorSettings(CommonSettings):
    projector_address: str = "127.0.0.1:50053"
    """host:port of the projector's health endpoint (QIS_PROJECTOR_ADDRESS)."""
    projector_max_lag: int = 10_000
    """Positions behind the head beyond which the projector reports NOT_SERVING for
    qis.data.v1.Projector (QIS_PROJECTOR_MAX_LAG); the process itself stays SERVING."""
    projector_batch_points: PositiveInt = 50_000
    """Points at most in one read-model write, one transaction that moves the checkpoint
    (QIS_PROJECTOR_BATCH_POINTS; a points event counts its snaps, another event ~60 bytes of
    payload a point; a single event larger than this is written whole): smaller writes hold
    the store's write lock for less time and lose less work to a crash."""
