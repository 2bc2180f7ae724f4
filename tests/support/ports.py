"""Loopback ports for the servers the tests start in other processes (the qis services, `qis up`,
FerretDB, redis-server, provider stubs), which are told their port before they bind it.

Binding port 0 to find one free gives a port of the kernel's ephemeral range (32768-60999 on
Linux, 49152-65535 on macOS), which the kernel may hand out again before our server binds it:
to the other pytest-xdist worker's probe, or as the local end of any outgoing connection. A
server that then fails to bind is the lucky case; a readiness probe answered by the other
worker's server on that port is the silent one. So the ports come from below the ephemeral
range, from a block of its own for each xdist worker (PYTEST_XDIST_WORKER gwN of
PYTEST_XDIST_WORKER_COUNT; the whole range when serial), taken in turn from a random start
(another test run on the same machine, e.g. another clone, most likely starts elsewhere in the
block), each checked free by binding it. Servers that pick their own port (port 0) need none.
"""

from __future__ import annotations

import os
import random
import socket
import threading
from collections.abc import Sequence
from typing import Final

HOST: Final = "127.0.0.1"
FIRST: Final = 20_000
END: Final = 32_000  # below the ephemeral ranges


def worker_block(worker: str | None, count: str | None) -> range:
    """The ports of one xdist worker ("gw1" of "2"); all of them outside xdist."""
    if not worker:
        return range(FIRST, END)
    index, workers = int(worker.removeprefix("gw")), int(count or "1")
    size = (END - FIRST) // workers
    return range(FIRST + index * size, FIRST + (index + 1) * size)


def _is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


class PortWalk:
    """The ports round and round from `start`: a process gets a port again only once it has had
    all the others; a port something is bound to is passed over."""

    def __init__(self, ports: Sequence[int], start: int) -> None:
        self._ports = ports
        self._next = start
        self._lock = threading.Lock()  # fixtures may start servers from threads

    def take(self) -> int:
        with self._lock:
            for _ in range(len(self._ports)):
                port = self._ports[self._next]
                self._next = (self._next + 1) % len(self._ports)
                if _is_free(port):
                    return port
        raise OSError(f"no free port among {len(self._ports)} from {self._ports[0]}")


_BLOCK: Final = worker_block(
    os.environ.get("PYTEST_XDIST_WORKER"), os.environ.get("PYTEST_XDIST_WORKER_COUNT")
)
_WALK: Final = PortWalk(_BLOCK, random.randrange(len(_BLOCK)))


def free_port() -> int:
    """A loopback port of this worker's block that nothing is bound to now."""
    return _WALK.take()
