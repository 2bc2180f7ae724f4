"""Workloads of the read-side benchmark (bench/readside.py): an event store filled through the
real command handlers, and synthetic read models written straight through `apply`."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import json_format, timestamp_pb2
from qis.data.v1 import command_service_pb2 as cpb
from qis.data.v1 import values_pb2
from qis_adapters.eventstore.sqlite import SqliteEventStore
from qis_adapters.proto.definitions import series_from_proto, source_from_proto
from qis_adapters.proto.values import points_from_proto
from qis_adapters.readstore.port import (
    OfficialVersion,
    ProjectionBatch,
    SeriesEntry,
    VersionClosure,
)
from qis_adapters.readstore.sqlite import SqliteReadStore
from qis_command.application.commands import DefineSeries, IngestPoints, RegisterSource
from qis_command.bootstrap import build_handlers
from qis_command.settings import CommandSettings
from qis_domain.commands import CommandContext
from qis_domain.errors import FieldViolation
from qis_domain.snaps import Frequency
from qis_projector.application.segments import SegmentBuilder, add_segments

from bench.ingest import BASE_S, BATCH, SERIES, SOURCE, definition_requests

US = 1_000_000
DAY_US = 86_400 * US
BASE_US = 1_700_000_000 * US
GENERATION = "g1"
WRITE_CHUNK = 50_000  # versions per synthetic apply
FREQUENCY = Frequency.SECOND  # the bench series' (bench.ingest.definition_requests)

UNIT = "USD"  # the bench series' currency (bench.ingest.definition_requests)


def _stored(text: str) -> bytes:
    """A price as the projector stores it: with the series' currency."""
    return values_pb2.DataValue(
        price=values_pb2.Price(value=text, currency=UNIT)
    ).SerializeToString()


_VALUES = [_stored(f"{100 + i / 100:.2f}") for i in range(100)]
_RESTATED_VALUES = [_stored(f"{200 + i / 100:.2f}") for i in range(100)]


def price_text(i: int, restated: bool = False) -> str:
    """The decimal string the synthetic writers store for point i (version 2 when restated)."""
    return f"{(200 if restated else 100) + (i % 100) / 100:.2f}"


# --- an event store filled by the real command handlers ------------------------------------


@dataclass(frozen=True, slots=True)
class IngestedLog:
    head: int
    points: int
    published: int


def ingest_requests(points: int, batch: int, prefix: str) -> list[cpb.IngestPointsRequest]:
    """`points` clean prices one second apart, `batch` per request (as bench/ingest.py)."""
    return [
        cpb.IngestPointsRequest(
            command_id=f"{prefix}-{first}",
            series=f"series/{SERIES}",
            source=f"sources/{SOURCE}",
            points=[
                values_pb2.DataPoint(
                    snap_time=timestamp_pb2.Timestamp(seconds=BASE_S + i),
                    value=values_pb2.DataValue(
                        price=values_pb2.Price(value=f"{100 + (i % 97) / 100:.2f}")
                    ),
                )
                for i in range(first, min(points, first + batch))
            ],
        )
        for first in range(0, points, batch)
    ]


async def ingest_log(path: Path, points: int, batch: int = BATCH) -> IngestedLog:
    """A fresh SQLite event store at `path` holding `points` price points of one series,
    ingested in batches of `batch` through the in-process command handlers."""
    store = await SqliteEventStore.open(path)
    try:
        handlers = build_handlers(store, CommandSettings())
        (source,), series = definition_requests(rules=False)
        await handlers.register_source(
            RegisterSource(SOURCE, source_from_proto(source.source)),
            CommandContext("s", "bench", 0),
        )
        await handlers.define_series(
            DefineSeries(SERIES, series_from_proto(series.series)), CommandContext("d", "bench", 0)
        )
        published = 0
        for r in ingest_requests(points, batch, "readside"):
            violations: list[FieldViolation] = []
            parsed = points_from_proto(r.points, violations)
            assert not violations, violations
            result = await handlers.ingest(
                IngestPoints(SERIES, SOURCE, parsed), CommandContext(r.command_id, "bench", 0)
            )
            published += result.outcome.published
        return IngestedLog(await store.head_position(), points, published)
    finally:
        await store.close()


# --- synthetic read models ------------------------------------------------------------------


def _version(
    series_id: str,
    snap_us: int,
    version: int,
    value: bytes,
    recorded_from_us: int,
    position: int,
) -> OfficialVersion:
    return OfficialVersion(
        series_id=series_id,
        snap_us=snap_us,
        version=version,
        value=value,
        quality_score=1.0,
        recorded_from_us=recorded_from_us,
        position_from=position,
        reason="" if version == 1 else "vendor correction",
        user_id="bench",
        command_id=f"bench-{position}",
        sources=("vendor",),
        method="priority" if version == 1 else "manual",
    )


def catalogue_entry(series_id: str, position: int) -> SeriesEntry:
    """The catalogue entry the projector would write for a series defined like the bench's."""
    _, request = definition_requests(rules=False)
    definition = request.series
    definition.name = f"series/{series_id}"
    return SeriesEntry(
        series_id=series_id,
        schema_version=1,
        definition=json_format.MessageToDict(definition, preserving_proto_field_name=True),
        updated_at_us=BASE_US,
        position=position,
    )


def series_batches(series_id: str, points: int, step_us: int = US) -> Iterator[ProjectionBatch]:
    """Version 1 of `points` snaps one `step_us` apart, WRITE_CHUNK per batch; each batch is
    what a projector would apply for one publication event (position = batch number + 1)."""
    for first in range(0, points, WRITE_CHUNK):
        position = first // WRITE_CHUNK + 1
        batch = ProjectionBatch()
        batch.versions.extend(
            _version(
                series_id,
                BASE_US + i * step_us,
                1,
                _VALUES[i % 100],
                BASE_US + i * step_us + US,
                position,
            )
            for i in range(first, min(points, first + WRITE_CHUNK))
        )
        if first == 0:
            batch.series.append(catalogue_entry(series_id, position))
        yield batch


async def write_batches(path: Path, batches: Iterator[ProjectionBatch], first_position: int) -> int:
    """Apply `batches` to generation g1 of the read store at `path` (checkpoints from
    `first_position` on), make g1 active; returns the last checkpoint written."""
    store = await SqliteReadStore.open(path, GENERATION)
    segments = SegmentBuilder(store)
    try:
        position = first_position
        for batch in batches:
            await store.apply(await add_segments(segments, batch, FREQUENCY), position)
            position += 1
        await store.set_active_generation(GENERATION)
        return position - 1
    finally:
        await store.close()


@dataclass(frozen=True, slots=True)
class Bitemporal:
    """`series` series × `snaps` snaps one minute apart. Version 1 of a point is recorded one
    second after its snap; a restated point has version 2 recorded RESTATE_AFTER_US later."""

    series: int
    snaps: int
    restated: frozenset[tuple[int, int]]  # (series index, snap index)

    RESTATE_AFTER_US = DAY_US
    STEP_US = 60 * US

    @staticmethod
    def make(series: int, snaps: int, fraction: float, seed: int = 7) -> Bitemporal:
        rng = random.Random(seed)
        count = int(series * snaps * fraction)
        picked = rng.sample(range(series * snaps), count)
        return Bitemporal(series, snaps, frozenset(divmod(p, snaps) for p in picked))

    @staticmethod
    def series_id(s: int) -> str:
        return f"ASOF.{s:03d}"

    def snap_us(self, k: int) -> int:
        return BASE_US + k * self.STEP_US

    def recorded_v1(self, k: int) -> int:
        return self.snap_us(k) + US

    def recorded_v2(self, k: int) -> int:
        return self.recorded_v1(k) + self.RESTATE_AFTER_US

    def expected(self, s: int, k: int, known_at_us: int) -> tuple[int, str] | None:
        """(version, price) an as-of query at `known_at_us` must answer, None for no value."""
        if known_at_us < self.recorded_v1(k):
            return None
        if (s, k) in self.restated and known_at_us >= self.recorded_v2(k):
            return 2, price_text(k, restated=True)
        return 1, price_text(k)

    def batches(self) -> Iterator[ProjectionBatch]:
        """All versions 1 (position 1..), then the restatements with their closures."""
        position = 0
        batch = ProjectionBatch()
        for s in range(self.series):
            sid = self.series_id(s)
            batch.series.append(catalogue_entry(sid, s + 1))
            for k in range(self.snaps):
                batch.versions.append(
                    _version(sid, self.snap_us(k), 1, _VALUES[k % 100], self.recorded_v1(k), s + 1)
                )
                if len(batch.versions) >= WRITE_CHUNK:
                    yield batch
                    batch = ProjectionBatch()
            position = s + 1
        for s, k in sorted(self.restated):
            position += 1
            sid, snap, at = self.series_id(s), self.snap_us(k), self.recorded_v2(k)
            batch.versions.append(_version(sid, snap, 2, _RESTATED_VALUES[k % 100], at, position))
            batch.closures.append(VersionClosure(sid, snap, 1, at, position))
            if len(batch.versions) >= WRITE_CHUNK:
                yield batch
                batch = ProjectionBatch()
        if len(batch):
            yield batch

    @property
    def versions(self) -> int:
        return self.series * self.snaps + len(self.restated)
