"""`qis ingest`: one file into one series, through the bidirectional BulkIngest stream.

Chunks are pipelined: up to `window` of them are on the wire unacknowledged, so the server is
never idle waiting for the next chunk, while memory stays bounded by window x chunk size rows.
A rejected chunk does not stop the import: its rows with errors are reported, and its other rows
are sent again on their own, as a new chunk with an id derived from the rejected one. A row whose
snap cannot be read is not sent at all: it is reported like a rejected row.
"""

from __future__ import annotations

import heapq
import itertools
import queue
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import grpc
from google.rpc import status_pb2
from qis.data.v1 import command_service_pb2, command_service_pb2_grpc

from qis_cli.chunks import Chunk, ImportKey, RowProblem, chunks_of, judge_rejection
from qis_cli.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    Violation,
    code_name,
    describe_status,
    exit_code_of,
    hint_for,
    status_of_rpc_error,
    violations_of,
)
from qis_cli.kinds import ValueKind
from qis_cli.progress import Progress
from qis_cli.readers import Row

DEFAULT_WINDOW = 8
REPORTED_PROBLEMS = 20

Encode = Callable[[Chunk], command_service_pb2.IngestPointsRequest]

# Errors that every chunk of this import would get: continuing would only repeat them.
_IMPORT_WIDE_CODES = frozenset(
    c.value[0]
    for c in (
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
    )
)
_IMPORT_WIDE_FIELDS = frozenset({"series", "source", "command_id"})
# A violation on the value itself, not on one of its fields, is the series' data type refusing
# the kind of value sent (the CLI always sends a value, so it cannot be a missing one).
_WRONG_KIND = re.compile(r"points\[\d+\]\.value")


@dataclass(frozen=True, slots=True)
class IngestTarget:
    series_id: str
    source_id: str
    kind: ValueKind

    @property
    def series_name(self) -> str:
        return f"series/{self.series_id}"

    @property
    def source_name(self) -> str:
        return f"sources/{self.source_id}"

    def request(self, chunk: Chunk) -> command_service_pb2.IngestPointsRequest:
        request = command_service_pb2.IngestPointsRequest(
            command_id=chunk.command_id, series=self.series_name, source=self.source_name
        )
        self.kind.fill(request.points, chunk.points)
        return request


class RejectionLog:
    """The first `limit` problems in file order, and how many there were: a file of millions of
    bad rows must not fill memory with error messages nobody reads."""

    def __init__(self, limit: int = REPORTED_PROBLEMS) -> None:
        self._limit = limit
        self._heap: list[tuple[int, int, RowProblem]] = []
        self._order = itertools.count()
        self.total = 0

    def add(self, problem: RowProblem) -> None:
        self.total += 1
        # Max-heap on the row number (negated), so the latest row is the one evicted.
        heapq.heappush(self._heap, (-problem.rows[0].number, -next(self._order), problem))
        if len(self._heap) > self._limit:
            heapq.heappop(self._heap)

    def first(self) -> list[RowProblem]:
        return [p for _, _, p in sorted(self._heap, reverse=True)]


@dataclass
class IngestSummary:
    row_label: str
    renamed: Mapping[str, str] = field(default_factory=dict)
    """Field -> file column (--columns): problems name the column a person sees in the file."""
    rows_read: int = 0
    accepted: int = 0
    duplicates: int = 0
    flagged: int = 0
    rejected_rows: int = 0
    chunks: int = 0
    rejected_chunks: int = 0
    resent_chunks: int = 0
    last_position: int = 0
    stopped: str | None = None
    """Why the import stopped before the end of the file: an error every further chunk would
    have got too, a broken stream, an unreadable row, or Ctrl-C."""
    stop_exit_code: int = EXIT_USAGE
    elapsed_s: float = 0.0
    problems: RejectionLog = field(default_factory=RejectionLog)

    @property
    def exit_code(self) -> int:
        if self.stopped is not None:
            return self.stop_exit_code
        return EXIT_FAILED if self.rejected_rows else EXIT_OK

    @property
    def nothing_done(self) -> bool:
        """No row was stored, found stored already, or judged: a summary would be all zeros."""
        return not (self.accepted or self.duplicates or self.rejected_rows)

    def stop(self, reason: str, exit_code: int = EXIT_USAGE) -> None:
        self.stopped = reason
        self.stop_exit_code = exit_code

    def refuse(self, problem: RowProblem) -> None:
        """Rows read but never sent: their snap could not be read."""
        self.rows_read += len(problem.rows)
        self.rejected_rows += len(problem.rows)
        self.problems.add(problem)

    def record_result(self, chunk: Chunk, result: command_service_pb2.IngestPointsResponse) -> None:
        self.last_position = max(self.last_position, result.commit_position)
        if result.duplicate:
            self.duplicates += len(chunk.points)
        else:
            self.accepted += result.accepted
            self.flagged += result.flagged


class _Window:
    """Hands chunks to gRPC's sending thread, at most `size` unacknowledged at a time.

    Responses come back in request order, so the chunks in flight form a queue and each
    response belongs to the oldest one. Re-sent chunks go out before new ones from the file.
    """

    def __init__(self, chunks: Iterator[Chunk], size: int, encode: Encode) -> None:
        self._file: Iterator[Chunk] | None = chunks
        self._size = size
        self._encode = encode
        self._lock = threading.Condition()
        self._in_flight: deque[Chunk] = deque()
        self._resend: deque[Chunk] = deque()
        self._closed = False
        self.rows_sent = 0
        self.read_error: CliError | None = None

    def requests(self) -> Iterator[command_service_pb2.IngestPointsRequest]:
        while True:
            with self._lock:
                self._lock.wait_for(self._may_move)
                if self._closed:
                    return
                if self._resend:
                    chunk: Chunk | None = self._resend.popleft()
                elif self._file is None:
                    # Every chunk is answered and none awaits re-sending: half-close, which
                    # lets the server end the stream.
                    return
                else:
                    chunk = None
            if chunk is None:
                chunk = self._next_from_file()
                if chunk is None:
                    continue
            with self._lock:
                # In the queue before it is on the wire: its response may come right away.
                self._in_flight.append(chunk)
                self.rows_sent += len(chunk.points)
            yield self._encode(chunk)

    def _may_move(self) -> bool:
        if self._closed:
            return True
        if self._file is None and not self._resend:
            return not self._in_flight
        return len(self._in_flight) < self._size

    def _next_from_file(self) -> Chunk | None:
        # Read outside the lock, so acknowledgements keep flowing while the file is parsed.
        try:
            chunk = next(self._file, None) if self._file is not None else None
        except Exception as error:
            # This runs on gRPC's thread, which would only log it: keep it for the caller, and
            # let the chunks already sent finish.
            self.read_error = (
                error
                if isinstance(error, CliError)
                else CliError(f"reading the file failed: {error}")
            )
            chunk = None
        if chunk is None:
            self.stop_reading()
        return chunk

    def acknowledge(self, command_id: str) -> Chunk:
        with self._lock:
            if not self._in_flight or self._in_flight[0].command_id != command_id:
                expected = self._in_flight[0].command_id if self._in_flight else "nothing"
                raise CliError(
                    f"the server answered chunk {command_id} while {expected} was expected"
                )
            chunk = self._in_flight.popleft()
            self._lock.notify_all()
            return chunk

    def resend(self, chunk: Chunk) -> None:
        with self._lock:
            self._resend.append(chunk)
            self._lock.notify_all()

    def stop_reading(self) -> None:
        with self._lock:
            self._file = None
            self._lock.notify_all()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify_all()


def _import_wide(
    status: status_pb2.Status, violations: list[Violation], target: IngestTarget
) -> CliError | None:
    """The reason the whole import cannot succeed, if this rejection shows one."""
    if status.code in _IMPORT_WIDE_CODES or {v.field for v in violations} & _IMPORT_WIDE_FIELDS:
        return CliError(describe_status(status) + hint_for(status), exit_code_of(status))
    wrong_kind = next((v for v in violations if _WRONG_KIND.fullmatch(v.field)), None)
    if wrong_kind is not None:
        return CliError(
            f"{target.series_name} does not take {target.kind} values"
            f" ({wrong_kind.description}).\n"
            "  Leave --type out to have it read from the series definition."
        )
    return None


def run_ingest(
    stub: command_service_pb2_grpc.CommandServiceStub,
    target: IngestTarget,
    rows: Iterable[Row],
    key: ImportKey,
    metadata: tuple[tuple[str, str], ...],
    summary: IngestSummary,
    progress: Progress,
    window: int = DEFAULT_WINDOW,
) -> IngestSummary:
    """Streams the rows in chunks and fills `summary` as acknowledgements arrive.

    An import that cannot go on (a broken stream, an unreadable row, Ctrl-C) still returns its
    summary, with the reason in `stopped`: what was committed stays committed, and running the
    same command again resumes, since committed chunks come back as duplicates.
    """
    # Rows are read, and refused, on gRPC's sending thread: the refusals reach the summary
    # through a queue, read here between acknowledgements and at the end.
    refused: queue.SimpleQueue[RowProblem] = queue.SimpleQueue()
    flow = _Window(chunks_of(rows, key, refused.put), window, target.request)
    started = time.monotonic()
    answered = 0
    call = stub.BulkIngest(flow.requests(), metadata=metadata)
    try:
        for response in call:
            _count_refused(refused, summary)
            chunk = flow.acknowledge(response.command_id)
            answered += len(chunk.points)
            if not chunk.resent:
                summary.chunks += 1
                summary.rows_read += len(chunk.points)
            if response.WhichOneof("outcome") == "result":
                summary.record_result(chunk, response.result)
            elif summary.stopped is None:
                _rejected(flow, summary, target, chunk, response.error)
            progress.update(flow.rows_sent, answered)
    except grpc.RpcError as error:
        status = status_of_rpc_error(error)
        summary.stop(
            describe_status(status) + hint_for(status) + _resume_hint(answered),
            exit_code_of(status),
        )
    except KeyboardInterrupt:
        summary.stop("interrupted" + _resume_hint(answered), EXIT_INTERRUPTED)
    finally:
        flow.close()
        call.cancel()  # a no-op once the stream has ended; stops gRPC's sending thread otherwise
        # Every refusal is in by now when the file was read to its end: the stream ended after
        # the last chunk was taken from it.
        _count_refused(refused, summary)
        progress.finish()
        summary.elapsed_s = time.monotonic() - started
    if flow.read_error is not None and summary.stopped is None:
        summary.stop(f"{flow.read_error}" + _resume_hint(answered))
    return summary


def _count_refused(refused: queue.SimpleQueue[RowProblem], summary: IngestSummary) -> None:
    while True:
        try:
            summary.refuse(refused.get_nowait())
        except queue.Empty:
            return


def _resume_hint(answered: int) -> str:
    if not answered:
        return ""
    return (
        "\n  Running the same command again (same file, same --chunk-size) resumes: the chunks"
        " already committed come back as duplicates."
    )


def _rejected(
    flow: _Window,
    summary: IngestSummary,
    target: IngestTarget,
    chunk: Chunk,
    status: status_pb2.Status,
) -> None:
    violations = violations_of(status)
    if (reason := _import_wide(status, violations, target)) is not None:
        summary.stop(str(reason), reason.exit_code)
        flow.stop_reading()
        return
    rejection = judge_rejection(chunk, violations, f"{code_name(status.code)}: {status.message}")
    summary.rejected_chunks += 1
    summary.rejected_rows += rejection.rejected_rows
    for problem in rejection.problems:
        summary.problems.add(problem)
    if rejection.retry is not None:
        summary.resent_chunks += 1
        flow.resend(rejection.retry)


def render_summary(summary: IngestSummary, file_name: str, target: IngestTarget) -> str:
    s = summary
    rate = s.rows_read / s.elapsed_s if s.elapsed_s > 0 else 0.0
    lines = [
        f"{file_name} -> {target.series_name} from {target.source_name}",
        f"  rows read:            {s.rows_read:>10,}",
        f"  accepted:             {s.accepted:>10,}  (flagged by quality rules: {s.flagged:,})",
        f"  duplicates:           {s.duplicates:>10,}  (already imported)",
        f"  rejected:             {s.rejected_rows:>10,}",
    ]
    if s.rejected_chunks:
        lines.append(
            f"  chunks:               {s.chunks:>10,}  ({s.rejected_chunks:,} rejected;"
            f" {s.resent_chunks:,} re-sent with their valid rows only)"
        )
    lines.append(f"  last commit position: {s.last_position:>10}")
    lines.append(f"  time:                 {s.elapsed_s:>10.2f} s  ({rate:,.0f} rows/s)")
    shown = s.problems.first()
    if shown:
        lines.append("rejected rows:")
        lines.extend(f"  {_problem_text(p, s.row_label, s.renamed)}" for p in shown)
        if s.problems.total > len(shown):
            lines.append(f"  ... and {s.problems.total - len(shown):,} more")
    if s.stopped is not None:
        lines.append(f"import stopped: {s.stopped}")
    elif s.rejected_rows:
        lines.append(
            "To import the rejected rows, put them, corrected, in a file of their own: re-running"
            " this file would only reject them again (the rest come back as duplicates)."
        )
    return "\n".join(lines)


def _problem_text(problem: RowProblem, label: str, renamed: Mapping[str, str]) -> str:
    where = f"{renamed.get(problem.field, problem.field)}: " if problem.field else ""
    rows = problem.rows
    if len(rows) == 1:
        return f"{label} {rows[0].number}: {where}{problem.reason}"
    return (
        f"{label}s {rows[0].number}-{rows[-1].number} ({len(rows):,} rows): {where}{problem.reason}"
    )
