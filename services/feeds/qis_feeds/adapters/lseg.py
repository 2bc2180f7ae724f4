"""LSEG (the `lseg-data` library, the `lseg` extra): history through `lseg.data.get_history`,
live values through a content-layer pricing stream (`lseg.data.content.pricing`).

Two layers, as for Bloomberg:
- the mapping (`frame_values`, `update_values`): pure functions of what the library hands over.
  get_history, asked for one RIC, gives one row per time (a DatetimeIndex) and one column per
  field, in pandas' nullable dtypes (Float64, Int64: an empty cell is NA). A pricing stream's
  on_update callback gets (dict of the updated fields, RIC, stream). Fields are named as LSEG
  names them: TRDPRC_1, OPEN_PRC, HIGH_1, LOW_1, ACVOL_UNS, BID, ASK. An empty cell (NaN, NA)
  is no value: counted, not sent.
- the library (`LsegLibrary`): the only code that calls lseg.data, with the session the
  configuration names (lseg-data's own config file). The tests drive it for real against a
  local server standing in for the Workspace API proxy; it has not run against a real LSEG
  session here (no credentials, no network).

Why one get_history call per RIC: asked for several RICs, lseg-data 2.1 turns an error on one of
them (an unknown RIC, no permission) into a column of NA and raises nothing, which would look
like a quiet day; asked for one, it raises LDError with LSEG's code and message. (It sends one
HTTP request per RIC either way.)

Why the content-layer stream rather than `ld.open_pricing_stream(on_data=...)`: on_data is
called for refreshes too (the instrument's current image, sent when the stream opens and again
after every reconnection), which would enter as observations made now; the content-layer stream
calls on_refresh and on_update apart. Refreshes are counted, not sent.

Health: each get_history call and each stream opened is a request, timed to the library's
answer (a DataFrame; a stream opened); lseg-data's own retries, if any, are not seen here.

Times: the index of get_history is taken as UTC when it has no zone (LSEG's historical pricing
answers in UTC); a streamed update carries no time of its own, so it is timed when received.
Values: LSEG hands over floats; each goes by its shortest repr (application.points), integers
(volumes) as integers. pandas (which comes with the extra) is not imported here, so that the
feed configuration can name this provider in an install without it.
"""

from __future__ import annotations

import asyncio
import importlib
import math
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from qis_feeds.adapters.calls import CallStats, elapsed_ms
from qis_feeds.application.points import Number, RawValue, ValueKind
from qis_feeds.application.ports import HistoricalRequest, ProviderHealth

if TYPE_CHECKING:
    import pandas as pd

VOLUME_FIELDS = frozenset({"ACVOL_UNS", "ACVOL_1", "TRDVOL_1", "VOLUME"})
_LIVE_QUEUE = 10_000


class LsegError(RuntimeError):
    pass


class LsegUnavailable(LsegError):
    pass


@dataclass(frozen=True, slots=True)
class LsegInstrument:
    series_id: str
    ric: str
    """LSEG's instrument code, e.g. "VOD.L"."""
    field: str = "TRDPRC_1"

    @property
    def kind(self) -> ValueKind:
        return ValueKind.VOLUME if self.field in VOLUME_FIELDS else ValueKind.PRICE


@dataclass
class LsegStats:
    empty: int = 0
    """Cells without a value (NaN, NA): no point."""
    refreshes: int = 0
    """Streamed refreshes (current images, not new observations): not sent."""
    overflow: int = 0
    """Streamed values dropped because the feed could not keep up (its queue was full)."""


def _number(value: Any) -> Number | None:
    # pandas' NA is none of these types, so it falls through to None like NaN.
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        return value or None
    if hasattr(value, "item"):  # a numpy scalar: its Python value
        value = value.item()
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    return None


def _utc(stamp: Any) -> datetime:
    moment: datetime = stamp.to_pydatetime() if hasattr(stamp, "to_pydatetime") else stamp
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def frame_values(
    frame: pd.DataFrame, instruments: Sequence[LsegInstrument], stats: LsegStats
) -> Iterator[RawValue]:
    """The values of one RIC's get_history DataFrame for its instruments, row by row. A field
    the frame lacks fails: LSEG left it out (unknown field, no permission), and a load that
    silently sends nothing would look complete."""
    columns = []
    for instrument in instruments:
        if instrument.field not in frame.columns:
            raise LsegError(
                f"{instrument.ric} {instrument.field}: not in LSEG's answer"
                f" (columns: {', '.join(map(str, frame.columns))})"
            )
        columns.append((instrument, frame[instrument.field]))
    for position, stamp in enumerate(frame.index):
        moment = _utc(stamp)
        for instrument, column in columns:
            value = _number(column.iloc[position])
            if value is None:
                stats.empty += 1
            else:
                yield RawValue(instrument.series_id, moment, value)


def update_values(
    fields: Mapping[str, Any],
    ric: str,
    received: datetime,
    instruments: Sequence[LsegInstrument],
    stats: LsegStats,
) -> list[RawValue]:
    """The values of one streamed update (on_update(fields, ric, stream)) for the RIC's
    instruments; fields the update does not carry are not values (they did not change)."""
    found = []
    for instrument in instruments:
        if instrument.ric != ric or instrument.field not in fields:
            continue
        value = _number(fields[instrument.field])
        if value is None:
            stats.empty += 1
        else:
            found.append(RawValue(instrument.series_id, received, value))
    return found


OnMessage = Callable[[Mapping[str, Any], str], None]


class Closeable(Protocol):
    def close(self) -> Any: ...


class LsegSession(Protocol):
    """What the provider needs of LSEG (LsegLibrary; a recording in tests)."""

    def open(self) -> None: ...

    def close(self) -> None: ...

    def history(
        self, ric: str, fields: Sequence[str], interval: str, start: datetime, end: datetime
    ) -> pd.DataFrame: ...

    def stream(
        self,
        rics: Sequence[str],
        fields: Sequence[str],
        on_refresh: OnMessage,
        on_update: OnMessage,
    ) -> Closeable:
        """Opens a pricing stream; the callbacks are called from the library's thread."""
        ...


def load_lseg() -> Any:
    try:
        return importlib.import_module("lseg.data")
    except ImportError:
        raise LsegUnavailable(
            "the LSEG provider needs LSEG's lseg-data library, the `lseg` extra:"
            " pip install 'qis-data[lseg]'"
        ) from None


class LsegLibrary:
    """lseg.data with one session: `session_name` as lseg-data's configuration names it (e.g.
    "platform.ldp", "desktop.workspace"), or its default."""

    def __init__(self, session_name: str | None = None) -> None:
        self._ld: Any = load_lseg()
        self._pricing: Any = importlib.import_module("lseg.data.content.pricing")
        self._session_name = session_name
        self._session: Any = None

    def open(self) -> None:
        # A session that cannot open (no Workspace running, refused credentials) is only logged
        # by the library, and every later call fails with a vaguer message: say it here.
        session = self._ld.open_session(self._session_name)
        if session.open_state != self._ld.OpenState.Opened:
            raise LsegError(
                f"the LSEG session {self._session_name or '(default)'} did not open"
                f" ({session.open_state}); lseg-data's log says why"
            )
        self._session = session

    def close(self) -> None:
        if self._session is not None:
            self._ld.close_session()
            self._session = None

    def history(
        self, ric: str, fields: Sequence[str], interval: str, start: datetime, end: datetime
    ) -> pd.DataFrame:
        frame: pd.DataFrame = self._ld.get_history(
            universe=ric, fields=list(fields), interval=interval, start=start, end=end
        )
        return frame

    def stream(
        self,
        rics: Sequence[str],
        fields: Sequence[str],
        on_refresh: OnMessage,
        on_update: OnMessage,
    ) -> Closeable:
        stream = self._pricing.Definition(universe=list(rics), fields=list(fields)).get_stream()
        stream.on_refresh(lambda message, ric, _stream: on_refresh(message, ric))
        stream.on_update(lambda message, ric, _stream: on_update(message, ric))
        stream.open()
        opened: Closeable = stream
        return opened


@dataclass(frozen=True, slots=True)
class LsegSettings:
    interval: str = "daily"
    """get_history's interval (tick, minute, hourly, daily, ...)."""


class LsegProvider:
    name = "lseg"

    def __init__(
        self,
        instruments: Sequence[LsegInstrument],
        session: LsegSession,
        settings: LsegSettings | None = None,
    ) -> None:
        self._instruments = {i.series_id: i for i in instruments}
        self._session = session
        self._settings = settings or LsegSettings()
        self.kinds: Mapping[str, ValueKind] = {i.series_id: i.kind for i in instruments}
        self.stats = LsegStats()
        self._connected = False
        self._calls = CallStats()
        self._last_value_us: dict[str, int] = {}

    async def connect(self) -> None:
        if not self._connected:
            await asyncio.to_thread(self._session.open)
            self._connected = True

    async def close(self) -> None:
        if self._connected:
            await asyncio.to_thread(self._session.close)
            self._connected = False

    async def get_health(self) -> ProviderHealth:
        connected = self._connected and not self._calls.last_error
        return self._calls.health(connected, self._last_value_us)

    def _chosen(self, series_ids: Sequence[str]) -> list[LsegInstrument]:
        unknown = set(series_ids) - set(self._instruments)
        if unknown:
            raise ValueError(f"{', '.join(sorted(unknown))}: not a series of this LSEG feed")
        return [self._instruments[s] for s in series_ids or self._instruments]

    async def request_historical(self, request: HistoricalRequest) -> AsyncIterator[RawValue]:
        instruments = self._chosen(request.series_ids)
        by_ric: dict[str, list[LsegInstrument]] = {}
        for instrument in instruments:
            by_ric.setdefault(instrument.ric, []).append(instrument)
        for ric, mine in by_ric.items():
            fields = list(dict.fromkeys(i.field for i in mine))
            started = self._calls.started()
            try:
                frame = await asyncio.to_thread(
                    self._session.history,
                    ric,
                    fields,
                    self._settings.interval,
                    request.start,
                    request.end,
                )
                latency_ms = elapsed_ms(started)
                values = list(frame_values(frame, mine, self.stats))
            except Exception as error:
                # The library raises its own errors (LDError and kin) for refusals and failures.
                self._calls.failed(str(error))
                raise
            self._calls.succeeded(latency_ms)
            for value in values:
                assert isinstance(value.time, datetime)
                if request.start <= value.time < request.end:
                    yield self._seen(value)

    async def subscribe(self, series_id: str) -> AsyncIterator[RawValue]:
        (instrument,) = self._chosen([series_id])
        loop = asyncio.get_running_loop()
        values: asyncio.Queue[RawValue] = asyncio.Queue(_LIVE_QUEUE)

        def put(value: RawValue) -> None:
            try:
                values.put_nowait(value)
            except asyncio.QueueFull:
                self.stats.overflow += 1

        def on_refresh(_fields: Mapping[str, Any], _ric: str) -> None:
            self.stats.refreshes += 1

        def on_update(fields: Mapping[str, Any], ric: str) -> None:
            received = datetime.now(UTC)
            for value in update_values(fields, ric, received, [instrument], self.stats):
                loop.call_soon_threadsafe(put, value)

        started = self._calls.started()
        try:
            stream = await asyncio.to_thread(
                self._session.stream, [instrument.ric], [instrument.field], on_refresh, on_update
            )
        except Exception as error:
            self._calls.failed(str(error))
            raise
        self._calls.succeeded(elapsed_ms(started))
        try:
            while True:
                yield self._seen(await values.get())
        finally:
            await asyncio.to_thread(stream.close)

    def _seen(self, value: RawValue) -> RawValue:
        self._last_value_us[value.series_id] = time.time_ns() // 1000
        return value
