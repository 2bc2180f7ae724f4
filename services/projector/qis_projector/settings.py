"""Configuration of the projector process (QIS_* environment variables)."""

from __future__ import annotations

from qis_runtime.settings import CommonSettings


class ProjectorSettings(CommonSettings):
    projector_address: str = "127.0.0.1:50053"
    """host:port of the projector's health endpoint (QIS_PROJECTOR_ADDRESS)."""
    projector_max_lag: int = 10_000
    """Positions behind the head beyond which the projector reports NOT_SERVING for
    qis.data.v1.Projector (QIS_PROJECTOR_MAX_LAG); the process itself stays SERVING."""
