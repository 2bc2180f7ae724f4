"""Authentication of callers (bearer JWTs, client certificates) and the TLS credentials of a
server, built from the QIS_* settings (docs/security.md).

Only authentication: an Identity says who the caller is and which roles its credential gives;
what it may do (authorisation) is not decided here.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import grpc
import jwt

from qis_runtime.identity import (
    Authenticator,
    DevAuthenticator,
    Identity,
    Metadata,
    PeerContext,
    Unauthenticated,
)
from qis_runtime.settings import CommonSettings

log = logging.getLogger(__name__)

AUTHORIZATION_HEADER = "authorization"
MAX_TOKEN_CHARS = 8_192
"""Far beyond any real JWT; a longer value is refused before it is parsed."""
MAX_USER_CHARS = 128
"""The bound of every id (libs/domain/qis_domain/bounds.py): the user goes into event metadata."""
MAX_JWKS_BYTES = 1024 * 1024
JWKS_FETCH_TIMEOUT_S = 5.0
JWKS_MIN_REFETCH_S = 10.0
"""An unknown `kid` fetches the JWKS again at most this often: anyone can send tokens naming
random key ids, and must not be able to make the server hammer the key endpoint."""
HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
MIN_HMAC_SECRET_BYTES = 32  # RFC 7518 §3.2: a key at least as long as the HS256 hash
MODES = ("dev", "jwt", "mtls")


class ConfigurationError(ValueError):
    """The security settings do not make sense together; the process refuses to start."""


# --- tokens -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VerificationKey:
    key: Any  # what jwt.decode takes: a PyJWK or an HMAC secret
    algorithms: tuple[str, ...]
    """Taken from the key, never from the token's header (no algorithm confusion, no `none`)."""


class SigningKeys(Protocol):
    async def key_for(self, kid: str | None) -> VerificationKey: ...


class HmacKey:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < MIN_HMAC_SECRET_BYTES:
            raise ConfigurationError(
                f"QIS_JWT_HMAC_SECRET is {len(secret)} bytes: at least"
                f" {MIN_HMAC_SECRET_BYTES} are needed"
            )
        self._key = VerificationKey(secret, HMAC_ALGORITHMS)

    async def key_for(self, kid: str | None) -> VerificationKey:
        return self._key


class JwksUnavailable(Exception):
    pass


def read_jwks(location: str) -> bytes:
    """The JWKS document at a file path or an http(s) URL (blocking: run it in a thread)."""
    if location.startswith(("https://", "http://")):
        with urllib.request.urlopen(location, timeout=JWKS_FETCH_TIMEOUT_S) as response:
            data: bytes = response.read(MAX_JWKS_BYTES + 1)
    else:
        data = Path(location).read_bytes()
    if len(data) > MAX_JWKS_BYTES:
        raise JwksUnavailable(f"larger than {MAX_JWKS_BYTES} bytes")
    return data


class JwksKeys:
    """The keys of a JWKS, fetched when first needed, used for `cache_s`, and fetched again at
    once (at most every `min_refetch_s`) when a token names a key it does not hold: an issuer
    that rotates its keys publishes the new one before it signs with it."""

    def __init__(
        self,
        location: str,
        cache_s: float,
        min_refetch_s: float = JWKS_MIN_REFETCH_S,
        load: Callable[[str], bytes] = read_jwks,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._location = location
        self._cache_s = cache_s
        self._min_refetch_s = min_refetch_s
        self._load = load
        self._clock = clock
        self._keys: dict[str | None, jwt.PyJWK] = {}
        self._loaded = False
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def key_for(self, kid: str | None) -> VerificationKey:
        # Until a first fetch succeeds, it is retried at the rotation pace, not on every call.
        expiry = self._cache_s if self._loaded else self._min_refetch_s
        if self._clock() - self._fetched_at >= expiry:
            await self._refresh(since=self._fetched_at)
        found = self._pick(kid)
        if found is None and self._clock() - self._fetched_at >= self._min_refetch_s:
            await self._refresh(since=self._fetched_at)
            found = self._pick(kid)
        if found is None:
            if not self._loaded:
                raise Unauthenticated(
                    "the token cannot be checked: the server has no signing keys (JWKS) yet"
                )
            if kid is None:
                raise Unauthenticated("the token names no signing key ('kid' header)")
            raise Unauthenticated(f"the token's signing key {_quoted(kid)} is unknown")
        return VerificationKey(found, (found.algorithm_name,))

    def _pick(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        return self._keys.get(kid)

    async def _refresh(self, since: float) -> None:
        async with self._lock:
            if self._fetched_at != since:
                return  # another call fetched it while this one waited
            # Set before fetching: a failing endpoint is not asked again on every call.
            self._fetched_at = self._clock()
            self.fetches += 1
            try:
                data = await asyncio.to_thread(self._load, self._location)
                keys = parse_jwks(data)
            except Exception as error:
                # The keys held so far stay in use: a JWKS endpoint that is down for a moment
                # must not lock every caller out.
                log.warning("cannot load the JWKS from %s: %s", self._location, error)
                return
            self._keys = keys
            self._loaded = True


def parse_jwks(data: bytes) -> dict[str | None, jwt.PyJWK]:
    document = json.loads(data)
    keys = jwt.PyJWKSet.from_dict(document).keys
    # Keys marked for encryption are not signing keys.
    return {key.key_id: key for key in keys if key.public_key_use in (None, "sig")}


@dataclass(frozen=True, slots=True)
class TokenPolicy:
    issuer: str
    audience: str
    leeway_s: float = 30.0
    roles_claim: str = "roles"


_CLAIM_ERRORS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.ExpiredSignatureError, "the token has expired ('exp')"),
    (jwt.ImmatureSignatureError, "the token is not valid yet ('nbf' or 'iat')"),
    (jwt.InvalidAudienceError, "the token is not for this service ('aud')"),
    (jwt.InvalidIssuerError, "the token is not from the trusted issuer ('iss')"),
    (jwt.InvalidAlgorithmError, "the token's algorithm is not that of its key ('alg')"),
    (jwt.InvalidSignatureError, "the token's signature does not verify"),
    (jwt.exceptions.InvalidSubjectError, "the token's subject ('sub') is not a string"),
    (jwt.DecodeError, "the bearer token is not a well-formed JWT"),
)


class TokenVerifier:
    def __init__(self, keys: SigningKeys, policy: TokenPolicy) -> None:
        self._keys = keys
        self._policy = policy

    async def verify(self, token: str) -> Identity:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("the bearer token is not a well-formed JWT") from None
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise Unauthenticated("the token's 'kid' header is not a string")
        key = await self._keys.key_for(kid)
        policy = self._policy
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=list(key.algorithms),
                audience=policy.audience,
                issuer=policy.issuer,
                leeway=policy.leeway_s,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.MissingRequiredClaimError as error:
            raise Unauthenticated(f"the token has no '{error.claim}' claim") from None
        except jwt.PyJWTError as error:
            message = next(
                (m for kind, m in _CLAIM_ERRORS if isinstance(error, kind)),
                "the bearer token is invalid",
            )
            raise Unauthenticated(message) from None
        return Identity(
            checked_user(claims["sub"], "the token's subject ('sub')"),
            roles_of(claims, policy.roles_claim),
        )


def roles_of(claims: dict[str, Any], claim: str) -> tuple[str, ...]:
    """The roles named by `claim` (dotted for a nested claim): a list of strings, or one string
    of space-separated names (the OAuth `scope` form); absent, none."""
    value: Any = claims
    for part in claim.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(value.split())
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise Unauthenticated(f"the token's '{claim}' claim is not a list of strings")


def checked_user(user: str, what: str) -> str:
    """`user` if it can be a user id: it is stored in every event's metadata and shown in
    audits, so no control characters, no blanks, and the bound of every id."""
    if (
        not 0 < len(user) <= MAX_USER_CHARS
        or not user.isprintable()
        or any(c.isspace() for c in user)
    ):
        raise Unauthenticated(
            f"{what} is not a usable user id (1 to {MAX_USER_CHARS} printable characters,"
            " no blanks)"
        )
    return user


def _quoted(value: str, limit: int = 64) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "…")


class BearerAuthenticator:
    """`authorization: Bearer <JWT>`, verified by a TokenVerifier."""

    def __init__(self, verifier: TokenVerifier) -> None:
        self._verifier = verifier

    async def authenticate(self, metadata: Metadata, peer: PeerContext) -> Identity:
        values = [value for key, value in metadata if key == AUTHORIZATION_HEADER]
        if not values:
            raise Unauthenticated(f"missing '{AUTHORIZATION_HEADER}: Bearer <token>' call metadata")
        if len(values) > 1:
            # Which one would a proxy have checked? Neither wins.
            raise Unauthenticated(
                f"'{AUTHORIZATION_HEADER}' call metadata sent {len(values)} times"
            )
        value = values[0]
        if not isinstance(value, str) or len(value) > MAX_TOKEN_CHARS:
            raise Unauthenticated(f"the '{AUTHORIZATION_HEADER}' call metadata is malformed")
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated(
                f"the '{AUTHORIZATION_HEADER}' call metadata is not 'Bearer <token>'"
            )
        return await self._verifier.verify(token.strip())


class CertificateAuthenticator:
    """The subject CN of the client certificate gRPC verified against QIS_TLS_CLIENT_CA_FILE:
    for services calling services."""

    async def authenticate(self, metadata: Metadata, peer: PeerContext) -> Identity:
        names = list(peer.auth_context().get("x509_common_name", ()))
        if len(names) != 1:
            raise Unauthenticated("no client certificate with one subject common name (CN)")
        try:
            name = names[0].decode()
        except UnicodeDecodeError:
            raise Unauthenticated("the client certificate's CN is not UTF-8") from None
        return Identity(checked_user(name, "the client certificate's CN"))


class TokenOrCertificate:
    """`jwt,mtls`: a bearer token names the caller when there is one (a service acting for a
    person); otherwise the client certificate does. A bad token is refused, never passed over
    for the certificate."""

    def __init__(self, bearer: BearerAuthenticator, certificate: CertificateAuthenticator) -> None:
        self._bearer = bearer
        self._certificate = certificate

    async def authenticate(self, metadata: Metadata, peer: PeerContext) -> Identity:
        if any(key == AUTHORIZATION_HEADER for key, _ in metadata):
            return await self._bearer.authenticate(metadata, peer)
        return await self._certificate.authenticate(metadata, peer)


# --- what a server is configured with ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerSecurity:
    authenticator: Authenticator
    credentials: grpc.ServerCredentials | None
    """None: a plaintext port."""
    development: bool
    """The authenticator trusts what the caller says: QisServer allows it on loopback only."""
    summary: str
    """One line for the start-up log."""

    @classmethod
    def development_mode(cls) -> ServerSecurity:
        return cls(
            DevAuthenticator(), None, True, "development mode (x-qis-user trusted), plaintext"
        )


def is_loopback(address: str) -> bool:
    """Whether only this machine can reach a gRPC listening address."""
    if address.startswith(("unix:", "unix-abstract:")):
        return True
    host = address.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a wildcard ("", "0.0.0.0", "::") or any other name


def modes_of(setting: str) -> frozenset[str]:
    modes = frozenset(m.strip().lower() for m in setting.split(",") if m.strip())
    if not modes:
        # Development mode trusts a header anyone can type: never a default.
        raise ConfigurationError(
            "QIS_AUTH is not set: jwt, mtls or jwt,mtls; or dev (x-qis-user headers, loopback"
            " only), which `qis up` sets"
        )
    if unknown := sorted(modes - set(MODES)):
        raise ConfigurationError(
            f"QIS_AUTH={setting!r}: unknown mode {unknown[0]!r} (dev, jwt, mtls)"
        )
    if "dev" in modes and len(modes) > 1:
        raise ConfigurationError(f"QIS_AUTH={setting!r}: dev cannot be combined with jwt or mtls")
    return frozenset(modes)


def server_security(settings: CommonSettings) -> ServerSecurity:
    """The authenticator and credentials the settings describe, or a ConfigurationError saying
    what is missing."""
    modes = modes_of(settings.auth)
    credentials = tls_credentials(
        settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file
    )
    transport = "plaintext" if credentials is None else "TLS"
    if settings.tls_client_ca_file is not None:
        transport = "mTLS (client certificate required)"
    if modes == {"dev"}:
        return ServerSecurity(
            DevAuthenticator(),
            credentials,
            True,
            f"development mode (x-qis-user trusted), {transport}",
        )
    if "mtls" in modes and settings.tls_client_ca_file is None:
        raise ConfigurationError(
            "QIS_AUTH=mtls needs QIS_TLS_CERT_FILE, QIS_TLS_KEY_FILE and QIS_TLS_CLIENT_CA_FILE"
        )
    certificate = CertificateAuthenticator()
    if "jwt" not in modes:
        return ServerSecurity(
            certificate, credentials, False, f"client certificate CN, {transport}"
        )
    bearer = BearerAuthenticator(token_verifier(settings))
    if credentials is None:
        log.warning("bearer tokens over plaintext: anyone on the path can read and replay them")
    if "mtls" in modes:
        return ServerSecurity(
            TokenOrCertificate(bearer, certificate),
            credentials,
            False,
            f"bearer JWT or client certificate CN, {transport}",
        )
    return ServerSecurity(bearer, credentials, False, f"bearer JWT, {transport}")


def token_verifier(settings: CommonSettings) -> TokenVerifier:
    if not settings.jwt_issuer or not settings.jwt_audience:
        # Without them a token issued for any other service of the same issuer would do.
        raise ConfigurationError("QIS_AUTH=jwt needs QIS_JWT_ISSUER and QIS_JWT_AUDIENCE")
    secret = settings.jwt_hmac_secret
    if bool(settings.jwt_jwks) == (secret is not None):
        raise ConfigurationError(
            "QIS_AUTH=jwt needs one of QIS_JWT_JWKS (a JWKS path or URL) and QIS_JWT_HMAC_SECRET"
        )
    keys: SigningKeys = (
        HmacKey(secret.get_secret_value().encode())
        if secret is not None
        else JwksKeys(settings.jwt_jwks, settings.jwt_jwks_cache_s)
    )
    policy = TokenPolicy(
        settings.jwt_issuer, settings.jwt_audience, settings.jwt_leeway_s, settings.jwt_roles_claim
    )
    return TokenVerifier(keys, policy)


def tls_credentials(
    cert_file: Path | None, key_file: Path | None, client_ca_file: Path | None
) -> grpc.ServerCredentials | None:
    """Server credentials from PEM files; with a client CA, clients must present a certificate
    that chains to it (checked by gRPC in the handshake)."""
    if cert_file is None and key_file is None:
        if client_ca_file is not None:
            raise ConfigurationError(
                "QIS_TLS_CLIENT_CA_FILE needs QIS_TLS_CERT_FILE and QIS_TLS_KEY_FILE"
            )
        return None
    if cert_file is None or key_file is None:
        raise ConfigurationError("TLS needs both QIS_TLS_CERT_FILE and QIS_TLS_KEY_FILE")
    chain, key = _read("QIS_TLS_CERT_FILE", cert_file), _read("QIS_TLS_KEY_FILE", key_file)
    roots = None if client_ca_file is None else _read("QIS_TLS_CLIENT_CA_FILE", client_ca_file)
    return grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=roots, require_client_auth=roots is not None
    )


def _read(variable: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise ConfigurationError(f"{variable}={path}: {error.strerror or error}") from None


def loopback_only(services: Sequence[object], address: str, security: ServerSecurity) -> None:
    """Refuses development mode where another machine could reach it: anyone there could say
    they are anyone. A server with no services of its own (health only) trusts no one."""
    if security.development and services and not is_loopback(address):
        raise ConfigurationError(
            f"refusing to serve {address} in development mode, where any caller is whoever its"
            " x-qis-user header says: bind a loopback address (127.0.0.1), or set QIS_AUTH=jwt"
            " or mtls (docs/security.md)"
        )
