"""What a feed takes from its source's configuration (QueryService.GetDataSource, read once when
the feed starts): whether the source is enabled, its rate limit, its retry policy and where its
credentials are (docs/data-sources.md, "What drives a feed").

Precedence, field by field: what the feed's own configuration states explicitly (feeds.toml,
or `qis feed`'s options) > the source's configuration > the provider's defaults. A source whose
configuration cannot be read (the query service unreachable, the source unknown to it) is
logged and leaves the feed on its own configuration and the defaults: the command service
still refuses what a source that does not exist sends.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio
from qis.data.v1 import query_service_pb2, query_service_pb2_grpc, series_pb2

from qis_feeds.adapters.http import RetryPolicy

log = logging.getLogger("qis.feeds")
READ_TIMEOUT_S = 5.0


class CredentialsError(Exception):
    """A credentials reference that does not resolve to a secret."""


@dataclass(frozen=True, slots=True)
class SourceSettings:
    """The part of a DataSource that drives its feed."""

    enabled: bool = True
    rate_limit_per_minute: int = 0
    """0: the source states none."""
    retry: series_pb2.DataSourceRetryPolicy | None = None
    credentials_ref: str = ""

    @classmethod
    def of(cls, source: series_pb2.DataSource) -> SourceSettings:
        return cls(
            enabled=not source.disabled,
            rate_limit_per_minute=source.rate_limit_per_minute,
            retry=source.retry_policy if source.HasField("retry_policy") else None,
            credentials_ref=source.credentials_ref,
        )


UNKNOWN = SourceSettings()
"""A source whose configuration could not be read: nothing stated, so nothing overrides."""


async def read_source(
    stub: query_service_pb2_grpc.QueryServiceAsyncStub,
    metadata: tuple[tuple[str, str], ...],
    source_id: str,
) -> SourceSettings:
    try:
        source = await stub.GetDataSource(
            query_service_pb2.GetDataSourceRequest(name=f"sources/{source_id}"),
            metadata=metadata,
            timeout=READ_TIMEOUT_S,
        )
    except grpc.aio.AioRpcError as error:
        log.warning(
            "sources/%s: its configuration could not be read (%s %s): the feed runs on its own"
            " configuration and the defaults",
            source_id,
            error.code().name,
            error.details(),
        )
        return UNKNOWN
    return SourceSettings.of(source)


def calls_per_minute(explicit: float | None, source: SourceSettings, default: float) -> float:
    if explicit is not None:
        return explicit
    return float(source.rate_limit_per_minute) if source.rate_limit_per_minute else default


def retry_policy(explicit_attempts: int | None, source: SourceSettings) -> RetryPolicy:
    """The feed's own `max_attempts` if stated; the rest from the source's policy, if any, else
    RetryPolicy's defaults."""
    policy = RetryPolicy()
    if source.retry is not None:
        policy = RetryPolicy(
            max_attempts=source.retry.max_attempts,
            backoff_first_s=source.retry.initial_backoff.ToMicroseconds() / 1e6,
            backoff_cap_s=source.retry.max_backoff.ToMicroseconds() / 1e6,
        )
    if explicit_attempts is not None:
        policy = RetryPolicy(
            max_attempts=explicit_attempts,
            backoff_first_s=policy.backoff_first_s,
            backoff_cap_s=policy.backoff_cap_s,
        )
    return policy


def credentials(explicit_env: str | None, source: SourceSettings, default_env: str | None) -> str:
    """The secret: from the variable the feed names, else the source's reference, else the
    provider's default variable; "" when none of them is set."""
    if explicit_env is not None:
        return os.environ.get(explicit_env, "")
    if source.credentials_ref:
        return resolve(source.credentials_ref)
    return os.environ.get(default_env, "") if default_env else ""


def resolve(ref: str) -> str:
    """`env:VARIABLE` or `file:/path` (its content, without the trailing newline that editors
    and `echo` add). Never says the secret, only where it was looked for."""
    kind, _, where = ref.partition(":")
    if kind == "env":
        value = os.environ.get(where, "")
        if not value:
            raise CredentialsError(f"credentials {ref}: the variable {where} is not set")
        return value
    if kind == "file":
        try:
            value = Path(where).read_text().rstrip("\r\n")
        except OSError as error:
            raise CredentialsError(f"credentials {ref}: {error.strerror}") from None
        if not value:
            raise CredentialsError(f"credentials {ref}: the file is empty")
        return value
    raise CredentialsError("a credentials reference that is neither env:VARIABLE nor file:/path")
