"""Configuration shared by the processes: every setting is a QIS_* environment variable."""

from __future__ import annotations

from pathlib import Path

from pydantic import NonNegativeFloat, PositiveFloat, SecretStr
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
    metrics_address: str = ""
    """host:port of the Prometheus scrape endpoint (`GET /metrics`, QIS_METRICS_ADDRESS); empty:
    none. Port 0 takes a free one (logged). Traces and OTLP are set by the standard OTEL_*
    variables (docs/observability.md)."""
    metrics_series_labels: bool = False
    """Whether business metrics carry a `series` label (QIS_METRICS_SERIES_LABELS): off, they are
    labelled by source, status or mode only, whose values are few; on, one time series per
    series id, for deployments with a few hundred series at most."""

    # Authentication and TLS (docs/security.md); qis_runtime.auth.server_security checks that
    # they make sense together and refuses to start otherwise.
    auth: str = ""
    """How callers prove who they are (QIS_AUTH): `dev` (the x-qis-user header, trusted; only on
    a loopback address), `jwt` (a bearer token), `mtls` (a client certificate's CN), or
    `jwt,mtls`. Unset: the process refuses to start (`qis up` sets `dev` on loopback)."""
    authz: str = ""
    """Whether access policies are enforced (QIS_AUTHZ): `policies` (deny by default: only what
    a stored policy or QIS_ADMINS allows) or `open` (every authenticated caller may do
    everything). Unset: `open` in development mode, where identities are whatever a header says;
    `policies` with jwt or mtls, where they are proven. Enforced by qis-command and qis-query
    (docs/security.md)."""
    admins: str = ""
    """Principals that hold `admin` on everything whatever the policies say, so that the first
    policy can be written and a lock-out undone (QIS_ADMINS): comma-separated `user:NAME` or
    `role:NAME`, a bare NAME being a user."""
    service_principals: str = ""
    """Principals of the services that record their own refusals through the command service
    (QIS_SERVICE_PRINCIPALS, as QIS_ADMINS; CommandService.RecordAccessDenial): the query
    service's identity, e.g. `user:qis-query` (its client certificate's CN, or its token's
    subject)."""
    jwt_jwks: str = ""
    """Where the token signing keys are: a JWKS file path or http(s) URL (QIS_JWT_JWKS)."""
    jwt_hmac_secret: SecretStr | None = None
    """Or a shared HMAC secret (HS256/384/512), at least 32 bytes (QIS_JWT_HMAC_SECRET)."""
    jwt_issuer: str = ""
    """The `iss` a token must carry (QIS_JWT_ISSUER); required in jwt mode."""
    jwt_audience: str = ""
    """The `aud` a token must carry (QIS_JWT_AUDIENCE); required in jwt mode."""
    jwt_leeway_s: NonNegativeFloat = 30.0
    """Clock skew allowed on `exp`, `nbf` and `iat` (QIS_JWT_LEEWAY_S)."""
    jwt_roles_claim: str = "roles"
    """The claim holding the caller's roles or groups, dotted for a nested one, e.g.
    `realm_access.roles` (QIS_JWT_ROLES_CLAIM)."""
    jwt_jwks_cache_s: PositiveFloat = 300.0
    """How long a fetched JWKS is used before it is fetched again (QIS_JWT_JWKS_CACHE_S); a token
    naming an unknown key fetches it at once (key rotation), at most every 10 s."""
    tls_cert_file: Path | None = None
    """PEM certificate chain the server presents (QIS_TLS_CERT_FILE); unset: plaintext."""
    tls_key_file: Path | None = None
    """PEM private key of that certificate (QIS_TLS_KEY_FILE)."""
    tls_client_ca_file: Path | None = None
    """PEM CA(s) client certificates must chain to (QIS_TLS_CLIENT_CA_FILE): set, a client
    without such a certificate is refused at the handshake (mTLS)."""

    def resolved_read_store_uri(self) -> str:
        return self.read_store_uri or f"sqlite:///{self.data_dir / 'read.db'}"

    def resolved_event_store_uri(self) -> str:
        return self.event_store_uri or f"sqlite:///{self.data_dir / 'events.db'}"
