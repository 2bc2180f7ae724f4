"""Who is calling: proven by the call (its metadata, its TLS peer) to a server interceptor, never
read from request fields.

The interceptor asks an Authenticator: development mode (DevAuthenticator, the default) trusts a
plain `x-qis-user` header; qis_runtime.auth has the ones that verify bearer JWTs and client
certificates. The contract does not change with the mode.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
import grpc.aio
from qis_domain.errors import InvalidArgument

from qis_runtime.errors import (
    RequestTooLarge,
    UndecodableRequest,
    abort_with,
    plain_status,
    status_for,
    with_reason,
)

log = logging.getLogger(__name__)

IDENTITY_HEADER = "x-qis-user"
_USER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@:\-]{0,127}")
# Infrastructure endpoints answer anonymous probes (orchestrators, grpcurl list).
PUBLIC_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


Metadata = tuple[tuple[str, str | bytes], ...]


@dataclass(frozen=True, slots=True)
class RequestLimit:
    """The largest request message a process parses, and the setting that says so (named to
    whoever sends a larger one)."""

    max_bytes: int
    setting: str

    def check(self, raw: bytes) -> None:
        if len(raw) > self.max_bytes:
            raise RequestTooLarge(
                f"a request of {len(raw):,} bytes is over this service's limit of"
                f" {self.max_bytes:,} bytes ({self.setting}), refused unread: send less per"
                " request (per message, on a stream)"
            )


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: str
    roles: tuple[str, ...] = ()
    """What the credential says the caller may act as (a token's roles or groups claim), kept
    for authorisation; development mode and client certificates carry none."""


_current: contextvars.ContextVar[Identity | None] = contextvars.ContextVar("identity", default=None)


def current_identity() -> Identity:
    identity = _current.get()
    if identity is None:
        raise RuntimeError("no identity in context: is the IdentityInterceptor installed?")
    return identity


class DuplicateIdentity(ValueError):
    pass


class Unauthenticated(Exception):
    """The call proves no identity. The message names the check that failed, for the caller to
    fix it; it never quotes the credential."""


class PeerContext(Protocol):
    """What an authenticator may ask of the call besides its metadata: the TLS peer, as gRPC
    verified it (grpc.aio.ServicerContext is one)."""

    def auth_context(self) -> Mapping[str, Iterable[bytes]]: ...


class Authenticator(Protocol):
    async def authenticate(self, metadata: Metadata, peer: PeerContext) -> Identity:
        """The caller's identity, or Unauthenticated (DuplicateIdentity: a malformed call)."""
        ...


class DevAuthenticator:
    """Development mode: the caller is who its `x-qis-user` header says. QisServer refuses it
    on an address reachable from other machines."""

    async def authenticate(self, metadata: Metadata, peer: PeerContext) -> Identity:
        identity = identity_from_metadata(metadata)
        if identity is None:
            raise Unauthenticated(f"missing or invalid '{IDENTITY_HEADER}' call metadata")
        return identity


def identity_from_metadata(metadata: Metadata | None) -> Identity | None:
    """None when absent or malformed; DuplicateIdentity when sent twice (no "first one wins":
    a proxy that adds a header must not be overridden by the client's, nor the reverse)."""
    values = [value for key, value in metadata or () if key == IDENTITY_HEADER]
    if len(values) > 1:
        raise DuplicateIdentity(f"'{IDENTITY_HEADER}' call metadata sent {len(values)} times")
    if values and isinstance(values[0], str) and _USER.fullmatch(values[0]):
        return Identity(values[0])
    return None


class IdentityInterceptor(grpc.aio.ServerInterceptor):
    """Rejects calls without a valid identity (UNAUTHENTICATED) and exposes it to handlers.

    It is also where the one error policy (errors.status_for) is applied: requests are decoded
    here, so undecodable bytes answer INVALID_ARGUMENT instead of a logged traceback, and an
    exception escaping a servicer answers its status instead of UNKNOWN. With a `limit`, a
    request over it is refused here too, before it is decoded (RequestTooLarge): in a stream,
    as the stream's end after the requests before it were answered."""

    def __init__(
        self, authenticator: Authenticator | None = None, limit: RequestLimit | None = None
    ) -> None:
        self._authenticator = authenticator or DevAuthenticator()
        self._limit = limit
        self._undecodable = _LogLimiter(60.0)

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or method.startswith(PUBLIC_SERVICES):
            return handler
        metadata: Metadata = tuple(handler_call_details.invocation_metadata or ())
        # Authenticated in the call, not here: a client certificate is only visible there.
        return _wrap(handler, self._authenticator, metadata, method, self._undecodable, self._limit)


class _LogLimiter:
    """At most one log line per key and period: any client can send garbage, and must not be
    able to flood the log with it."""

    def __init__(self, period_s: float) -> None:
        self._period_s = period_s
        self._last: dict[str, float] = {}

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        if now - self._last.get(key, -self._period_s) < self._period_s:
            return False
        if len(self._last) > 10_000:  # bounded, whatever the number of peers
            self._last.clear()
        self._last[key] = now
        return True


def _wrap(
    handler: grpc.RpcMethodHandler[Any, Any],
    authenticator: Authenticator,
    metadata: Metadata,
    method: str,
    undecodable: _LogLimiter,
    limit: RequestLimit | None,
) -> grpc.RpcMethodHandler[Any, Any]:
    h: Any = handler
    decode: Callable[[bytes], Any] = h.request_deserializer

    def parse(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if limit is not None:
            limit.check(raw)
        try:
            return decode(raw)
        except Exception as error:  # DecodeError, and whatever a generated parser raises
            peer = context.peer()
            if undecodable.allow(peer):
                log.warning("%s: undecodable request from %s (%s)", method, peer, error)
            raise UndecodableRequest(f"the request is not a valid {method} request") from None

    async def admit(context: grpc.aio.ServicerContext[Any, Any]) -> None:
        try:
            identity = await authenticator.authenticate(metadata, context)
        except DuplicateIdentity as error:
            refusal = status_for(InvalidArgument.single("", str(error)))
        except Unauthenticated as error:
            refusal = with_reason(
                plain_status(grpc.StatusCode.UNAUTHENTICATED, str(error)), "UNAUTHENTICATED"
            )
        except Exception as error:  # a bug in an authenticator: INTERNAL with an id, not UNKNOWN
            refusal = status_for(error)
        else:
            # Each call runs in its own task, whose context this does not leak out of; no reset
            # (resetting from a streaming call's finaliser fails: another context runs it).
            _current.set(identity)
            return
        await abort_with(context, refusal)

    async def requests(
        raw: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        async for message in raw:
            yield parse(message, context)

    def decoded(request: Any, streamed: bool, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        return requests(request, context) if streamed else parse(request, context)

    # A refused call is aborted outside its `except`: the abort's traceback would otherwise keep
    # the failed call's frames, and the request decoded in them (a 4 MiB request is ~120 MiB of
    # objects), alive until a garbage collection.
    def unary(behavior: Any, streamed_requests: bool) -> Any:
        async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            await admit(context)
            try:
                return await behavior(decoded(request, streamed_requests, context), context)
            except grpc.aio.AbortError:
                raise
            except Exception as error:
                status = status_for(error)
            request = None
            await abort_with(context, status)

        return call

    def streaming(behavior: Any, streamed_requests: bool) -> Any:
        if not inspect.isasyncgenfunction(behavior):
            return unary(behavior, streamed_requests)  # streams with context.write()

        async def call(
            request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            await admit(context)
            try:
                async for response in behavior(
                    decoded(request, streamed_requests, context), context
                ):
                    yield response
                return
            except grpc.aio.AbortError:
                raise
            except Exception as error:
                status = status_for(error)
            request = None
            await abort_with(context, status)

        return call

    # Requests reach the wrapper as bytes (no deserializer): decoding is the wrapper's.
    if h.unary_unary:
        return grpc.unary_unary_rpc_method_handler(
            unary(h.unary_unary, False), None, h.response_serializer
        )
    if h.stream_unary:
        return grpc.stream_unary_rpc_method_handler(
            unary(h.stream_unary, True), None, h.response_serializer
        )
    if h.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            streaming(h.unary_stream, False), None, h.response_serializer
        )
    return grpc.stream_stream_rpc_method_handler(
        streaming(h.stream_stream, True), None, h.response_serializer
    )
