"""The fuzz suite's hypothesis profile, its cluster of real processes, and its summary.

`QIS_FUZZ_CASES` sets the examples per RPC: 500 by default (CI), derandomized and without an
example database, so every CI run sends the same requests and writes nothing into the tree;
any other count (e.g. 10000, a long run by hand) draws fresh random examples each run and gets
a per-test timeout to match.

Derandomized is not enough for "the same requests": hypothesis also draws, now and then, a
constant from the source of every local module imported so far, and which ones a pytest-xdist
worker has imported depends on the test files it happened to run before this one. So the fuzz
tests draw from hypothesis' own constants only (`same_draws_in_every_process`).
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator, Mapping
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.internal.conjecture import providers
from hypothesis.internal.constants_ast import Constants

from tests.e2e.harness import Cluster
from tests.fuzz.fuzz_calls import LEDGER
from tests.support.worker_summary import hand_to_controller, is_worker

CI_CASES = 500
CASES = int(os.environ.get("QIS_FUZZ_CASES") or CI_CASES)
PROFILE = "qis-fuzz"
HERE = Path(__file__).parent

settings.register_profile(
    PROFILE,
    max_examples=CASES,
    # The limit that matters (5 s a call) is asserted per call; hypothesis' own deadline would
    # count the strategies' time and fail flakily on a busy machine.
    deadline=None,
    derandomize=CASES == CI_CASES,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.large_base_example,
    ],
)

# A query whose min_position is ahead of the read model waits this long before UNAVAILABLE; the
# fuzzer asks for positions far ahead on purpose, and the default wait (2 s) would spend most
# of the run waiting.
CLUSTER_SETTINGS: Mapping[str, str] = {"QIS_QUERY_MAX_WAIT_S": "0.25"}
# The scheduler measures a window as soon as it is published (not an hour after it closed).
EAGER_SCHEDULER: Mapping[str, str] = {
    "QIS_METRICS_GRACE_S": "0",
    "QIS_METRICS_QUIET_S": "0",
    "QIS_SCHEDULER_TICK_S": "0.2",
}


@pytest.fixture(autouse=True)
def same_draws_in_every_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No constants of the local modules in the draws: importing one more project module (as
    a worker that ran other test files first has) changed 415 of IngestPoints' 500 requests.
    Private hypothesis API, patched so that a rename fails here, loudly. Its cache of the
    constants each draw may pick is cleared on entry (filled with the local modules' by other
    tests of the process) and on exit (so that they get theirs back)."""
    monkeypatch.setattr(providers, "_get_local_constants", Constants)
    providers.CONSTANTS_CACHE.cache.clear()
    yield
    providers.CONSTANTS_CACHE.cache.clear()


def _running(root: Path, overrides: Mapping[str, str]) -> Iterator[Cluster]:
    own = Cluster.create(root, overrides)
    try:
        own.start_all()
        yield own
    finally:
        print(f"\ncluster {root.name} stopped: {own.stop_all()}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The three real processes, once for the module: the fuzzer works on one shared state."""
    yield from _running(tmp_path_factory.mktemp("qis-fuzz"), CLUSTER_SETTINGS)


@pytest.fixture
def eager_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A test's own processes, with a scheduler that does its time-driven work at once."""
    yield from _running(tmp_path, EAGER_SCHEDULER)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fuzz: sends generated requests to the real services")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A long run by hand outlasts the suite's per-test timeout (a call may take up to 5 s,
    most take milliseconds)."""
    if CASES == CI_CASES:
        return
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.timeout(300 + CASES // 4))


SUMMARY_TITLE = f"fuzzed calls per RPC ({CASES} examples per RPC)"


def pytest_sessionfinish(session: pytest.Session) -> None:
    if LEDGER.calls and is_worker(session.config):
        hand_to_controller(session.config, SUMMARY_TITLE, LEDGER.table())


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if LEDGER.calls and not is_worker(terminalreporter.config):
        terminalreporter.write_sep("=", SUMMARY_TITLE)
        terminalreporter.write_line(LEDGER.table())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failure report carries the end of every process's log."""
    report = yield
    funcargs: Mapping[str, object] = getattr(item, "funcargs", {}) if report.failed else {}
    for own in funcargs.values():
        if isinstance(own, Cluster):
            report.sections.extend((f"{t} [{own.root.name}]", text) for t, text in own.log_tails())
    return report
