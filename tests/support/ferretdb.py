"""A throwaway FerretDB (MongoDB wire protocol, SQLite backend) for tests.

The binary is built once, outside the clone, by ``scripts/setup_ferretdb.sh`` into
``${QIS_CACHE_DIR:-$HOME/.cache/qis}/ferretdb/<version>/ferretdb``; ``QIS_FERRETDB_BIN`` points
at another binary instead. A missing binary RAISES: the MongoDB adapter must never go untested
silently.

    server = start_ferretdb()
    try:
        client = AsyncMongoClient(server.uri)
        ...
    finally:
        server.stop()

``CommandLog`` records the commands a PyMongo client sends (command monitoring): what a write
costs in round trips, and how long the server took over each.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pymongo import MongoClient
from pymongo.errors import PyMongoError
from pymongo.monitoring import (
    CommandFailedEvent,
    CommandListener,
    CommandStartedEvent,
    CommandSucceededEvent,
)

from tests.support.local_server import LocalServer
from tests.support.ports import HOST, free_port

FERRETDB_VERSION = "v1.24.2"  # keep in sync with FERRETDB_VERSION in scripts/setup_ferretdb.sh
BIN_ENV = "QIS_FERRETDB_BIN"
CACHE_DIR_ENV = "QIS_CACHE_DIR"
SETUP_SCRIPT = "scripts/setup_ferretdb.sh"

STARTUP_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0
_PORT_ATTEMPTS = 3  # a free port can be taken by someone else before FerretDB binds it


class FerretDBError(RuntimeError):
    """FerretDB cannot be used: missing binary, or it did not start."""


class FerretDBNotFoundError(FerretDBError):
    """The FerretDB binary is not there: run scripts/setup_ferretdb.sh."""


def default_binary_path() -> Path:
    """Where scripts/setup_ferretdb.sh puts the binary (same rule as the script)."""
    cache = os.environ.get(CACHE_DIR_ENV) or str(Path.home() / ".cache" / "qis")
    return Path(cache) / "ferretdb" / FERRETDB_VERSION / "ferretdb"


def ferretdb_binary() -> Path:
    """The FerretDB binary to run: ``$QIS_FERRETDB_BIN``, else the cached build.

    Raises FerretDBNotFoundError when it is missing or not executable.
    """
    override = os.environ.get(BIN_ENV)
    path = Path(override) if override else default_binary_path()
    if path.is_file() and os.access(path, os.X_OK):
        return path
    origin = f"{BIN_ENV}={override}" if override else "the cached build"
    raise FerretDBNotFoundError(
        f"FerretDB binary not found or not executable: {path} ({origin}). "
        f"Build it with `bash {SETUP_SCRIPT}` (FerretDB {FERRETDB_VERSION}, needs Go >= 1.24), "
        f"or set {BIN_ENV} to a FerretDB binary."
    )


@dataclass
class FerretDBServer(LocalServer):
    """A running FerretDB process with its own temp data dir; `stop()` removes both."""

    uri: str = ""
    log_name: ClassVar[str] = "ferretdb.log"
    stop_timeout_s: ClassVar[float] = STOP_TIMEOUT_S

    def stop(self) -> None:
        atexit.unregister(self.stop)
        super().stop()


def _accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def _pings(uri: str) -> bool:
    client: MongoClient[dict[str, object]] = MongoClient(
        uri, serverSelectionTimeoutMS=1000, connectTimeoutMS=1000
    )
    try:
        client.admin.command("ping")
        return True
    except PyMongoError:
        return False
    finally:
        client.close()


def _launch(binary: Path, root: Path, port: int, log_level: str) -> FerretDBServer:
    data_dir = root / "data"
    data_dir.mkdir()
    args = [
        str(binary),
        "--handler=sqlite",
        f"--sqlite-url=file:{data_dir}/",
        f"--listen-addr={HOST}:{port}",
        "--state-dir=-",  # no state.json
        "--debug-addr=-",  # no metrics/pprof HTTP listener
        "--telemetry=disable",
        f"--log-level={log_level}",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("FERRETDB_")}
    env["DO_NOT_TRACK"] = "1"
    with (root / "ferretdb.log").open("wb") as log:
        process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=root,
            env=env,
        )
    server = FerretDBServer(port, process, root, uri=f"mongodb://{HOST}:{port}/")
    atexit.register(server.stop)
    return server


def _wait_ready(server: FerretDBServer, deadline: float) -> bool:
    """True when it serves a ping; False when the process exited; raises on timeout."""
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        if _accepts_connections(server.port) and _pings(server.uri):
            return True
        time.sleep(0.1)
    raise FerretDBError(
        f"FerretDB did not accept connections on {HOST}:{server.port} within "
        f"{STARTUP_TIMEOUT_S:g}s; log:\n{server.log_tail()}"
    )


def start_ferretdb(
    *, startup_timeout: float = STARTUP_TIMEOUT_S, log_level: str = "warn"
) -> FerretDBServer:
    """Start FerretDB (SQLite backend) on a free loopback port with a fresh temp data dir.

    Returns once it answers a ping. Raises FerretDBNotFoundError when the binary is missing
    (run scripts/setup_ferretdb.sh) and FerretDBError when it does not start.
    """
    binary = ferretdb_binary()
    deadline = time.monotonic() + startup_timeout
    last_exit: int | None = None
    last_log = ""
    for _ in range(_PORT_ATTEMPTS):
        root = Path(tempfile.mkdtemp(prefix="qis-ferretdb-"))
        try:
            server = _launch(binary, root, free_port(), log_level)
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        try:
            if _wait_ready(server, deadline):
                return server
        except BaseException:
            server.stop()
            raise
        # exited early: most likely the port was taken meanwhile; retry on another one
        last_exit, last_log = server.process.returncode, server.log_tail()
        server.stop()
        if "address already in use" not in last_log:
            break
    raise FerretDBError(
        f"FerretDB ({binary}) exited at start with code {last_exit}; log:\n{last_log}"
    )


@dataclass(frozen=True, slots=True)
class Command:
    name: str  # "insert", "update", "find", ...
    collection: str  # "" for a command on no collection
    operations: int  # documents of an insert, statements of an update or delete, else 0
    seconds: float  # from sending to the answer, as the driver saw it
    ok: bool


class CommandLog(CommandListener):
    """The commands of the clients it is given to (`event_listeners=[log]`), in the order they
    were answered."""

    def __init__(self) -> None:
        self.commands: list[Command] = []
        self._sent: dict[int, tuple[str, str, int]] = {}

    def take(self) -> list[Command]:
        """The commands answered since the last take."""
        taken, self.commands = self.commands, []
        return taken

    def started(self, event: CommandStartedEvent) -> None:
        target = event.command.get(event.command_name)
        operations = sum(len(event.command.get(k, ())) for k in ("documents", "updates", "deletes"))
        sent = (event.command_name, target if isinstance(target, str) else "", operations)
        self._sent[event.request_id] = sent

    def succeeded(self, event: CommandSucceededEvent) -> None:
        self._answered(event.request_id, event.duration_micros, ok=True)

    def failed(self, event: CommandFailedEvent) -> None:
        self._answered(event.request_id, event.duration_micros, ok=False)

    def _answered(self, request_id: int, micros: int, *, ok: bool) -> None:
        name, collection, operations = self._sent.pop(request_id)
        self.commands.append(Command(name, collection, operations, micros / 1e6, ok))
