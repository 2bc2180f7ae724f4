"""The CLI's side: a bearer token from QIS_TOKEN, TLS from QIS_TLS_*, and `qis up` saying it
runs in development mode."""

from __future__ import annotations

import asyncio
import io
import re
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from qis_cli.connection import connected_channel, identity
from qis_cli.errors import CliError
from qis_cli.up import Supervisor
from qis_runtime.auth import server_security
from qis_runtime.server import QisServer
from qis_runtime.settings import CommonSettings

from tests.unit.security.security_support import Pki


def test_a_token_replaces_the_development_header(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QIS_TOKEN", raising=False)
    assert identity("alice") == (("x-qis-user", "alice"),)
    assert identity("alice", token="t0k") == (("authorization", "Bearer t0k"),)
    monkeypatch.setenv("QIS_TOKEN", "env-token")
    assert identity("alice") == (("authorization", "Bearer env-token"),)


def health_of(address: str) -> int:
    with connected_channel(address, "test", timeout_s=3) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=3
        )
        status: int = reply.status
        return status


async def test_the_cli_connects_over_mtls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pki = Pki.create(tmp_path)
    settings = CommonSettings(
        tls_cert_file=pki.server_cert,
        tls_key_file=pki.server_key,
        tls_client_ca_file=pki.ca_file,
        auth="mtls",
    )
    server = QisServer("127.0.0.1:0", [], security=server_security(settings))
    port = await server.start()
    await server.mark_serving()
    try:
        monkeypatch.setenv("QIS_TLS_CA_FILE", str(pki.ca_file))
        # The CLI blocks: it runs in a thread while this loop serves.
        with pytest.raises(CliError, match="cannot reach"):  # no client certificate
            await asyncio.to_thread(health_of, f"localhost:{port}")
        monkeypatch.setenv("QIS_TLS_CLIENT_CERT_FILE", str(pki.client_cert))
        monkeypatch.setenv("QIS_TLS_CLIENT_KEY_FILE", str(pki.client_key))
        serving = health_pb2.HealthCheckResponse.SERVING
        assert await asyncio.to_thread(health_of, f"localhost:{port}") == serving
    finally:
        await server.stop(0)


def test_half_a_client_certificate_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QIS_TLS_CA_FILE", str(tmp_path / "missing.pem"))
    monkeypatch.setenv("QIS_TLS_CLIENT_CERT_FILE", "client.pem")
    monkeypatch.delenv("QIS_TLS_CLIENT_KEY_FILE", raising=False)
    with pytest.raises(CliError, match="both"), connected_channel("localhost:1", "test"):
        pass
    monkeypatch.delenv("QIS_TLS_CLIENT_CERT_FILE")
    with (
        pytest.raises(CliError, match=re.escape("missing.pem")),
        connected_channel("localhost:1", "test"),
    ):
        pass


@pytest.mark.parametrize(
    ("auth", "addresses", "development"),
    [
        (None, ["127.0.0.1:1", "localhost:2"], True),
        ("dev", ["127.0.0.1:1"], True),
        (None, ["0.0.0.0:1"], False),
        ("jwt", ["127.0.0.1:1"], False),
    ],
)
def test_qis_up_says_when_it_runs_in_development_mode(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    auth: str | None,
    addresses: list[str],
    development: bool,
) -> None:
    if auth is None:
        monkeypatch.delenv("QIS_AUTH", raising=False)
    else:
        monkeypatch.setenv("QIS_AUTH", auth)
    out = io.StringIO()
    supervisor = Supervisor(tmp_path, out)
    supervisor._development_mode(addresses)
    assert ("development mode" in out.getvalue()) is development
    assert (supervisor._env.get("QIS_AUTH") == "dev") is development
