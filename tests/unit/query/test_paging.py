"""Sealed page tokens (qis_query.application.paging): each resumes only the request and the caller
it was issued for, under the key that sealed it, and no client can read what it holds."""

from __future__ import annotations

import base64
import re

import pytest
from qis_adapters.readstore.port import ResumeToken
from qis_domain.errors import InvalidArgument
from qis_query.application.paging import (
    KEY_BYTES,
    MAX_TOKEN_CHARS,
    PAGE_TOKEN,
    PageTokens,
    page_token_key,
    resume_after,
    resume_token,
)

KEY = bytes(range(KEY_BYTES))
QUERY = ("series/-", (("status", "=", "OPEN"),))
AFTER = ("SECRET", "issue-1")


def tokens(caller: str = "carl", key: bytes = KEY) -> PageTokens:
    return PageTokens(key, lambda: caller)


def refused(read: object, *args: object) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as error:
        read(*args)  # type: ignore[operator]
    assert [v.field for v in error.value.violations] == [PAGE_TOKEN]
    return error.value


def test_a_token_resumes_where_it_was_issued() -> None:
    sealed = tokens().pair_token("issues", QUERY, AFTER)
    assert tokens().pair_after(sealed, "issues", QUERY) == AFTER
    assert tokens().log_after(tokens().log_token("audit", QUERY, ResumeToken(7, 2)), "audit", QUERY)
    assert tokens().range_after(tokens().range_token(QUERY, 123), QUERY) == 123


def test_a_token_shows_nothing_it_holds() -> None:
    sealed = tokens().pair_token("issues", QUERY, AFTER)
    assert re.fullmatch(r"[A-Za-z0-9_=-]+", sealed)  # URL-safe text
    raw = base64.urlsafe_b64decode(sealed)
    for held in (b"SECRET", b"issue-1", b"issues", b'"k"', b"carl"):
        assert held not in raw


def test_an_altered_token_is_refused() -> None:
    raw = bytearray(base64.urlsafe_b64decode(tokens().key_token("series", (), "PX")))
    for at in (0, len(raw) // 2, len(raw) - 1):
        altered = raw.copy()
        altered[at] ^= 1
        token = base64.urlsafe_b64encode(bytes(altered)).decode()
        refused(tokens().key_after, token, "series", ())


def test_a_token_cut_short_is_refused() -> None:
    token = tokens().key_token("series", (), "PX")
    for cut in (1, 4, 24, len(token) - 4):
        refused(tokens().key_after, token[:cut], "series", ())


def test_a_token_of_another_key_is_refused() -> None:
    other = tokens(key=bytes(KEY_BYTES)).key_token("series", (), "PX")
    refused(tokens().key_after, other, "series", ())
    refused(PageTokens.random(lambda: "carl").key_after, other, "series", ())


def test_a_token_of_another_request_or_listing_is_refused() -> None:
    token = tokens().pair_token("issues", QUERY, AFTER)
    error = refused(tokens().pair_after, token, "issues", ("series/-", ()))
    assert "another request" in error.violations[0].description
    refused(tokens().key_after, token, "series", ())


def test_a_token_of_another_caller_is_refused() -> None:
    token = tokens("carl").key_token("series", (), "PX")
    refused(tokens("rita").key_after, token, "series", ())
    refused(tokens("").key_after, token, "series", ())


def test_a_token_longer_than_any_issued_is_refused_unread() -> None:
    longest = tokens().pair_token("issues", QUERY, ("S" * 128, "I" * 128))
    assert len(longest) < MAX_TOKEN_CHARS
    refused(tokens().key_after, "A" * (MAX_TOKEN_CHARS + 1), "series", ())


def test_a_feed_resume_token_is_plain_and_outlives_the_key() -> None:
    """A subscriber resumes after a restart: its tokens are positions, not sealed."""
    assert resume_after(resume_token("feed", ResumeToken(5, 1)), "resume_token", "feed") == (
        ResumeToken(5, 1)
    )


@pytest.mark.parametrize("text", ["", "not base64!", base64.b64encode(bytes(16)).decode()])
def test_a_key_setting_is_base64_of_32_bytes(text: str) -> None:
    with pytest.raises(ValueError, match="32"):
        page_token_key(text)
    assert page_token_key(base64.b64encode(KEY).decode()) == KEY
    assert page_token_key(base64.urlsafe_b64encode(KEY).decode()) == KEY
