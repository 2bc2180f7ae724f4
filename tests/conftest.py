"""Fixtures more than one suite uses.

- `shared_cluster`: the three real qis processes on free loopback ports, started once for the
  whole session and shared by the end-to-end and CLI tests that kill or pause nothing (each
  test works on its own series and sources): a cluster takes seconds to start on 2 cores.

Under pytest-xdist (scripts/test.sh) each worker starts its own session fixtures; the
controller writes the summary sections the workers made (tests.support.worker_summary).

Hypothesis runs without its per-example deadline (200 ms by default) in every suite: on 2 cores
shared with the end-to-end tests' processes an example's time says how busy the machine is
(seen: 1.2 s for an access-policy example that takes 20 ms alone), not whether it is right.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import settings

from tests.e2e.harness import Cluster
from tests.support.worker_summary import sections

settings.register_profile("qis-default", deadline=None)
settings.load_profile("qis-default")

_FROM_WORKERS: list[tuple[str, str]] = []


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


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: the controller's, as a worker ends
def pytest_testnodedown(node: object, error: object) -> None:
    output: dict[str, Any] = getattr(node, "workeroutput", {})
    _FROM_WORKERS.extend(sections(output))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for title, text in _FROM_WORKERS:
        terminalreporter.write_sep("=", title)
        terminalreporter.write_line(text)
