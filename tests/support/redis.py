"""A throwaway redis-server for tests (the query cache's L2): a free loopback port, no
persistence (--save '' --appendonly no), a temp working directory; stopped and removed after.

The binary: ``$QIS_REDIS_SERVER``, else ``redis-server`` on PATH, else the one
``scripts/setup_redis.sh`` unpacked into ``${QIS_CACHE_DIR:-$HOME/.cache/qis}/redis``. A
missing binary, or a server that does not answer PING, RAISES: the L2 must never go untested
silently.

    with start_redis() as server:
        client = redis.asyncio.Redis.from_url(server.url)
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from tests.support.local_server import LocalServer
from tests.support.ports import HOST, free_port

BIN_ENV = "QIS_REDIS_SERVER"
CACHE_DIR_ENV = "QIS_CACHE_DIR"
SETUP_SCRIPT = "scripts/setup_redis.sh"
STARTUP_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
_PORT_ATTEMPTS = 3  # a free port can be taken by someone else before redis binds it


class RedisError(RuntimeError):
    """redis-server cannot be used: missing binary, or it did not start."""


def redis_binary() -> Path:
    """The redis-server to run (see the module docstring); RedisError when there is none."""
    override = os.environ.get(BIN_ENV)
    if override:
        candidates = [Path(override)]
    else:
        on_path = shutil.which("redis-server")
        cache = os.environ.get(CACHE_DIR_ENV) or str(Path.home() / ".cache" / "qis")
        candidates = [Path(on_path)] if on_path else []
        candidates.append(Path(cache) / "redis" / "redis-server")
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise RedisError(
        f"redis-server not found ({', '.join(map(str, candidates))}): run `bash {SETUP_SCRIPT}`"
        f" (Debian's package, unpacked without root), or set {BIN_ENV}"
    )


@dataclass
class RedisServer(LocalServer):
    log_name: ClassVar[str] = "redis.log"
    stop_timeout_s: ClassVar[float] = STOP_TIMEOUT_S

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"


def _pings(port: int) -> bool:
    """A bare RESP PING (no client library: the fixture tests the server, not the client)."""
    try:
        with socket.create_connection((HOST, port), timeout=0.5) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(port: int | None = None) -> RedisServer:
    """A redis-server answering PING on a free loopback port (or `port`, to restart one)."""
    binary = redis_binary()
    failures: list[str] = []
    for _ in range(_PORT_ATTEMPTS if port is None else 1):
        chosen = port or free_port()
        root = Path(tempfile.mkdtemp(prefix="qis-redis-"))
        args = [
            str(binary),
            "--port", str(chosen),
            "--bind", HOST,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(root),
            "--logfile", str(root / "redis.log"),
            "--daemonize", "no",
        ]  # fmt: skip
        process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        server = RedisServer(chosen, process, root)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline and process.poll() is None:
            if _pings(chosen):
                return server
            time.sleep(0.05)
        failures.append(f"port {chosen}: {server.log_tail() or 'no log'}")
        server.stop()
    raise RedisError(f"redis-server ({binary}) did not answer PING:\n" + "\n".join(failures))
