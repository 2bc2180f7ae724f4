"""Fixtures of the end-to-end suite: real `qis-command`, `qis-projector` and `qis-query`
processes on free loopback ports and a temporary data directory.

- `cluster`: one set for the whole session (tests/conftest.py, shared with the CLI tests), for
  tests that kill or pause nothing (each test works on its own series and sources);
- `make_cluster`: a factory for a test's own set (tests that SIGSTOP, SIGKILL or SIGTERM a
  process, or need other settings), stopped at the end of the test.

When a test fails, the tail of every process's stderr is attached to its report.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Mapping
from pathlib import Path

import pytest

from tests.e2e.harness import ROLES, Cluster, MakeCluster


@pytest.fixture(scope="session")
def cluster(shared_cluster: Cluster) -> Cluster:
    return shared_cluster


_CLUSTERS_KEY = pytest.StashKey[list[Cluster]]()


@pytest.fixture
def make_cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[MakeCluster]:
    made = request.node.stash.setdefault(_CLUSTERS_KEY, [])

    def make(overrides: Mapping[str, str] | None = None, start: tuple[str, ...] = ROLES) -> Cluster:
        own = Cluster.create(tmp_path / f"cluster{len(made)}", overrides)
        made.append(own)
        own.start_all(start)
        return own

    yield make
    for own in made:
        own.stop_all()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and call.when in ("setup", "call"):
        funcargs: Mapping[str, object] = getattr(item, "funcargs", {})
        clusters = [v for v in funcargs.values() if isinstance(v, Cluster)]
        own_clusters: list[Cluster] = item.stash.get(_CLUSTERS_KEY, [])
        clusters += own_clusters
        for own in clusters:
            for title, text in own.log_tails():
                report.sections.append((f"{title} [{own.root.name}]", text))
    return report
