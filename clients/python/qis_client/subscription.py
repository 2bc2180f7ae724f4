"""A Subscribe stream that remembers where it is.

Subscribe is at-least-once and every batch carries a resume token, strictly increasing: a
subscriber that keeps the last token can start again right after it, without a gap. This
iterator keeps it (`resume_token`), reconnects from it by itself when the connection is lost
(UNAVAILABLE: a restarted query service, a network blip), and can be cancelled from another
thread. Other failures are raised: after a RESOURCE_EXHAUSTED (a subscriber that stopped reading
for too long, or too many subscriptions) the caller decides whether to subscribe again from
`resume_token`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Protocol, TypeVar

import grpc
from qis.data.v1 import query_service_pb2

from qis_client.errors import error_from_rpc

T_co = TypeVar("T_co", covariant=True)

_RECONNECT_CODES = frozenset({grpc.StatusCode.UNAVAILABLE})
_MAX_BACKOFF_S = 5.0


class Stream(Protocol[T_co]):
    """What a server-streaming gRPC call returns: an iterator that can be cancelled."""

    def __next__(self) -> T_co: ...

    def cancel(self) -> bool: ...


Open = Callable[[query_service_pb2.SubscribeRequest], Stream[query_service_pb2.SubscribeResponse]]


class Subscription(Iterator[query_service_pb2.SubscribeResponse]):
    """The batches of a subscription; `values()` for the values one by one."""

    def __init__(
        self,
        open_stream: Open,
        request: query_service_pb2.SubscribeRequest,
        *,
        reconnects: int = 5,
        backoff_s: float = 0.2,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._open = open_stream
        self._request = request
        self._reconnects = reconnects
        self._backoff_s = backoff_s
        self._sleep = sleep
        self._failures = 0
        self._stream: Stream[query_service_pb2.SubscribeResponse] | None = None
        self._lock = threading.Lock()
        self._cancelled = False
        self.resume_token: str = request.resume_token
        """The token of the last batch received: subscribe from it to continue after it."""

    def __next__(self) -> query_service_pb2.SubscribeResponse:
        while True:
            stream = self._current_stream()
            try:
                batch = next(stream)
            except grpc.RpcError as error:
                self._drop(stream)
                if self._cancelled:
                    raise StopIteration from None
                if not self._may_reconnect(error):
                    raise error_from_rpc(error) from error
                continue
            self._failures = 0
            if batch.resume_token:
                self.resume_token = batch.resume_token
            return batch

    def values(self) -> Iterator[query_service_pb2.OfficialValue]:
        for batch in self:
            yield from batch.values

    def cancel(self) -> None:
        """Ends the subscription; an iteration blocked in another thread stops."""
        with self._lock:
            self._cancelled = True
            if self._stream is not None:
                self._stream.cancel()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cancel()

    def _current_stream(self) -> Stream[query_service_pb2.SubscribeResponse]:
        with self._lock:
            if self._cancelled:
                raise StopIteration
            if self._stream is None:
                self._stream = self._open(self._resumed_request())
            return self._stream

    def _drop(self, stream: Stream[query_service_pb2.SubscribeResponse]) -> None:
        with self._lock:
            if self._stream is stream:
                self._stream = None

    def _resumed_request(self) -> query_service_pb2.SubscribeRequest:
        if not self.resume_token:
            return self._request
        return query_service_pb2.SubscribeRequest(
            series=self._request.series, resume_token=self.resume_token
        )

    def _may_reconnect(self, error: grpc.RpcError) -> bool:
        code = error.code() if isinstance(error, grpc.Call) else None
        if code not in _RECONNECT_CODES or self._failures >= self._reconnects:
            return False
        self._sleep(min(self._backoff_s * 2**self._failures, _MAX_BACKOFF_S))
        self._failures += 1
        return True
