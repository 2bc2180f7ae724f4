"""Keys, tokens and certificates made for the security tests: RSA keys and JWKS documents with
cryptography, tokens with PyJWT, a CA with server and client certificates with trustme."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import trustme
from cryptography.hazmat.primitives.asymmetric import rsa

ISSUER = "https://issuer.test"
AUDIENCE = "qis-data"
HMAC_SECRET = "s3cret-" * 6  # 42 bytes


@dataclass
class SigningKey:
    kid: str
    private: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )

    def jwk(self) -> dict[str, Any]:
        public: dict[str, Any] = json.loads(
            jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key())
        )
        return {**public, "kid": self.kid, "alg": "RS256", "use": "sig"}

    def token(self, **claims: Any) -> str:
        return jwt.encode(
            good_claims(**claims), self.private, algorithm="RS256", headers={"kid": self.kid}
        )


def jwks(*keys: SigningKey) -> bytes:
    return json.dumps({"keys": [k.jwk() for k in keys]}).encode()


def good_claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice@corp",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "roles": ["data-ops", "approver"],
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def hmac_token(**claims: Any) -> str:
    return jwt.encode(good_claims(**claims), HMAC_SECRET, algorithm="HS256")


@dataclass
class Pki:
    """A CA, a certificate for the server (localhost, 127.0.0.1) and for one client, as files."""

    ca: trustme.CA
    ca_file: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    @classmethod
    def create(cls, directory: Path, client_cn: str = "svc-pricer") -> Pki:
        ca = trustme.CA()
        server = ca.issue_cert("localhost", "127.0.0.1")
        client = ca.issue_cert(client_cn, common_name=client_cn)
        paths = {
            "ca_file": (directory / "ca.pem", ca.cert_pem.bytes()),
            "server_cert": (
                directory / "server.pem",
                b"".join(p.bytes() for p in server.cert_chain_pems),
            ),
            "server_key": (directory / "server.key", server.private_key_pem.bytes()),
            "client_cert": (
                directory / "client.pem",
                b"".join(p.bytes() for p in client.cert_chain_pems),
            ),
            "client_key": (directory / "client.key", client.private_key_pem.bytes()),
        }
        for path, data in paths.values():
            path.write_bytes(data)
        return cls(ca, **{name: path for name, (path, _) in paths.items()})
