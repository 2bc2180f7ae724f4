"""Structural checks of docker-compose.yml and the Dockerfile, without a Docker engine.

They hold the deployment files to the code they deploy: every QIS_* variable is a real setting
of the process it configures, every command is a declared console script, every service is
health-checked through grpc.health.v1 (and that check is run here against a real server), the
services wait for healthy stores, access policies are enforced with an administrator named, and
the optional feeds service cannot stop a deployment that does not run it.
"""

from __future__ import annotations

import ast
import json
import re
import socket
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
import pytest
import yaml
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from kurrentdbclient.connection_spec import ConnectionSpec
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import CollectorRegistry, ProcessCollector
from pydantic_settings import BaseSettings
from qis_command.settings import CommandSettings
from qis_feeds.settings import FeedsSettings
from qis_projector.settings import ProjectorSettings
from qis_query.settings import QuerySettings
from qis_runtime.authorization import authorization
from qis_runtime.settings import CommonSettings

ROOT = Path(__file__).resolve().parents[2]

# Each qis service, the settings class of the process it runs, and the variable holding the
# address that process listens on.
QIS_SERVICES: dict[str, tuple[type[CommonSettings], str]] = {
    "qis-command": (CommandSettings, "QIS_COMMAND_ADDRESS"),
    "qis-projector": (ProjectorSettings, "QIS_PROJECTOR_ADDRESS"),
    "qis-query": (QuerySettings, "QIS_QUERY_ADDRESS"),
    "qis-feeds": (FeedsSettings, "QIS_FEEDS_ADDRESS"),
}
FEEDS = "qis-feeds"
STORE_USERS = sorted(set(QIS_SERVICES) - {FEEDS})
"""The services that read and write the stores (qis-feeds only sends to qis-command)."""
EVENT_STORE = "kurrentdb"
READ_STORE = "mongo"
STORES = (EVENT_STORE, READ_STORE)
OBSERVABILITY = "observability"
COLLECTOR, PROMETHEUS, GRAFANA = "otel-collector", "prometheus", "grafana"
OBSERVABILITY_SERVICES = (COLLECTOR, PROMETHEUS, GRAFANA)
DEPLOY = ROOT / "deploy"
# The image default of `${VAR:-default}`, or the value itself.
_DEFAULT = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*:-(?P<default>[^}]+)\}$")
# `${VAR:?message}`: Compose refuses to start while VAR is unset or empty.
_REQUIRED = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*):\?")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    with (ROOT / "docker-compose.yml").open(encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    assert isinstance(doc, dict)
    return doc


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    found = compose["services"]
    assert isinstance(found, dict)
    return found


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "use the mapping form of `environment`"
    return {str(k): str(v) for k, v in env.items()}


def setting_names(settings: type[BaseSettings]) -> set[str]:
    prefix = str(settings.model_config.get("env_prefix", ""))
    return {(prefix + name).upper() for name in settings.model_fields}


def port_of(address: str) -> int:
    host, _, port = address.rpartition(":")
    assert host, f"{address!r} is not host:port"
    return int(port)


def image_default(image: str) -> str:
    match = _DEFAULT.match(image)
    return match["default"] if match else image


def version_of(image: str) -> tuple[int, ...]:
    tag = image_default(image).rpartition(":")[2]
    match = re.match(r"v?(\d+)(?:\.(\d+))?(?:\.(\d+))?", tag)
    assert match, f"{image!r}: pin a version tag"
    return tuple(int(part) for part in match.groups() if part is not None)


def healthcheck_command(service: dict[str, Any]) -> list[str]:
    test = service["healthcheck"]["test"]
    assert isinstance(test, list), "exec form (a list) so that no shell is needed"
    assert test[0] == "CMD"
    return [str(part) for part in test[1:]]


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    total = 0.0
    for value, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration):
        total += float(value) * units[unit]
    return total


def test_the_qis_services_are_exactly_the_processes(services: dict[str, Any]) -> None:
    assert set(QIS_SERVICES) <= set(services)
    assert {name for name in services if name.startswith("qis")} == set(QIS_SERVICES)


@pytest.mark.parametrize("name", sorted(QIS_SERVICES))
def test_command_is_a_declared_console_script(services: dict[str, Any], name: str) -> None:
    with (ROOT / "pyproject.toml").open("rb") as f:
        scripts = tomllib.load(f)["project"]["scripts"]
    command = services[name]["command"]
    assert isinstance(command, list), "exec form, so the process gets SIGTERM directly"
    assert command[0] == name  # the service runs the process it is named after
    assert command[0] in scripts


@pytest.mark.parametrize("name", sorted(QIS_SERVICES))
def test_every_qis_variable_is_a_setting_of_that_process(
    services: dict[str, Any], name: str
) -> None:
    settings, _ = QIS_SERVICES[name]
    env = env_of(services[name])
    qis_vars = {key for key in env if key.startswith("QIS_")}
    assert qis_vars, "a qis service is configured by QIS_* variables"
    unknown = qis_vars - setting_names(settings)
    # pydantic-settings ignores unknown variables (extra="ignore"): a typo would pass silently.
    assert not unknown, f"{name}: not fields of {settings.__name__}: {sorted(unknown)}"


@pytest.mark.parametrize("name", STORE_USERS)
def test_the_stores_are_the_compose_services_and_not_the_embedded_defaults(
    services: dict[str, Any], name: str
) -> None:
    env = env_of(services[name])
    # Unset, a process would silently fall back to SQLite files inside its own container.
    spec = ConnectionSpec(env["QIS_EVENT_STORE_URI"])
    assert spec.scheme in ("kdb", "kurrentdb", "esdb")
    assert spec.options.tls is False  # the insecure single node serves no TLS
    assert [target.partition(":")[0] for target in spec.targets] == [EVENT_STORE]
    read = urlsplit(env["QIS_READ_STORE_URI"])
    assert read.scheme == "mongodb"
    assert read.hostname == READ_STORE


@pytest.mark.parametrize("name", STORE_USERS)
def test_waits_for_healthy_stores(services: dict[str, Any], name: str) -> None:
    depends_on = services[name]["depends_on"]
    assert isinstance(depends_on, dict), "long form, to state the condition"
    for store in STORES:
        assert depends_on[store]["condition"] == "service_healthy", f"{name} -> {store}"


def test_feeds_wait_for_a_healthy_command_service_and_send_to_it(
    services: dict[str, Any],
) -> None:
    feeds = services[FEEDS]
    assert feeds["depends_on"] == {"qis-command": {"condition": "service_healthy"}}
    command_port = port_of(env_of(services["qis-command"])["QIS_COMMAND_ADDRESS"])
    # In the feeds' environment QIS_COMMAND_ADDRESS is where they send, not where they listen.
    assert env_of(feeds)["QIS_COMMAND_ADDRESS"] == f"qis-command:{command_port}"
    assert not {"QIS_EVENT_STORE_URI", "QIS_READ_STORE_URI"} & set(env_of(feeds))


def test_feeds_run_in_their_profile_from_a_mounted_read_only_file(
    services: dict[str, Any],
) -> None:
    profiled = {
        name: service["profiles"] for name, service in services.items() if "profiles" in service
    }
    assert profiled == {
        FEEDS: ["feeds"],
        "redis": ["cache"],
        **{name: [OBSERVABILITY] for name in OBSERVABILITY_SERVICES},
    }
    config = env_of(services[FEEDS])["QIS_FEEDS_CONFIG"]
    mounts = [m for m in services[FEEDS]["volumes"] if m["target"] == config]
    assert len(mounts) == 1, f"QIS_FEEDS_CONFIG={config} is not a mounted file"
    mount = mounts[0]
    assert mount["type"] == "bind"
    assert mount["read_only"] is True
    # Else a missing feeds.toml becomes an empty directory, and the error a confusing one.
    assert mount["bind"]["create_host_path"] is False


def test_the_optional_query_cache_is_a_cache_not_a_store(services: dict[str, Any]) -> None:
    """Redis runs only in its profile, keeps nothing on disk and evicts rather than fails when
    full (a full cache refusing writes would only add errors); qis-query uses it only when
    QIS_CACHE_REDIS_URL is set, so the default deployment has no cache service to wait for."""
    command = services["redis"]["command"]
    assert command[0] == "redis-server"
    options = dict(zip(command[1::2], command[2::2], strict=True))
    assert options["--save"] == ""
    assert options["--appendonly"] == "no"
    assert options["--maxmemory-policy"] == "allkeys-lru"
    assert "redis" not in services["qis-query"].get("depends_on", {})
    assert env_of(services["qis-query"])["QIS_CACHE_REDIS_URL"] == "${QIS_CACHE_REDIS_URL:-}"


def required_variables(value: object) -> set[str]:
    """The variables a value of the compose file requires (`${VAR:?...}`), at any depth."""
    if isinstance(value, dict):
        return set().union(*(required_variables(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(required_variables(v) for v in value))
    return {m["name"] for m in _REQUIRED.finditer(str(value))}


def test_an_optional_service_requires_no_variable_of_its_own(services: dict[str, Any]) -> None:
    """Compose interpolates the whole file before it looks at profiles: a variable required by
    a service in a profile would stop `docker compose up` for everyone who does not run it."""
    default = required_variables({n: s for n, s in services.items() if "profiles" not in s})
    for name, service in services.items():
        if "profiles" in service:
            assert required_variables(service) <= default, name


def test_with_tokens_policies_are_enforced_and_their_administrators_required(
    services: dict[str, Any],
) -> None:
    env = env_of(services["qis-command"])
    assert env["QIS_AUTH"] == "jwt"
    # Deny by default needs someone who may write the first policy: Compose refuses to start
    # without one.
    assert required_variables(env["QIS_ADMINS"]) == {"QIS_ADMINS"}
    settings = CommonSettings(auth=env["QIS_AUTH"], authz=env["QIS_AUTHZ"], admins="user:alice")
    decided = authorization(settings)
    assert decided.enforced
    assert decided.admins == ("user:alice",)


@pytest.mark.parametrize("store", STORES)
def test_stores_have_healthchecks(services: dict[str, Any], store: str) -> None:
    command = healthcheck_command(services[store])
    if store == READ_STORE:
        assert command[0] == "mongosh"
        assert "ping" in " ".join(command)
    else:
        assert "/health/live" in " ".join(command)


def test_kurrentdb_is_recent_enough_for_multi_stream_appends(services: dict[str, Any]) -> None:
    kurrentdb = services[EVENT_STORE]
    assert "kurrentdb" in image_default(kurrentdb["image"])
    assert version_of(kurrentdb["image"])[:2] >= (25, 1)  # multi_append_to_stream
    env = env_of(kurrentdb)
    assert env["KURRENTDB_INSECURE"] == "true"
    assert env["KURRENTDB_CLUSTER_SIZE"] == "1"


def test_mongodb_is_a_pinned_supported_major(services: dict[str, Any]) -> None:
    image = services[READ_STORE]["image"]
    assert image_default(image).startswith("mongo:")
    assert version_of(image)[0] in (7, 8)


@pytest.mark.parametrize("name", sorted(QIS_SERVICES))
def test_listens_on_all_interfaces_and_is_health_checked_there(
    services: dict[str, Any], name: str
) -> None:
    _, address_var = QIS_SERVICES[name]
    service = services[name]
    address = env_of(service)[address_var]
    assert address.startswith("0.0.0.0:"), "reachable from outside the container"
    port = port_of(address)
    command = healthcheck_command(service)
    assert command[:2] == ["python", "-c"]
    assert command[3] == f"127.0.0.1:{port}"
    # Every published port is one the service listens on (the query service's Arrow Flight
    # endpoint is the only second one).
    listening = {
        port_of(value) for var, value in env_of(service).items() if var.endswith("_ADDRESS")
    }
    for published in service.get("ports", []):
        assert int(str(published).rpartition(":")[2]) in listening


@pytest.mark.parametrize("name", sorted(QIS_SERVICES))
def test_stop_grace_covers_the_drain(services: dict[str, Any], name: str) -> None:
    service = services[name]
    settings, _ = QIS_SERVICES[name]
    drain = float(env_of(service).get("QIS_SHUTDOWN_GRACE_S", settings().shutdown_grace_s))
    assert seconds(str(service.get("stop_grace_period", "10s"))) > drain


@pytest.fixture
def health_server() -> Iterator[tuple[str, health.HealthServicer]]:
    servicer = health.HealthServicer()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", servicer
    finally:
        server.stop(None)


def test_the_grpc_healthcheck_really_checks_serving(
    services: dict[str, Any], health_server: tuple[str, health.HealthServicer]
) -> None:
    """Runs the compose healthcheck's Python code, as the container would, against a server."""
    codes = {healthcheck_command(services[name])[2] for name in QIS_SERVICES}
    assert len(codes) == 1
    code = codes.pop()
    address, servicer = health_server

    def check(target: str) -> int:
        run = subprocess.run(
            [sys.executable, "-c", code, target], capture_output=True, timeout=30, check=False
        )
        return run.returncode

    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    assert check(address) == 0
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)  # starting or draining
    assert check(address) != 0
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        nobody = f"127.0.0.1:{s.getsockname()[1]}"
    assert check(nobody) != 0


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    joined = re.sub(r"\\\n", " ", text)  # continuation lines
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def test_dockerfile_runs_as_non_root_on_python_311_slim() -> None:
    instructions = dockerfile_instructions()
    bases = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert bases
    assert all(base.split()[0].startswith("python:3.11-slim") for base in bases)
    final_stage = instructions[
        max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM") :
    ]
    users = [rest for keyword, rest in final_stage if keyword == "USER"]
    assert users
    assert users[-1].split(":")[0] not in ("root", "0")
    assert not [rest for keyword, rest in final_stage if keyword == "ENTRYPOINT"], (
        "the process is chosen by the command (compose `command:`)"
    )


def test_dockerfile_defaults_are_settings_and_listen_on_all_interfaces() -> None:
    env: dict[str, str] = {}
    for keyword, rest in dockerfile_instructions():
        if keyword == "ENV":
            env.update(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=(\S+)", rest))
    known = set().union(*(setting_names(settings) for settings, _ in QIS_SERVICES.values()))
    qis_vars = {key for key in env if key.startswith("QIS_")}
    assert qis_vars - known == set()
    for _, address_var in QIS_SERVICES.values():
        assert env[address_var].startswith("0.0.0.0:")


# --- the observability profile: collector, Prometheus, alerts, Grafana ---------------------------

_INSTRUMENT_FACTORIES = {
    "create_counter",
    "create_up_down_counter",
    "create_histogram",
    "create_gauge",
    "create_observable_counter",
    "create_observable_up_down_counter",
    "create_observable_gauge",
}
_TIMER = "OperationTimer"  # qis_adapters.timing: a histogram in seconds, named by its caller
_PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
_PROMQL_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")


def defined_instruments() -> list[tuple[str, str, str]]:
    """(factory, name, unit) of every OpenTelemetry instrument the processes' code creates,
    read from the source: a literal name, or a module-level constant of the same module."""
    found = []
    for path in sorted([*(ROOT / "libs").rglob("*.py"), *(ROOT / "services").rglob("*.py")]):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        constants = {
            target.id: node.value.value
            for node in tree.body
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
            for target in node.targets
            if isinstance(target, ast.Name) and isinstance(node.value.value, str)
        }
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in _INSTRUMENT_FACTORIES:
                factory, name_arg, unit = called, node.args[0], ""
            elif called == _TIMER:
                factory, name_arg, unit = "create_histogram", node.args[1], "s"
            else:
                continue
            unit = next(
                (
                    str(k.value.value)
                    for k in node.keywords
                    if k.arg == "unit" and isinstance(k.value, ast.Constant)
                ),
                unit,
            )
            if isinstance(name_arg, ast.Constant):
                found.append((factory, str(name_arg.value), unit))
            elif isinstance(name_arg, ast.Name) and name_arg.id in constants:
                found.append((factory, constants[name_arg.id], unit))
            # else: a name passed through (OperationTimer's own histogram): found at its callers
    return found


@pytest.fixture(scope="module")
def exported_metrics() -> set[str]:
    """The Prometheus names the processes' endpoints serve: every instrument of the code,
    created and recorded once on a MeterProvider read by the exporter the processes use
    (qis_runtime.telemetry), so that its naming rules (units, `_total`, `_bucket`...) are the
    real ones; plus the process collector's, and Prometheus's own `up`."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    provider = MeterProvider(metric_readers=[PrometheusMetricReader(registry=registry)])
    meter = provider.get_meter("deploy-config-test")

    def one(_: CallbackOptions) -> list[Observation]:
        return [Observation(1)]

    instruments = defined_instruments()
    for factory, name, unit in instruments:
        if "observable" in factory:
            getattr(meter, factory)(name, [one], unit=unit)
            continue
        instrument = getattr(meter, factory)(name, unit=unit)
        record = getattr(instrument, "add", None) or getattr(instrument, "record", None)
        (record or instrument.set)(1)
    names = {sample.name for family in registry.collect() for sample in family.samples}
    provider.shutdown()
    # A guard against a parser that finds nothing: the metrics docs/observability.md lists.
    assert {"qis_projector_lag", "rpc_server_call_duration_seconds_bucket"} <= names
    assert len(instruments) >= 20
    return names | {"up"}


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers that are not functions (followed
    by `(`), keywords, label names (in `{...}` or `by (...)`) or durations (in `[...]`)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _PROMQL_LABEL_LISTS.sub(" ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        following = text[match.end() :].lstrip()
        if following.startswith("(") or match[0].lower() in _PROMQL_WORDS:
            continue
        if match.start() > 0 and (
            text[match.start() - 1].isdigit() or text[match.start() - 1] == "."
        ):
            continue  # an exponent or a unit: 1e3
        names.add(match[0])
    return names


def test_promql_metric_names_are_read_as_prometheus_would() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, rpc_method) (rate(a_bucket{x="y", z=~"b|c"}[5m])))'
        ' / on (process) b_total > 1e3 and up{job="qis"} == 0'
    )
    assert promql_metric_names(expr) == {"a_bucket", "b_total", "up"}


def load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def mounts_of(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> host path of a service's bind mounts (short form)."""
    found = {}
    for volume in service.get("volumes", []):
        source, target, *_ = str(volume).split(":")
        if source.startswith("./"):
            found[target] = source
    return found


def test_observability_services_run_only_in_their_profile_from_pinned_images(
    services: dict[str, Any],
) -> None:
    for name in OBSERVABILITY_SERVICES:
        service = services[name]
        assert service["profiles"] == [OBSERVABILITY], name
        version_of(service["image"])  # a version tag, not `latest`
        for published in service.get("ports", []):
            assert str(published).startswith("127.0.0.1:"), f"{name}: local only"
    assert image_default(services[COLLECTOR]["image"]).startswith(
        "otel/opentelemetry-collector-contrib:"
    )
    for name in (PROMETHEUS, GRAFANA):
        command = healthcheck_command(services[name])
        assert command[:2] == ["wget", "--quiet"]
    assert services[GRAFANA]["depends_on"] == {PROMETHEUS: {"condition": "service_healthy"}}
    # No qis service waits for them: the stack is optional.
    for name in QIS_SERVICES:
        assert not set(OBSERVABILITY_SERVICES) & set(services[name].get("depends_on", {}))


@pytest.mark.parametrize("name", sorted(QIS_SERVICES))
def test_every_qis_service_serves_metrics_and_may_send_traces_to_the_collector(
    services: dict[str, Any], name: str
) -> None:
    env = env_of(services[name])
    assert port_of(env["QIS_METRICS_ADDRESS"]) == 9464
    assert env["QIS_METRICS_ADDRESS"].startswith("0.0.0.0:")
    published = {int(str(p).rpartition(":")[2]) for p in services[name].get("ports", [])}
    assert 9464 not in published, "scraped inside the compose network only"
    endpoint = urlsplit(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert (endpoint.scheme, endpoint.hostname) == ("http", COLLECTOR)
    collector = load_yaml(DEPLOY / "otel-collector.yaml")
    grpc_endpoint = collector["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    assert endpoint.port == port_of(grpc_endpoint)
    # Off unless asked for: without the profile there is no collector to reach.
    assert env["OTEL_TRACES_EXPORTER"] == "${OTEL_TRACES_EXPORTER:-none}"


def test_the_collector_config_is_mounted_and_its_pipelines_are_complete(
    services: dict[str, Any],
) -> None:
    collector = services[COLLECTOR]
    config_path = next(
        a.partition("=")[2] for a in collector["command"] if a.startswith("--config=")
    )
    assert mounts_of(collector)[config_path] == "./deploy/otel-collector.yaml"
    config = load_yaml(DEPLOY / "otel-collector.yaml")
    pipelines = config["service"]["pipelines"]
    assert set(pipelines) == {"traces", "metrics"}
    for pipeline in pipelines.values():
        for part in ("receivers", "processors", "exporters"):
            assert pipeline[part], part
            assert set(pipeline[part]) <= set(config[part]), part
        assert pipeline["processors"][0] == "memory_limiter"  # before anything buffers
    assert "otlp" in pipelines["traces"]["receivers"]
    assert pipelines["metrics"]["exporters"] == ["prometheus"]
    assert set(config["service"]["extensions"]) <= set(config["extensions"])


def test_prometheus_scrapes_every_process_and_the_collector(services: dict[str, Any]) -> None:
    prometheus = services[PROMETHEUS]
    mounts = mounts_of(prometheus)
    config_path = next(
        a.partition("=")[2] for a in prometheus["command"] if a.startswith("--config.file=")
    )
    assert mounts[config_path] == "./deploy/prometheus.yml"
    config = load_yaml(DEPLOY / "prometheus.yml")
    for rule_file in config["rule_files"]:
        assert mounts[rule_file] == "./deploy/prometheus-alerts.yml"
    jobs = {
        job["job_name"]: [t for c in job["static_configs"] for t in c["targets"]]
        for job in config["scrape_configs"]
    }
    expected = {
        name: f"{name}:{port_of(env_of(services[name])['QIS_METRICS_ADDRESS'])}"
        for name in QIS_SERVICES
    }
    assert sorted(jobs["qis"]) == sorted(expected[name] for name in STORE_USERS)
    assert jobs[FEEDS] == [expected[FEEDS]]  # its own job: absent without its profile
    collector = load_yaml(DEPLOY / "otel-collector.yaml")
    own = collector["service"]["telemetry"]["metrics"]["readers"][0]["pull"]["exporter"]
    assert jobs["otel-collector"] == [f"{COLLECTOR}:{own['prometheus']['port']}"]
    otlp_port = port_of(collector["exporters"]["prometheus"]["endpoint"])
    assert jobs["otel-collector-otlp"] == [f"{COLLECTOR}:{otlp_port}"]


def alert_rules() -> list[dict[str, Any]]:
    doc = load_yaml(DEPLOY / "prometheus-alerts.yml")
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_alert_rules_are_complete_and_read_exported_metrics(exported_metrics: set[str]) -> None:
    rules = alert_rules()
    assert len({r["alert"] for r in rules}) == len(rules)
    for rule in rules:
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert seconds(rule["for"]) > 0
        assert rule["labels"]["severity"] in ("critical", "warning", "info")
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["description"], rule["alert"]
        names = promql_metric_names(rule["expr"])
        assert names, rule["alert"]
        assert names <= exported_metrics, f"{rule['alert']}: {sorted(names - exported_metrics)}"


def test_alert_thresholds_are_the_recommended_ones() -> None:
    """docs/operations.md, "Alerts we recommend": every row has a rule."""
    by_metric = {}
    for rule in alert_rules():
        for name in promql_metric_names(rule["expr"]):
            by_metric[name] = rule
    docs = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    lag = by_metric["qis_projector_lag"]
    assert re.search(r"qis_projector_lag\s*>\s*1000\b", lag["expr"])
    assert seconds(lag["for"]) == 5 * 60
    assert "above 1,000 positions for 5 min" in docs
    hit_rate = by_metric["qis_query_cache_hits_total"]
    assert "< 0.3" in hit_rate["expr"]
    assert seconds(hit_rate["for"]) == 3600
    assert "below 0.3 for 1 h" in docs
    assert seconds(by_metric["qis_query_cache_l2_errors_total"]["for"]) == 5 * 60
    assert seconds(by_metric["up"]["for"]) == 60
    # The component gauge: 2 NOT_SERVING, 1 DEGRADED (qis_runtime.status).
    by_name = {rule["alert"]: rule for rule in alert_rules()}
    not_serving = by_name["QisComponentNotServing"]
    assert re.fullmatch(r"qis_component_status\s*==\s*2", not_serving["expr"].strip())
    assert (seconds(not_serving["for"]), not_serving["labels"]["severity"]) == (120, "critical")
    assert "| any component NOT_SERVING | 2 min |" in docs
    degraded = by_name["QisComponentDegraded"]
    assert re.search(r"qis_component_status\{[^}]*\}\s*==\s*1$", degraded["expr"].strip())
    assert (seconds(degraded["for"]), degraded["labels"]["severity"]) == (600, "warning")
    assert "| any component DEGRADED | 10 min |" in docs
    parked = by_metric["qis_topic_parked_total"]
    assert re.search(r"increase\(qis_topic_parked_total\[15m\]\)\)\s*>\s*0$", parked["expr"])
    assert "| any new in 15 min |" in docs


def test_grafana_dashboard_panels_read_only_exported_metrics(
    services: dict[str, Any], exported_metrics: set[str]
) -> None:
    grafana = services[GRAFANA]
    mounts = mounts_of(grafana)
    assert mounts["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    dashboards_dir = "/var/lib/grafana/dashboards"
    assert mounts[dashboards_dir] == "./deploy/grafana/dashboards"
    provider = load_yaml(DEPLOY / "grafana/provisioning/dashboards/qis-data.yml")
    assert [p["options"]["path"] for p in provider["providers"]] == [dashboards_dir]
    datasources = load_yaml(DEPLOY / "grafana/provisioning/datasources/prometheus.yml")
    (datasource,) = datasources["datasources"]
    assert urlsplit(datasource["url"]).hostname == PROMETHEUS
    dashboard = json.loads((DEPLOY / "grafana/dashboards/qis-data.json").read_text("utf-8"))
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels) >= 10
    read: set[str] = set()
    for panel in panels:
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = promql_metric_names(target["expr"])
            assert names, panel["title"]
            assert names <= exported_metrics, (
                f"{panel['title']}: {sorted(names - exported_metrics)}"
            )
            read |= names
    # The figures issue 13 asks for are on it.
    for wanted in (
        "qis_points_ingested_total",
        "qis_reconciliation_points_total",
        "qis_publication_latency_seconds_bucket",
        "qis_quality_points_total",
        "rpc_server_call_duration_seconds_bucket",
        "qis_eventstore_duration_seconds_bucket",
        "qis_projector_lag",
        "qis_readstore_duration_seconds_bucket",
        "qis_query_cache_hits_total",
        "qis_subscribers",
        "qis_subscription_backlog",
        "qis_component_status",
        "qis_topic_parked_total",
    ):
        assert wanted in read, wanted
