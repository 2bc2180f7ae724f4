"""Authentication through the real server: the command service built by its composition root
from QIS_* settings, over TLS, with the IdentityInterceptor and the error policy."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from qis.data.v1 import command_service_pb2 as pb
from qis.data.v1 import command_service_pb2_grpc as pb_grpc
from qis.data.v1 import series_pb2
from qis_adapters.eventstore.sqlite import SqliteEventStore
from qis_command.bootstrap import build
from qis_command.settings import CommandSettings
from qis_runtime.auth import ConfigurationError

from tests.unit.security.security_support import (
    AUDIENCE,
    HMAC_SECRET,
    ISSUER,
    Pki,
    SigningKey,
    hmac_token,
    jwks,
)

Metadata = tuple[tuple[str, str], ...]


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki.create(tmp_path, client_cn="svc-pricer")


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey("k1")


def bearer(token: str) -> Metadata:
    return (("authorization", f"Bearer {token}"),)


class Service:
    def __init__(self, stub: pb_grpc.CommandServiceAsyncStub, store: SqliteEventStore) -> None:
        self.stub = stub
        self.store = store

    async def register(self, source: str, metadata: Metadata) -> None:
        await self.stub.RegisterDataSource(
            pb.RegisterDataSourceRequest(
                command_id=f"reg-{source}",
                source_id=source,
                source=series_pb2.DataSource(provider="bloomberg"),
            ),
            metadata=metadata,
        )

    async def user_of(self, source: str) -> str:
        [event] = await self.store.read_stream(f"sources/{source}")
        user: str = json.loads(event.metadata)["user_id"]
        return user

    async def refused(self, metadata: Any) -> grpc.aio.AioRpcError:
        head = await self.store.head_position()
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await self.register("refused", metadata)
        assert await self.store.head_position() == head  # nothing stored
        return error.value


@asynccontextmanager
async def serving(
    tmp_path: Path, pki: Pki, client_cert: bool = False, **settings: Any
) -> AsyncIterator[Service]:
    store = await SqliteEventStore.open(tmp_path / "events.db")
    config = CommandSettings(
        command_address="127.0.0.1:0",
        scheduler_enabled=False,
        tls_cert_file=pki.server_cert,
        tls_key_file=pki.server_key,
        # Authentication is what these tests are about: every authenticated caller may act
        # (test_authz_command_matrix.py tests the policies).
        **{"authz": "open", **settings},
    )
    app = await build(config, store=store)
    port = await app.server.start()
    await app.server.mark_serving()
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki.ca_file.read_bytes(),
        private_key=pki.client_key.read_bytes() if client_cert else None,
        certificate_chain=pki.client_cert.read_bytes() if client_cert else None,
    )
    try:
        async with grpc.aio.secure_channel(f"localhost:{port}", credentials) as channel:
            yield Service(pb_grpc.CommandServiceStub(channel), store)
    finally:
        await app.server.stop(0)
        await app.close()


def jwt_settings(tmp_path: Path, *keys: SigningKey) -> dict[str, Any]:
    (tmp_path / "jwks.json").write_bytes(jwks(*keys))
    return {
        "auth": "jwt",
        "jwt_jwks": str(tmp_path / "jwks.json"),
        "jwt_issuer": ISSUER,
        "jwt_audience": AUDIENCE,
    }


def assert_unauthenticated(error: grpc.aio.AioRpcError, says: str) -> None:
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED, error.details()
    assert says in (error.details() or "")
    status = rpc_status.from_call(error)
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert (info.reason, info.domain) == ("UNAUTHENTICATED", "qis.data")


async def test_a_jwt_over_tls_is_the_caller_of_the_stored_command(
    tmp_path: Path, pki: Pki, key: SigningKey
) -> None:
    async with serving(tmp_path, pki, **jwt_settings(tmp_path, key)) as service:
        await service.register("bbg", bearer(key.token(sub="alice@corp")))
        assert await service.user_of("bbg") == "alice@corp"


@pytest.mark.parametrize(
    ("metadata", "says"),
    [
        (lambda key: (), "missing 'authorization: Bearer <token>'"),
        (lambda key: (("x-qis-user", "alice"),), "missing 'authorization"),
        (lambda key: bearer(key.token(aud="other")), "'aud'"),
        (lambda key: bearer(SigningKey("k1").token()), "signature does not verify"),
        (lambda key: bearer(key.token(exp=1)), "expired"),
    ],
    ids=["no-token", "dev-header-only", "wrong-audience", "bad-signature", "expired"],
)
async def test_no_or_a_bad_token_is_unauthenticated_and_stores_nothing(
    tmp_path: Path,
    pki: Pki,
    key: SigningKey,
    metadata: Callable[[SigningKey], Metadata],
    says: str,
) -> None:
    async with serving(tmp_path, pki, **jwt_settings(tmp_path, key)) as service:
        assert_unauthenticated(await service.refused(metadata(key)), says)


async def test_hmac_tokens_from_the_settings(tmp_path: Path, pki: Pki) -> None:
    settings: dict[str, Any] = {"auth": "jwt", "jwt_hmac_secret": HMAC_SECRET}
    async with serving(
        tmp_path, pki, jwt_issuer=ISSUER, jwt_audience=AUDIENCE, **settings
    ) as service:
        await service.register("bbg", bearer(hmac_token(sub="svc-loader")))
        assert await service.user_of("bbg") == "svc-loader"


def mtls(pki: Pki, auth: str = "mtls") -> dict[str, Any]:
    return {"auth": auth, "tls_client_ca_file": pki.ca_file}


async def test_mtls_the_client_certificate_cn_is_the_caller(tmp_path: Path, pki: Pki) -> None:
    async with serving(tmp_path, pki, client_cert=True, **mtls(pki)) as service:
        await service.register("bbg", ())
        assert await service.user_of("bbg") == "svc-pricer"


async def test_mtls_without_a_client_certificate_is_refused_at_the_handshake(
    tmp_path: Path, pki: Pki
) -> None:
    async with serving(tmp_path, pki, client_cert=False, **mtls(pki)) as service:
        error = await service.refused((("x-qis-user", "alice"),))
        assert error.code() == grpc.StatusCode.UNAVAILABLE  # no connection, no call


async def test_jwt_and_mtls_a_token_names_the_caller_else_the_certificate(
    tmp_path: Path, pki: Pki, key: SigningKey
) -> None:
    settings = {**jwt_settings(tmp_path, key), **mtls(pki, "jwt,mtls")}
    async with serving(tmp_path, pki, client_cert=True, **settings) as service:
        await service.register("by-token", bearer(key.token(sub="bob@corp")))
        await service.register("by-cert", ())
        assert await service.user_of("by-token") == "bob@corp"
        assert await service.user_of("by-cert") == "svc-pricer"
        # A bad token is refused, not passed over for the certificate.
        assert_unauthenticated(await service.refused(bearer("x.y.z")), "well-formed")


# Metadata a client can send: huge, non-ASCII (as a -bin value), repeated. None of it may end
# as INTERNAL or UNKNOWN: it is the caller's fault and says so.
FUZZED: list[Metadata | tuple[tuple[str, str | bytes], ...]] = [
    (("authorization", "Bearer " + "A" * 6000),),
    (("authorization", "Bearer " + "a." * 3000 + "b"),),
    (("authorization", "Bearer é€😀".encode().hex()),),
    (("authorization-bin", "Bearer é€😀".encode()),),
    (("authorization", "Bearer x"),) * 5,
    (("authorization", "Bearer"), ("authorization", "")),
    (("authorization", "bEaReR    "),),
    (("authorization", "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJtYWxsb3J5In0."),),
    (("authorization", "Bearer eyJ.eyJ.sig"),),
    (("x-qis-user", "alice"), ("authorization", "Bearer " + "%" * 7000)),
]


@pytest.mark.parametrize("metadata", FUZZED, ids=[str(i) for i in range(len(FUZZED))])
async def test_fuzzed_metadata_is_never_internal(
    tmp_path: Path, pki: Pki, key: SigningKey, metadata: Any
) -> None:
    async with serving(tmp_path, pki, **jwt_settings(tmp_path, key)) as service:
        error = await service.refused(metadata)
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED, error.details()


async def test_a_huge_authorization_header_is_refused_by_grpc_itself(
    tmp_path: Path, pki: Pki, key: SigningKey
) -> None:
    async with serving(tmp_path, pki, **jwt_settings(tmp_path, key)) as service:
        error = await service.refused((("authorization", "Bearer " + "A" * 100_000),))
        assert error.code() not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)


@pytest.mark.parametrize(
    ("auth", "says"),
    [
        ("dev", "refusing to serve 0.0.0.0:0 in development"),
        ("", "QIS_AUTH is not set"),  # never development mode by default
    ],
)
async def test_development_mode_refuses_a_non_loopback_address(
    tmp_path: Path, auth: str, says: str
) -> None:
    store = await SqliteEventStore.open(tmp_path / "events.db")
    try:
        settings = CommandSettings(command_address="0.0.0.0:0", auth=auth, scheduler_enabled=False)
        with pytest.raises(ConfigurationError, match=re.escape(says)):
            await build(settings, store=store)
    finally:
        await store.close()


async def test_with_tokens_the_access_policies_are_enforced_unless_authz_is_open(
    tmp_path: Path, pki: Pki, key: SigningKey
) -> None:
    """Unset, QIS_AUTHZ enforces the policies in jwt mode (deny by default): alice, named by no
    policy, is refused; QIS_ADMINS holds admin whatever the policies say."""
    settings = {**jwt_settings(tmp_path, key), "authz": "", "admins": "root@corp"}
    async with serving(tmp_path, pki, **settings) as service:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await service.register("by-alice", bearer(key.token(sub="alice@corp")))
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert await service.store.read_stream("sources/by-alice") == []
        await service.register("by-root", bearer(key.token(sub="root@corp")))
        assert await service.user_of("by-root") == "root@corp"
    async with serving(tmp_path / "open", pki, **{**settings, "authz": "open"}) as service:
        await service.register("by-alice", bearer(key.token(sub="alice@corp")))
