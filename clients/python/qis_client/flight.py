"""Long ranges as an Arrow table, from the query service's Arrow Flight endpoint (port 50054
under `qis up`, QIS_FLIGHT_ADDRESS): one stream of columns instead of a message per point.

Needs pyarrow: `pip install 'qis-data-client[arrow]'` (the rest of qis_client does not).

    from qis_client.flight import read_range

    table = read_range("127.0.0.1:50054", ["SPX.CLOSE", "NDX.CLOSE"],
                       start="2024-01-01T00:00:00Z",  # or date(2024, 1, 1): midnight UTC
                       user="alice")
    df = table.to_pandas()          # decimals as exact decimal.Decimal objects
    # or pandas with Arrow dtypes:  table.to_pandas(types_mapper=pandas.ArrowDtype)
    # or polars.from_arrow(table)   # keeps Decimal(38, 18)

Columns: `series` (only when several series are named), `snap_time` (timestamp[us, UTC]),
`value` as decimal128(38, 18) and `unit` (each value's own currency or unit, dictionary-encoded)
for prices and volumes, or `open`, `high`, `low`, `close`,
`volume` for OHLC bars, or one row per node for term structures and surfaces: `tenor` (string),
`coordinate` (surfaces, decimal128(38, 18)) and `value`; then `version`, `quality_score`, `record_time`, `record_position`, `flags`
(the rule names a point failed). The schema metadata holds `qis.read_position` and `qis.series`
(data type and unit of each series). A refusal is raised as the QisError of its code, as the
gRPC client raises it (InvalidArgument with field_violations, NotFound, Unavailable with
retry_delay, Unauthenticated...).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import grpc
from google.rpc import status_pb2

try:
    import pyarrow as pa
    import pyarrow.flight as fl
except ImportError as missing:  # pragma: no cover - depends on the installation
    raise ImportError(
        "qis_client.flight needs pyarrow: pip install 'qis-data-client[arrow]'"
    ) from missing

from qis_client.errors import FieldViolation, QisError, error_from_status
from qis_client.identity import BearerToken, Identity, User

FLIGHT_ADDRESS_ENV = "QIS_FLIGHT_ADDRESS"
DEFAULT_FLIGHT_ADDRESS = "127.0.0.1:50054"
TOKEN_ENV = "QIS_TOKEN"

Instant = datetime | date | str
"""An aware datetime, a date (midnight UTC), or RFC 3339 text with an offset
("2024-01-01T00:00:00Z"; text is sent as given, and the service refuses a bare "2024-01-01")."""

_CODES = {code.name: code for code in grpc.StatusCode}
_LEADING_CODE = re.compile(r"([A-Z_]+): ")
_PYARROW_DETAIL = ". Detail: "  # what pyarrow appends to the server's message


def read_range(
    address: str,
    series: str | Sequence[str],
    start: Instant | None = None,
    end: Instant | None = None,
    as_of_time: Instant | None = None,
    as_of_position: int | None = None,
    *,
    min_position: int | None = None,
    user: str | None = None,
    token: str | None = None,
    identity: Identity | None = None,
    tls_ca: str | Path | bytes | None = None,
    tls_client_cert: str | Path | bytes | None = None,
    tls_client_key: str | Path | bytes | None = None,
    timeout_s: float | None = None,
) -> pa.Table:
    """The official values of `series` (ids or "series/ID" names; several stream one after the
    other) with snaps in [start, end), latest or as of a knowledge time or commit position.

    Who you are: `token` (a bearer JWT), `user` (development mode), or any `identity` of
    qis_client; by default QIS_TOKEN when set, else QIS_USER or the login name. TLS: `tls_ca`
    (a PEM path or its bytes), plus a client certificate and key for a server in mtls mode.
    """
    location = f"{'grpc+tcp' if tls_ca is None else 'grpc+tls'}://{address}"
    options: dict[str, Any] = {}
    if tls_ca is not None:
        options["tls_root_certs"] = _pem(tls_ca)
        if tls_client_cert is not None and tls_client_key is not None:
            options["cert_chain"] = _pem(tls_client_cert)
            options["private_key"] = _pem(tls_client_key)
    headers = [
        (key.encode(), value.encode()) for key, value in _identity(user, token, identity).metadata()
    ]
    call = fl.FlightCallOptions(headers=headers, timeout=timeout_s)
    raw = ticket(series, start, end, as_of_time, as_of_position, min_position)
    with fl.FlightClient(location, **options) as client:
        try:
            return client.do_get(fl.Ticket(raw), call).read_all()
        except pa.ArrowException as error:
            raise flight_error(error) from None


def ticket(
    series: str | Sequence[str],
    start: Instant | None = None,
    end: Instant | None = None,
    as_of_time: Instant | None = None,
    as_of_position: int | None = None,
    min_position: int | None = None,
) -> bytes:
    """The Flight ticket of a range read: UTF-8 JSON (the service's documented form)."""
    if as_of_time is not None and as_of_position is not None:
        raise ValueError("give as_of_time or as_of_position, not both")
    names = [series] if isinstance(series, str) else list(series)
    body: dict[str, Any] = {
        "series": [n if n.startswith("series/") else f"series/{n}" for n in names]
    }
    for field, moment in (("start_time", start), ("end_time", end), ("as_of_time", as_of_time)):
        if moment is not None:
            body[field] = rfc3339(moment)
    if as_of_position is not None:
        body["as_of_position"] = as_of_position
    if min_position is not None:
        body["min_position"] = min_position
    return json.dumps(body).encode()


def rfc3339(moment: Instant) -> str:
    """UTC RFC 3339 text of an aware datetime or a date (midnight UTC); text as given."""
    if isinstance(moment, str):
        return moment
    if not isinstance(moment, datetime):
        moment = datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
    if moment.utcoffset() is None:
        raise ValueError(f"{moment!r} is naive: give it a time zone")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def flight_error(error: Exception) -> QisError:
    """A Flight failure as the QisError of its status: from the google.rpc.Status the service
    sends as a FlightError's extra_info, else from the code and violations its message names."""
    extra = getattr(error, "extra_info", b"")
    if extra:
        try:
            status = status_pb2.Status.FromString(extra)
        except Exception:  # not a status of the service's (a proxy's, or garbage)
            status = None
        if status is not None and status.code:
            return error_from_status(status)
    text = str(error.args[0]) if error.args else str(error)
    text = text.split(_PYARROW_DETAIL, 1)[0]
    code = _code_of(error, text)
    head, *lines = text.split("\n")
    matched = _LEADING_CODE.match(head)
    message = head[matched.end() :] if matched else head
    violations = tuple(_violation(line) for line in lines if line.startswith("  "))
    if code is grpc.StatusCode.INVALID_ARGUMENT and not violations and ": " in message:
        violations = (_violation(message),)
    kind = type(error_from_status(status_pb2.Status(code=code.value[0])))
    return kind(code, message, field_violations=violations)


def _code_of(error: Exception, text: str) -> grpc.StatusCode:
    matched = _LEADING_CODE.match(text)
    if matched and matched.group(1) in _CODES:
        return _CODES[matched.group(1)]
    for kind, code in (
        (fl.FlightUnauthenticatedError, grpc.StatusCode.UNAUTHENTICATED),
        (fl.FlightUnauthorizedError, grpc.StatusCode.PERMISSION_DENIED),
        (fl.FlightUnavailableError, grpc.StatusCode.UNAVAILABLE),
        (fl.FlightTimedOutError, grpc.StatusCode.DEADLINE_EXCEEDED),
        (fl.FlightCancelledError, grpc.StatusCode.CANCELLED),
        (fl.FlightInternalError, grpc.StatusCode.INTERNAL),
        (pa.ArrowInvalid, grpc.StatusCode.INVALID_ARGUMENT),
        (KeyError, grpc.StatusCode.NOT_FOUND),
    ):
        if isinstance(error, kind):
            return code
    return grpc.StatusCode.UNKNOWN


def _violation(line: str) -> FieldViolation:
    field, _, description = line.strip().partition(": ")
    return FieldViolation(field, description)


def _identity(user: str | None, token: str | None, identity: Identity | None) -> Identity:
    if identity is not None:
        return identity
    if token:
        return BearerToken(token)
    if user:
        return User(user)
    if env_token := os.environ.get(TOKEN_ENV):
        return BearerToken(env_token)
    return User.from_env()


def _pem(value: str | Path | bytes) -> bytes:
    return value if isinstance(value, bytes) else Path(value).read_bytes()
