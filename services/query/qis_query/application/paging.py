"""Page sizes, and the opaque tokens that resume a paged answer or a subscription.

A token is base64 of a small JSON object, so its content can change without breaking clients.
It names its kind (a range, a listing, the change feed), so that one call's token is refused by
another. A page token also carries a digest of the query it was issued for: sent with another
series, range, as-of or filter it would resume at a point of a different answer, so it is
refused too (page_size and min_position may change between pages). Tokens are not signed: the
digest catches a client's mistake, not a forgery, so every number read back from a token is
checked against what the stores can hold before it reaches them.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from typing import Any

from qis_adapters.readstore.port import ResumeToken
from qis_domain.bounds import instant_in_range, position_in_range
from qis_domain.errors import InvalidArgument

EVENT_INDEX_LIMIT = 2**31
"""The points of one event have indexes below this (an int32), so (position, EVENT_INDEX_LIMIT)
comes after every point of that position."""

PAGE_TOKEN = "page_token"
MAX_TOKEN_CHARS = 2048
"""Longer than any token this service issues (the longest holds two ids of at most 128
characters, base64-encoded); a longer one is refused before it is decoded."""
_QUERY_KEY = "q"


def page_size(requested: int, default: int, maximum: int) -> int:
    if requested < 0:
        raise InvalidArgument.single("page_size", "must not be negative")
    return min(requested or default, maximum)


def range_token(query: object, after_snap_us: int) -> str:
    return range_tokens(query)(after_snap_us)


def range_tokens(query: object) -> Callable[[int], str]:
    """range_token of `query` for any snap: the query's digest made once for all the pages of
    a range (a third of a token's cost)."""
    digest = _digest(query)
    return lambda after_snap_us: _encoded("range", digest, after=after_snap_us)


def range_after(token: str, query: object) -> int | None:
    """The snap a range page token resumes after; None without a token."""
    if not token:
        return None
    after: int = _decode(token, PAGE_TOKEN, "range", query, after=int)["after"]
    if not instant_in_range(after):
        raise refused_token(PAGE_TOKEN, "range")
    return after


def key_token(kind: str, query: object, after: str | None) -> str:
    """The token resuming a listing ordered by a string key after the key `after`; "" when
    None (the listing ended)."""
    return "" if after is None else _encode(kind, query, after=after)


def key_after(token: str, kind: str, query: object) -> str:
    """The key a listing resumes after ("" from the start)."""
    if not token:
        return ""
    key: str = _decode(token, PAGE_TOKEN, kind, query, after=str)["after"]
    return key


def pair_token(kind: str, query: object, after: tuple[str, str] | None) -> str:
    """The token resuming a listing ordered by a pair of strings after `after`; "" when None."""
    return "" if after is None else _encode(kind, query, first=after[0], second=after[1])


def pair_after(token: str, kind: str, query: object) -> tuple[str, str]:
    """The pair a listing resumes after (("", "") from the start)."""
    if not token:
        return ("", "")
    decoded = _decode(token, PAGE_TOKEN, kind, query, first=str, second=str)
    return (decoded["first"], decoded["second"])


def log_token(kind: str, query: object | None, after: ResumeToken | None) -> str:
    """A token resuming after `after` in the log ("" when None: the listing ended); `query`
    None for a token valid for any query (the change feed's resume tokens are positions in the
    log, whatever the series filter)."""
    if after is None:
        return ""
    return _encode(kind, query, position=after.position, index=after.index)


def log_after(token: str, field: str, kind: str, query: object | None) -> ResumeToken | None:
    """Where in the log a token resumes; None without a token."""
    if not token:
        return None
    fields = _decode(token, field, kind, query, position=int, index=int)
    position, index = fields["position"], fields["index"]
    if not position_in_range(position) or not 0 <= index < EVENT_INDEX_LIMIT:
        raise refused_token(field, kind)
    return ResumeToken(position, index)


def steps_token(kind: str, query: object, after: tuple[int, int, int] | None) -> str:
    """A token resuming a listing ordered by a key of three integers after `after` ("" when
    None: the listing ended)."""
    if after is None:
        return ""
    return _encode(kind, query, a=after[0], b=after[1], c=after[2])


def steps_after(token: str, kind: str, query: object) -> tuple[int, int, int] | None:
    """The key of three integers a listing resumes after; None without a token. The key is
    only compared with keys read from the store, never sent to it: any integers will do."""
    if not token:
        return None
    fields = _decode(token, PAGE_TOKEN, kind, query, a=int, b=int, c=int)
    return fields["a"], fields["b"], fields["c"]


def _digest(query: object) -> str:
    # The repr of the query's frozen dataclasses and tuples of ints and strings: deterministic.
    return hashlib.sha256(repr(query).encode()).hexdigest()[:16]


def _encode(kind: str, query: object | None, **fields: str | int) -> str:
    return _encoded(kind, None if query is None else _digest(query), **fields)


def _encoded(kind: str, digest: str | None, **fields: str | int) -> str:
    payload: dict[str, str | int] = {"k": kind, **fields}
    if digest is not None:
        payload[_QUERY_KEY] = digest
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode()


def _decode(
    token: str, field: str, kind: str, query: object | None, **types: type
) -> dict[str, Any]:
    """The token's fields, each present and of the given type; INVALID_ARGUMENT otherwise."""
    if len(token) > MAX_TOKEN_CHARS:
        raise refused_token(field, kind)
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, RecursionError):  # a crafted token may nest deeper than json can read
        raise refused_token(field, kind) from None
    if not isinstance(decoded, dict) or decoded.get("k") != kind:
        raise refused_token(field, kind)
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
