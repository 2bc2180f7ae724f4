"""Where the command service is and who the caller is, with the same QIS_* variables the
services read, so `qis up` and the other subcommands agree without flags."""

from __future__ import annotations

import getpass
import os
import queue
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import grpc

from qis_cli.errors import EXIT_UNAVAILABLE, CliError, rpc_failure

COMMAND_ADDRESS_ENV = "QIS_COMMAND_ADDRESS"
DEFAULT_COMMAND_ADDRESS = "127.0.0.1:50051"
QUERY_ADDRESS_ENV = "QIS_QUERY_ADDRESS"
DEFAULT_QUERY_ADDRESS = "127.0.0.1:50052"
USER_ENV = "QIS_USER"
# The development-mode identity header named in the contract (command_service.proto).
IDENTITY_HEADER = "x-qis-user"
CONNECT_TIMEOUT_S = 5.0

Metadata = tuple[tuple[str, str], ...]
S = TypeVar("S")
R = TypeVar("R")


def default_command_address() -> str:
    return os.environ.get(COMMAND_ADDRESS_ENV) or DEFAULT_COMMAND_ADDRESS


def default_query_address() -> str:
    return os.environ.get(QUERY_ADDRESS_ENV) or DEFAULT_QUERY_ADDRESS


def default_user() -> str:
    if user := os.environ.get(USER_ENV):
        return user
    try:
        return getpass.getuser()
    except OSError:
        # No login name (e.g. a container user without a passwd entry): the server will ask
        # for one, with a hint to pass --user.
        return ""


def identity(user: str) -> Metadata:
    return ((IDENTITY_HEADER, user),)


def normalise_name(value: str, collection: str) -> str:
    """Accept both the id ("spx") and the resource name ("series/spx"); return the id."""
    prefix = f"{collection}/"
    return value[len(prefix) :] if value.startswith(prefix) else value


@contextmanager
def connected_channel(
    address: str, service: str, timeout_s: float = CONNECT_TIMEOUT_S
) -> Iterator[grpc.Channel]:
    """A channel that is known to be connected: an unreachable service is then one clear
    message up front rather than an UNAVAILABLE from the middle of a stream."""
    channel = grpc.insecure_channel(address)
    try:
        if not _connected(channel, timeout_s):
            raise CliError(
                f"cannot reach the {service} service at {address} — is `qis up` running?",
                EXIT_UNAVAILABLE,
            )
        yield channel
    finally:
        channel.close()


def _connected(channel: grpc.Channel, timeout_s: float) -> bool:
    """True once connected; False at the first failure rather than after the timeout:
    grpc.channel_ready_future would keep retrying a refused connection for all of it."""
    outcome: queue.Queue[bool] = queue.Queue()

    def watch(state: grpc.ChannelConnectivity) -> None:
        if state is grpc.ChannelConnectivity.READY:
            outcome.put(True)
        elif state in (
            grpc.ChannelConnectivity.TRANSIENT_FAILURE,
            grpc.ChannelConnectivity.SHUTDOWN,
        ):
            outcome.put(False)

    channel.subscribe(watch, try_to_connect=True)
    try:
        return outcome.get(timeout=timeout_s)
    except queue.Empty:
        return False
    finally:
        channel.unsubscribe(watch)


def call(
    address: str, service: str, stub_of: Callable[[grpc.Channel], S], use: Callable[[S], R]
) -> R:
    """One exchange with a service, its failure as a CliError with the exit code it deserves."""
    with connected_channel(address, service) as channel:
        try:
            return use(stub_of(channel))
        except grpc.RpcError as error:
            raise rpc_failure(error) from None
