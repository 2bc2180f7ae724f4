"""Where the command service is and who the caller is, with the same QIS_* variables the
services read, so `qis up` and the other subcommands agree without flags.

Identity: a bearer token from QIS_TOKEN when set (servers in jwt mode), else the development
header x-qis-user. Transport: TLS when QIS_TLS_CA_FILE names the CA to trust, with a client
certificate (QIS_TLS_CLIENT_CERT_FILE, QIS_TLS_CLIENT_KEY_FILE) for servers in mtls mode."""

from __future__ import annotations

import getpass
import os
import queue
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import grpc

from qis_cli.errors import EXIT_UNAVAILABLE, CliError, rpc_failure

COMMAND_ADDRESS_ENV = "QIS_COMMAND_ADDRESS"
DEFAULT_COMMAND_ADDRESS = "127.0.0.1:50051"
QUERY_ADDRESS_ENV = "QIS_QUERY_ADDRESS"
DEFAULT_QUERY_ADDRESS = "127.0.0.1:50052"
FLIGHT_ADDRESS_ENV = "QIS_FLIGHT_ADDRESS"
DEFAULT_FLIGHT_ADDRESS = "127.0.0.1:50054"
USER_ENV = "QIS_USER"
# The development-mode identity header named in the contract (command_service.proto).
IDENTITY_HEADER = "x-qis-user"
TOKEN_ENV = "QIS_TOKEN"
TLS_CA_ENV = "QIS_TLS_CA_FILE"
TLS_CLIENT_CERT_ENV = "QIS_TLS_CLIENT_CERT_FILE"
TLS_CLIENT_KEY_ENV = "QIS_TLS_CLIENT_KEY_FILE"
CONNECT_TIMEOUT_S = 5.0

Metadata = tuple[tuple[str, str], ...]
S = TypeVar("S")
R = TypeVar("R")


def default_command_address() -> str:
    return os.environ.get(COMMAND_ADDRESS_ENV) or DEFAULT_COMMAND_ADDRESS


def default_query_address() -> str:
    return os.environ.get(QUERY_ADDRESS_ENV) or DEFAULT_QUERY_ADDRESS


def default_flight_address() -> str:
    return os.environ.get(FLIGHT_ADDRESS_ENV) or DEFAULT_FLIGHT_ADDRESS


def default_user() -> str:
    if user := os.environ.get(USER_ENV):
        return user
    try:
        return getpass.getuser()
    except OSError:
        # No login name (e.g. a container user without a passwd entry): the server will ask
        # for one, with a hint to pass --user.
        return ""


def identity(user: str, token: str | None = None) -> Metadata:
    """The caller's credential: `token` (else QIS_TOKEN) as a bearer token, or else `user` in
    the development header. Never both: a server in jwt mode ignores the header, and a token
    must not be mistaken for a name."""
    token = token if token is not None else os.environ.get(TOKEN_ENV, "")
    if token:
        return (("authorization", f"Bearer {token}"),)
    return ((IDENTITY_HEADER, user),)


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """PEM contents: the CA to trust, and the client certificate and key when set."""

    ca: bytes
    client_cert: bytes | None = None
    client_key: bytes | None = None


def tls_files() -> TlsFiles | None:
    """The QIS_TLS_* files the CLI connects with; None (plaintext) without a CA file."""
    ca = os.environ.get(TLS_CA_ENV)
    cert, key = os.environ.get(TLS_CLIENT_CERT_ENV), os.environ.get(TLS_CLIENT_KEY_ENV)
    if not ca:
        if cert or key:
            raise CliError(f"{TLS_CLIENT_CERT_ENV} and {TLS_CLIENT_KEY_ENV} need {TLS_CA_ENV}")
        return None
    if bool(cert) != bool(key):
        raise CliError(
            f"a client certificate needs both {TLS_CLIENT_CERT_ENV} and {TLS_CLIENT_KEY_ENV}"
        )
    return TlsFiles(
        _read(TLS_CA_ENV, ca),
        _read(TLS_CLIENT_CERT_ENV, cert) if cert else None,
        _read(TLS_CLIENT_KEY_ENV, key) if key else None,
    )


def channel_credentials() -> grpc.ChannelCredentials | None:
    """TLS credentials from the QIS_TLS_* variables; None (plaintext) without a CA file."""
    files = tls_files()
    if files is None:
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=files.ca,
        private_key=files.client_key,
        certificate_chain=files.client_cert,
    )


def _read(variable: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise CliError(f"{variable}={path}: {error.strerror or error}") from None


def open_channel(address: str) -> grpc.Channel:
    credentials = channel_credentials()
    if credentials is None:
        return grpc.insecure_channel(address)
    return grpc.secure_channel(address, credentials)


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
    channel = open_channel(address)
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
