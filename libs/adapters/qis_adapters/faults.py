"""Faults of the place data lives, told apart from faults of the data: one classification for
every process and adapter.

A store fault (a full disk, a lock held too long, a read-only file, an I/O error, an unreachable
MongoDB or KurrentDB) is not the request's or the event's: nothing was written, and the same
call succeeds once the store recovers, so the command side answers a retryable status and the
projector waits and tries again. Any other failure is deterministic: trying again fails again.
"""

from __future__ import annotations

import sqlite3
import sys

from qis_domain.errors import RetryLater


class StoreUnavailable(RetryLater):
    """A store is locked, read-only, failing I/O or unreachable; nothing was written."""


class StoreFull(StoreUnavailable):
    """A store is out of space; nothing was written."""

    kind = "full"
    retry_after_s = 30.0


_SQLITE_UNAVAILABLE = frozenset(
    {
        sqlite3.SQLITE_BUSY,  # database is locked (by another connection)
        sqlite3.SQLITE_LOCKED,  # a table is locked (within one connection's shared cache)
        sqlite3.SQLITE_READONLY,  # read-only file, directory or file system
        sqlite3.SQLITE_IOERR,  # the file system failed a read or write (ENOSPC, EIO)
        sqlite3.SQLITE_CANTOPEN,  # e.g. no journal can be created in a read-only directory
    }
)


def sqlite_fault(error: sqlite3.Error, where: object) -> StoreUnavailable | None:
    """The store fault a SQLite error is, if it is one. Errors the sqlite3 module raises on its
    own (a closed connection) carry no result code: not a store fault."""
    code: int | None = getattr(error, "sqlite_errorcode", None)
    if code is None:
        return None
    primary = code & 0xFF  # extended result codes carry the primary code in their low byte
    if primary == sqlite3.SQLITE_FULL:
        return StoreFull(f"{where}: {error}")
    if primary in _SQLITE_UNAVAILABLE:
        return StoreUnavailable(f"{where}: {error}")
    return None


def store_fault(error: BaseException) -> RetryLater | None:
    """The store fault behind `error`, if there is one: `error` itself when an adapter already
    said so, else one made from the driver's error. The chain of causes counts as Python prints
    it: a cleanup that fails after a store error must not hide that error."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if (fault := _fault(current)) is not None:
            return fault
        seen.add(id(current))
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    return None


def _fault(error: BaseException) -> RetryLater | None:
    if isinstance(error, RetryLater):
        return error
    if isinstance(error, ConnectionError | TimeoutError):
        return StoreUnavailable(f"{type(error).__name__}: {error}")
    if isinstance(error, sqlite3.Error):
        return sqlite_fault(error, type(error).__name__)
    # No pymongo error can exist unless pymongo was imported; importing it only to look costs
    # a SQLite-only process a tenth of a second at start.
    if "pymongo" in sys.modules:
        from pymongo import errors

        if isinstance(
            error, errors.ConnectionFailure | errors.ExecutionTimeout | errors.WTimeoutError
        ):
            return StoreUnavailable(f"{type(error).__name__}: {error}")
    return None
