"""Which failures the projector waits out, and how long it waits between tries.

A transient failure is the store's, not the event's: a full disk, a lock held too long, a
read-only file, an unreachable MongoDB. The same write succeeds once the store recovers, so the
projector pauses and tries again. Any other failure is deterministic: the log is immutable, so
trying the same event again fails the same way.
"""

from __future__ import annotations

import random
import sqlite3
import sys
from dataclasses import dataclass

from qis_adapters.eventstore.port import EventStoreUnavailable

_SQLITE_TRANSIENT = frozenset(
    {
        sqlite3.SQLITE_FULL,  # database or disk is full
        sqlite3.SQLITE_BUSY,  # database is locked (by another connection)
        sqlite3.SQLITE_LOCKED,  # a table is locked (within one connection's shared cache)
        sqlite3.SQLITE_READONLY,  # read-only file, directory or file system
        sqlite3.SQLITE_IOERR,  # the file system failed a read or write (ENOSPC, EIO)
        sqlite3.SQLITE_CANTOPEN,  # e.g. no journal can be created in a read-only directory
    }
)


def _is_transient(error: BaseException) -> bool:
    if isinstance(error, EventStoreUnavailable | ConnectionError | TimeoutError):
        return True
    if isinstance(error, sqlite3.Error):
        # Errors the sqlite3 module raises on its own (a closed connection) carry no code.
        code: int | None = getattr(error, "sqlite_errorcode", None)
        # Extended result codes carry the primary code in their low byte.
        return code is not None and (code & 0xFF) in _SQLITE_TRANSIENT
    # No pymongo error can exist unless pymongo was imported; importing it only to look costs
    # a SQLite-only process a tenth of a second at start.
    if "pymongo" in sys.modules:
        from pymongo import errors

        return isinstance(
            error, errors.ConnectionFailure | errors.ExecutionTimeout | errors.WTimeoutError
        )
    return False


def transient_cause(error: BaseException) -> BaseException | None:
    """The transient failure behind `error`, if there is one.

    The chain of causes counts as Python prints it: a cleanup that fails after a store error
    (a ROLLBACK of a transaction SQLite already rolled back) must not hide that error.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if _is_transient(current):
            return current
        seen.add(id(current))
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    return None


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


@dataclass(frozen=True, slots=True)
class Backoff:
    """Pauses between tries: doubling from `first_s` up to `cap_s`."""

    first_s: float = 0.25
    cap_s: float = 30.0

    def delay(self, failures: int) -> float:
        """The pause after `failures` failures in a row (1 or more). Drawn from the upper half of
        the step, so that processes that failed together do not retry in lockstep."""
        step = min(self.cap_s, self.first_s * 2 ** min(failures - 1, 32))
        return random.uniform(step / 2, step)
