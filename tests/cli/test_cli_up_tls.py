"""`qis up` with TLS: its health checks speak TLS when the services do (they were plaintext, so
TLS services never counted as started), and a server certificate without the CA to check it is
refused at once with what to set."""

from __future__ import annotations

import subprocess
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.e2e.harness import base_env, free_port
from tests.support.qis_up import BIN, qis_up
from tests.unit.security.security_support import Pki


def _serving(channel: grpc.Channel) -> bool:
    health = health_pb2_grpc.HealthStub(channel)
    try:
        reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    except grpc.RpcError:
        return False
    serving: bool = reply.status == health_pb2.HealthCheckResponse.SERVING
    return serving


def test_up_starts_services_that_listen_with_tls(tmp_path: Path) -> None:
    pki = Pki.create(tmp_path)
    tls = {
        "QIS_TLS_CERT_FILE": str(pki.server_cert),
        "QIS_TLS_KEY_FILE": str(pki.server_key),
        "QIS_TLS_CA_FILE": str(pki.ca_file),
    }
    with qis_up(tmp_path, tls) as addresses:
        credentials = grpc.ssl_channel_credentials(root_certificates=pki.ca_file.read_bytes())
        for var in ("QIS_COMMAND_ADDRESS", "QIS_QUERY_ADDRESS"):
            with grpc.secure_channel(addresses[var], credentials) as secure:
                assert _serving(secure), var
            with grpc.insecure_channel(addresses[var]) as plain:
                assert not _serving(plain), f"{var} answers in plaintext"


def test_up_refuses_a_server_certificate_without_the_ca_to_check_it(tmp_path: Path) -> None:
    pki = Pki.create(tmp_path)
    env = base_env(
        tmp_path / "data",
        {
            "QIS_TLS_CERT_FILE": str(pki.server_cert),
            "QIS_TLS_KEY_FILE": str(pki.server_key),
            "QIS_COMMAND_ADDRESS": f"127.0.0.1:{free_port()}",
            "QIS_QUERY_ADDRESS": f"127.0.0.1:{free_port()}",
            "QIS_PROJECTOR_ADDRESS": f"127.0.0.1:{free_port()}",
        },
    )
    done = subprocess.run(
        [str(BIN / "qis"), "up"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert "QIS_TLS_CA_FILE" in done.stderr
