"""The security settings: what each combination builds, and the ones refused at start."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from qis_projector.bootstrap import health_server
from qis_projector.settings import ProjectorSettings
from qis_runtime.auth import (
    BearerAuthenticator,
    CertificateAuthenticator,
    ConfigurationError,
    ServerSecurity,
    TokenOrCertificate,
    is_loopback,
    server_security,
)
from qis_runtime.identity import DevAuthenticator, Identity, Unauthenticated
from qis_runtime.server import QisServer, ServiceBinding
from qis_runtime.settings import CommonSettings

from tests.unit.security.security_support import AUDIENCE, HMAC_SECRET, ISSUER, Pki

JWT: dict[str, Any] = {
    "jwt_issuer": ISSUER,
    "jwt_audience": AUDIENCE,
    "jwt_hmac_secret": HMAC_SECRET,
}


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki.create(tmp_path)


def tls(pki: Pki, client_ca: bool = False) -> dict[str, Any]:
    files: dict[str, Any] = {"tls_cert_file": pki.server_cert, "tls_key_file": pki.server_key}
    return {**files, "tls_client_ca_file": pki.ca_file} if client_ca else files


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1:50051", True),
        ("127.0.0.2:1", True),
        ("localhost:50051", True),
        ("[::1]:50051", True),
        ("unix:/tmp/qis.sock", True),
        ("0.0.0.0:50051", False),
        ("[::]:50051", False),
        (":50051", False),
        ("10.0.0.5:50051", False),
        ("qis.example.org:50051", False),
    ],
)
def test_loopback_addresses(address: str, loopback: bool) -> None:
    assert is_loopback(address) is loopback


def test_what_each_mode_builds(pki: Pki) -> None:
    def build(**settings: Any) -> ServerSecurity:
        return server_security(CommonSettings(**settings))

    assert build(auth="dev").development
    assert build(auth="dev").credentials is None
    assert isinstance(build(auth="jwt", **JWT).authenticator, BearerAuthenticator)
    jwt_tls = build(auth="jwt", **JWT, **tls(pki))
    assert jwt_tls.credentials is not None
    assert not jwt_tls.development
    assert isinstance(build(auth="mtls", **tls(pki, True)).authenticator, CertificateAuthenticator)
    both = build(auth="jwt, MTLS", **JWT, **tls(pki, True))
    assert isinstance(both.authenticator, TokenOrCertificate)
    assert "mTLS" in both.summary


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({}, "QIS_AUTH is not set"),  # development mode is never a default
        ({"auth": "kerberos"}, "unknown mode 'kerberos'"),
        ({"auth": "dev,jwt"}, "dev cannot be combined"),
        ({"auth": "jwt", "jwt_hmac_secret": HMAC_SECRET}, "QIS_JWT_ISSUER and QIS_JWT_AUDIENCE"),
        ({"auth": "jwt", "jwt_issuer": ISSUER, "jwt_audience": AUDIENCE}, "one of QIS_JWT_JWKS"),
        ({"auth": "jwt", **JWT, "jwt_jwks": "keys.json"}, "one of QIS_JWT_JWKS"),
        ({"auth": "jwt", **JWT, "jwt_hmac_secret": "short"}, "at least 32"),
        ({"auth": "mtls"}, "QIS_TLS_CLIENT_CA_FILE"),
        (
            {"auth": "dev", "tls_cert_file": "server.pem"},
            "both QIS_TLS_CERT_FILE and QIS_TLS_KEY_FILE",
        ),
        ({"auth": "dev", "tls_client_ca_file": "ca.pem"}, "QIS_TLS_CLIENT_CA_FILE needs"),
        (
            {"auth": "dev", "tls_cert_file": "/nonexistent.pem", "tls_key_file": "/k"},
            "QIS_TLS_CERT_FILE=",
        ),
    ],
)
def test_settings_that_do_not_fit_together_are_refused(settings: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(says)):
        server_security(CommonSettings(**settings))


def binding() -> ServiceBinding:
    return ServiceBinding("qis.test.Service", lambda servicer, server: None, object())


async def test_development_mode_is_refused_where_other_machines_reach_it() -> None:
    with pytest.raises(ConfigurationError, match=re.escape("refusing to serve 0.0.0.0:50051")):
        QisServer("0.0.0.0:50051", [binding()])
    QisServer("127.0.0.1:0", [binding()])  # loopback: allowed
    QisServer("0.0.0.0:0", [])  # health only: it trusts no one, so nothing to refuse
    jwt = server_security(CommonSettings(auth="jwt", **JWT))
    QisServer("0.0.0.0:0", [binding()], security=jwt)


async def test_the_projector_health_endpoint_serves_tls(pki: Pki) -> None:
    settings = ProjectorSettings(auth="dev", projector_address="127.0.0.1:0", **tls(pki))
    server = health_server(settings)
    port = await server.start()
    await server.mark_serving()
    try:
        credentials = grpc.ssl_channel_credentials(pki.ca_file.read_bytes())
        async with grpc.aio.secure_channel(f"localhost:{port}", credentials) as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as plain:
            with pytest.raises(grpc.aio.AioRpcError):
                await health_pb2_grpc.HealthStub(plain).Check(
                    health_pb2.HealthCheckRequest(), timeout=2
                )
    finally:
        await server.stop(0)


class Peer:
    def __init__(self, context: dict[str, list[bytes]]) -> None:
        self._context = context

    def auth_context(self) -> dict[str, list[bytes]]:
        return self._context


async def test_certificate_and_dev_authenticators() -> None:
    certificate = CertificateAuthenticator()
    assert await certificate.authenticate((), Peer({"x509_common_name": [b"svc-a"]})) == Identity(
        "svc-a"
    )
    for peer in ({}, {"x509_common_name": [b"a", b"b"]}, {"x509_common_name": [b"\xff"]}):
        with pytest.raises(Unauthenticated):
            await certificate.authenticate((), Peer(peer))
    with pytest.raises(Unauthenticated, match="missing or invalid 'x-qis-user'"):
        await DevAuthenticator().authenticate((), Peer({}))
    assert Identity("bob").roles == ()  # Identity(user_id) still builds
