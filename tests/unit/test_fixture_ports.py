"""The loopback ports the test fixtures give the servers they start (tests.support.ports): each
pytest-xdist worker has its own block, below the kernel's ephemeral range, and a port is handed
out only while nothing is bound to it, and not again until the others have been."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from tests.support.ports import END, FIRST, HOST, PortWalk, free_port, worker_block

EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")


@pytest.mark.parametrize("workers", [1, 2, 3, 8])
def test_the_workers_blocks_are_disjoint_and_inside_the_range(workers: int) -> None:
    blocks = [worker_block(f"gw{i}", str(workers)) for i in range(workers)]
    ports = [port for block in blocks for port in block]
    assert len(ports) == len(set(ports))
    assert all(len(block) == (END - FIRST) // workers for block in blocks)
    assert min(ports) >= FIRST
    assert max(ports) < END


def test_serially_the_whole_range_is_used() -> None:
    assert worker_block(None, None) == range(FIRST, END)


@pytest.mark.skipif(not EPHEMERAL.exists(), reason="not Linux")
def test_the_range_lies_below_the_ephemeral_ports() -> None:
    low, high = (int(n) for n in EPHEMERAL.read_text().split())
    assert low >= END or high < FIRST, f"ephemeral ports {low}-{high} overlap {FIRST}-{END}"


def test_free_ports_are_of_this_workers_block_and_all_different() -> None:
    block = worker_block(
        os.environ.get("PYTEST_XDIST_WORKER"), os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    )
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert all(port in block for port in ports)


def test_a_walk_passes_over_bound_ports_and_goes_round() -> None:
    a, b, c = free_port(), free_port(), free_port()
    walk = PortWalk([a, b, c], start=0)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind((HOST, a))
        held.listen()
        assert [walk.take() for _ in range(3)] == [b, c, b]
    assert [walk.take() for _ in range(2)] == [c, a]


def test_a_walk_with_every_port_bound_says_so() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind((HOST, free_port()))
        with pytest.raises(OSError, match="no free port"):
            PortWalk([held.getsockname()[1]], start=0).take()
