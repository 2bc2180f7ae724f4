"""The page token key's rotation and the page tokens' lifetime (qis_query.application.paging): a
token sealed under a previous key still opens, one under a dropped key does not; every page token
expires a lifetime after it was issued, on the service's clock, and one issued before page
tokens held their issue time is refused as expired, while a Subscribe resume token, a
subscriber's bookmark, never expires; the settings that name the previous keys and the
lifetime, and what a bad one tells the start-up error (not the key)."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from pydantic import ValidationError
from qis_adapters.readstore.port import ResumeToken
from qis_domain.errors import InvalidArgument
from qis_query.application.paging import (
    KEY_BYTES,
    PAGE_TOKEN,
    PAGE_TOKEN_LIFETIME_US,
    PageTokens,
    resume_after,
    resume_token,
)
from qis_query.bootstrap import page_tokens
from qis_query.settings import QuerySettings

OLD, NEW, OTHER = (bytes([n]) * KEY_BYTES for n in (1, 2, 3))
ISSUED_US = 1_765_000_000_000_000
LIFETIME_US = 1_000


class Clock:
    def __init__(self) -> None:
        self.now_us = ISSUED_US

    def __call__(self) -> int:
        return self.now_us


def tokens(key: bytes, *previous: bytes, clock: Clock | None = None) -> PageTokens:
    return PageTokens(
        key,
        lambda: "carl",
        previous_keys=previous,
        clock_us=clock or Clock(),
        lifetime_us=LIFETIME_US,
    )


def refused(read: object, *args: object) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as error:
        read(*args)  # type: ignore[operator]
    return error.value


def test_a_token_sealed_under_a_previous_key_opens() -> None:
    """Mid-rotation, an instance with the new key current and the old one previous opens the
    tokens of an instance still on the old key, and the other way round once the old one lists
    the new key as previous. Fails today: there are no previous keys."""
    old_token = tokens(OLD).key_token("series", (), "PX")
    assert tokens(NEW, OLD).key_after(old_token, "series", ()) == "PX"
    new_token = tokens(NEW, OLD).pair_token("issues", (), ("PX", "i-1"))
    assert tokens(OLD, NEW).pair_after(new_token, "issues", ()) == ("PX", "i-1")


def test_the_current_key_seals() -> None:
    """A token of an instance with a previous key is sealed under its current key: the instances
    that dropped the previous key open it."""
    token = tokens(NEW, OLD).key_token("series", (), "PX")
    assert tokens(NEW).key_after(token, "series", ()) == "PX"
    assert refused(tokens(OLD).key_after, token, "series", ()).violations[0].field == PAGE_TOKEN


def test_a_token_sealed_under_a_dropped_key_is_refused() -> None:
    token = tokens(OLD).key_token("series", (), "PX")
    error = refused(tokens(NEW, OTHER).key_after, token, "series", ())
    assert [v.field for v in error.violations] == [PAGE_TOKEN]
    assert "list again without a token" in error.violations[0].description


def test_a_previous_key_keeps_the_caller_binding() -> None:
    token = tokens(OLD).key_token("series", (), "PX")
    rita = PageTokens(NEW, lambda: "rita", previous_keys=[OLD])
    refused(rita.key_after, token, "series", ())


def test_a_page_token_lasts_its_lifetime_to_the_microsecond() -> None:
    """Fails today: a token never expires."""
    clock = Clock()
    issued = tokens(OLD, clock=clock)
    token = issued.key_token("series", (), "PX")
    range_token = issued.range_token((), 42)
    clock.now_us = ISSUED_US + LIFETIME_US
    assert tokens(OLD, clock=clock).key_after(token, "series", ()) == "PX"
    assert tokens(OLD, clock=clock).range_after(range_token, ()) == 42
    clock.now_us += 1
    for read, args in (
        (tokens(OLD, clock=clock).key_after, (token, "series", ())),
        (tokens(OLD, clock=clock).range_after, (range_token, ())),
    ):
        error = refused(read, *args)
        assert [v.field for v in error.violations] == [PAGE_TOKEN]
        assert "expired" in error.violations[0].description
        assert "list again without a token" in error.violations[0].description


def test_a_resume_token_never_expires_nor_changes_form() -> None:
    """A subscriber resumes after its own outages, however long, and with a token an earlier
    version issued: the feed's tokens hold a position only, as before."""
    plain = base64.urlsafe_b64encode(b'{"k":"feed","position":5,"index":1}').decode()
    assert resume_token("feed", ResumeToken(5, 1)) == plain
    assert resume_after(plain, "resume_token", "feed") == ResumeToken(5, 1)


def test_a_token_issued_ahead_of_this_clock_opens() -> None:
    """Instances' clocks differ a little: a token another one issued 'later' is not refused."""
    ahead = Clock()
    ahead.now_us += 60_000_000
    token = tokens(OLD, clock=ahead).key_token("series", (), "PX")
    assert tokens(OLD).key_after(token, "series", ()) == "PX"


def _old_format(key: bytes, content: dict[str, object]) -> str:
    """A page token as the version before issue times sealed it: the same JSON, padded to the
    same length, under the same key, for the same caller, without "t"."""
    payload = json.dumps(content, separators=(",", ":")).encode().ljust(384)
    return base64.urlsafe_b64encode(AESSIV(key).encrypt(payload, [b"carl"])).decode()


def test_a_token_of_the_version_before_issue_times_is_refused_as_expired() -> None:
    """A client paging through a deployment is told to list again, not that its token is
    forged, nor an error. Fails today: such a token opens, and never expires."""
    digest = json.loads(_open_payload(tokens(OLD).key_token("series", (), "PX")))["q"]
    old = _old_format(OLD, {"k": "series", "after": "PX", "q": digest})
    error = refused(tokens(OLD).key_after, old, "series", ())
    assert [v.field for v in error.violations] == [PAGE_TOKEN]
    assert "expired" in error.violations[0].description


def _open_payload(token: str) -> bytes:
    return AESSIV(OLD).decrypt(base64.urlsafe_b64decode(token), [b"carl"])


def test_every_page_token_is_still_one_length() -> None:
    """The issue time fits the padding: a token tells nothing of the key it resumes after."""
    short = tokens(OLD).key_token("series", (), "B")
    longest = tokens(OLD).pair_token("issues", ("",), ("S" * 128, "I" * 128))
    assert len(short) == len(longest)


def _b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def test_the_settings_name_previous_keys_and_the_lifetime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QIS_QUERY_PAGE_TOKEN_KEY", _b64(NEW))
    monkeypatch.setenv("QIS_QUERY_PAGE_TOKEN_PREVIOUS_KEYS", f"{_b64(OLD)}, {_b64(OTHER)}")
    monkeypatch.setenv("QIS_QUERY_PAGE_TOKEN_TTL_S", "60")
    settings = QuerySettings()
    assert settings.page_token_keys() == (NEW, [OLD, OTHER])
    token = PageTokens(OTHER).key_token("series", (), "PX")
    assert page_tokens(settings).key_after(token, "series", ()) == "PX"
    clock = Clock()
    sixty = page_tokens(settings, clock).key_token("series", (), "PX")
    clock.now_us += 60_000_001
    error = refused(page_tokens(settings, clock).key_after, sixty, "series", ())
    assert "expired" in error.violations[0].description
    shown = [repr(settings), str(settings), str(settings.model_dump()), settings.model_dump_json()]
    assert not [s for s in shown if _b64(OLD) in s]


def test_a_bad_previous_key_fails_start_up_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    almost = base64.b64encode(b"k" * (KEY_BYTES - 1)).decode()
    monkeypatch.setenv("QIS_QUERY_PAGE_TOKEN_KEY", _b64(NEW))
    monkeypatch.setenv("QIS_QUERY_PAGE_TOKEN_PREVIOUS_KEYS", f"{_b64(OLD)},{almost}")
    with pytest.raises(ValidationError) as error:
        QuerySettings()
    text = str(error.value)
    assert "query_page_token_previous_keys" in text
    assert "previous key 2" in text
    assert almost not in text
    assert _b64(OLD) not in text


def test_previous_keys_without_a_key_fail_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QIS_QUERY_PAGE_TOKEN_PREVIOUS_KEYS", _b64(OLD))
    with pytest.raises(ValidationError, match="QIS_QUERY_PAGE_TOKEN_KEY") as error:
        QuerySettings()
    assert _b64(OLD) not in str(error.value)


def test_the_lifetime_is_three_days_unless_set_and_positive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert QuerySettings().query_page_token_ttl_s * 1_000_000 == PAGE_TOKEN_LIFETIME_US
    assert PAGE_TOKEN_LIFETIME_US == 72 * 3_600_000_000
    monkeypatch.setenv("QIS_QUERY_PAGE_TOKEN_TTL_S", "0")
    with pytest.raises(ValidationError):
        QuerySettings()
