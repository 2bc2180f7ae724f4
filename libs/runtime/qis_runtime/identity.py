"""Who is calling: read from call metadata by a server interceptor, never from request fields.

Development mode trusts a plain `x-qis-user` header. Signed tokens (the `authorization` header)
replace it later behind the same interceptor; the contract does not change.
"""

from __future__ import annotations

import contextvars
import inspect
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio

IDENTITY_HEADER = "x-qis-user"
_USER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@:\-]{0,127}")
# Infrastructure endpoints answer anonymous probes (orchestrators, grpcurl list).
PUBLIC_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: str


_current: contextvars.ContextVar[Identity | None] = contextvars.ContextVar("identity", default=None)


def current_identity() -> Identity:
    identity = _current.get()
    if identity is None:
        raise RuntimeError("no identity in context: is the IdentityInterceptor installed?")
    return identity


def identity_from_metadata(metadata: tuple[tuple[str, str | bytes], ...] | None) -> Identity | None:
    for key, value in metadata or ():
        if key == IDENTITY_HEADER and isinstance(value, str) and _USER.fullmatch(value):
            return Identity(value)
    return None


class IdentityInterceptor(grpc.aio.ServerInterceptor):
    """Rejects calls without a valid identity (UNAUTHENTICATED) and exposes it to handlers."""

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
        identity = identity_from_metadata(handler_call_details.invocation_metadata)
        return _wrap(handler, identity)


def _wrap(
    handler: grpc.RpcMethodHandler[Any, Any], identity: Identity | None
) -> grpc.RpcMethodHandler[Any, Any]:
    async def deny(context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(
            grpc.StatusCode.UNAUTHENTICATED,
            f"missing or invalid '{IDENTITY_HEADER}' call metadata",
        )

    def unary(behavior: Any) -> Any:
        async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            if identity is None:
                await deny(context)
            token = _current.set(identity)
            try:
                return await behavior(request, context)
            finally:
                _current.reset(token)

        return call

    def streaming(behavior: Any) -> Any:
        if not inspect.isasyncgenfunction(behavior):
            return unary(behavior)  # a handler that streams with context.write()

        async def call(
            request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            if identity is None:
                await deny(context)
            token = _current.set(identity)
            try:
                async for response in behavior(request, context):
                    yield response
            finally:
                _current.reset(token)

        return call

    h: Any = handler
    if h.unary_unary:
        return grpc.unary_unary_rpc_method_handler(
            unary(h.unary_unary), h.request_deserializer, h.response_serializer
        )
    if h.stream_unary:
        return grpc.stream_unary_rpc_method_handler(
            unary(h.stream_unary), h.request_deserializer, h.response_serializer
        )
    if h.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            streaming(h.unary_stream), h.request_deserializer, h.response_serializer
        )
    return grpc.stream_stream_rpc_method_handler(
        streaming(h.stream_stream), h.request_deserializer, h.response_serializer
    )
