"""The Flight endpoint's read-ahead of an export's pages (qis_query.entrypoints.flight): the
query loop reads at most READ_AHEAD pages ahead of those the Flight thread took, hands them over
in order with the end or the read's failure last, and stops reading and closes the pages when
the stream is let go of. What it reads ahead is the pages' batches, made on the loop: made
as each page is read, and the pages closed with them.

The loop runs in its own thread, as qis-query's does; the test is the Flight thread."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterator

import pyarrow as pa
import pytest
from qis_domain.errors import RetryLater
from qis_query.application.export import ExportPage
from qis_query.entrypoints.flight import READ_AHEAD, _batches, _ReadAhead

from tests.support.loops import loop_in_thread

PAGES = READ_AHEAD + 4


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    with loop_in_thread() as loop:
        yield loop


class Pages:
    """An export's pages, counting those read, remembering whether they were closed; the page
    `fail_at` (if any) fails to read."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.read = 0
        self.closed = threading.Event()
        self._fail_at = fail_at

    async def pages(self) -> AsyncGenerator[ExportPage, None]:
        try:
            for index in range(PAGES):
                if index == self._fail_at:
                    raise ConnectionError("the read store went away")
                self.read += 1
                yield ExportPage(0, pa.table({"snap_us": [index]}))
        finally:
            self.closed.set()


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < deadline, "not within 5 s"
        time.sleep(0.005)


def snaps(page: ExportPage | None) -> list[int]:
    assert page is not None
    return list(page.rows.column("snap_us").to_pylist())


def settle() -> None:
    """Time for the loop to read further, were it not held back."""
    time.sleep(0.1)


def test_the_loop_reads_at_most_read_ahead_pages_ahead_of_those_taken(
    loop: asyncio.AbstractEventLoop,
) -> None:
    source = Pages()
    ahead = _ReadAhead(loop, source.pages())
    assert snaps(ahead.next()) == [0]
    wait_for(lambda: source.read == 1 + READ_AHEAD)
    settle()
    assert source.read == 1 + READ_AHEAD
    assert snaps(ahead.next()) == [1]
    wait_for(lambda: source.read == 2 + READ_AHEAD)
    settle()
    assert source.read == 2 + READ_AHEAD
    rest = []
    while (page := ahead.next()) is not None:
        rest.extend(snaps(page))
    assert rest == list(range(2, PAGES))
    assert source.closed.wait(5)


def test_a_failed_read_is_raised_after_the_pages_before_it(
    loop: asyncio.AbstractEventLoop,
) -> None:
    source = Pages(fail_at=1)
    ahead = _ReadAhead(loop, source.pages())
    assert snaps(ahead.next()) == [0]
    with pytest.raises(ConnectionError, match="the read store went away"):
        ahead.next()
    assert source.closed.wait(5)


def test_a_stream_never_pulled_from_reads_nothing(loop: asyncio.AbstractEventLoop) -> None:
    source = Pages()
    ahead = _ReadAhead(loop, source.pages())
    settle()
    ahead.close()
    settle()
    assert source.read == 0


def test_letting_go_stops_the_reading_and_closes_the_pages(
    loop: asyncio.AbstractEventLoop,
) -> None:
    source = Pages()
    ahead = _ReadAhead(loop, source.pages())
    assert ahead.next() is not None
    wait_for(lambda: source.read == READ_AHEAD + 1)
    ahead.close()  # the client went away: the reading waits for room it will never get
    assert source.closed.wait(5)
    settle()
    assert source.read == READ_AHEAD + 1


def test_a_reading_cancelled_by_the_loop_ends_the_stream_at_once(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """The loop's shutdown cancels every task: the Flight thread waiting for a page gets the
    service's 'stopping' answer (UNAVAILABLE, retry elsewhere) at once, not the loop timeout."""
    source = Pages()
    ahead = _ReadAhead(loop, source.pages())
    assert ahead.next() is not None
    wait_for(lambda: source.read == READ_AHEAD + 1)  # the reading waits for room

    def cancel_every_task() -> None:
        for task in asyncio.all_tasks(loop):
            task.cancel()

    loop.call_soon_threadsafe(cancel_every_task)
    started = time.monotonic()
    read_before = [snaps(ahead.next()) for _ in range(READ_AHEAD)]
    assert read_before == [[i] for i in range(1, READ_AHEAD + 1)]
    with pytest.raises(RetryLater, match="stopping"):
        ahead.next()
    assert time.monotonic() - started < 5
    assert source.closed.wait(5)


def test_a_reading_cancelled_before_its_first_step_ends_the_stream_at_once(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """The shutdown's cancellation can come between the reading's creation and its first step
    (the loop busy meanwhile): the Flight thread is told at once then too."""
    source = Pages()
    ahead = _ReadAhead(loop, source.pages())
    gate = threading.Event()
    loop.call_soon_threadsafe(gate.wait, 5)  # the loop busy: what follows queues behind it
    answer: list[BaseException | None] = []

    def take() -> None:
        try:
            ahead.next()
            answer.append(None)
        except BaseException as error:
            answer.append(error)

    flight_thread = threading.Thread(target=take)
    flight_thread.start()
    wait_for(lambda: ahead._reading is not None)  # its creation is queued on the loop

    def cancel_every_task() -> None:
        for task in asyncio.all_tasks(loop):
            task.cancel()

    loop.call_soon_threadsafe(cancel_every_task)
    started = time.monotonic()
    gate.set()
    flight_thread.join(10)
    assert time.monotonic() - started < 5
    (error,) = answer
    assert isinstance(error, RetryLater), error
    assert source.read == 0


def test_the_batches_are_made_on_the_loop_as_the_pages_are_read_and_closed_with_them(
    loop: asyncio.AbstractEventLoop,
) -> None:
    source = Pages()
    made_on: list[threading.Thread] = []

    def make(page: ExportPage) -> list[pa.RecordBatch]:
        made_on.append(threading.current_thread())
        batches: list[pa.RecordBatch] = page.rows.to_batches()
        return batches

    ahead = _ReadAhead(loop, _batches(make, source.pages()))
    first = ahead.next()
    assert first is not None
    assert first[0].column("snap_us").to_pylist() == [0]
    wait_for(lambda: len(made_on) == 1 + READ_AHEAD)  # made ahead, as the pages are read
    assert threading.current_thread() not in made_on
    ahead.close()  # the client went away
    assert source.closed.wait(5)
