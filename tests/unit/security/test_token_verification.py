"""Bearer JWT verification: every check that can fail says which one, never the token."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import jwt
import pytest
from qis_runtime.auth import (
    BearerAuthenticator,
    HmacKey,
    JwksKeys,
    TokenPolicy,
    TokenVerifier,
    roles_of,
)
from qis_runtime.identity import Identity, Unauthenticated

from tests.unit.security.security_support import (
    AUDIENCE,
    HMAC_SECRET,
    ISSUER,
    SigningKey,
    hmac_token,
    jwks,
)

POLICY = TokenPolicy(ISSUER, AUDIENCE, leeway_s=5.0)


class Jwks:
    """A JWKS endpoint whose document the test changes, with a clock the test moves."""

    def __init__(self, *keys: SigningKey) -> None:
        self.document = jwks(*keys)
        self.now = 1000.0
        self.fail = False

    def load(self, location: str) -> bytes:
        if self.fail:
            raise OSError("connection refused")
        return self.document

    def keys(self, cache_s: float = 300.0) -> JwksKeys:
        return JwksKeys("https://issuer.test/jwks", cache_s, load=self.load, clock=lambda: self.now)


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey("k1")


async def refusal(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(Unauthenticated) as error:
        await verifier.verify(token)
    message = str(error.value)
    assert len(token) < 8 or token not in message
    return message


async def test_a_good_token_names_the_subject_and_keeps_its_roles(key: SigningKey) -> None:
    verifier = TokenVerifier(Jwks(key).keys(), POLICY)
    assert await verifier.verify(key.token()) == Identity("alice@corp", ("data-ops", "approver"))


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        ({"aud": "another-service"}, "'aud'"),
        ({"iss": "https://evil.test"}, "'iss'"),
        ({"exp": 1_000_000}, "expired"),
        ({"nbf": 4_000_000_000}, "not valid yet"),
        ({"exp": None}, "no 'exp' claim"),
        ({"sub": None}, "no 'sub' claim"),
        ({"aud": None}, "no 'aud' claim"),
        ({"sub": "two words"}, "subject ('sub') is not a usable user id"),
        ({"sub": "x" * 129}, "not a usable user id"),
        ({"roles": [1, 2]}, "'roles' claim is not a list of strings"),
    ],
    ids=[
        "wrong-audience",
        "wrong-issuer",
        "expired",
        "not-yet-valid",
        "no-exp",
        "no-sub",
        "no-aud",
        "blank-in-sub",
        "long-sub",
        "bad-roles",
    ],
)
async def test_each_failed_check_is_named(
    key: SigningKey, claims: dict[str, Any], expected: str
) -> None:
    verifier = TokenVerifier(Jwks(key).keys(), POLICY)
    assert expected in await refusal(verifier, key.token(**claims))


async def test_the_leeway_absorbs_a_small_clock_skew(key: SigningKey) -> None:
    import time

    verifier = TokenVerifier(Jwks(key).keys(), POLICY)
    identity = await verifier.verify(key.token(exp=int(time.time()) - 2))
    assert identity.user_id == "alice@corp"


async def test_a_token_signed_by_another_key_with_the_same_kid_is_refused(key: SigningKey) -> None:
    impostor = SigningKey("k1")
    verifier = TokenVerifier(Jwks(key).keys(), POLICY)
    assert "signature does not verify" in await refusal(verifier, impostor.token())


async def test_tampered_claims_break_the_signature(key: SigningKey) -> None:
    header, payload, signature = key.token().split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "mallory"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    verifier = TokenVerifier(Jwks(key).keys(), POLICY)
    assert "signature does not verify" in await refusal(verifier, f"{header}.{forged}.{signature}")


async def test_algorithm_confusion_and_none_are_refused(key: SigningKey) -> None:
    verifier = TokenVerifier(Jwks(key).keys(), POLICY)
    unsigned = jwt.encode({"sub": "mallory"}, "", algorithm="none", headers={"kid": "k1"})
    assert "algorithm" in await refusal(verifier, unsigned)
    # HS256 keyed with the RSA public key's bytes: the classic confusion attack.
    public_pem = key.jwk()["n"].encode()
    hs = jwt.encode({"sub": "mallory"}, public_pem * 2, algorithm="HS256", headers={"kid": "k1"})
    assert "algorithm" in await refusal(verifier, hs)


async def test_garbage_is_not_a_token(key: SigningKey) -> None:
    verifier = TokenVerifier(Jwks(key).keys(), POLICY)
    for garbage in ("", "abc", "a.b.c", "abcdefgh.ijklmnop.qrs", "é" * 50, "." * 3000):
        assert "not a well-formed JWT" in await refusal(verifier, garbage)


async def test_an_unknown_kid_fetches_the_jwks_once_then_the_rotated_key_works(
    key: SigningKey,
) -> None:
    endpoint = Jwks(key)
    keys = endpoint.keys()
    verifier = TokenVerifier(keys, POLICY)
    await verifier.verify(key.token())
    assert keys.fetches == 1
    rotated = SigningKey("k2")
    endpoint.now += 60  # within the cache period, beyond the refetch pace
    endpoint.document = jwks(key, rotated)
    assert (await verifier.verify(rotated.token())).user_id == "alice@corp"
    assert keys.fetches == 2


async def test_unknown_kids_do_not_hammer_the_jwks_endpoint(key: SigningKey) -> None:
    endpoint = Jwks(key)
    keys = endpoint.keys()
    verifier = TokenVerifier(keys, POLICY)
    await verifier.verify(key.token())
    endpoint.now += 60
    for n in range(20):
        message = await refusal(verifier, SigningKey(f"random-{n}").token())
        assert "signing key 'random-" in message
        assert "unknown" in message
    assert keys.fetches == 2  # one refetch for the first unknown kid, none for the others


async def test_the_keys_held_stay_in_use_while_the_endpoint_is_down(key: SigningKey) -> None:
    endpoint = Jwks(key)
    keys = endpoint.keys(cache_s=30)
    verifier = TokenVerifier(keys, POLICY)
    await verifier.verify(key.token())
    endpoint.fail = True
    endpoint.now += 31
    assert (await verifier.verify(key.token())).user_id == "alice@corp"


async def test_no_keys_at_all_is_said_plainly(key: SigningKey) -> None:
    endpoint = Jwks(key)
    endpoint.fail = True
    verifier = TokenVerifier(endpoint.keys(), POLICY)
    assert "no signing keys" in await refusal(verifier, key.token())


async def test_hmac_tokens() -> None:
    verifier = TokenVerifier(HmacKey(HMAC_SECRET.encode()), POLICY)
    assert (await verifier.verify(hmac_token(sub="svc-loader"))).user_id == "svc-loader"
    other = jwt.encode(
        {"sub": "x"}, "another-secret-of-enough-length-0123456789", algorithm="HS256"
    )
    assert "signature does not verify" in await refusal(verifier, other)


def test_roles_from_a_nested_claim_or_a_scope_string() -> None:
    assert roles_of({"realm_access": {"roles": ["a", "b"]}}, "realm_access.roles") == ("a", "b")
    assert roles_of({"scope": "read write"}, "scope") == ("read", "write")
    assert roles_of({}, "groups") == ()


class NoPeer:
    def auth_context(self) -> dict[str, list[bytes]]:
        return {}


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ((), "missing 'authorization: Bearer <token>'"),
        ((("authorization", "Basic YWxpY2U6eA=="),), "not 'Bearer <token>'"),
        ((("authorization", "Bearer "),), "not 'Bearer <token>'"),
        ((("authorization", "Bearer a"), ("authorization", "Bearer b")), "sent 2 times"),
        ((("authorization", "Bearer " + "a" * 9000),), "malformed"),
    ],
    ids=["none", "basic", "empty", "twice", "huge"],
)
async def test_the_authorization_header(
    key: SigningKey, metadata: tuple[tuple[str, str], ...], expected: str
) -> None:
    bearer = BearerAuthenticator(TokenVerifier(Jwks(key).keys(), POLICY))
    with pytest.raises(Unauthenticated, match=re.escape(expected)):
        await bearer.authenticate(metadata, NoPeer())
    good = (("authorization", f"bearer {key.token()}"),)  # the scheme is case-insensitive
    assert (await bearer.authenticate(good, NoPeer())).user_id == "alice@corp"
