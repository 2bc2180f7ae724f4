"""The query service as a client of the command service: the read side appends no events, so
its records (access refusals, consumer groups' checkpoints and parkings) are commands sent there.

The query service calls as itself: QIS_QUERY_TOKEN, its client certificate, or QIS_QUERY_USER in
development mode, which the command service must list in QIS_SERVICE_PRINCIPALS."""

from __future__ import annotations

from typing import ClassVar, TypeVar

import grpc.aio
from google.protobuf.message import Message
from qis.data.v1 import command_service_pb2_grpc as pb_grpc
from qis_cli.connection import channel_credentials, identity

Metadata = tuple[tuple[str, str], ...]
Request = TypeVar("Request", bound=Message)
Response = TypeVar("Response", bound=Message)


def open_command_channel(
    address: str, user: str, token: str | None
) -> tuple[grpc.aio.Channel, Metadata]:
    """The channel to the command service at `address` (connected at its first call; over TLS
    when QIS_TLS_CA_FILE is set, as for `qis`), and who the query service is there."""
    credentials = channel_credentials()
    channel = (
        grpc.aio.insecure_channel(address)
        if credentials is None
        else grpc.aio.secure_channel(address, credentials)
    )
    return channel, identity(user, token)


class CommandClient:
    """Calls of the command service as the query service, each bounded by `timeout_s`
    (a subclass's `default_timeout_s` when not given)."""

    default_timeout_s: ClassVar[float]

    def __init__(
        self,
        stub: pb_grpc.CommandServiceAsyncStub,
        metadata: Metadata,
        timeout_s: float | None = None,
    ) -> None:
        self._stub = stub
        self._metadata = metadata
        self._timeout_s = self.default_timeout_s if timeout_s is None else timeout_s

    async def _call(
        self, rpc: grpc.aio.UnaryUnaryMultiCallable[Request, Response], request: Request
    ) -> Response:
        return await rpc(request, metadata=self._metadata, timeout=self._timeout_s)
