"""Configuration of the query process (QIS_* environment variables)."""

from __future__ import annotations

from typing import Annotated

from pydantic import (
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import SettingsConfigDict
from qis_domain.routing import MAX_ENTRIES
from qis_runtime.settings import CommonSettings

from qis_query.application.cache import DEFAULT_CACHE_LIMITS, CacheLimits
from qis_query.application.limits import DEFAULT_LIMITS, QueryLimits
from qis_query.application.paging import PAGE_TOKEN_LIFETIME_US, page_token_key
from qis_query.application.topics import DEFAULT_GROUP_SETTINGS, GroupSettings

Seconds = Annotated[float, Field(gt=0, le=3_600)]
"""A period of the consumer groups: more than an hour would look stuck."""
TokenLifetime = Annotated[int, Field(ge=1, le=90 * 86_400)]
"""How long a page token resumes, s: longer than 90 days, a token would be a bookmark."""


class QuerySettings(CommonSettings):
    # A refused setting is not quoted in the start-up error: pydantic would print the input,
    # and a mis-pasted page token key is most likely the real one, a byte short.
    model_config = CommonSettings.model_config | SettingsConfigDict(hide_input_in_errors=True)
    query_address: str = "127.0.0.1:50052"
    """host:port the query service listens on (QIS_QUERY_ADDRESS); port 0 picks a free one."""
    flight_address: str = "127.0.0.1:50054"
    """host:port of the Arrow Flight endpoint (QIS_FLIGHT_ADDRESS; qis_query.entrypoints.flight):
    DoGet with a JSON ticket naming series, a range and an as-of streams their official values
    as Arrow record batches, behind the same authentication and TLS as the gRPC port. Port 0
    picks a free one; empty: no Flight endpoint. `qis up` sets it."""
    query_max_wait_s: float = 2.0
    """How long a query with min_position waits for the projector (QIS_QUERY_MAX_WAIT_S)."""
    query_max_request_bytes: PositiveInt = 256 * 1024
    """The largest request accepted (QIS_QUERY_MAX_REQUEST_BYTES); a larger one is refused with
    RESOURCE_EXHAUSTED before it is parsed. The largest request of a valid size, GetValues of
    1,000 snaps, takes 16 KiB; a Subscribe naming 5,000 series of 30-character ids, 170 KiB."""
    query_max_points_per_call: PositiveInt = DEFAULT_LIMITS.max_points_per_call
    """Points one QueryRange call streams at most; its last message's next_page_token continues
    (QIS_QUERY_MAX_POINTS_PER_CALL)..."""
    query_max_messages_per_call: PositiveInt = DEFAULT_LIMITS.max_messages_per_call
    """...and messages, which bounds the points of a call with small pages
    (QIS_QUERY_MAX_MESSAGES_PER_CALL)..."""
    query_max_value_bytes_per_call: PositiveInt = DEFAULT_LIMITS.max_value_bytes_per_call
    """...and bytes of serialised values and reasons, which bounds the points of a call of term
    structures or surfaces, or of long reasons (QIS_QUERY_MAX_VALUE_BYTES_PER_CALL)."""
    query_max_subscriptions_per_caller: PositiveInt = DEFAULT_LIMITS.max_subscriptions_per_caller
    """Open Subscribe streams of one caller (x-qis-user); one more is RESOURCE_EXHAUSTED
    (QIS_QUERY_MAX_SUBSCRIPTIONS_PER_CALLER)."""
    query_max_subscriptions: PositiveInt = DEFAULT_LIMITS.max_subscriptions
    """Open Subscribe streams in all (QIS_QUERY_MAX_SUBSCRIPTIONS)."""
    query_max_scanned_per_call: PositiveInt = DEFAULT_LIMITS.max_scanned_per_call
    """Store records one call of ListQualityIssues or ListAuditEntries reads at most to check
    the part of its filter the read store does not apply; its page may then be short, even
    empty, with a token that continues (QIS_QUERY_MAX_SCANNED_PER_CALL)."""
    query_page_token_key: SecretStr | None = None
    """The key sealing the page tokens of the paged answers (QIS_QUERY_PAGE_TOKEN_KEY): base64
    of 32 random bytes, e.g. `openssl rand -base64 32`. The instances behind one address must
    share it, or a page from one refuses the token of another. Unset: a key made at start-up,
    so a token does not outlive a restart (the client's next page is INVALID_ARGUMENT on
    page_token, and it lists again from the start). See qis_query.application.paging; to
    rotate it, docs/security.md."""
    query_page_token_previous_keys: SecretStr | None = None
    """Keys that sealed page tokens before the current one, comma-separated, in the current
    key's format (QIS_QUERY_PAGE_TOKEN_PREVIOUS_KEYS): a token sealed under one of them still
    opens, none is sealed under them. A key rotation's (docs/security.md); needs
    QIS_QUERY_PAGE_TOKEN_KEY."""
    query_page_token_ttl_s: TokenLifetime = PAGE_TOKEN_LIFETIME_US // 1_000_000
    """How long a page token resumes its listing after it was issued (QIS_QUERY_PAGE_TOKEN_TTL_S;
    3 days); older, it is INVALID_ARGUMENT on page_token and the client
    lists again from the start."""
    subscribe_poll_s: float = 0.02
    """How often a live subscription looks for new changes (QIS_SUBSCRIBE_POLL_S)."""
    subscribe_stall_timeout_s: float = 10.0
    """A subscriber that accepts no message for this long is disconnected with
    RESOURCE_EXHAUSTED, so a stalled client never makes the server buffer without bound
    (QIS_SUBSCRIBE_STALL_TIMEOUT_S)."""

    cache_max_bytes: NonNegativeInt = DEFAULT_CACHE_LIMITS.max_bytes
    """Memory of the in-process query cache at most, estimated (QIS_CACHE_MAX_BYTES; 0: no
    cache). It keeps latest and as-of values, small ranges and series definitions, each until
    the projector changes its series (docs/caching.md)."""
    cache_max_range_rows: NonNegativeInt = DEFAULT_CACHE_LIMITS.max_range_rows
    """A QueryRange answer is cached when it is one page of at most this many values
    (QIS_CACHE_MAX_RANGE_ROWS; 0: ranges are not cached)."""
    cache_redis_url: str = ""
    """A Redis the query instances share as a second cache level, e.g. redis://host:6379/0
    (QIS_CACHE_REDIS_URL); empty: none. When it fails, queries answer without it."""
    cache_redis_timeout_s: PositiveFloat = 0.1
    """How long a call to that Redis may take before it counts as failed
    (QIS_CACHE_REDIS_TIMEOUT_S); after a failure Redis is left alone for 5 s."""
    cache_ttl_realtime_s: PositiveInt = DEFAULT_CACHE_LIMITS.ttl_realtime_s
    """Redis time to live of answers that may still change: latest values, recent ranges
    (QIS_CACHE_TTL_REALTIME_S)."""
    cache_ttl_historical_s: PositiveInt = DEFAULT_CACHE_LIMITS.ttl_historical_s
    """Redis time to live of answers that can no longer change: as of a past position or
    knowledge time (QIS_CACHE_TTL_HISTORICAL_S)."""
    cache_ttl_reference_s: PositiveInt = DEFAULT_CACHE_LIMITS.ttl_reference_s
    """Redis time to live of series definitions (QIS_CACHE_TTL_REFERENCE_S)."""

    # Consumer groups (docs/routing.md). How long a delivery waits for its ack and how many
    # attempts precede parking are the topic's (its ack_timeout, max_delivery_attempts).
    topics_poll_s: Seconds = DEFAULT_GROUP_SETTINGS.poll_s
    """How often a group looks for new entries of its topic when nothing wakes it
    (QIS_TOPICS_POLL_S): the delay of a delivery after its entry is projected, at most."""
    topics_checkpoint_every_s: Seconds = DEFAULT_GROUP_SETTINGS.checkpoint_every_s
    """A group's checkpoint is recorded at most this often (QIS_TOPICS_CHECKPOINT_EVERY_S)...
    """
    topics_checkpoint_every: Annotated[int, Field(ge=1, le=100_000)] = (
        DEFAULT_GROUP_SETTINGS.checkpoint_every
    )
    """...or once this many entries were settled since the last record
    (QIS_TOPICS_CHECKPOINT_EVERY). Each record is an event; a restart delivers again what was
    settled after the last one."""
    topics_read_ahead: Annotated[int, Field(ge=1, le=100_000)] = DEFAULT_GROUP_SETTINGS.read_ahead
    """Entries of its topic a group holds at most, in flight or waiting (QIS_TOPICS_READ_AHEAD):
    the bound of its memory, an entry being at most 1,000 values or issues."""
    topics_read_batch: Annotated[int, Field(ge=1, le=MAX_ENTRIES)] = (
        DEFAULT_GROUP_SETTINGS.read_batch
    )
    """Entries one read of a topic's log asks for at most (QIS_TOPICS_READ_BATCH)."""
    topics_replay_scan_s: Seconds = DEFAULT_GROUP_SETTINGS.replay_scan_s
    """How often a group looks for parked entries an operator replayed
    (QIS_TOPICS_REPLAY_SCAN_S)."""
    topics_replay_chunk: Annotated[int, Field(ge=1, le=MAX_ENTRIES)] = (
        DEFAULT_GROUP_SETTINGS.replay_chunk
    )
    """Parked entries one ReplayParkedEntries command moves at most (QIS_TOPICS_REPLAY_CHUNK):
    ReplayParked reads and sends a list in chunks of this many."""

    command_address: str = "127.0.0.1:50051"
    """The command service the query service records its refusals with, when access policies
    are enforced (QIS_COMMAND_ADDRESS; CommandService.RecordAccessDenial); over TLS when
    QIS_TLS_CA_FILE is set, with QIS_TLS_CLIENT_CERT_FILE / _KEY_FILE for mTLS, as for `qis`."""
    query_user: str = "qis-query"
    """Who the query service is when it records a refusal, in development mode
    (QIS_QUERY_USER): the command service lists it in QIS_SERVICE_PRINCIPALS."""
    query_token: SecretStr | None = None
    """A bearer token for a command service in jwt mode (QIS_QUERY_TOKEN); with mTLS the
    client certificate's CN names the query service instead."""

    @field_validator("query_page_token_key")
    @classmethod
    def _a_key(cls, key: SecretStr | None) -> SecretStr | None:
        if key is None or not key.get_secret_value():
            return None  # compose passes an unset variable as ""
        page_token_key(key.get_secret_value())  # a bad key fails at start-up
        return key

    @field_validator("query_page_token_previous_keys")
    @classmethod
    def _keys(cls, keys: SecretStr | None) -> SecretStr | None:
        if keys is None or not keys.get_secret_value().strip():
            return None
        _previous_keys(keys)  # a bad key fails at start-up
        return keys

    @model_validator(mode="after")
    def _previous_keys_need_a_key(self) -> QuerySettings:
        # Without a key, one is made at start-up: a previous key would open tokens that
        # nothing seals any more, most likely a half-done rotation.
        if self.query_page_token_previous_keys is not None and self.query_page_token_key is None:
            raise ValueError(
                "QIS_QUERY_PAGE_TOKEN_PREVIOUS_KEYS needs QIS_QUERY_PAGE_TOKEN_KEY"
                " (docs/security.md: rotating the page token key)"
            )
        return self

    def page_token_keys(self) -> tuple[bytes, list[bytes]] | None:
        """The page token key and the previous ones; None when no key is set."""
        if self.query_page_token_key is None:
            return None
        previous = self.query_page_token_previous_keys
        current = page_token_key(self.query_page_token_key.get_secret_value())
        return current, [] if previous is None else _previous_keys(previous)

    def cache_limits(self) -> CacheLimits:
        return CacheLimits(
            self.cache_max_bytes,
            self.cache_max_range_rows,
            self.cache_ttl_realtime_s,
            self.cache_ttl_historical_s,
            self.cache_ttl_reference_s,
        )

    def limits(self) -> QueryLimits:
        return QueryLimits(
            self.query_max_points_per_call,
            self.query_max_messages_per_call,
            self.query_max_value_bytes_per_call,
            self.query_max_subscriptions_per_caller,
            self.query_max_subscriptions,
            self.query_max_scanned_per_call,
        )

    def group_settings(self) -> GroupSettings:
        return GroupSettings(
            poll_s=self.topics_poll_s,
            checkpoint_every_s=self.topics_checkpoint_every_s,
            checkpoint_every=self.topics_checkpoint_every,
            read_ahead=self.topics_read_ahead,
            read_batch=self.topics_read_batch,
            replay_scan_s=self.topics_replay_scan_s,
            replay_chunk=self.topics_replay_chunk,
        )


def _previous_keys(keys: SecretStr) -> list[bytes]:
    """The keys of a comma-separated list; ValueError naming the first bad one by its place,
    never by its text."""
    texts = [text for text in keys.get_secret_value().split(",") if text.strip()]
    found = []
    for place, text in enumerate(texts, 1):
        try:
            found.append(page_token_key(text))
        except ValueError as error:
            raise ValueError(f"previous key {place}: {error}") from None
    return found
