"""Arrow Flight endpoint of qis-query: long range reads as Arrow record batches, for analysts
who want a DataFrame (pyarrow, pandas, polars) rather than a message per point.

It listens on its own port (QIS_FLIGHT_ADDRESS, default 127.0.0.1:50054), beside the gRPC
QueryService, in the same process and over the same read model, and answers one method,
`DoGet` (ListFlights and ListActions answer empty lists; GetFlightInfo, GetSchema, DoPut,
DoAction and DoExchange are refused, see Errors). The ticket is UTF-8 JSON:

    {"series": ["series/A", "series/B"],        a name, or a list of 1 to 1,000
     "start_time": "2024-01-01T00:00:00Z",      optional, RFC 3339: the first snap
     "end_time": "2025-01-01T00:00:00Z",        optional: snaps before it
     "as_of_time": "2024-06-30T18:00:00Z",      optional: what was official then...
     "as_of_position": 1234,                    ...or right after this commit position
     "min_position": 1234}                      optional: read-your-writes, as in QueryRange

(an optional field given as null is absent, as if left out)

and the answer is one stream, the series in the order named, each ascending by snap, of the
schema in qis_query.application.arrow_batches (also in docs/cli.md): `series` (dictionary,
only when several are named), `snap_time`, `value` (prices, volumes) or open/high/low/close/
volume (OHLC bars) as exact decimal128(38, 18), `version`, `quality_score`, `record_time`,
`record_position`, `flags`, and for prices and volumes `unit`, each value's own currency or
unit (a series' unit can change by schema evolution). A term structure or surface comes one
row per node: `snap_time`, `tenor` (string), `coordinate` (surfaces only) and `value` (exact
decimal128(38, 18)), then the snap's `version` ... `flags`, repeated on each of its nodes' rows.
Options chains and corporate actions are refused by name. It is QueryRange's answer for the same
range and as-of, read through the same use case (qis_query.application.export), without its
per-call limit: one DoGet streams the whole range in pages of at most 50,000 points (EXPORT_PAGE),
at most three in memory at a time (the one being sent, two read ahead), and the segments of
one store read decoded ahead of them (16 buckets: for second prices, 57,600 points). Prices and
volumes, when the endpoint is given the read model (`segments`), skip the pages: each store
read's segments are decoded and sent as one batch (qis_query.application.segment_export; a
series' first read 16 buckets, the reads after it ~250,000 values), the one being sent and at
most two read and decoded ahead in memory; the answer is the same.

**Identity** is proven as on the gRPC port, by the same authenticator objects (QIS_AUTH): an
`x-qis-user` header (dev), `authorization: Bearer <JWT>` (jwt), a client certificate (mtls), read
by a ServerMiddlewareFactory before the call runs; a call that proves none is refused with
UNAUTHENTICATED (FlightUnauthenticatedError), naming the check that failed. TLS uses the same
QIS_TLS_* files; with QIS_TLS_CLIENT_CA_FILE the handshake requires a client certificate that
chains to it. pyarrow does not show a server the certificate a client presented, so in `mtls`
mode a caller without a bearer token is known only as "client-certificate" (the certificate
was verified, its CN cannot be read); with `jwt,mtls` a token names the caller.

**Access**: as QueryRange, `read` on each series named (docs/security.md), checked once the
ticket is found well-formed and before anything is read; a refusal names the first series
refused, and is recorded as the gRPC port's are (method "DoGet").

**Errors** follow the service's one error policy (qis_runtime.errors.status_for), with the
status code of the gRPC API where Flight can carry it:

| what                                       | Flight client sees (gRPC code)            |
|--------------------------------------------|-------------------------------------------|
| bad ticket, bad range, options chains, ... | ArrowInvalid (INVALID_ARGUMENT)           |
| unknown series                             | ArrowKeyError, a KeyError (NOT_FOUND)     |
| a series the caller may not read           | FlightUnauthorizedError (PERMISSION_DENIED) |
| read model behind min_position, store down | FlightUnavailableError (UNAVAILABLE)      |
| another method than DoGet, ListFlights, ... | FlightServerError ("UNIMPLEMENTED: ...") |
| no or bad identity                         | FlightUnauthenticatedError (UNAUTHENTICATED) |
| a bug                                      | FlightInternalError (INTERNAL), with the reference logged |

The message starts with the gRPC code name ("INVALID_ARGUMENT: series[1]: ..."), one line per
field violation; a FlightError's `extra_info` holds the google.rpc.Status the gRPC API would
send (RetryInfo, ErrorInfo). No Python traceback reaches a client: pyarrow writes one into the
status of any Python exception raised while it runs a handler, except a FlightError raised by
the handler itself, so INVALID_ARGUMENT and NOT_FOUND, which have no FlightError, are raised
from C (see _refusing_stream). A method the endpoint does not serve is refused by the identity
middleware once the caller is known, with FlightServerError: the only FlightError pyarrow
sends cleanly from every method (its GetSchema handler sends even a FlightError with a
traceback; UNIMPLEMENTED has no FlightError), so its gRPC code is UNKNOWN while its message
starts "UNIMPLEMENTED: " and its extra_info holds a google.rpc.Status with code UNIMPLEMENTED.
An error after the first batch (a store failing mid-stream) ends the stream with UNKNOWN and
the same message.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import dataclasses
import json
import logging
import queue
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar, cast

import grpc
import pyarrow as pa
import pyarrow.flight as fl
from google.rpc import error_details_pb2, status_pb2
from qis_adapters.readstore.port import (
    LATEST,
    OPEN_END,
    AsOf,
    AtPosition,
    KnownAt,
    ReadModelReader,
    Segment,
)
from qis_domain.bounds import MAX_POSITION, position_in_range
from qis_domain.errors import FieldViolation, InvalidArgument, RetryLater
from qis_domain.names import SERIES_COLLECTION, parse_name, series_name
from qis_domain.snaps import parse_snap
from qis_runtime.auth import ServerSecurity, loopback_only
from qis_runtime.authorization import caller_of
from qis_runtime.errors import status_for
from qis_runtime.identity import (
    Authenticator,
    DuplicateIdentity,
    Identity,
    Metadata,
    Unauthenticated,
)

from qis_query.application.access import Asker, Call, ReadAccess
from qis_query.application.arrow_batches import BatchBuilder
from qis_query.application.export import (
    MAX_SERIES,
    SEGMENT_COLUMNS,
    Export,
    ExportPage,
    ExportRequest,
    open_export,
)
from qis_query.application.handlers import QueryHandlers
from qis_query.application.ranges import EARLIEST
from qis_query.application.segment_export import (
    Decoded,
    ReadsAhead,
    StoreRead,
    columns_read,
    read,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_TICKET_BYTES = 64 * 1024
"""A ticket naming 1,000 series of 40 characters is ~45 KiB."""
TICKET_FIELDS = (
    "series",
    "start_time",
    "end_time",
    "as_of_time",
    "as_of_position",
    "min_position",
)
IDENTITY_MIDDLEWARE = "qis-identity"
CERTIFIED_CLIENT = "client-certificate"
"""The caller of an mtls connection without a bearer token (see the module docstring)."""
LOOP_TIMEOUT_S = 60.0
"""The longest a Flight thread waits for the query loop to answer one step (authenticating,
opening the export, reading a page); beyond it the call ends UNAVAILABLE."""
READ_AHEAD = 2
"""Pages of an export read ahead of the one being sent (each at most EXPORT_PAGE points)."""

_CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}
_FLIGHT_ERRORS: dict[grpc.StatusCode, type[fl.FlightError]] = {
    grpc.StatusCode.UNAUTHENTICATED: fl.FlightUnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: fl.FlightUnauthorizedError,
    grpc.StatusCode.UNAVAILABLE: fl.FlightUnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: fl.FlightTimedOutError,
    grpc.StatusCode.CANCELLED: fl.FlightCancelledError,
    grpc.StatusCode.INTERNAL: fl.FlightInternalError,
}
_ARROW_ERRORS: dict[grpc.StatusCode, type[Exception]] = {
    grpc.StatusCode.INVALID_ARGUMENT: pa.ArrowInvalid,
    grpc.StatusCode.NOT_FOUND: pa.ArrowKeyError,
}


# --- the ticket ------------------------------------------------------------------------------


def parse_ticket(raw: bytes) -> ExportRequest:
    """The export a ticket asks for; InvalidArgument naming every field at fault (as they are
    named in the ticket: "series[2]", "as_of_time")."""
    if len(raw) > MAX_TICKET_BYTES:
        raise InvalidArgument.single(
            "ticket", f"at most {MAX_TICKET_BYTES:,} bytes, got {len(raw):,}"
        )
    try:
        body = json.loads(raw.decode())
    except (UnicodeDecodeError, ValueError):
        raise InvalidArgument.single("ticket", _TICKET_FORM) from None
    except RecursionError:  # nested deeper than the interpreter's recursion limit
        raise InvalidArgument.single("ticket", f"nested too deeply; {_TICKET_FORM}") from None
    if not isinstance(body, dict):
        raise InvalidArgument.single("ticket", _TICKET_FORM)
    unknown = sorted(set(body) - set(TICKET_FIELDS))
    # null is absent, for every field: {"as_of_time": null} is a latest read, not as of 0.
    fields = _TicketFields({key: value for key, value in body.items() if value is not None})
    for name in unknown:
        fields.refuse(name, f"unknown field; a ticket has {', '.join(TICKET_FIELDS)}")
    series = fields.series()
    request = ExportRequest(
        series,
        fields.instant("start_time", EARLIEST),
        fields.instant("end_time", OPEN_END),
        fields.as_of(),
        fields.position("min_position", 0),
    )
    fields.check()
    return request


_TICKET_FORM = (
    'not a ticket: UTF-8 JSON such as {"series": ["series/A"], "start_time":'
    ' "2024-01-01T00:00:00Z"} (fields: ' + ", ".join(TICKET_FIELDS) + ")"
)


class _TicketFields:
    def __init__(self, body: Mapping[str, Any]) -> None:
        self._body = body
        self._violations: list[FieldViolation] = []

    def refuse(self, field: str, description: str) -> None:
        self._violations.append(FieldViolation(field, description))

    def check(self) -> None:
        if self._violations:
            raise InvalidArgument(self._violations)

    def series(self) -> tuple[str, ...]:
        names = self._body.get("series")
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, list) or not names:
            self.refuse("series", 'required: a series name ("series/ID") or a list of them')
            return ()
        if len(names) > MAX_SERIES:
            self.refuse("series", f"at most {MAX_SERIES:,} series, got {len(names):,}")
            return ()
        ids: list[str] = []
        for index, name in enumerate(names):
            field = f"series[{index}]"
            if not isinstance(name, str):
                self.refuse(field, 'a series name: "series/ID"')
                continue
            try:
                ids.append(parse_name(name, SERIES_COLLECTION, field))
            except InvalidArgument as error:
                self._violations.extend(error.violations)
        return tuple(ids)

    def instant(self, field: str, unset: int) -> int:
        text = self._body.get(field)
        if text is None:
            return unset
        if not isinstance(text, str):
            self.refuse(field, "an RFC 3339 timestamp string, e.g. 2024-01-01T00:00:00Z")
            return unset
        try:
            return parse_snap(text).utc_us
        except ValueError as error:
            self.refuse(field, str(error))
            return unset

    def position(self, field: str, unset: int) -> int:
        value = self._body.get(field)
        if value is None:
            return unset
        if not isinstance(value, int) or isinstance(value, bool) or not position_in_range(value):
            self.refuse(field, f"a commit position: an integer from 0 to {MAX_POSITION}")
            return unset
        return value

    def as_of(self) -> AsOf:
        if "as_of_time" in self._body and "as_of_position" in self._body:
            self.refuse("as_of_position", "give as_of_time or as_of_position, not both")
            return LATEST
        if "as_of_time" in self._body:
            return KnownAt(self.instant("as_of_time", 0))
        if "as_of_position" in self._body:
            return AtPosition(self.position("as_of_position", 0))
        return LATEST


# --- identity --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _HandshakePeer:
    """The TLS peer as an authenticator sees it. `certified`: the connection could only be made
    with a client certificate of QIS_TLS_CLIENT_CA_FILE; pyarrow does not expose which, so its
    CN reads as CERTIFIED_CLIENT."""

    certified: bool

    def auth_context(self) -> Mapping[str, Iterable[bytes]]:
        return {"x509_common_name": [CERTIFIED_CLIENT.encode()]} if self.certified else {}


class _Identified(fl.ServerMiddleware):  # type: ignore[misc]
    def __init__(self, identity: Identity) -> None:
        super().__init__()
        self.identity = identity


class IdentityMiddlewareFactory(fl.ServerMiddlewareFactory):  # type: ignore[misc]
    """Authenticates every call before it runs, with the gRPC port's authenticator, on the
    query loop (token verification and JWKS refreshes are coroutines of that loop)."""

    def __init__(
        self, authenticator: Authenticator, loop: asyncio.AbstractEventLoop, certified: bool
    ) -> None:
        super().__init__()
        self._authenticator = authenticator
        self._loop = loop
        self._peer = _HandshakePeer(certified)

    def start_call(self, info: Any, headers: Mapping[str, list[str | bytes]]) -> _Identified:
        metadata: Metadata = tuple(
            (key.lower(), value) for key, values in headers.items() for value in values
        )
        try:
            identity: Identity = _on_loop(
                self._loop, self._authenticator.authenticate(metadata, self._peer)
            )
        except (Unauthenticated, DuplicateIdentity) as error:
            raise fl.FlightUnauthenticatedError(f"UNAUTHENTICATED: {error}") from None
        except Exception as error:
            raise _flight_error(status_for(error)) from None
        method = getattr(info, "method", fl.FlightMethod.DO_GET)
        if method not in SERVED_METHODS:
            raise unimplemented(method)
        return _Identified(identity)


SERVED_METHODS = frozenset(
    {fl.FlightMethod.DO_GET, fl.FlightMethod.LIST_FLIGHTS, fl.FlightMethod.LIST_ACTIONS}
)
"""The Flight methods the endpoint answers; the identity middleware refuses the others."""


def unimplemented(method: fl.FlightMethod | str) -> fl.FlightError:
    """The refusal of a Flight method the endpoint does not serve, without a traceback (see
    the module docstring)."""
    name = method.name if isinstance(method, fl.FlightMethod) else method
    status = status_pb2.Status(
        code=grpc.StatusCode.UNIMPLEMENTED.value[0],
        message=(
            f"the Arrow Flight endpoint of qis-query serves DoGet only (with a JSON ticket, see"
            f" docs/cli.md), not {name}"
        ),
    )
    return fl.FlightServerError(describe(status), status.SerializeToString())


# --- the server ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FlightTls:
    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None


class _Server(fl.FlightServerBase):  # type: ignore[misc]
    def __init__(self, endpoint: QueryFlight, location: str, **options: Any) -> None:
        super().__init__(location, **options)
        self._endpoint = endpoint

    def do_get(self, context: fl.ServerCallContext, ticket: fl.Ticket) -> fl.RecordBatchStream:
        return self._endpoint.stream(context, ticket.ticket)

    # The base class raises NotImplementedError, which pyarrow sends with a traceback. The
    # identity middleware refuses these methods before they run (the only clean way for
    # GetSchema); the overrides answer the same should one ever be reached.

    def list_flights(self, context: fl.ServerCallContext, criteria: bytes) -> Iterator[Any]:
        return iter(())

    def list_actions(self, context: fl.ServerCallContext) -> list[Any]:
        return []

    def get_flight_info(self, context: fl.ServerCallContext, descriptor: Any) -> Any:
        raise unimplemented(fl.FlightMethod.GET_FLIGHT_INFO)

    def get_schema(self, context: fl.ServerCallContext, descriptor: Any) -> Any:
        raise unimplemented(fl.FlightMethod.GET_SCHEMA)

    def do_put(self, context: fl.ServerCallContext, *args: Any) -> None:
        raise unimplemented(fl.FlightMethod.DO_PUT)

    def do_action(self, context: fl.ServerCallContext, action: Any) -> Iterator[Any]:
        raise unimplemented(fl.FlightMethod.DO_ACTION)

    def do_exchange(self, context: fl.ServerCallContext, *args: Any) -> None:
        raise unimplemented(fl.FlightMethod.DO_EXCHANGE)


class QueryFlight:
    """The Flight server of the query process, serving `queries` from the loop it is started
    on; `start` binds the port, `stop` drains it."""

    def __init__(
        self,
        queries: QueryHandlers,
        access: ReadAccess,
        address: str,
        security: ServerSecurity,
        tls: FlightTls | None = None,
        segments: ReadModelReader | None = None,
    ) -> None:
        """Development mode on an address other machines reach raises ConfigurationError, as
        for the gRPC port. `segments`: the read model `queries` reads, whose segments a price
        or volume export then reads directly (see stream); None: every export through
        `queries`' pages."""
        loopback_only(("flight",), address, security)
        self._queries = queries
        self._segments = segments
        self._access = access
        self._address = address
        self._security = security
        self._tls = tls
        self._server: _Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = threading.Event()
        self.port = 0

    @property
    def location(self) -> str:
        scheme = "grpc+tcp" if self._tls is None else "grpc+tls"
        return f"{scheme}://{self._address}"

    async def start(self) -> int:
        """Listens (port 0: a free one); OSError when the port cannot be bound."""
        self._loop = asyncio.get_running_loop()
        options: dict[str, Any] = {
            "middleware": {
                IDENTITY_MIDDLEWARE: IdentityMiddlewareFactory(
                    self._security.authenticator,
                    self._loop,
                    certified=self._tls is not None and self._tls.client_ca_file is not None,
                )
            }
        }
        if self._tls is not None:
            options["tls_certificates"] = [
                (self._tls.cert_file.read_bytes(), self._tls.key_file.read_bytes())
            ]
            if self._tls.client_ca_file is not None:
                options["verify_client"] = True
                options["root_certificates"] = self._tls.client_ca_file.read_bytes()
        try:
            self._server = _Server(self, self.location, **options)
        except pa.ArrowException as error:
            # pyarrow says only "Server did not start properly"; gRPC logs the cause.
            raise OSError(
                f"cannot listen for Arrow Flight on {self._address} (QIS_FLIGHT_ADDRESS): is"
                f" the port in use? ({error})"
            ) from None
        self.port = self._server.port
        # The gRPC port's summary holds: the same authenticator, the same TLS files.
        log.info("Arrow Flight listening on %s: %s", self._address, self._security.summary)
        return self.port

    async def stop(self, grace_s: float) -> None:
        """Stops taking calls at once; the streams under way get `grace_s` to finish, then end
        UNAVAILABLE at their next batch. pyarrow's shutdown waits for every call without a
        deadline, so it runs in a daemon thread: a client that stopped reading cannot hold the
        process open (its call ends when the process does)."""
        server, self._server = self._server, None
        if server is None:
            return
        done = asyncio.get_running_loop().create_future()

        def shut() -> None:
            server.shutdown()
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
                done.get_loop().call_soon_threadsafe(_settle, done)

        threading.Thread(target=shut, name="flight-shutdown", daemon=True).start()
        try:
            await asyncio.wait_for(asyncio.shield(done), grace_s)
            return
        except TimeoutError:
            self._stopping.set()
        try:
            await asyncio.wait_for(done, 2.0)
        except TimeoutError:
            log.warning("Arrow Flight calls still open after the grace period: left to the exit")

    # --- one DoGet, on a Flight thread ---------------------------------------------------

    def stream(self, context: fl.ServerCallContext, ticket: bytes) -> fl.RecordBatchStream:
        loop = self._loop
        assert loop is not None, "started"
        caller: _Identified = context.get_middleware(IDENTITY_MIDDLEWARE)
        try:
            request = parse_ticket(ticket)
            who = Call(caller_of(caller.identity), "DoGet", context.peer())
            export, first_read = _on_loop(loop, self._open(who, request))
        except Exception as error:
            return _refusing_stream(status_for(error))
        log.debug("Flight export of %d series for %s", len(export.series), who.caller.user_id)
        builder = BatchBuilder(export.series, export.columns, export.read_position)
        pages: _Batches
        if first_read is None:
            pages = _ReadAhead(loop, _batches(builder.batches, export.pages))
        else:
            assert self._segments is not None, "read from the segments"
            pages = _SegmentBatches(
                loop, self._segments, self._queries, export, request, builder, first_read
            )
        outcomes = self._outcomes(context, pages)
        # What runs where. Prices and volumes, with `segments`: the loop runs the store reads
        # one after another, each as soon as the one before has found its segments
        # (ReadsAhead), and a thread of its decodes each read's segments as one IPC stream and
        # selects their rows (in Arrow, without the GIL), beside the next store read and
        # beside the Flight thread, which makes a read's batch (a few Arrow calls) and sends it
        # (_SegmentBatches). One hand-off a store read, none a page: 1M second prices cost
        # qis-query ~100 ns CPU a point against ~150 by pages. By pages (other exports): a thread of the loop's decodes the
        # segments of each store read, one read ahead of the pages (qis_query.application
        # .ranges: the decoding is most of a read's work, and Arrow does it without the GIL).
        # The loop cuts the pages, reads them ahead, and makes each one's batches (a few Arrow
        # kernels, no Python object per value; one batch a page, two where it spans store
        # reads) as it reads it. pyarrow's reader
        # pulls the next batch from C++ with the GIL held, only to take a batch made ahead
        # (waiting, if none is made yet, with the GIL released). Everything after that pull
        # runs in C++ without the GIL: IPC encoding of the batch, gRPC framing and the socket
        # writes, and waiting on a slow client's flow control. Batches made on the Flight thread
        # cost more CPU: each of a page's Arrow calls took the GIL back from the loop (1M
        # prices: ~75 ns a point on the Flight thread, ~40 now, for ~10-20 more on the loop).
        reader = pa.RecordBatchReader.from_batches(builder.schema, _results(outcomes))
        return fl.RecordBatchStream(reader)

    async def _open(self, who: Asker, request: ExportRequest) -> tuple[Export, _FirstRead | None]:
        """The export, once `who` may read every series it names, and when its values are read
        from the segments, the first store read of them (else its pages are read)."""
        for series_id in dict.fromkeys(request.series_ids):
            await self._access.require(
                who,
                series_name(series_id),
                series_id=series_id,
                min_position=request.min_position,
            )
        if self._segments is None:
            return await open_export(self._queries, request), None
        export = await open_export(self._queries, request, from_segments=True)
        if export.columns not in SEGMENT_COLUMNS:
            return export, None
        await export.pages.aclose()
        first = StoreRead.first(export.series, 0, request.start_us)
        assert first is not None, "an export names a series"
        decoded = await read(self._segments, export.series, request, first, columns_read(request))
        if decoded.found is None:  # a read model built before segments: its pages, in full
            return await open_export(self._queries, request), None
        return export, (first, decoded)

    def _outcomes(
        self, context: fl.ServerCallContext, pages: _Batches
    ) -> Iterator[asyncio.Future[pa.RecordBatch]]:
        """Each batch as a done future, a failure as the last one (see _results); never
        raises. The pages are closed on the loop however the stream ends."""
        try:
            while True:
                try:
                    if self._stopping.is_set():
                        raise _Stopping
                    batches = pages.next()
                    if batches is None or context.is_cancelled():
                        return
                except Exception as error:
                    yield _failed(status_for(error))
                    return
                for batch in batches:
                    yield _done(batch)
        finally:
            pages.close()


class _Stopping(RetryLater):
    def __init__(self) -> None:
        super().__init__("the query service is stopping: read the rest from another instance")


# --- errors ----------------------------------------------------------------------------------


def describe(status: status_pb2.Status) -> str:
    """'CODE: message', then one line per field violation."""
    lines = [f"{_CODE_NAMES.get(status.code, str(status.code))}: {status.message}"]
    violations = _violations(status)
    if len(violations) > 1:  # the message names the first one only
        lines.extend(f"  {v}" for v in violations)
    return "\n".join(lines)


def _violations(status: status_pb2.Status) -> list[str]:
    found: list[str] = []
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            found.extend(f"{v.field}: {v.description}" for v in bad.field_violations)
    return found


def _code(status: status_pb2.Status) -> grpc.StatusCode:
    return next((c for c in grpc.StatusCode if c.value[0] == status.code), grpc.StatusCode.UNKNOWN)


def _flight_error(status: status_pb2.Status) -> fl.FlightError:
    kind = _FLIGHT_ERRORS.get(_code(status), fl.FlightServerError)
    return kind(describe(status), status.SerializeToString())


def _error(status: status_pb2.Status) -> Exception:
    """The exception that ends a stream with `status`: an Arrow error where Arrow has the code
    (INVALID_ARGUMENT, NOT_FOUND), else the FlightError of the code."""
    arrow = _ARROW_ERRORS.get(_code(status))
    return arrow(describe(status)) if arrow is not None else _flight_error(status)


def _refusing_stream(status: status_pb2.Status) -> fl.RecordBatchStream:
    """The answer to a call refused before any batch. A FlightError is raised as it is: pyarrow
    sends its code, message and extra_info. INVALID_ARGUMENT and NOT_FOUND have no FlightError:
    raised here, pyarrow would send them with the handler's Python traceback, so they end an
    empty stream instead, raised from C (_results)."""
    error = _error(status)
    if isinstance(error, fl.FlightError):
        raise error
    return fl.RecordBatchStream(
        pa.RecordBatchReader.from_batches(pa.schema([]), _results(iter([_failed_with(error)])))
    )


# --- the bridge between Flight threads and the query loop --------------------------------------


def _on_loop(loop: asyncio.AbstractEventLoop, work: Awaitable[T]) -> T:
    """Runs `work` (a coroutine, or an awaitable such as anext()) on the query loop and waits
    for it from this Flight thread (the GIL is released while it waits)."""
    return _wait(asyncio.run_coroutine_threadsafe(_awaited(work), loop))


class _LoopTimeout(RetryLater):
    def __init__(self) -> None:
        super().__init__(f"the read model did not answer within {LOOP_TIMEOUT_S:.0f} s; retry")


# pyarrow formats a Python exception raised while its C++ reader pulls a batch together with
# the exception's traceback, and sends that to the client. An exception raised by C code has
# no Python frame to show: a done asyncio.Future (implemented in C) raises its exception from
# result() as it is. So the Python generator never raises, it yields outcomes, and map() (C)
# calls Future.result (C) on each: batches come out, a failure is raised without a traceback.
# (Without CPython's C accelerator for asyncio, one frame of asyncio's own would show.)


class _Carrier:
    """The loop of the outcome futures, which are never awaited, only read: a future asks its
    loop whether it is in debug mode, and hands it a failure that nobody read (the client went
    away before its last batch), which needs no report."""

    def get_debug(self) -> bool:
        return False

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        return None


_CARRIER = cast(asyncio.AbstractEventLoop, _Carrier())


def _results(outcomes: Iterator[asyncio.Future[pa.RecordBatch]]) -> Iterator[pa.RecordBatch]:
    return map(asyncio.Future.result, outcomes)


def _done(batch: pa.RecordBatch) -> asyncio.Future[pa.RecordBatch]:
    future: asyncio.Future[pa.RecordBatch] = asyncio.Future(loop=_CARRIER)
    future.set_result(batch)
    return future


def _failed(status: status_pb2.Status) -> asyncio.Future[pa.RecordBatch]:
    return _failed_with(_error(status))


def _failed_with(error: Exception) -> asyncio.Future[pa.RecordBatch]:
    future: asyncio.Future[pa.RecordBatch] = asyncio.Future(loop=_CARRIER)
    future.set_exception(error)
    return future


async def _batches(
    make: Callable[[ExportPage], list[pa.RecordBatch]], pages: AsyncGenerator[ExportPage, None]
) -> AsyncGenerator[list[pa.RecordBatch], None]:
    """Each page's batches, made as soon as the page is read (see QueryFlight.stream); the
    pages are closed with these."""
    async with contextlib.aclosing(pages):
        async for page in pages:
            yield make(page)


class _Batches(Protocol):
    """An export's batches as the Flight thread takes them, a store read's or a page's at a
    time (see QueryFlight._outcomes)."""

    def next(self) -> list[pa.RecordBatch] | None:
        """The next batches (a read's failure, raised here), None after the last."""
        ...

    def close(self) -> None:
        """Stops the reading, wherever the batches are let go of; not waited for."""
        ...


class _ReadAhead(Generic[T]):
    """An export's pages (their batches), read on the loop by one task up to READ_AHEAD pages
    ahead of the Flight thread that takes them: the loop reads on (SQLite reads in the store's
    thread, LZ4 decoding in another, mostly outside the GIL) while the Flight thread sends the
    pages before, and a page that is ready is taken without a call to the loop. The reading
    starts with the first page taken: a stream that pyarrow never pulls from (its client went
    away before) leaves no task behind."""

    def __init__(self, loop: asyncio.AbstractEventLoop, pages: AsyncGenerator[T, None]) -> None:
        self._loop = loop
        self._pages = pages
        self._ready: queue.SimpleQueue[T | Exception | None] = queue.SimpleQueue()
        self._room = asyncio.Semaphore(READ_AHEAD)
        self._reading: concurrent.futures.Future[None] | None = None

    async def _read(self) -> None:
        try:
            async with contextlib.aclosing(self._pages):
                while True:
                    await self._room.acquire()
                    page = await anext(self._pages, None)
                    self._ready.put(page)
                    if page is None:
                        return
        except Exception as error:  # handed to the Flight thread, which ends the stream
            self._ready.put(error)

    def next(self) -> T | None:
        """The next page (its read's failure, raised here), None after the last; on the
        Flight thread."""
        if self._reading is None:
            self._reading = asyncio.run_coroutine_threadsafe(self._read(), self._loop)
            self._reading.add_done_callback(self._ended)
        try:
            page = self._ready.get(timeout=LOOP_TIMEOUT_S)
        except queue.Empty:
            raise _LoopTimeout from None
        if isinstance(page, Exception):
            raise page
        self._loop.call_soon_threadsafe(self._room.release)
        return page

    def _ended(self, reading: concurrent.futures.Future[None]) -> None:
        # Cancelled by the loop's shutdown, even before its first step (close() cancels only a
        # stream let go of): the Flight thread waiting for a page is told at once, not after
        # LOOP_TIMEOUT_S.
        if reading.cancelled():
            self._ready.put(_Stopping())

    def close(self) -> None:
        """Stops the reading, wherever the reader is let go of; not waited for. A loop
        already closed (the process is exiting) has nothing left to stop."""
        if self._reading is not None and not self._loop.is_closed():
            self._reading.cancel()


_FirstRead = tuple[StoreRead, Decoded]


class _SegmentBatches:
    """The batches of a price or volume export read from the segments (qis_query.application
    .segment_export), made on the Flight thread as it takes them, a store read's at a time.
    The loop runs the store reads after the first ahead of the Flight thread, and threads of
    its decode them (ReadsAhead: two at most beyond the one being sent). A bucket too large for
    a segment, or a series whose store read finds no segments (a rebuild switched to a read
    model built before them while the export streams), is read by pages, through `queries`,
    as the other exports are."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        reader: ReadModelReader,
        queries: QueryHandlers,
        export: Export,
        request: ExportRequest,
        builder: BatchBuilder,
        first: _FirstRead,
    ) -> None:
        self._loop = loop
        self._reader = reader
        self._queries = queries
        self._export = export
        self._request = request
        self._builder = builder
        self._columns = columns_read(request)
        self._first: _FirstRead | None = first
        self._ahead: ReadsAhead | None = None
        self._index = 0  # the series of `_parts`
        self._parts: collections.deque[pa.Table | Segment] = collections.deque()
        self._paged: AsyncGenerator[list[pa.RecordBatch], None] | None = None

    def next(self) -> list[pa.RecordBatch] | None:
        while True:
            if self._paged is not None:
                batches = _on_loop(self._loop, anext(self._paged, None))
                if batches is not None:
                    return batches
                self._paged = None
            elif self._parts:
                part = self._parts.popleft()
                if isinstance(part, pa.Table):
                    return self._builder.batches(ExportPage(self._index, part))
                # Too large for a segment: its values are in the per-point records.
                start = max(self._request.start_us, part.first_snap_us)
                self._by_pages(start, min(self._request.end_us, part.last_snap_us + 1))
            elif not self._take_read():
                return None

    def _take_read(self) -> bool:
        """Takes the next store read's parts (after the first, starting the reads after it);
        False after the last."""
        if self._first is not None:
            (store_read, decoded), self._first = self._first, None
            series, start_us = self._export.series, self._request.start_us
            following = store_read.following(decoded.found, series, start_us)
            if following is not None:
                self._ahead = _on_loop(self._loop, self._reads_from(following))
        elif self._ahead is not None:
            taken = _on_loop(self._loop, self._ahead.next())
            if taken is None:
                return False
            store_read, decoded = taken
        else:
            return False
        self._index = store_read.series_index
        if decoded.found is None:
            self._by_pages(
                max(self._request.start_us, store_read.from_bucket_us), self._request.end_us
            )
        self._parts.extend(decoded.parts)
        return True

    async def _reads_from(self, first: StoreRead) -> ReadsAhead:
        series, request = self._export.series, self._request
        return ReadsAhead(self._reader, series, request, self._columns, first)

    def _by_pages(self, start_us: int, end_us: int) -> None:
        """Reads the values of the current series in [start_us, end_us) by pages next (none
        when the range is empty: a bucket before the export's start)."""
        if start_us >= end_us:
            return
        request = dataclasses.replace(
            self._request,
            series_ids=(self._export.series[self._index].series_id,),
            start_us=start_us,
            end_us=end_us,
        )
        export = _on_loop(self._loop, open_export(self._queries, request))
        index = self._index
        self._paged = _batches(
            lambda page: self._builder.batches(ExportPage(index, page.rows)), export.pages
        )

    def close(self) -> None:
        if self._loop.is_closed():
            return
        if self._ahead is not None:
            self._loop.call_soon_threadsafe(self._ahead.close)
        if self._paged is not None:
            asyncio.run_coroutine_threadsafe(self._paged.aclose(), self._loop)


async def _awaited(work: Awaitable[T]) -> T:
    return await work


def _wait(future: concurrent.futures.Future[T]) -> T:
    """What `future`, of the loop, answers; from a Flight thread (the GIL released while it
    waits), LOOP_TIMEOUT_S at most."""
    try:
        return future.result(LOOP_TIMEOUT_S)
    except TimeoutError:
        future.cancel()
        raise _LoopTimeout from None
    except concurrent.futures.CancelledError:
        # Only the loop's shutdown cancels work a Flight thread waits for (asyncio.run cancels
        # every task): the service is stopping, as _ReadAhead answers then, not a bug.
        raise _Stopping from None


def _settle(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)
