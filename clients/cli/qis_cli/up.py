"""`qis up`: the qis processes on one machine with embedded defaults, for a first run.

Each process is started as it would be alone (its console script, configured by QIS_*
variables), so what works under `qis up` works in production, and the reverse. A process that
dies is restarted, with a growing pause if it keeps dying, while the others go on serving.
qis-feeds (providers, docs/providers.md) runs too when a feed configuration file is there.
"""

from __future__ import annotations

import fcntl
import importlib.metadata
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TextIO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from qis_runtime.auth import is_loopback

from qis_cli.connection import TLS_CA_ENV, open_channel
from qis_cli.errors import EXIT_OK, CliError

SERVER_CERT_ENV = "QIS_TLS_CERT_FILE"
FEEDS_CONFIG_ENV = "QIS_FEEDS_CONFIG"
FEEDS_CONFIG_FILE = "feeds.toml"
"""In the data directory, where qis-feeds looks when QIS_FEEDS_CONFIG is unset."""

STARTUP_TIMEOUT_S = 30.0
# Beyond the grace period a service gives in-flight calls after SIGTERM (QIS_SHUTDOWN_GRACE_S),
# before it is killed.
STOP_MARGIN_S = 5.0
_POLL_S = 0.1
_WATCH_S = 0.5
EXIT_SERVICE_FAILED = 1
LOCK_FILE = "qis-up.lock"
RESTART_FIRST_S = 1.0
RESTART_CAP_S = 30.0
STABLE_S = 60.0
"""A service that served this long before it died is restarted after RESTART_FIRST_S again."""


@dataclass(frozen=True, slots=True)
class ExtraPort:
    """Another port a service listens on besides its gRPC one, announced with it."""

    label: str
    address_env: str
    default_address: str
    """Used when the variable is unset; set but empty, the port is off (the service then opens
    none, and `qis up` announces it as off)."""


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    script: str
    """Console script, as declared in pyproject.toml."""
    address_env: str
    """The QIS_* variable the service itself reads its listening address from."""
    default_address: str
    extra_ports: tuple[ExtraPort, ...] = ()
    """Listening before the service reports SERVING on its gRPC port (health checks cover them)."""
    sends_to: tuple[ServiceSpec, ...] = ()
    """The services this one is a client of. It is told their addresses as this supervisor
    dials them for health checks, so known to work with the TLS settings: a service's own
    variable may hold a wildcard to listen on."""


FLIGHT_PORT = ExtraPort("Arrow Flight", "QIS_FLIGHT_ADDRESS", "127.0.0.1:50054")
COMMAND = ServiceSpec("qis-command", "QIS_COMMAND_ADDRESS", "127.0.0.1:50051")
QUERY = ServiceSpec("qis-query", "QIS_QUERY_ADDRESS", "127.0.0.1:50052", (FLIGHT_PORT,))

# In start order (stopped in reverse). A process that is not built yet is skipped with a note.
SERVICES: tuple[ServiceSpec, ...] = (
    COMMAND,
    ServiceSpec("qis-projector", "QIS_PROJECTOR_ADDRESS", "127.0.0.1:50053"),
    QUERY,
)
FEEDS = ServiceSpec("qis-feeds", "QIS_FEEDS_ADDRESS", "127.0.0.1:50055", sends_to=(COMMAND, QUERY))
"""Started last, only when feeds are configured: a client of the command service (and of the
query service, for its sources' configuration), it starts sending once everything serves, and
is the first stopped, sending what it received while the command service still takes it."""


METRICS_ADDRESS_ENV = "QIS_METRICS_ADDRESS"


def metrics_address(base: str, spec: ServiceSpec) -> str:
    """Each process's Prometheus endpoint when `qis up` runs with QIS_METRICS_ADDRESS=HOST:PORT:
    PORT, PORT+1, ... in the order of SERVICES, then qis-feeds (one address cannot serve them
    all). Port 0: each takes a free one, which it logs."""
    host, _, port = base.rpartition(":")
    if not port.isdigit() or int(port) == 0:
        return base
    return f"{host}:{int(port) + (*SERVICES, FEEDS).index(spec)}"


def address_of(spec: ServiceSpec | ExtraPort, env: dict[str, str]) -> str:
    """The address a port listens on: its variable, else the default. An extra port whose
    variable is set but empty is off: "" (a service's gRPC port cannot be)."""
    address = env.get(spec.address_env)
    if isinstance(spec, ExtraPort) and address == "":
        return ""
    return address or spec.default_address


def dial_address(address: str) -> tuple[str, int]:
    """Where a client on this machine reaches a listening address: a wildcard host ("0.0.0.0",
    "[::]") listens on loopback too."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise CliError(f"{address!r} is not a host:port address")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    return host, int(port)


def dial_target(address: str) -> str:
    """dial_address as a gRPC target: an IPv6 host goes in brackets, or its colons would be
    taken for the port's."""
    host, port = dial_address(address)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def feeds_config(env: dict[str, str], data_dir: Path) -> Path | None:
    """The feed configuration file qis-feeds would read (QIS_FEEDS_CONFIG, else DATA_DIR/
    feeds.toml), or None when there is none: then no feeds run. A file named by the variable
    must exist: a typo there would otherwise silently run no feeds."""
    if named := env.get(FEEDS_CONFIG_ENV):
        path = Path(named)
        if not path.is_file():
            raise CliError(f"{FEEDS_CONFIG_ENV}={named}: no such file")
        return path.resolve()
    default = data_dir / FEEDS_CONFIG_FILE
    return default if default.is_file() else None


def locate(script: str) -> Path | None:
    """The console script, if the code behind it exists. pyproject.toml declares every
    process, so the scripts are installed before their packages are written."""
    entry = next(iter(importlib.metadata.entry_points(group="console_scripts", name=script)), None)
    if entry is not None:
        try:
            if importlib.util.find_spec(entry.module) is None:
                return None
        except ModuleNotFoundError:
            return None
    beside = Path(sys.executable).parent / script
    if beside.exists():
        return beside
    found = shutil.which(script)
    return Path(found) if found else None


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class RestartBackoff:
    """The pause before restarting a service: 1 s, 2 s, 4 s ... up to 30 s while it keeps dying
    soon after each start (so a broken one does not spin), back to 1 s once it ran a minute."""

    quick_exits: int = 0

    def after_exit(self, uptime_s: float) -> float:
        if uptime_s >= STABLE_S:
            self.quick_exits = 0
        delay = min(RESTART_CAP_S, RESTART_FIRST_S * (1 << min(self.quick_exits, 16)))
        self.quick_exits += 1
        return delay


@dataclass(frozen=True, slots=True)
class _Planned:
    spec: ServiceSpec
    executable: Path
    address: str
    extra: dict[str, str]
    """The address of each extra port that is on, by its variable (an off one is absent: its
    empty variable reaches the service as it is)."""

    @property
    def addresses(self) -> list[str]:
        return [self.address, *self.extra.values()]


@dataclass
class _Child:
    plan: _Planned
    process: subprocess.Popen[bytes]
    started: float  # time.monotonic() of the latest start
    backoff: RestartBackoff = field(default_factory=RestartBackoff)
    restart_at: float | None = None  # set while it is dead and waits to be restarted


class Supervisor:
    def __init__(self, data_dir: Path, out: TextIO) -> None:
        self._env = {**os.environ, "QIS_DATA_DIR": str(data_dir)}
        self._data_dir = data_dir
        self._out = out
        self._children: list[_Child] = []
        self._stop = threading.Event()

    def request_stop(self) -> None:
        self._stop.set()

    def run(self) -> int:
        planned = self._plan(self._services())
        self._development_mode(address for plan in planned for address in plan.addresses)
        self._data_dir.mkdir(parents=True, exist_ok=True)
        with self._data_dir_lock():
            try:
                for plan in planned:
                    if not self._start(plan):
                        return EXIT_OK if self._stop.is_set() else EXIT_SERVICE_FAILED
                self._say(f"data in {self._data_dir}; Ctrl-C stops everything")
                return self._supervise()
            finally:
                self._stop_all()

    def _development_mode(self, addresses: Iterable[str]) -> None:
        """On loopback addresses with no QIS_AUTH, development mode, said out loud: a first run
        needs no tokens or certificates. Elsewhere the services refuse it themselves."""
        if self._env.get("QIS_AUTH", "dev") in ("", "dev") and all(map(is_loopback, addresses)):
            self._env["QIS_AUTH"] = "dev"
            self._say(
                "development mode: callers are whoever their x-qis-user header says (loopback"
                " only; QIS_AUTH=jwt or mtls authenticates them, see docs/security.md)"
            )
            if self._env.get("QIS_AUTHZ") == "policies":
                # The query service records its refusals through the command service as
                # itself (QIS_QUERY_USER): without this, they would be refused and only logged.
                query_user = self._env.get("QIS_QUERY_USER") or "qis-query"
                self._env.setdefault("QIS_SERVICE_PRINCIPALS", f"user:{query_user}")

    @contextmanager
    def _data_dir_lock(self) -> Iterator[None]:
        """Held while `qis up` runs. A second one on the same data would run a second projector
        into the same read model and a second scheduler on the same log. The lock goes with
        the process however it ends, and the services do not inherit it."""
        with (self._data_dir / LOCK_FILE).open("a+") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.seek(0)
                holder = lock.read().strip() or "unknown"
                raise CliError(
                    f"{self._data_dir} is in use by another `qis up` (pid {holder});"
                    " stop it first, or use another --data-dir"
                ) from None
            lock.truncate(0)
            lock.write(f"{os.getpid()}\n")
            lock.flush()
            yield

    def _services(self) -> tuple[ServiceSpec, ...]:
        config = feeds_config(self._env, self._data_dir)
        if config is None:
            self._say(
                f"feeds: none (no {self._data_dir / FEEDS_CONFIG_FILE}, and {FEEDS_CONFIG_ENV}"
                " is unset; see docs/providers.md)"
            )
            return SERVICES
        self._say(f"feeds: qis-feeds runs the feeds of {config}")
        return (*SERVICES, FEEDS)

    def _plan(self, specs: Sequence[ServiceSpec]) -> list[_Planned]:
        if self._env.get(SERVER_CERT_ENV) and not self._env.get(TLS_CA_ENV):
            # The services would listen with TLS, and a plaintext health check never passes.
            raise CliError(
                f"{SERVER_CERT_ENV} makes the services listen with TLS: set {TLS_CA_ENV} to the"
                " CA that signed it, so that `qis up` (and `qis`) can check them"
            )
        planned = []
        for spec in specs:
            executable = locate(spec.script)
            if executable is None:
                self._say(f"{spec.script:<14} not built yet, skipped")
                continue
            address = self._free_address(spec, spec.script)
            extra = {
                p.address_env: self._free_address(p, spec.script)
                for p in spec.extra_ports
                if address_of(p, self._env)
            }
            planned.append(_Planned(spec, executable, address, extra))
        if not planned:
            raise CliError("none of the qis services is installed in this environment")
        return planned

    def _free_address(self, port_of: ServiceSpec | ExtraPort, script: str) -> str:
        address = address_of(port_of, self._env)
        host, port = dial_address(address)
        if port == 0:
            raise CliError(
                f"{port_of.address_env}={address}: `qis up` needs a fixed port to tell clients"
                " where the service is"
            )
        if _listening(host, port):
            # Checked before starting: otherwise the health check below could be answered
            # by whatever already listens there (often an earlier `qis up`).
            raise CliError(f"{address} is already in use ({script}: {port_of.address_env})")
        return address

    def _start(self, plan: _Planned) -> bool:
        child = _Child(plan, self._spawn(plan), time.monotonic())
        self._children.append(child)
        return self._serving(child)

    def _restart(self, child: _Child) -> None:
        child.process = self._spawn(child.plan)
        child.started = time.monotonic()
        child.restart_at = None
        if not self._serving(child) and not self._stop.is_set() and child.process.poll() is None:
            # Up but not serving: the next round restarts it as it would a dead one.
            child.process.kill()
            child.process.wait()

    def _spawn(self, plan: _Planned) -> subprocess.Popen[bytes]:
        env = {**self._env, plan.spec.address_env: plan.address, **plan.extra}
        if base := self._env.get(METRICS_ADDRESS_ENV):
            env[METRICS_ADDRESS_ENV] = metrics_address(base, plan.spec)
        for server in plan.spec.sends_to:
            env[server.address_env] = dial_target(address_of(server, self._env))
        # Own process group: Ctrl-C in the terminal reaches only `qis up`, which then stops the
        # services one by one, newest first, instead of all of them racing.
        return subprocess.Popen([str(plan.executable)], env=env, process_group=0)

    def _serving(self, child: _Child) -> bool:
        problem = self._wait_serving(child)
        script = child.plan.spec.script
        if problem is not None:
            self._say(f"{script:<14} {problem}")
            return False
        extra = "".join(
            f", {p.label} on {child.plan.extra[p.address_env]}"
            if p.address_env in child.plan.extra
            else f", {p.label} off ({p.address_env} is empty)"
            for p in child.plan.spec.extra_ports
        )
        self._say(f"{script:<14} serving on {child.plan.address}{extra}")
        return True

    def _wait_serving(self, child: _Child) -> str | None:
        address = child.plan.address
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        # The clients' TLS settings (QIS_TLS_CA_FILE, a client certificate for mTLS): the
        # services listen as their QIS_TLS_* server settings say.
        with open_channel(dial_target(address)) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if (code := child.process.poll()) is not None:
                    return f"{_ended(code)} while starting"
                if self._stop.is_set():
                    return "start interrupted"
                try:
                    reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return None
                except grpc.RpcError:
                    pass  # not listening yet
                self._stop.wait(_POLL_S)
        return f"not SERVING on {address} after {STARTUP_TIMEOUT_S:.0f} s"

    def _supervise(self) -> int:
        """Restarts the services that die, each after its own backoff, until asked to stop."""
        while not self._stop.wait(_WATCH_S):
            for child in self._children:
                now = time.monotonic()
                if child.restart_at is None:
                    if (code := child.process.poll()) is not None:
                        delay = child.backoff.after_exit(now - child.started)
                        child.restart_at = now + delay
                        self._say(
                            f"{child.plan.spec.script:<14} {_ended(code)}; restarting in {delay:g} s"
                        )
                elif now >= child.restart_at and not self._stop.is_set():
                    self._restart(child)
        return EXIT_OK

    def _stop_all(self) -> None:
        running = [c for c in reversed(self._children) if c.process.poll() is None]
        grace = float(self._env.get("QIS_SHUTDOWN_GRACE_S") or 10.0) + STOP_MARGIN_S
        for child in running:
            child.process.terminate()
            try:
                child.process.wait(grace)
                self._say(f"{child.plan.spec.script:<14} stopped")
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()
                self._say(f"{child.plan.spec.script:<14} killed after {grace:.0f} s")
        self._children.clear()

    def _say(self, line: str) -> None:
        print(line, file=self._out, flush=True)


def _ended(returncode: int) -> str:
    if returncode < 0:
        return f"killed by {signal.Signals(-returncode).name}"
    return f"exited with code {returncode}"


def run_up(data_dir: Path, out: TextIO = sys.stdout) -> int:
    supervisor = Supervisor(data_dir.resolve(), out)
    previous: dict[
        signal.Signals, signal.Handlers | Callable[[int, FrameType | None], object] | int | None
    ] = {}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        supervisor.request_stop()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        previous[sig] = signal.signal(sig, on_signal)
    try:
        return supervisor.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
