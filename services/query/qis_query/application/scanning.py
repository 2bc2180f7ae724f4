"""One page of a listing read from the store in key order, with the part of its filter the store
cannot apply checked here, at a bounded cost per call.

A selective filter could otherwise make one call read a whole table to fill a page. A call
reads at most a bounded number of records (QueryLimits.max_scanned_per_call): then its page
ends, short or even empty, with the key of the last record read, and the next call resumes the
scan there (AIP-158 allows such pages; the list RPCs' contract says to page until the token is
empty)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

R = TypeVar("R")
K = TypeVar("K")

READ_SIZE = 500
"""Records per store read when some of the filter is checked here, unless the page is larger:
a selective filter keeps few of them, and a store read costs far more than checking a record."""

ReadAfter = Callable[[K, int], Awaitable[list[R]]]
"""(after, limit) -> at most limit records with keys after `after`, in key order."""


@dataclass(frozen=True, slots=True)
class Scanned(Generic[R, K]):
    items: list[R]
    resume_after: K | None  # the key the next page starts after; None when the listing ended


async def scan(
    read: ReadAfter[K, R],
    key: Callable[[R], K],
    keep: Callable[[R], bool] | None,
    after: K,
    page_size: int,
    max_scanned: int,
) -> Scanned[R, K]:
    """Up to `page_size` records after `after` that `keep` (every one when None, as the store
    filtered them all: then one read of a page), reading at most `max_scanned` records when
    `keep` is given."""
    items: list[R] = []
    scanned = 0
    while True:
        want = page_size if keep is None else min(max(page_size, READ_SIZE), max_scanned - scanned)
        records = await read(after, want)
        scanned += len(records)
        ended = len(records) < want  # the store had no more
        for at, record in enumerate(records, 1):
            if keep is None or keep(record):
                items.append(record)
                if len(items) == page_size:
                    last = ended and at == len(records)
                    return Scanned(items, None if last else key(record))
        if ended:
            return Scanned(items, None)
        after = key(records[-1])
        if scanned >= max_scanned:
            return Scanned(items, after)
