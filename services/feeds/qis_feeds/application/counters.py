"""What a feed did, counted: every raw value ends in exactly one of sent, skipped, dropped or
held back (once its chunk is answered), and every resend is counted as a retry."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FeedCounters:
    received: int = 0
    """Raw values handed over by the providers."""
    sent: int = 0
    """Points acknowledged by the command service: stored now, or found stored already."""
    accepted: int = 0
    """Of `sent`, points stored by this run."""
    duplicates: int = 0
    """Of `sent`, points of chunks the service had handled already (a re-run, a resend)."""
    flagged: int = 0
    """Of `accepted`, points that failed a quality rule (stored, flagged and held)."""
    skipped: int = 0
    """Identical repeats of a point already in the same chunk: not sent twice."""
    malformed: int = 0
    """Dropped before sending: not a point (NaN, no time zone, a bar for a price series)."""
    rejected: int = 0
    """Dropped by the service: points of chunks it refused (unknown series, bad value)."""
    held_back: int = 0
    """Points of the partial chunks a failed history load did not send: the re-run makes the
    same chunks and sends them there (sent now, they would be stored twice by then)."""
    chunks: int = 0
    """Chunks acknowledged (committed or duplicate)."""
    retried: int = 0
    """Chunks sent again: their stream broke before they were answered, or the service asked
    for a retry (a full or locked store, contention)."""
    last_position: int = 0
    last_error: str = ""
    health_reports: int = 0
    """Health reports of the feeds' sources recorded by the command service."""
    health_reports_failed: int = 0
    """Health reports it did not record (unreachable, a disabled source): the next interval's
    report follows anyway."""

    @property
    def dropped(self) -> int:
        return self.malformed + self.rejected

    def summary(self) -> str:
        return (
            f"received {self.received:,}, sent {self.sent:,} (stored {self.accepted:,},"
            f" already stored {self.duplicates:,}, flagged {self.flagged:,}), skipped"
            f" {self.skipped:,}, dropped {self.dropped:,} (malformed {self.malformed:,},"
            f" rejected {self.rejected:,}), held back {self.held_back:,}, chunks"
            f" {self.chunks:,}, retried {self.retried:,},"
            f" last position {self.last_position}"
        )
