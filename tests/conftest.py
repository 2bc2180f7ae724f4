"""Fixtures more than one suite uses.

- `shared_cluster`: the three real qis processes on free loopback ports, started once for the
  whole session and shared by the end-to-end and CLI tests that kill or pause nothing (each
  test works on its own series and sources): a cluster takes seconds to start on 2 cores.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.harness import Cluster


@pytest.fixture(scope="session")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    shared = Cluster.create(
        tmp_path_factory.mktemp("qis-shared"),
        {"QIS_QUERY_MAX_WAIT_S": "5", "QIS_SUBSCRIBE_POLL_S": "0.02"},
    )
    try:
        shared.start_all()
        yield shared
    finally:
        codes = shared.stop_all()
        print(f"\nshared cluster stopped: {codes}")
