"""Process setup shared by the services: structured logs (one JSON object a line, so log
pipelines need no parsing rules) and garbage-collector settings.

A log line has `ts` (RFC 3339, UTC, milliseconds), `level`, `logger`, `msg`, `exc` for an
exception and, when written within a traced call, `trace_id` and `span_id` (hex, as
OpenTelemetry backends show them): a log line leads to its trace and back."""

from __future__ import annotations

import gc
import json
import logging
import sys
from datetime import UTC, datetime

from opentelemetry import trace


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            entry["trace_id"] = f"{span.trace_id:032x}"
            entry["span_id"] = f"{span.span_id:016x}"
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level: str, process: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger(process).debug("logging configured")


def tune_garbage_collection() -> None:
    """Fewer collections of the young generation, and none of startup's long-lived objects.

    The processes hold large, long-lived object graphs (aggregate caches, decoded batches) and
    allocate many short-lived objects per point; with CPython's default thresholds the
    collector rescans them hundreds of times a second. Measured on the ingest benchmark:
    27k -> 44k points/s in-process with these settings.
    """
    gc.freeze()
    gc.set_threshold(100_000, 50, 1000)
