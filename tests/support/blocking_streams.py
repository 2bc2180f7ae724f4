"""A test's one-request stream call made with gRPC's blocking client, for tests that assert the
status a service ends a stream with.

gRPC's asyncio client loses that status when the service ends the stream while a write of the
client is in flight (it refuses the caller on its metadata, say): the failed write overwrites
the service's status with INTERNAL "Internal error from Core" (grpc/grpc#36066). How often
depends on scheduling, so a status test through the asyncio client fails now and then under
load. The blocking client reports the service's status."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message


@dataclass(frozen=True)
class Ended:
    """How the call ended: the first answer (None when there was none), or the error the service
    ended the stream with; DEADLINE_EXCEEDED when neither came within the wait."""

    answer: Message | None
    error: grpc.RpcError | None

    @property
    def code(self) -> grpc.StatusCode:
        error: grpc.Call | None = self.error  # type: ignore[assignment]
        return grpc.StatusCode.OK if error is None else error.code()


def path_of(service: ServiceDescriptor, rpc: str) -> str:
    """An RPC's path on the wire: "/package.Service/Rpc"."""
    return f"/{service.full_name}/{service.methods_by_name[rpc].name}"


async def first_answer(
    target: str,
    method: str,
    request: Message,
    answer_type: type[Message],
    metadata: Sequence[tuple[str, str]],
    *,
    wait_s: float,
) -> Ended:
    """Sends `request` as a stream of one to `method` ("/package.Service/Rpc") and waits up to
    `wait_s` for the first answer or the stream's end, in a thread (the loop serves meanwhile)."""

    def call() -> Ended:
        with grpc.insecure_channel(target) as channel:
            stream = channel.stream_stream(
                method,
                request_serializer=type(request).SerializeToString,
                response_deserializer=answer_type.FromString,
            )
            answers = stream(iter([request]), metadata=tuple(metadata), timeout=wait_s)
            try:
                return Ended(next(answers, None), None)
            except grpc.RpcError as error:
                return Ended(None, error)
            finally:
                answers.cancel()

    return await asyncio.to_thread(call)
