"""End-to-end harness: the three real qis processes as subprocesses, and small client helpers.

Everything here talks to the processes the way a user or an orchestrator would: environment
variables in, gRPC (health, reflection, the v1 services) out, signals to stop, pause or kill.
The store files are read directly (read-only) only to observe the projector from outside (its
checkpoint, the log head, its write lock); the kill -9 test compares generations through the
read store's own `dump_all`.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final

import grpc
import grpc.aio
from google.protobuf import duration_pb2, timestamp_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from qis.data.v1 import (
    command_service_pb2,
    command_service_pb2_grpc,
    query_service_pb2,
    query_service_pb2_grpc,
    series_pb2,
    values_pb2,
)

from tests.support.ports import free_port as free_port  # for the tests that import it from here

COMMAND: Final = "command"
QUERY: Final = "query"
PROJECTOR: Final = "projector"
ROLES: Final = (COMMAND, QUERY, PROJECTOR)
_ADDRESS_VARS: Final = {
    COMMAND: "QIS_COMMAND_ADDRESS",
    QUERY: "QIS_QUERY_ADDRESS",
    PROJECTOR: "QIS_PROJECTOR_ADDRESS",
}
BIN: Final = Path(sys.executable).parent
START_TIMEOUT_S: Final = 30.0
STOP_TIMEOUT_S: Final = 15.0
_MAX_MESSAGE: Final = 64 * 1024 * 1024
CHANNEL_OPTIONS: Final = [
    ("grpc.max_receive_message_length", _MAX_MESSAGE),
    ("grpc.max_send_message_length", _MAX_MESSAGE),
    # A fresh channel gets fresh connections: after a test restarts a process, a new channel
    # must not inherit the reconnect backoff of a shared subchannel to the dead one.
    ("grpc.use_local_subchannel_pool", 1),
]

Metadata = tuple[tuple[str, str], ...]


def as_user(name: str) -> Metadata:
    """Call metadata carrying the caller's identity (development mode)."""
    return (("x-qis-user", name),)


def unique(prefix: str) -> str:
    """An id no other test uses: every test works on its own series and sources."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def base_env(data_dir: Path, overrides: Mapping[str, str]) -> dict[str, str]:
    """The whole environment of a process, built explicitly: nothing QIS_* leaks in from the
    shell that runs the tests."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QIS_")}
    env.update(
        {
            "QIS_DATA_DIR": str(data_dir),
            "QIS_AUTH": "dev",
            "QIS_FLIGHT_ADDRESS": f"127.0.0.1:{free_port()}",
            "QIS_LOG_LEVEL": "INFO",
            "QIS_SHUTDOWN_GRACE_S": "5",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(overrides)
    return env


@dataclass
class Process:
    role: str
    name: str
    address: str
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def pid(self) -> int:
        if self.popen is None:
            raise RuntimeError(f"{self.name} is not running")
        return self.popen.pid

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


@dataclass
class Cluster:
    """A data directory and the processes working on it. Not thread-safe; one test at a time."""

    root: Path
    env: dict[str, str]
    processes: dict[str, Process] = field(default_factory=dict)

    @classmethod
    def create(cls, root: Path, overrides: Mapping[str, str] | None = None) -> Cluster:
        data_dir = root / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        (root / "logs").mkdir(exist_ok=True)
        addresses = {role: f"127.0.0.1:{free_port()}" for role in ROLES}
        env = base_env(data_dir, {_ADDRESS_VARS[r]: a for r, a in addresses.items()})
        env.update(overrides or {})
        cluster = cls(root, env)
        for role in ROLES:
            cluster.processes[role] = Process(
                role, role, env[_ADDRESS_VARS[role]], root / "logs" / f"{role}.log"
            )
        return cluster

    # --- locations ----------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return Path(self.env["QIS_DATA_DIR"])

    @property
    def read_db(self) -> Path:
        return self.data_dir / "read.db"

    @property
    def events_db(self) -> Path:
        return self.data_dir / "events.db"

    def address(self, name: str) -> str:
        return self.processes[name].address

    def pid(self, name: str) -> int:
        return self.processes[name].pid

    # --- lifecycle ----------------------------------------------------------------------------

    def add_instance(self, name: str, role: str) -> Process:
        """Another instance of a stateless service (e.g. a second command service)."""
        process = Process(
            role, name, f"127.0.0.1:{free_port()}", self.root / "logs" / f"{name}.log"
        )
        self.processes[name] = process
        return process

    def start(self, name: str, *, wait: bool = True) -> Process:
        process = self.processes[name]
        if process.running():
            raise RuntimeError(f"{name} is already running")
        env = dict(self.env)
        env[_ADDRESS_VARS[process.role]] = process.address
        process.starts += 1
        log: IO[bytes]
        with process.log_path.open("ab") as log:
            log.write(f"=== start #{process.starts} of {name} ===\n".encode())
            log.flush()
            process.popen = subprocess.Popen(
                [str(BIN / f"qis-{process.role}")],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=self.root,
            )
        if wait:
            self.wait_serving(name)
        return process

    def start_all(self, names: Iterable[str] = ROLES) -> None:
        names = list(names)
        for name in names:
            self.start(name, wait=False)
        for name in names:
            self.wait_serving(name)

    def wait_serving(self, name: str, service: str = "", timeout: float = START_TIMEOUT_S) -> None:
        """Polls grpc.health.v1 until SERVING; fails early, with the log, if the process died."""
        process = self.processes[name]
        deadline = time.monotonic() + timeout
        last = "no answer"
        with grpc.insecure_channel(process.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if process.popen is None or process.popen.poll() is not None:
                    code = None if process.popen is None else process.popen.returncode
                    raise RuntimeError(
                        f"{name} exited with {code} before serving:\n{self.log_tail(name)}"
                    )
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                    last = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
                except grpc.RpcError as error:
                    last = str(error.code())
                time.sleep(0.05)
        raise TimeoutError(f"{name} not SERVING after {timeout} s ({last}):\n{self.log_tail(name)}")

    def signal(self, name: str, sig: signal.Signals) -> None:
        os.kill(self.pid(name), sig)

    def pause(self, name: str) -> None:
        self.signal(name, signal.SIGSTOP)

    def resume(self, name: str) -> None:
        self.signal(name, signal.SIGCONT)

    def kill(self, name: str) -> int:
        """kill -9 and reap."""
        process = self.processes[name]
        assert process.popen is not None
        process.popen.send_signal(signal.SIGKILL)
        return process.popen.wait(timeout=STOP_TIMEOUT_S)

    def stop(self, name: str, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM (after SIGCONT, in case it is paused), wait, then SIGKILL. Returns the exit
        code, None if it was not running."""
        process = self.processes[name]
        popen = process.popen
        if popen is None:
            return None
        if popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                popen.send_signal(signal.SIGCONT)
                popen.send_signal(signal.SIGTERM)
            try:
                popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait(timeout=timeout)
        return popen.returncode

    def stop_all(self) -> dict[str, int | None]:
        return {name: self.stop(name) for name in reversed(list(self.processes))}

    def run_tool(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """A one-shot command (e.g. `qis-projector rebuild`) with the cluster's environment."""
        return subprocess.run(
            [str(BIN / args[0]), *args[1:]],
            env=self.env,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    # --- diagnostics --------------------------------------------------------------------------

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.processes[name].log_path
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def log_tails(self, lines: int = 40) -> list[tuple[str, str]]:
        return [(f"{name} stderr (tail)", self.log_tail(name, lines)) for name in self.processes]

    def rss_kib(self, name: str) -> int:
        """Resident set size of a running process, from /proc/PID/status."""
        status = Path(f"/proc/{self.pid(name)}/status").read_text()
        match = re.search(r"^VmRSS:\s+(\d+)\s+kB", status, re.MULTILINE)
        assert match is not None, status
        return int(match.group(1))

    # --- clients ------------------------------------------------------------------------------

    def channel(self, name: str) -> grpc.aio.Channel:
        """A fresh grpc.aio channel (bound to the running event loop; use `async with`)."""
        return grpc.aio.insecure_channel(self.address(name), options=CHANNEL_OPTIONS)

    @contextlib.asynccontextmanager
    async def clients(self, command: str = COMMAND, query: str = QUERY) -> AsyncIterator[Clients]:
        async with self.channel(command) as cch, self.channel(query) as qch:
            yield Clients(
                command_service_pb2_grpc.CommandServiceStub(cch),
                query_service_pb2_grpc.QueryServiceStub(qch),
            )


MakeCluster = Callable[..., Cluster]
"""The `make_cluster` fixture: (overrides=None, start=ROLES) -> a started Cluster of the test's own."""


@dataclass(frozen=True)
class Clients:
    command: command_service_pb2_grpc.CommandServiceAsyncStub
    query: query_service_pb2_grpc.QueryServiceAsyncStub


# --- building requests ------------------------------------------------------------------------

US = 1_000_000
DAY_US = 86_400 * US


def rfc3339(us: int) -> str:
    """RFC 3339 with 'Z' at microsecond precision (e.g. a time in an AIP-160 filter)."""
    seconds, micros = divmod(us, US)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{micros:06d}Z"


def micros(ts: timestamp_pb2.Timestamp) -> int:
    return ts.seconds * US + ts.nanos // 1000


def timestamp(us: int) -> timestamp_pb2.Timestamp:
    seconds, rest = divmod(us, US)
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=rest * 1000)


def offset(seconds: int) -> duration_pb2.Duration:
    """A UTC offset (DataPoint.utc_offset), e.g. -18_000 for New York in winter."""
    return duration_pb2.Duration(seconds=seconds)


def price(value: str) -> values_pb2.DataValue:
    return values_pb2.DataValue(price=values_pb2.Price(value=value))


def point(
    us: int, value: values_pb2.DataValue, utc_offset_s: int | None = None
) -> values_pb2.DataPoint:
    """A point at `us` (UTC µs); `utc_offset_s`: the offset its source states (unset: UTC)."""
    made = values_pb2.DataPoint(snap_time=timestamp(us), value=value)
    if utc_offset_s is not None:
        made.utc_offset.CopyFrom(offset(utc_offset_s))
    return made


def points(
    items: Iterable[tuple[int, str]], utc_offset_s: int | None = None
) -> list[values_pb2.DataPoint]:
    return [point(us, price(v), utc_offset_s) for us, v in items]


def ingest_request(
    command_id: str,
    series_id: str,
    source_id: str,
    items: Iterable[tuple[int, str]],
    utc_offset_s: int | None = None,
) -> command_service_pb2.IngestPointsRequest:
    return command_service_pb2.IngestPointsRequest(
        command_id=command_id,
        series=f"series/{series_id}",
        source=f"sources/{source_id}",
        points=points(items, utc_offset_s),
    )


def price_series(
    sources: Sequence[tuple[str, int]],
    frequency: series_pb2.Frequency.ValueType = series_pb2.FREQUENCY_DAILY,
    *,
    on_break: series_pb2.BreakAction.ValueType = series_pb2.BREAK_ACTION_FLAG,
    mode: series_pb2.PublicationMode.ValueType = series_pb2.PUBLICATION_MODE_AUTOMATIC,
    require_positive: bool = False,
) -> series_pb2.Series:
    return series_pb2.Series(
        data_type=values_pb2.DATA_TYPE_PRICE,
        frequency=frequency,
        unit="USD",
        sources=[series_pb2.SeriesSource(source=f"sources/{s}", priority=p) for s, p in sources],
        validation=series_pb2.ValidationRules(require_positive=require_positive),
        reconciliation=series_pb2.ReconciliationPolicy(
            method=series_pb2.RECONCILIATION_METHOD_PRIORITY,
            tolerance_bps="1",
            on_break=on_break,
        ),
        publication=series_pb2.PublicationPolicy(mode=mode, min_sources=1),
    )


async def setup_series(
    c: Clients,
    series_id: str,
    series: series_pb2.Series,
    user: str = "admin",
    *,
    register_sources: bool = True,
) -> int:
    """Registers the series' sources (unless told not to) and defines it; returns the last
    commit position."""
    md = as_user(user)
    for source in series.sources if register_sources else ():
        await c.command.RegisterDataSource(
            command_service_pb2.RegisterDataSourceRequest(
                command_id=unique("reg"),
                source_id=source.source.removeprefix("sources/"),
                source=series_pb2.DataSource(provider="synthetic"),
            ),
            metadata=md,
        )
    reply = await c.command.DefineSeries(
        command_service_pb2.DefineSeriesRequest(
            command_id=unique("def"), series_id=series_id, series=series
        ),
        metadata=md,
    )
    return reply.commit_position


async def query_all(
    c: Clients,
    series_id: str,
    *,
    user: str = "reader",
    min_position: int = 0,
    as_of_us: int | None = None,
    as_of_position: int | None = None,
    page_size: int = 0,
) -> list[query_service_pb2.OfficialValue]:
    request = query_service_pb2.QueryRangeRequest(
        series=f"series/{series_id}", min_position=min_position, page_size=page_size
    )
    if as_of_us is not None:
        request.as_of_time.CopyFrom(timestamp(as_of_us))
    if as_of_position is not None:
        request.as_of_position = as_of_position
    out: list[query_service_pb2.OfficialValue] = []
    while True:  # a call streams a bounded number of points: continue with its token
        token = ""
        async for reply in c.query.QueryRange(request, metadata=as_user(user)):
            out.extend(reply.values)
            token = reply.next_page_token
        if not token:
            return out
        request.page_token = token


MAX_PAGES: Final = 10_000
"""A listing that needs more pages than this is not doing bounded work per call."""


async def point_history(
    c: Clients,
    series_id: str,
    snap_us: int,
    *,
    min_position: int = 0,
    page_size: int = 0,
    user: str = "reader",
) -> tuple[query_service_pb2.GetPointHistoryResponse, int]:
    """Every page of a point's history merged into one answer (pages come in commit order,
    so the versions stay ascending by version and the observations by position), and how
    many pages it took. The merged read_position is the last page's."""
    request = query_service_pb2.GetPointHistoryRequest(
        series=f"series/{series_id}",
        snap_time=timestamp(snap_us),
        min_position=min_position,
        page_size=page_size,
    )
    merged = query_service_pb2.GetPointHistoryResponse()
    for pages in range(1, MAX_PAGES + 1):
        page = await c.query.GetPointHistory(request, metadata=as_user(user))
        merged.versions.extend(page.versions)
        merged.observations.extend(page.observations)
        merged.read_position = page.read_position
        if not page.next_page_token:
            return merged, pages
        request.page_token = page.next_page_token
    raise AssertionError(f"history of {series_id} at {snap_us} not read in {MAX_PAGES} pages")


async def list_issues(
    c: Clients,
    parent: str,
    filter_: str = "",
    *,
    min_position: int = 0,
    page_size: int = 1_000,
    user: str = "reader",
) -> list[query_service_pb2.QualityIssue]:
    """Every quality issue of `parent` ("series/{id}" or "series/-") the AIP-160 `filter_`
    selects (empty: every status), page by page until the token is empty (a page may hold
    fewer issues than asked, even none, while more follow)."""
    request = query_service_pb2.ListQualityIssuesRequest(
        parent=parent, filter=filter_, page_size=page_size, min_position=min_position
    )
    out: list[query_service_pb2.QualityIssue] = []
    for _ in range(MAX_PAGES):
        page = await c.query.ListQualityIssues(request, metadata=as_user(user))
        out.extend(page.issues)
        if not page.next_page_token:
            return out
        request.page_token = page.next_page_token
    raise AssertionError(f"issues of {parent} ({filter_!r}) not listed in {MAX_PAGES} pages")


async def list_audit(
    c: Clients,
    parent: str,
    filter_: str = "",
    *,
    min_position: int = 0,
    page_size: int = 1_000,
    user: str = "auditor",
) -> list[query_service_pb2.AuditEntry]:
    """Every audit entry of `parent` ("series/{id}", "sources/{id}" or "-") the AIP-160
    `filter_` selects, page by page until the token is empty."""
    request = query_service_pb2.ListAuditEntriesRequest(
        parent=parent, filter=filter_, page_size=page_size, min_position=min_position
    )
    out: list[query_service_pb2.AuditEntry] = []
    for _ in range(MAX_PAGES):
        page = await c.query.ListAuditEntries(request, metadata=as_user(user))
        out.extend(page.entries)
        if not page.next_page_token:
            return out
        request.page_token = page.next_page_token
    raise AssertionError(f"audit of {parent} ({filter_!r}) not listed in {MAX_PAGES} pages")


def chunked(items: Sequence[tuple[int, str]], size: int) -> Iterator[Sequence[tuple[int, str]]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


async def bulk_ingest(
    c: Clients,
    series_id: str,
    source_id: str,
    items: Sequence[tuple[int, str]],
    *,
    chunk: int = 1_000,
    user: str = "loader",
    prefix: str | None = None,
) -> list[command_service_pb2.BulkIngestResponse]:
    """Streams `items` through BulkIngest in chunks; returns the acknowledgements in order."""
    prefix = prefix or unique("bulk")

    async def requests() -> AsyncIterator[command_service_pb2.IngestPointsRequest]:
        for i, part in enumerate(chunked(items, chunk)):
            yield ingest_request(f"{prefix}-{i}", series_id, source_id, part)

    acks: list[command_service_pb2.BulkIngestResponse] = []
    async for ack in c.command.BulkIngest(requests(), metadata=as_user(user)):
        acks.append(ack)
    return acks


# --- reading the read store's files directly (kill -9 test only) -------------------------------


def read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)


def generation_checkpoint(path: Path, generation: str) -> int | None:
    """The checkpoint of a generation, read without the read store (and without writing)."""
    if not path.exists():
        return None
    with contextlib.closing(read_only(path)) as conn:
        try:
            row = conn.execute(
                "SELECT value FROM meta WHERE key = ?", (f"generation:{generation}",)
            ).fetchone()
        except sqlite3.OperationalError:
            return None
    return None if row is None or row[0] is None else int(row[0])


def head_position(path: Path) -> int:
    with contextlib.closing(read_only(path)) as conn:
        (head,) = conn.execute("SELECT coalesce(max(position), 0) FROM events").fetchone()
    return int(head)


def count_events(path: Path, event_type: str) -> int:
    with contextlib.closing(read_only(path)) as conn:
        (count,) = conn.execute(
            "SELECT count(*) FROM events WHERE type = ?", (event_type,)
        ).fetchone()
    return int(count)


_POSITION_COLUMNS: Final = {
    "versions": "position_from",
    "current": "position_from",
    "observations": "position",
    "audit": "position",
    "changes": "position",
    "issues": "position",
    "series": "position",
}


def rows_beyond(path: Path, generation: str, position: int) -> int:
    """Read-model rows written by events after `position` (a write the checkpoint does not
    cover yet)."""
    with contextlib.closing(read_only(path)) as conn:
        return sum(
            int(
                conn.execute(
                    f"SELECT count(*) FROM {generation}_{table} WHERE {column} > ?", (position,)
                ).fetchone()[0]
            )
            for table, column in _POSITION_COLUMNS.items()
        )


def holds_sqlite_write_lock(pid: int, db: Path) -> bool:
    """True when `pid` holds the WAL write lock of `db`: it is inside a write transaction.

    SQLite's WAL locks are POSIX byte-range locks on the -shm file; the writer lock is byte 120
    (WAL_WRITE_LOCK). /proc/locks lists them by pid and inode.
    """
    shm = Path(f"{db}-shm")
    if not shm.exists():
        return False
    inode = shm.stat().st_ino
    for line in Path("/proc/locks").read_text().splitlines():
        # e.g. "1: POSIX  ADVISORY  WRITE 1234 08:01:5678 120 120"
        parts = line.split()
        if len(parts) < 8 or parts[1] != "POSIX" or parts[3] != "WRITE":
            continue
        try:
            owner = int(parts[4])
            lock_inode = int(parts[5].rsplit(":", 1)[1])
            start = int(parts[6])
            end = int(parts[7]) if parts[7] != "EOF" else 1 << 62
        except ValueError:
            continue
        if owner == pid and lock_inode == inode and start <= 120 <= end:
            return True
    return False
