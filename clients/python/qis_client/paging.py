"""Following page tokens, for unary list calls and for streamed ranges alike.

ListSeries, ListAuditEntries and ListQualityIssues answer one page and a next_page_token;
QueryRange streams messages, each with a next_page_token, and a long range may end one call
with a token to continue in the next. Both are "call with a token, read messages, continue with
the last message's token until it is empty": a unary page is a stream of one message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

P = TypeVar("P")


class PagingError(RuntimeError):
    """The service handed back the token it was given: continuing would loop forever."""


def pages(
    call: Callable[[str], Iterable[P]], next_token: Callable[[P], str], token: str = ""
) -> Iterator[P]:
    """Every message of every call, each call made with the token of the previous call's last
    message, until a message carries an empty token (or a call has no message at all)."""
    while True:
        last: str | None = None
        for message in call(token):
            yield message
            last = next_token(message)
        if not last:
            return
        if last == token:
            raise PagingError(f"the service answered page token {token!r} with itself")
        token = last
