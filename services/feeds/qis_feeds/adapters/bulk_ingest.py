"""The ChunkSender of the command API: one BulkIngest stream, chunks in columns, at most
`window` of them unacknowledged, each answered on its own.

What can go wrong, and what is done:
- the stream breaks (the service restarts, the network drops, the service ends an idle stream,
  or ends one without a status before the sender half-closed it): the chunks not yet answered
  are sent again on a new stream, after a jittered backoff. Their ids are those of their
  content, so one that had been committed comes back as a duplicate;
- the service refuses a chunk and says when to retry (RetryInfo: a locked or full store,
  contention): the stream is ended the same way and the chunk sent again after that delay;
- the service refuses a chunk for good, naming rows (a value beyond the bounds): those rows
  are dropped and counted, the others sent again as a chunk of their own (a derived id);
  without rows named (an unknown series, no permission), the chunk's points are dropped and
  counted, or, with `stop_on_refusal` (a one-off load), the load stops, since every other chunk
  would be refused alike;
- the service refuses a chunk as too large (REQUEST_TOO_LARGE: a QIS_COMMAND_MAX_REQUEST_BYTES
  below the chunks' size; or gRPC's own refusal, beyond twice that), which ends the stream
  after the chunks before it were answered (beyond twice, the one before may go unanswered and
  is sent again): the chunk is sent again at once in two halves, each a chunk of its own, halved
  again until they fit; a single point that large is refused for good, as above. The halves'
  ids are of their points, so a load run again with a higher limit sends the whole chunk under
  a new id: its points are stored again as new observations of the same values.
- gRPC's asyncio client reports a stream the service ended while a write of ours was in
  flight (a chunk too large, say) as INTERNAL "Internal error from Core": a known bug of that
  client (grpc/grpc#36066) that loses the service's own status. The stream is opened again at
  once (not a failure of the service: no backoff), where the service answers again; three such
  ends in a row, none answering a chunk, count as a broken stream, backoff and all.
- the sender's own writing fails (a bug: a chunk it cannot encode): the stream is cancelled and
  the load ends with that error, however the stream ended meanwhile; a cancellation of the load
  stays a cancellation.
An idle stream is closed before the service's idle timeout ends it, and opened again with the
next chunk.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import grpc
import grpc.aio
from google.protobuf import duration_pb2, timestamp_pb2
from google.rpc import error_details_pb2, status_pb2
from qis.data.v1 import command_service_pb2, command_service_pb2_grpc, series_pb2, values_pb2

from qis_feeds.application.batching import Chunk, make_chunk, salvage_id
from qis_feeds.application.counters import FeedCounters
from qis_feeds.application.points import ValueKind
from qis_feeds.application.ports import HealthInterval, SourceStatus

log = logging.getLogger("qis.feeds.sender")

Metadata = tuple[tuple[str, str], ...]
Acknowledged = Callable[[Chunk, command_service_pb2.IngestPointsResponse], None]

_CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}
_ROW = re.compile(r"(?:points|columns\.[a-z_.]+)\[(\d+)\]")
_TOO_LARGE = "REQUEST_TOO_LARGE"
# What gRPC's asyncio client reports in place of the status it lost (grpc/grpc#36066), and how
# many such ends in a row are sent again at once.
_LOST_STATUS = "Internal error from Core"
_LOST_AT_ONCE = 3
# gRPC's own refusal of a message over its receive limit: the message's size, then the limit.
_GRPC_TOO_LARGE = re.compile(r"larger than max \((\d+) vs\. \d+\)")
_GIVE_UP_CODES = frozenset(
    c.value[0]
    for c in (
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
    )
)


class SendStopped(Exception):
    """The service refused a chunk in a way every other chunk would be refused too."""

    def __init__(self, message: str, status: status_pb2.Status) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class SenderSettings:
    window: int = 8
    """Chunks on the wire unacknowledged (QIS_FEEDS_IN_FLIGHT)."""
    idle_close_s: float = 30.0
    """A stream that carried no chunk this long is closed (below the service's 60 s)."""
    backoff_first_s: float = 0.5
    backoff_cap_s: float = 30.0
    max_stream_failures: int | None = None
    """Broken streams in a row before giving up (one that answered a chunk starts the row
    again); None: never (a long-running feed)."""
    stop_on_refusal: bool = False


def encode(chunk: Chunk) -> command_service_pb2.IngestPointsRequest:
    """The chunk as one IngestPointsRequest in columns (cheaper to build and to parse)."""
    points = chunk.points
    offsets = [p.offset_min for p in points]
    distinct = set(offsets)
    columns = values_pb2.PointColumns(
        snap_time_micros=[p.snap_us for p in points],
        utc_offset_minutes=[]
        if distinct == {0}
        else offsets[:1]
        if len(distinct) == 1
        else offsets,
    )
    if chunk.kind is ValueKind.PRICE:
        columns.prices.texts.extend(p.values[0] for p in points)
    elif chunk.kind is ValueKind.VOLUME:
        columns.volumes.texts.extend(p.values[0] for p in points)
    else:
        bars = columns.bars
        for index, column in enumerate((bars.open, bars.high, bars.low, bars.close)):
            column.texts.extend(p.values[index] for p in points)
        volumes = [p.values[4] for p in points]
        if any(volumes):
            bars.volume.texts.extend(volumes)
    return command_service_pb2.IngestPointsRequest(
        command_id=chunk.command_id,
        series=f"series/{chunk.series_id}",
        source=f"sources/{chunk.source_id}",
        columns=columns,
    )


def _retry_delay(status: status_pb2.Status) -> float | None:
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            delay: duration_pb2.Duration = info.retry_delay
            return delay.seconds + delay.nanos / 1e9
    return None


def _status_of(error: grpc.aio.AioRpcError) -> status_pb2.Status | None:
    """The google.rpc.Status a call ended with, when the service sent one."""
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            return status_pb2.Status.FromString(value)
    return None


def _reason(status: status_pb2.Status) -> str | None:
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return str(info.reason)
    return None


def _too_large(error: grpc.aio.AioRpcError) -> status_pb2.Status | None:
    """The status of a refusal of a request as too large, None for any other end of a call:
    the service's REQUEST_TOO_LARGE, or RESOURCE_EXHAUSTED with no status details, which only
    gRPC's own refusal of a message beyond twice that limit answers (every refusal of the
    service carries an ErrorInfo)."""
    status = _status_of(error)
    if status is None:
        if error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
            return None
        return status_pb2.Status(code=error.code().value[0], message=error.details() or "")
    return status if _reason(status) == _TOO_LARGE else None


def _status_lost(error: grpc.aio.AioRpcError | _Retry) -> bool:
    """Whether gRPC's asyncio client lost the status the stream ended with (see the module's
    docstring)."""
    return (
        isinstance(error, grpc.aio.AioRpcError)
        and error.code() == grpc.StatusCode.INTERNAL
        and error.details() == _LOST_STATUS
    )


def _named_rows(status: status_pb2.Status, rows: int) -> set[int] | None:
    """The rows a refusal names, None when it names none (or a field of the whole chunk)."""
    named: set[int] = set()
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            for violation in bad.field_violations:
                match = _ROW.match(violation.field)
                if match is None or int(match[1]) >= rows:
                    return None
                named.add(int(match[1]))
    return named or None


def _own_failure(writer: asyncio.Task[bool]) -> BaseException | None:
    """The writer's failure that is not the stream's own end (a bug), None for any other."""
    if not writer.done() or writer.cancelled():
        return None
    failure = writer.exception()
    if isinstance(failure, grpc.aio.AioRpcError | asyncio.InvalidStateError):
        return None  # the stream ended: the reader sees it too, after the answers before it
    return failure


def _load_cancelled() -> bool:
    """Whether the task running the load is being cancelled (not only grpc.aio's call)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _cancel_on_own_failure(call: grpc.aio.Call, writer: asyncio.Task[bool]) -> None:
    """A writer failing on its own ends the stream, or the reader waits forever for answers
    to chunks it wrote (grpc.aio then ends the reader with CancelledError: see _stream)."""
    if _own_failure(writer) is not None:
        call.cancel()


class _Retry(Exception):
    def __init__(self, delay_s: float, reason: str) -> None:
        super().__init__(reason)
        self.delay_s = delay_s


class BulkIngestSender:
    def __init__(
        self,
        stub: command_service_pb2_grpc.CommandServiceAsyncStub,
        metadata: Metadata,
        counters: FeedCounters,
        settings: SenderSettings | None = None,
        on_acknowledged: Acknowledged | None = None,
    ) -> None:
        self._stub = stub
        self._metadata = metadata
        self._counters = counters
        self._settings = settings or SenderSettings()
        self._on_acknowledged = on_acknowledged
        self._pending: deque[Chunk] = deque()
        """Chunks to send before any new one: unanswered when a stream broke, or salvaged."""
        self._wake = asyncio.Event()
        self._input_done = False
        self.streams = 0
        """Streams opened, for tests and logs."""
        self._answers = 0
        """Answers on the last stream opened: one that broke after some made progress."""

    async def send_all(self, chunks: asyncio.Queue[Chunk | None]) -> None:
        """Sends every chunk of `chunks` until None. A broken stream counts against
        max_stream_failures, and sets the backoff, as one more failure in a row, or as the first
        when it answered a chunk: a load that progresses stream after stream goes on."""
        self._pending.clear()
        self._input_done = False
        failures = lost = 0
        while not (self._input_done and not self._pending):
            in_flight: deque[Chunk] = deque()
            try:
                idled = await self._stream(chunks, in_flight)
                failures = lost = 0
                # (An input that ended as its stream was stopped is done: no chunk comes.)
                if idled and not self._pending and not self._input_done:
                    # No stream while there is nothing to send: the next one opens with it.
                    first = await chunks.get()
                    if first is None:
                        self._input_done = True
                    else:
                        self._pending.append(first)
            except (grpc.aio.AioRpcError, _Retry) as error:
                if self._answers:  # it made progress: a first failure again, not one more
                    failures = lost = 0
                halved = isinstance(error, grpc.aio.AioRpcError) and self._halved(error, in_flight)
                lost = lost + 1 if not halved and _status_lost(error) else 0
                # Unanswered chunks go first on the next stream, in their order.
                self._counters.retried += len(in_flight)
                self._pending.extendleft(reversed(in_flight))
                if halved or 0 < lost <= _LOST_AT_ONCE:
                    continue  # not a failure of the service: no backoff
                failures += 1
                limit = self._settings.max_stream_failures
                reason = error.details() if isinstance(error, grpc.aio.AioRpcError) else str(error)
                self._counters.last_error = f"BulkIngest: {reason}"
                if limit is not None and failures > limit:
                    raise
                delay = self._backoff(failures)
                if isinstance(error, _Retry):
                    delay = max(delay, error.delay_s)
                log.warning(
                    "BulkIngest: %s; %d chunk(s) to send again in %.1f s",
                    reason,
                    len(self._pending),
                    delay,
                )
                await asyncio.sleep(delay)

    def _halved(self, error: grpc.aio.AioRpcError, in_flight: deque[Chunk]) -> bool:
        """Whether the stream was ended by a chunk over the service's size limit, which is then
        replaced in `in_flight` by its two halves, or, a single point, refused for good.

        Refused by the service (REQUEST_TOO_LARGE), it is the first unanswered chunk: the
        service answers every chunk before it. Refused by gRPC (beyond twice the limit), the
        call fails when the chunk arrives, maybe before the one ahead of it was answered: the
        chunk is the one whose size gRPC's message gives; none of that size, nothing is
        halved (the stream is retried as after any other failure)."""
        status = _too_large(error)
        if not in_flight or status is None:
            return False
        at = 0
        if _reason(status) != _TOO_LARGE:
            size = _GRPC_TOO_LARGE.search(status.message)
            sizes = [encode(chunk).ByteSize() for chunk in in_flight]
            if size is None or int(size[1]) not in sizes:
                return False
            at = sizes.index(int(size[1]))
        chunk = in_flight[at]
        del in_flight[at]
        if len(chunk.points) == 1:
            self._refused(chunk, status)
            return True
        half = len(chunk.points) // 2
        # Ids of their content, as any chunk's: a re-run halves alike and sends duplicates.
        for points in (chunk.points[half:], chunk.points[:half]):
            in_flight.insert(at, make_chunk(chunk.series_id, chunk.source_id, chunk.kind, points))
        log.warning(
            "BulkIngest: a chunk of %d point(s) is too large (%s): sent again in halves",
            len(chunk.points),
            status.message,
        )
        return True

    def _backoff(self, failures: int) -> float:
        ceiling = min(
            self._settings.backoff_cap_s, self._settings.backoff_first_s * 2 ** (failures - 1)
        )
        return random.uniform(ceiling / 2, ceiling)  # jitter: restarted feeds do not stampede

    async def _stream(self, chunks: asyncio.Queue[Chunk | None], in_flight: deque[Chunk]) -> bool:
        """One stream, until the input ends (False), it idled or the service ended it before
        the half-close (True: more may come, unless the input ended meanwhile: `_input_done`)."""
        self._answers = 0  # before anything can fail: a stream not opened answered nothing
        call = self._stub.BulkIngest(metadata=self._metadata)
        self.streams += 1
        room = asyncio.Condition()
        taking = asyncio.Event()
        taking.set()
        writer = asyncio.create_task(self._write(call, chunks, in_flight, room, taking))
        writer.add_done_callback(functools.partial(_cancel_on_own_failure, call))
        ended_early = False
        try:
            try:
                async for response in call:
                    await self._answered(response, in_flight, room)
                    self._answers += 1
            except asyncio.CancelledError:
                # grpc.aio's, for a call cancelled on the writer's own failure (raised below); a
                # cancellation of the load goes on as it is.
                if _load_cancelled() or _own_failure(writer) is None:
                    raise
            else:
                # Ended by the service before the half-close (the writer still took chunks, or
                # some are unanswered): the writer is stopped (below), as it would wait for
                # answers that never come, or write on the ended call; what is unanswered goes
                # again, the rest on a new stream.
                ended_early = bool(in_flight) or taking.is_set()
                idle = True if ended_early else await writer
        finally:
            # First: a load cancelled while the writer is awaited below still ends its stream.
            call.cancel()
            if not writer.done():
                writer.cancel()
                # A chunk it had taken but not sent goes back first (`_keep`), before the caller
                # puts the unanswered ones ahead of it: otherwise it went ahead of them, out of
                # order (the stream ended while it took the next chunk).
                await asyncio.wait({writer})
            if not writer.cancelled():
                writer.exception()  # retrieved: the stream's end says it, or it is raised here
            if (failure := _own_failure(writer)) is not None and not _load_cancelled():
                raise failure  # a bug in the writer ends the load, however the stream ended
        if in_flight:
            raise _Retry(0.0, f"the stream ended with {len(in_flight)} chunk(s) unanswered")
        if ended_early and not self._answers:  # a failure with backoff: not round and round
            raise _Retry(0.0, "the service ended the stream without answering a chunk")
        return idle

    async def _write(
        self,
        call: grpc.aio.StreamStreamCall[
            command_service_pb2.IngestPointsRequest, command_service_pb2.BulkIngestResponse
        ],
        chunks: asyncio.Queue[Chunk | None],
        in_flight: deque[Chunk],
        room: asyncio.Condition,
        taking: asyncio.Event,
    ) -> bool:
        """Sends chunks until the input ends or the stream idles, then half-closes the stream
        once every chunk is answered; `taking` is cleared when it takes no more chunks."""
        idle = False
        while True:
            async with room:
                await room.wait_for(lambda: len(in_flight) < self._settings.window)
            chunk = await self._next(chunks, in_flight)
            if chunk is None:
                idle = not self._input_done
                taking.clear()
                break
            in_flight.append(chunk)
            await call.write(encode(chunk))
        # Half-close once everything sent is answered: the service then ends the stream.
        async with room:
            await room.wait_for(lambda: not in_flight)
        await call.done_writing()
        return idle

    async def _next(
        self, chunks: asyncio.Queue[Chunk | None], in_flight: deque[Chunk]
    ) -> Chunk | None:
        """The next chunk to send; None at the end of the input, or when the stream idled
        (nothing to send and nothing in flight for idle_close_s)."""
        while True:
            if self._pending:
                return self._pending.popleft()
            if self._input_done:
                return None
            self._wake.clear()
            getter = asyncio.ensure_future(chunks.get())
            waker = asyncio.ensure_future(self._wake.wait())
            # Idle only with nothing unanswered: an answer may still bring a chunk to salvage.
            timeout = None if in_flight else self._settings.idle_close_s
            try:
                done, _ = await asyncio.wait(
                    {getter, waker}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
            except asyncio.CancelledError:
                # The stream broke while waiting: a chunk the getter took must not be lost.
                self._keep(getter)
                raise
            finally:
                waker.cancel()
            if not getter.done():
                getter.cancel()
                if not done:
                    return None  # idle
                continue  # woken: a salvaged chunk, or an answer freed the stream
            chunk = getter.result()
            if chunk is None:
                self._input_done = True
                continue
            return chunk

    def _keep(self, getter: asyncio.Future[Chunk | None]) -> None:
        if not getter.done():
            getter.cancel()
        elif not getter.cancelled():
            chunk = getter.result()
            if chunk is None:
                self._input_done = True
            else:
                self._pending.appendleft(chunk)

    async def _answered(
        self,
        response: command_service_pb2.BulkIngestResponse,
        in_flight: deque[Chunk],
        room: asyncio.Condition,
    ) -> None:
        if not in_flight or in_flight[0].command_id != response.command_id:
            raise _Retry(0.0, f"an answer to chunk {response.command_id} out of order")
        chunk = in_flight[0]
        counters = self._counters
        if response.WhichOneof("outcome") == "result":
            result = response.result
            counters.chunks += 1
            counters.sent += len(chunk.points)
            counters.sent_by[chunk.source_id, chunk.series_id] += len(chunk.points)
            if result.duplicate:
                counters.duplicates += len(chunk.points)
            else:
                counters.accepted += result.accepted
                counters.flagged += result.flagged
            counters.last_position = max(counters.last_position, result.commit_position)
            if self._on_acknowledged is not None:
                self._on_acknowledged(chunk, result)
        else:
            self._refused(chunk, response.error)
        in_flight.popleft()
        async with room:
            room.notify_all()
        self._wake.set()

    def _refused(self, chunk: Chunk, status: status_pb2.Status) -> None:
        reason = f"{_CODE_NAMES.get(status.code, status.code)}: {status.message}"
        delay = _retry_delay(status)
        if delay is not None:
            raise _Retry(delay, f"chunk {chunk.command_id} refused for now ({reason})")
        counters = self._counters
        counters.last_error = f"{chunk.series_id} from {chunk.source_id}: {reason}"
        rows = None if status.code in _GIVE_UP_CODES else _named_rows(status, len(chunk.points))
        if rows is None:
            counters.rejected += len(chunk.points)
            log.warning("chunk of %d point(s) refused: %s", len(chunk.points), counters.last_error)
            if self._settings.stop_on_refusal:
                raise SendStopped(counters.last_error, status)
            return
        counters.rejected += len(rows)
        kept = tuple(p for i, p in enumerate(chunk.points) if i not in rows)
        log.warning("%d point(s) refused: %s", len(rows), counters.last_error)
        if kept:
            salvaged = Chunk(
                salvage_id(chunk.command_id), chunk.series_id, chunk.source_id, chunk.kind, kept
            )
            self._pending.append(salvaged)


MAX_ERROR_CHARS = 1_024
"""What a health report's last_error may hold (the command service's bound)."""
HEALTH_TIMEOUT_S = 10.0
_STATUSES = {
    SourceStatus.HEALTHY: series_pb2.DATA_SOURCE_STATUS_HEALTHY,
    SourceStatus.DEGRADED: series_pb2.DATA_SOURCE_STATUS_DEGRADED,
    SourceStatus.DOWN: series_pb2.DATA_SOURCE_STATUS_DOWN,
}


def health_request(
    command_id: str, source_id: str, interval: HealthInterval
) -> command_service_pb2.ReportDataSourceHealthRequest:
    i = interval
    request = command_service_pb2.ReportDataSourceHealthRequest(
        command_id=command_id,
        source=f"sources/{source_id}",
        status=_STATUSES[i.status],
        start_time=_timestamp(i.start_us),
        end_time=_timestamp(i.end_us),
        request_count=i.requests,
        failure_count=i.failures,
        rate_limited_count=i.rate_limited,
        retry_count=i.retries,
        last_error=i.last_error[:MAX_ERROR_CHARS],
        points_received=i.points_received,
        points_sent=i.points_sent,
    )
    for series_id, latest_us in i.instruments:
        instrument = request.instruments.add(series=f"series/{series_id}")
        if latest_us is not None:
            instrument.latest_value_time.CopyFrom(_timestamp(latest_us))
    if i.latency_p50_ms is not None and i.latency_p99_ms is not None:
        request.latency_p50.FromMicroseconds(round(i.latency_p50_ms * 1_000))
        request.latency_p99.FromMicroseconds(round(max(i.latency_p99_ms, i.latency_p50_ms) * 1_000))
    if i.last_success_us is not None:
        request.last_success_time.CopyFrom(_timestamp(i.last_success_us))
    return request


def _timestamp(us: int) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromMicroseconds(us)
    return ts


class CommandHealthReporter:
    """The HealthReporter of the command API: one ReportDataSourceHealth call per report."""

    def __init__(
        self, stub: command_service_pb2_grpc.CommandServiceAsyncStub, metadata: Metadata
    ) -> None:
        self._stub = stub
        self._metadata = metadata

    async def report(self, command_id: str, source_id: str, interval: HealthInterval) -> bool:
        request = health_request(command_id, source_id, interval)
        try:
            await self._stub.ReportDataSourceHealth(
                request, metadata=self._metadata, timeout=HEALTH_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as error:
            log.warning(
                "health report of sources/%s not recorded: %s %s",
                source_id,
                error.code().name,
                error.details(),
            )
            return False
        return True
