"""Page sizes, and the opaque tokens that resume a paged answer or a subscription.

A token's content is a small JSON object, so it can change without breaking clients. It names
its kind (a range, a listing, the change feed), so that one call's token is refused by another.
A page token also carries a digest of the query it was issued for: sent with another series,
range, as-of, parent, filter or order it would resume at a point of a different answer, so it is
refused too (AIP-158; page_size and min_position may change between pages). Every page token
holds the time it was issued (µs, the service's clock) and is refused once older than the page
token lifetime (3 days by default), as is one without an issue time (issued before page tokens
held one): as INVALID_ARGUMENT on page_token, saying it expired and to list again.

Page tokens are sealed (PageTokens: AES-SIV, RFC 5297, under the service's key, the caller's
identity bound in as associated data; keys it sealed under before a rotation still open them:
docs/security.md): a listing that holds records back ends a call after a
bounded scan with a token resuming after the last record read (scanning), which may be one the
caller may not read, so no client may read a token, nor tell its length (every payload is
padded to one length before it is sealed: SIV keeps a payload's length, which would tell the
length of that record's key). One altered, cut short, sealed under another key (another
deployment, or this one before a restart when no key is configured) or issued to another caller
is refused as INVALID_ARGUMENT on page_token; the client lists again from the start. Sealing is
deterministic (SIV: no nonce to repeat); a page read twice carries two tokens only as its issue
times differ. The change feed's resume tokens are not sealed and do not expire
(resume_token): they hold a position in the log after a change the subscriber was sent, which
its answers tell anyway, and are a subscriber's bookmark, to outlive the service's restarts and
the subscriber's own outages (an issue time in one would limit nothing: a subscriber may start
after any position). Every number read back from a token is still checked against what the
stores can hold before it reaches them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from qis_adapters.readstore.port import ResumeToken
from qis_domain.bounds import instant_in_range, position_in_range
from qis_domain.errors import InvalidArgument

from qis_query.application.access import wall_clock_us

EVENT_INDEX_LIMIT = 2**31
"""The points of one event have indexes below this (an int32), so (position, EVENT_INDEX_LIMIT)
comes after every point of that position."""

PAGE_TOKEN = "page_token"
MAX_TOKEN_CHARS = 2048
"""Longer than any token this service issues (the longest holds two ids of at most 128
characters, padded to _SEALED_BYTES, sealed and base64-encoded: 536); a longer one is refused
before it is decoded."""
KEY_BYTES = 32
"""A page token key: 256 bits, AES-SIV's two AES-128 keys."""
_SIV_BYTES = 16
_SEALED_BYTES = 384
"""The length every page token's payload is padded to before it is sealed: more than the
longest (a pair token naming two ids of 128 characters and its issue time, 342 bytes)."""
_QUERY_KEY = "q"
_ISSUED_KEY = "t"
PAGE_TOKEN_LIFETIME_US = 3 * 86_400 * 1_000_000
"""How long a page token resumes its listing after it was issued, by default: 72 hours, as
Google Cloud's list APIs' page tokens. A listing is paged through in seconds; a client that
comes back days later lists again from the start."""


def page_size(requested: int, default: int, maximum: int) -> int:
    if requested < 0:
        raise InvalidArgument.single("page_size", "must not be negative")
    return min(requested or default, maximum)


def page_token_key(text: str) -> bytes:
    """The key a setting's text names: base64 (URL-safe or not) of KEY_BYTES bytes, e.g. the
    output of `openssl rand -base64 32`. ValueError otherwise."""
    try:
        key = base64.b64decode(text.strip().replace("-", "+").replace("_", "/"), validate=True)
    except binascii.Error:
        raise ValueError(f"not base64 of {KEY_BYTES} bytes") from None
    if len(key) != KEY_BYTES:
        raise ValueError(f"base64 of {len(key)} bytes, not of {KEY_BYTES}")
    return key


def _nobody() -> str:
    return ""


class PageTokens:
    """The tokens of the query service's answers, each with its issue time: the page tokens of
    the paged answers, sealed under one key and bound to the caller `caller` names when the
    token is made and when it is read back, and the change feed's resume tokens (see the module
    docstring). The instances of a service behind one address must share their keys."""

    def __init__(
        self,
        key: bytes,
        caller: Callable[[], str] = _nobody,
        *,
        previous_keys: Sequence[bytes] = (),
        clock_us: Callable[[], int] = wall_clock_us,
        lifetime_us: int = PAGE_TOKEN_LIFETIME_US,
    ) -> None:
        """`key` seals the page tokens; they are opened under it or one of `previous_keys`
        (a rotation's: docs/security.md). `caller`: who asks for the page being answered (""
        binds the tokens to no one: a direct caller's, a test's). `clock_us`: the time a token
        is issued and read back at."""
        self._aeads = [AESSIV(k) for k in (key, *previous_keys)]
        self._caller = caller
        self._clock_us = clock_us
        self._lifetime_us = lifetime_us

    @classmethod
    def random(
        cls,
        caller: Callable[[], str] = _nobody,
        *,
        clock_us: Callable[[], int] = wall_clock_us,
        lifetime_us: int = PAGE_TOKEN_LIFETIME_US,
    ) -> PageTokens:
        """Tokens under a key of their own, made now: they do not outlive this object."""
        key = AESSIV.generate_key(bit_length=KEY_BYTES * 8)
        return cls(key, caller, clock_us=clock_us, lifetime_us=lifetime_us)

    def range_token(self, query: object, after_snap_us: int) -> str:
        return self.range_tokens(query)(after_snap_us)

    def range_tokens(self, query: object) -> Callable[[int], str]:
        """range_token of `query` for any snap: the query's digest made once for all the pages
        of a range."""
        digest = _digest(query)
        return lambda after_snap_us: self._seal(
            _payload("range", digest, self._clock_us(), after=after_snap_us)
        )

    def range_after(self, token: str, query: object) -> int | None:
        """The snap a range page token resumes after; None without a token."""
        if not token:
            return None
        after: int = self._open(token, "range", query, after=int)["after"]
        if not instant_in_range(after):
            raise refused_token(PAGE_TOKEN, "range")
        return after

    def key_token(self, kind: str, query: object, after: str | None) -> str:
        """The token resuming a listing ordered by a string key after the key `after`; "" when
        None (the listing ended)."""
        return "" if after is None else self._encode(kind, query, after=after)

    def key_after(self, token: str, kind: str, query: object) -> str:
        """The key a listing resumes after ("" from the start)."""
        if not token:
            return ""
        key: str = self._open(token, kind, query, after=str)["after"]
        return key

    def pair_token(self, kind: str, query: object, after: tuple[str, str] | None) -> str:
        """The token resuming a listing ordered by a pair of strings after `after`; "" when
        None."""
        return "" if after is None else self._encode(kind, query, first=after[0], second=after[1])

    def pair_after(self, token: str, kind: str, query: object) -> tuple[str, str]:
        """The pair a listing resumes after (("", "") from the start)."""
        if not token:
            return ("", "")
        decoded = self._open(token, kind, query, first=str, second=str)
        return (decoded["first"], decoded["second"])

    def log_token(self, kind: str, query: object, after: ResumeToken | None) -> str:
        """A token resuming after `after` in the log ("" when None: the listing ended)."""
        if after is None:
            return ""
        return self._encode(kind, query, position=after.position, index=after.index)

    def log_after(self, token: str, kind: str, query: object) -> ResumeToken | None:
        """Where in the log a listing resumes; None without a token."""
        if not token:
            return None
        return _in_log(self._open(token, kind, query, position=int, index=int), PAGE_TOKEN, kind)

    def steps_token(self, kind: str, query: object, after: tuple[int, int, int] | None) -> str:
        """A token resuming a listing ordered by a key of three integers after `after` (""
        when None: the listing ended)."""
        if after is None:
            return ""
        return self._encode(kind, query, a=after[0], b=after[1], c=after[2])

    def steps_after(self, token: str, kind: str, query: object) -> tuple[int, int, int] | None:
        """The key of three integers a listing resumes after; None without a token. The key
        is only compared with keys read from the store, never sent to it: any integers will
        do."""
        if not token:
            return None
        fields = self._open(token, kind, query, a=int, b=int, c=int)
        return fields["a"], fields["b"], fields["c"]

    def _encode(self, kind: str, query: object, **fields: str | int) -> str:
        return self._seal(_payload(kind, _digest(query), self._clock_us(), **fields))

    def _seal(self, payload: bytes) -> str:
        # JSON ignores the trailing spaces when the token is read back.
        padded = payload.ljust(_SEALED_BYTES)
        sealed = self._aeads[0].encrypt(padded, [self._caller().encode()])
        return base64.urlsafe_b64encode(sealed).decode()

    def _open(self, token: str, kind: str, query: object, **types: type) -> dict[str, Any]:
        """The fields of a token this object sealed for the caller asking now (see _fields)."""
        if len(token) > MAX_TOKEN_CHARS:
            raise refused_token(PAGE_TOKEN, kind)
        try:
            sealed = base64.urlsafe_b64decode(token.encode())
            if len(sealed) <= _SIV_BYTES:  # a token holds a payload after its SIV
                raise ValueError("shorter than a sealed payload")
            payload = self._unseal(sealed)
        except ValueError:  # binascii.Error is one
            raise InvalidArgument.single(
                PAGE_TOKEN,
                f"not a {kind} token this service issued to this caller, or one issued before"
                " it restarted: list again without a token",
            ) from None
        issued_after_us = self._clock_us() - self._lifetime_us
        return _fields(payload, PAGE_TOKEN, kind, query, issued_after_us, **types)

    def _unseal(self, sealed: bytes) -> bytes:
        """The payload under the first key that opens it for the caller asking now."""
        caller = [self._caller().encode()]
        for aead in self._aeads:
            try:
                return aead.decrypt(sealed, caller)
            except InvalidTag:
                continue
        raise ValueError("sealed under no key of this service")


def resume_token(kind: str, after: ResumeToken | None) -> str:
    """A change feed's token resuming after `after` in the log, valid for any query (the
    feed's tokens are positions in the log, whatever the series filter); "" when None. Not
    sealed: see the module docstring."""
    if after is None:
        return ""
    payload = _payload(kind, None, None, position=after.position, index=after.index)
    return base64.urlsafe_b64encode(payload).decode()


def resume_after(token: str, field: str, kind: str) -> ResumeToken | None:
    """Where in the log a resume_token resumes; None without a token."""
    if not token:
        return None
    if len(token) > MAX_TOKEN_CHARS:
        raise refused_token(field, kind)
    try:
        payload = base64.urlsafe_b64decode(token.encode())
    except ValueError:
        raise refused_token(field, kind) from None
    fields = _fields(payload, field, kind, None, None, position=int, index=int)
    return _in_log(fields, field, kind)


def _in_log(fields: dict[str, Any], field: str, kind: str) -> ResumeToken:
    position, index = fields["position"], fields["index"]
    if not position_in_range(position) or not 0 <= index < EVENT_INDEX_LIMIT:
        raise refused_token(field, kind)
    return ResumeToken(position, index)


def _digest(query: object) -> str:
    # The repr of the query's frozen dataclasses and tuples of ints and strings: deterministic.
    return hashlib.sha256(repr(query).encode()).hexdigest()[:16]


def _payload(kind: str, digest: str | None, issued_us: int | None, **fields: str | int) -> bytes:
    content: dict[str, str | int] = {"k": kind, **fields}
    if issued_us is not None:
        content[_ISSUED_KEY] = issued_us
    if digest is not None:
        content[_QUERY_KEY] = digest
    return json.dumps(content, separators=(",", ":")).encode()


def _fields(
    payload: bytes,
    field: str,
    kind: str,
    query: object | None,
    issued_after_us: int | None,
    **types: type,
) -> dict[str, Any]:
    """The token's fields, each present and of the given type, issued for `query` (None: for
    any) at `issued_after_us` or later (None: a token without an issue time); INVALID_ARGUMENT
    otherwise."""
    try:
        decoded = json.loads(payload)
    except (ValueError, RecursionError):  # a crafted token may nest deeper than json can read
        raise refused_token(field, kind) from None
    if not isinstance(decoded, dict) or decoded.get("k") != kind:
        raise refused_token(field, kind)
    if issued_after_us is not None:
        issued_us = decoded.get(_ISSUED_KEY)
        if issued_us is None:  # issued by a version before page tokens held their issue time
            raise _expired_token(field, kind)
        if not isinstance(issued_us, int) or isinstance(issued_us, bool):
            raise refused_token(field, kind)
        if issued_us < issued_after_us:
            raise _expired_token(field, kind)
    for name, expected in types.items():
        value = decoded.get(name)
        if not isinstance(value, expected) or isinstance(value, bool):
            raise refused_token(field, kind)
    if query is not None and decoded.get(_QUERY_KEY) != _digest(query):
        raise InvalidArgument.single(
            field,
            "issued for another request: send it with the parameters of the request that"
            " returned it (only page_size and min_position may change)",
        )
    return decoded


def refused_token(field: str, kind: str) -> InvalidArgument:
    return InvalidArgument.single(field, f"not a {kind} token issued by this service")


def _expired_token(field: str, kind: str) -> InvalidArgument:
    return InvalidArgument.single(field, f"this {kind} token expired: list again without a token")
