"""Log lines (qis_runtime.logs): RFC 3339 UTC timestamps, and the trace and span ids of the call
they were written in, so that a log line leads to its trace."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from opentelemetry.sdk.trace import TracerProvider
from qis_runtime.logs import _JsonFormatter


def line(message: str) -> dict[str, str]:
    record = logging.LogRecord("qis.test", logging.INFO, __file__, 1, message, None, None)
    parsed: dict[str, str] = json.loads(_JsonFormatter().format(record))
    return parsed


def test_a_line_outside_a_trace_has_no_ids_and_an_rfc3339_time() -> None:
    entry = line("hello")
    assert entry["msg"] == "hello"
    assert "trace_id" not in entry
    assert "span_id" not in entry
    written = datetime.fromisoformat(entry["ts"])
    assert written.tzinfo == UTC
    assert abs((datetime.now(UTC) - written).total_seconds()) < 60


def test_a_line_in_a_span_carries_its_ids() -> None:
    with TracerProvider().get_tracer("t").start_as_current_span("call") as span:
        entry = line("inside")
    ids = span.get_span_context()
    assert entry["trace_id"] == f"{ids.trace_id:032x}"
    assert entry["span_id"] == f"{ids.span_id:016x}"
