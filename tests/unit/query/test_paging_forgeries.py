"""The sealed page tokens (qis_query.application.paging) and their key setting: what a client
may learn from a token it cannot read (not the length of the key it resumes after), forged and
malformed tokens, and what a bad key setting tells whoever reads the start-up error (not the
key)."""

from __future__ import annotations

import base64
import json

import pytest
from pydantic import ValidationError
from qis_domain.errors import InvalidArgument
from qis_query.application.paging import (
    KEY_BYTES,
    PAGE_TOKEN,
    PageTokens,
    resume_after,
)
from qis_query.settings import QuerySettings

KEY = bytes(range(KEY_BYTES))
RESUME_TOKEN = "resume_token"


def tokens(caller: str = "carl") -> PageTokens:
    return PageTokens(KEY, lambda: caller)


def test_a_token_does_not_tell_the_length_of_the_key_it_resumes_after() -> None:
    """A listing that holds records back may resume after one the caller may not read
    (scanning): sealing hides the key's text, but AES-SIV keeps the payload's length, so a token
    resuming after a hidden series told how long its id is (the ids around it are known: the
    listing is in order). Fails today: the token grows with the id."""
    short = tokens().key_token("series", (), "B")
    long = tokens().key_token("series", (), "B" + "X" * 100)
    assert len(short) == len(long)
    pair_short = tokens().pair_token("issue-pages", ("", ()), ("B", "i"))
    pair_long = tokens().pair_token("issue-pages", ("", ()), ("B" * 128, "i" * 64))
    assert len(pair_short) == len(pair_long)


def test_a_bad_key_setting_is_refused_without_echoing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A key one byte short is most likely the real key mis-pasted: the start-up error (a
    traceback on stderr, collected with the logs) must say what is wrong, not print it. Fails
    today: pydantic's error quotes the input (input_value='...')."""
    almost = base64.b64encode(b"k" * (KEY_BYTES - 1)).decode()
    monkeypatch.setenv("QIS_QUERY_PAGE_TOKEN_KEY", almost)
    with pytest.raises(ValidationError) as error:
        QuerySettings()
    text = str(error.value)
    assert "query_page_token_key" in text
    assert str(KEY_BYTES) in text
    assert almost not in text


def test_a_good_key_is_never_shown_by_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    key = base64.b64encode(KEY).decode()
    monkeypatch.setenv("QIS_QUERY_PAGE_TOKEN_KEY", key)
    settings = QuerySettings()
    shown = [repr(settings), str(settings), str(settings.model_dump()), settings.model_dump_json()]
    assert not [s for s in shown if key in s]


def _refused(read: object, *args: object) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as error:
        read(*args)  # type: ignore[operator]
    return error.value


@pytest.mark.parametrize(
    "token",
    [
        "!!!!",  # not base64
        "é" * 40,  # not ASCII: base64 skips the characters it does not know
        "=",
        "A",  # a bad padding
        base64.urlsafe_b64encode(bytes(16)).decode(),  # a SIV without a payload
        base64.urlsafe_b64encode(bytes(17)).decode(),
        base64.urlsafe_b64encode(b'{"k":"series","after":"PX","q":"x"}').decode(),  # plain
    ],
)
def test_a_malformed_page_token_is_invalid_argument_on_page_token(token: str) -> None:
    error = _refused(tokens().key_after, token, "series", ())
    assert [v.field for v in error.violations] == [PAGE_TOKEN]


def _plain(content: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(content).encode()).decode()


@pytest.mark.parametrize(
    "token",
    [
        _plain({"k": "feed", "position": -1, "index": 0}),
        _plain({"k": "feed", "position": 2**64, "index": 0}),
        _plain({"k": "feed", "position": 1, "index": 2**31}),
        _plain({"k": "feed", "position": True, "index": 0}),
        _plain({"k": "feed", "position": 1.0, "index": 0}),
        _plain({"k": "feed", "position": "1", "index": 0}),
        _plain({"k": "series", "position": 1, "index": 0}),
        _plain([1, 2]),
        base64.urlsafe_b64encode(b"[" * 1500).decode()[:2000],  # nested past json's limit
        base64.urlsafe_b64encode(b"\xff\xfe{").decode(),  # not UTF-8
        base64.urlsafe_b64encode(b'{"k":"feed","position":' + b"9" * 1400 + b"}").decode(),
    ],
)
def test_a_forged_resume_token_is_invalid_argument_on_resume_token(token: str) -> None:
    """A resume token is plain: whatever a client forges is refused before it reaches a store,
    never read as another position."""
    error = _refused(resume_after, token, RESUME_TOKEN, "feed")
    assert [v.field for v in error.violations] == [RESUME_TOKEN]
