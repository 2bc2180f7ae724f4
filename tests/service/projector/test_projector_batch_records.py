"""The per-point records of a projected batch, field by field, and the SQLite store's current
records, which it copies from the versions inside SQLite instead of binding them again."""

from __future__ import annotations

import uuid
from pathlib import Path

from qis_adapters.eventstore.codec import DecodedEvent
from qis_adapters.eventstore.port import RecordedEvent
from qis_adapters.proto.values import raw_to_proto_bytes
from qis_adapters.readstore import segments
from qis_adapters.readstore.memory import InMemoryReadStore
from qis_adapters.readstore.port import (
    ChangeFeedEntry,
    Observation,
    OfficialVersion,
    ProjectionBatch,
)
from qis_adapters.readstore.sqlite import SqliteReadStore
from qis_domain.events import (
    DataIngested,
    DataPublished,
    DataRestated,
    DomainEvent,
    EventMetadata,
    RawValue,
)
from qis_domain.series_bucket import bucket_stream
from qis_domain.values import DataType
from qis_projector.application.projection import Projection

US = 1_000_000
T0 = 1_704_067_200 * US
SERIES = "S.PX"
STREAM = bucket_stream(SERIES, T0)
ENCODE = raw_to_proto_bytes(DataType.PRICE, "USD")


def decoded(event: DomainEvent, position: int, command_id: str, user_id: str) -> DecodedEvent:
    meta = EventMetadata(
        command_id=command_id, user_id=user_id, correlation_id="c", causation_id="c"
    )
    record = RecordedEvent(
        STREAM, position, position, uuid.uuid4(), event.event_type, b"", b"", T0 + position
    )
    return DecodedEvent(event, meta, record)


def published(snaps: list[int], values: list[RawValue]) -> DataPublished:
    n = len(snaps)
    return DataPublished(
        series_id=SERIES,
        data_type=DataType.PRICE,
        unit="USD",
        snaps=snaps,
        versions=[1] * n,
        values=values,
        quality_scores=["0.75"] * n,
        sources=[["a", "b"]] * n,
        methods=["median"] * n,
        flags=[["jump"]] + [[]] * (n - 1),
        reasons=[""] * n,
        causes=[""] * n,
        mode="automatic",
    )


def restated(snap: int, value: str) -> DataRestated:
    return DataRestated(
        series_id=SERIES,
        data_type=DataType.PRICE,
        unit="USD",
        snaps=[snap],
        versions=[2],
        values=[value],
        quality_scores=["0.5"],
        sources=[["b"]],
        methods=["priority"],
        flags=[["stale"]],
        reasons=["vendor correction"],
        causes=["corrected_source"],
    )


def test_each_record_of_a_point_carries_its_own_column_of_the_event() -> None:
    projection = Projection()
    ingest = DataIngested(
        series_id=SERIES,
        source_id="a",
        data_type=DataType.PRICE,
        unit="USD",
        snaps=[T0, T0 + US],
        offsets=[3600, -1800],
        values=["1.5", "2.5"],
    )
    projection.handle(decoded(ingest, 1, "cmd-i", "ingester"))
    projection.handle(decoded(published([T0, T0 + US], ["1.5", "2.5"]), 2, "cmd-p", "pub"))
    projection.handle(decoded(restated(T0, "1.75"), 3, "cmd-r", "fixer"))
    batch, by_bucket = projection.take()

    def observation(i: int, snap_us: int, value: str, offset: int) -> Observation:
        return Observation(
            series_id=SERIES,
            snap_us=snap_us,
            source_id="a",
            value=ENCODE(value),
            snap_offset_s=offset,
            recorded_at_us=T0 + 1,
            position=1,
            index=i,
            command_id="cmd-i",
            user_id="ingester",
        )

    assert batch.observations == [
        observation(0, T0, "1.5", 3600),
        observation(1, T0 + US, "2.5", -1800),
    ]

    def published_version(snap_us: int, value: str, flags: tuple[str, ...]) -> OfficialVersion:
        return OfficialVersion(
            series_id=SERIES,
            snap_us=snap_us,
            version=1,
            value=ENCODE(value),
            quality_score=0.75,
            recorded_from_us=T0 + 2,
            position_from=2,
            reason="",
            user_id="pub",
            command_id="cmd-p",
            sources=("a", "b"),
            method="median",
            flags=flags,
        )

    v1a, v1b = published_version(T0, "1.5", ("jump",)), published_version(T0 + US, "2.5", ())
    v2a = OfficialVersion(
        series_id=SERIES,
        snap_us=T0,
        version=2,
        value=ENCODE("1.75"),
        quality_score=0.5,
        recorded_from_us=T0 + 3,
        position_from=3,
        reason="vendor correction",
        user_id="fixer",
        command_id="cmd-r",
        sources=("b",),
        method="priority",
        flags=("stale",),
    )
    assert batch.versions == [v1a, v1b, v2a]

    def change(index: int, v: OfficialVersion) -> ChangeFeedEntry:
        return ChangeFeedEntry(
            position=v.position_from,
            index=index,
            series_id=v.series_id,
            snap_us=v.snap_us,
            version=v.version,
            value=v.value,
            quality_score=v.quality_score,
            recorded_at_us=v.recorded_from_us,
            reason=v.reason,
            user_id=v.user_id,
            sources=v.sources,
            method=v.method,
            flags=v.flags,
        )

    assert batch.changes == [change(0, v1a), change(1, v1b), change(0, v2a)]
    assert [(c.snap_us, c.version, c.recorded_to_us, c.position_to) for c in batch.closures] == [
        (T0, 1, T0 + 3, 3)
    ]
    # The bucket's new segment rows are those of its versions, columns and values alike.
    assert list(by_bucket) == [(SERIES, T0)]
    assert by_bucket[(SERIES, T0)].equals(segments.rows_from_versions(batch.versions))
    # The restatement is audited per point with its cause, the publication per event.
    assert [(a.position, a.snap_us, a.details) for a in batch.audit[1:]] == [
        (2, None, {"points": 2, "first_snap_us": T0, "last_snap_us": T0 + US}),
        (3, T0, {"version": 2, "reason": "vendor correction", "cause": "corrected_source"}),
    ]


def batches() -> list[ProjectionBatch]:
    """Publication of three snaps and a restatement of the middle one in one batch; then a later
    restatement of the first snap in a second batch."""
    projection = Projection()
    projection.handle(decoded(published([T0, T0 + US, T0 + 2 * US], ["1", "2", "3"]), 1, "p", "u"))
    projection.handle(decoded(restated(T0 + US, "2.5"), 2, "r1", "u"))
    first, _ = projection.take()
    projection.handle(decoded(restated(T0, "1.5"), 3, "r2", "u"))
    second, _ = projection.take()
    return [first, second]


async def test_sqlite_current_records_are_the_highest_versions_as_in_memory(
    tmp_path: Path,
) -> None:
    first, second = batches()
    sqlite = await SqliteReadStore.open(tmp_path / "read.db", "g1")
    memory = InMemoryReadStore(generation="g1")
    try:
        for store in (sqlite, memory):
            await store.apply(first, 2)
            await store.apply(second, 3)
            # A crash replay of the first batch: its versions are stored (one closed since),
            # and its current records must not step back.
            await store.apply(first, 3)
        dumped = await sqlite.dump_all()
        assert dumped["current"] == (await memory.dump_all())["current"]
        assert [(v.snap_us, v.version, v.value) for v in dumped["current"]] == [  # type: ignore[attr-defined]
            (T0, 2, ENCODE("1.5")),
            (T0 + US, 2, ENCODE("2.5")),
            (T0 + 2 * US, 1, ENCODE("3")),
        ]
    finally:
        await sqlite.close()
        await memory.close()


async def test_versions_of_one_event_split_across_a_batch_still_become_current(
    tmp_path: Path,
) -> None:
    """Records written without the projector may interleave events: each run is its own range."""
    (first, _) = batches()
    a, b, c, d = first.versions  # event 1: three snaps; event 2: the middle one restated
    interleaved = ProjectionBatch(versions=[a, d, b, c])
    store = await SqliteReadStore.open(tmp_path / "read.db", "g1")
    try:
        await store.apply(interleaved, 2)
        current = (await store.dump_all())["current"]
        assert [(v.snap_us, v.version) for v in current] == [  # type: ignore[attr-defined]
            (T0, 1),
            (T0 + US, 2),
            (T0 + 2 * US, 1),
        ]
    finally:
        await store.close()
