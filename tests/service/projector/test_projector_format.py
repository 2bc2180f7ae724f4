"""The projector checks the read-model format of the active generation when it starts.

Older (or unrecorded, as before formats were recorded): it says why in one WARNING, rebuilds the
read models into a fresh generation while the old one stays active and untouched, switches, and
goes on projecting into the new one. Current: it projects, no rebuild. Newer: it refuses. An
unfinished rebuild is dropped. A rebuild (`qis-projector rebuild`, or that one) switches only
once the new generation has caught up with the old one, which a running projector may advance
meanwhile. Runs on the adapters a projector process opens by URI: SQLite,
and MongoDB on FerretDB (the in-memory store has no URI: its format records are held to the
contract suite).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from grpc_health.v1 import health_pb2
from pymongo import AsyncMongoClient
from qis_adapters.eventstore.port import EventStore
from qis_adapters.eventstore.sqlite import SqliteEventStore
from qis_adapters.readstore.factory import AdministeredReadStore, open_read_store
from qis_adapters.readstore.port import (
    FORMAT_KEY_PREFIX,
    GENERATION_KEY_PREFIX,
    READ_MODEL_FORMAT,
    UNRECORDED_FORMAT,
    GenerationFormatError,
    IssueFilter,
)
from qis_domain.decisions import issue_id
from qis_domain.events import QualityIssueDetected, QualityRejected
from qis_domain.events.points import Issue
from qis_projector import main as projector_main
from qis_projector.application.projector import Projector
from qis_projector.entrypoints.health import ExplainedHealth
from qis_projector.main import _project
from qis_projector.settings import ProjectorSettings

from tests.service.projector.projector_support import BASE_US, append, encode, ingested, write_log
from tests.support.ferretdb import start_ferretdb
from tests.support.mongo import drop_database

TIMEOUT_S = 60.0
SAME_ISSUE = issue_id("cmd-1", BASE_US, "bbg", "jump")


@pytest.fixture(scope="module")
def ferretdb_uri() -> Iterator[str]:
    server = start_ferretdb()  # raises when the binary is missing: this must not go untested
    try:
        yield server.uri
    finally:
        server.stop()


@dataclass
class Stores:
    """A projector's settings on a fresh event log and read store, and a way to change what a
    generation's format record says (None: remove it) behind the adapter's back."""

    settings: ProjectorSettings
    set_format: Callable[[str, int | None], Awaitable[None]]

    async def read_store(self, generation: str | None = None) -> AdministeredReadStore:
        s = self.settings
        return await open_read_store(s.resolved_read_store_uri(), generation, s.mongo_database)


@pytest.fixture(params=["sqlite", "ferretdb"])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stores]:
    if request.param == "sqlite":
        settings = ProjectorSettings(data_dir=tmp_path, event_store_uri="", read_store_uri="")
        path = tmp_path / "read.db"

        async def set_sqlite_format(generation: str, found: int | None) -> None:
            conn = sqlite3.connect(path)
            try:
                with conn:
                    key = FORMAT_KEY_PREFIX + generation
                    conn.execute("DELETE FROM meta WHERE key = ?", (key,))
                    if found is not None:
                        conn.execute("INSERT INTO meta VALUES (?, ?)", (key, found))
            finally:
                conn.close()

        yield Stores(settings, set_sqlite_format)
        return

    uri: str = request.getfixturevalue("ferretdb_uri")
    database = f"qis_projector_{uuid.uuid4().hex[:12]}"
    settings = ProjectorSettings(
        data_dir=tmp_path, event_store_uri="", read_store_uri=uri, mongo_database=database
    )

    async def set_mongo_format(generation: str, found: int | None) -> None:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri)
        try:
            key = {"_id": GENERATION_KEY_PREFIX + generation}
            change = {"$unset": {"format": ""}} if found is None else {"$set": {"format": found}}
            await client[database]["meta"].update_one(key, change)
        finally:
            await client.close()

    try:
        yield Stores(settings, set_mongo_format)
    finally:
        await drop_database(uri, database)


class RecordedHealth(ExplainedHealth):
    """Keeps every reason the projector gave for its status."""

    def __init__(self) -> None:
        super().__init__()
        self.reasons: list[str] = []

    async def explain(
        self,
        service: str,
        status: health_pb2.HealthCheckResponse.ServingStatus.ValueType,
        reason: str,
    ) -> None:
        self.reasons.append(reason)
        await super().explain(service, status, reason)


def detected(series_id: str) -> QualityIssueDetected:
    """The same issue id in two series (command ids are unique per series only)."""
    issue = Issue(
        issue_id=SAME_ISSUE,
        snap_us=BASE_US,
        source_id="bbg",
        rule="jump",
        severity="warning",
        blocking=True,
        evidence={},
    )
    return QualityIssueDetected(series_id=series_id, issues=[issue])


async def write_ingests(events: EventStore) -> int:
    """Ingests in two series; returns the last position."""
    return (await write_log(events, 6, 20))[-1]


async def write_issues(events: EventStore) -> int:
    """The same issue raised in two series and rejected in one; returns the last position."""
    await append(events, "series/S0/points/0", detected("S0"))
    await append(events, "series/S1/points/0", detected("S1"))
    rejected = QualityRejected(series_id="S1", issue_ids=[SAME_ISSUE], snaps=[BASE_US], reason="x")
    return await append(events, "series/S1/points/0", rejected)


async def write_events(events: EventStore) -> int:
    await write_ingests(events)
    return await write_issues(events)


async def project(stores: Stores, events: EventStore, generation: str, until: int) -> None:
    store = await stores.read_store(generation)
    try:
        await asyncio.wait_for(Projector(events, store).run(until_position=until), TIMEOUT_S)
    finally:
        await store.close()


async def eventually(probe: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not await probe():
        assert time.monotonic() < deadline, f"not {what} after {TIMEOUT_S} s"
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running_projector(stores: Stores, health: ExplainedHealth) -> AsyncIterator[None]:
    """The projector process's projecting part, asked to stop (SIGTERM) on the way out."""
    stop = asyncio.Event()
    task = asyncio.create_task(_project(stores.settings, health, stop))
    try:
        yield
        assert not task.done(), task
    finally:
        stop.set()
        await asyncio.wait_for(task, TIMEOUT_S)


async def checkpoint_of(stores: Stores, generation: str) -> int | None:
    """The generation's own checkpoint (a reader's follows the active pointer, cached)."""
    admin = await stores.read_store()
    try:
        if generation not in await admin.list_generations():
            return None  # not created yet
        dump = await admin.dump_all(generation)  # type: ignore[attr-defined]
        found: int | None = dump["checkpoint"]
        return found
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def active_g1(
    stores: Stores, tmp_path: Path, form: int | None
) -> AsyncIterator[tuple[SqliteEventStore, AdministeredReadStore, int]]:
    """An event log and a read store whose active generation g1 holds the whole log, of format
    `form` (None: no format record, as earlier code left it): the log, the store and its head."""
    events = await SqliteEventStore.open(tmp_path / "events.db")
    admin = await stores.read_store()
    try:
        head = await write_events(events)
        await project(stores, events, "g1", head)
        await admin.set_active_generation("g1")
        await stores.set_format("g1", form)
        yield events, admin, head
    finally:
        await admin.close()
        await events.close()


def format_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "read models of format" in r.getMessage()
    ]


async def test_an_active_generation_of_an_older_format_is_rebuilt_when_the_projector_starts(
    stores: Stores, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    events = await SqliteEventStore.open(tmp_path / "events.db")
    admin = await stores.read_store()
    try:
        # A store projected by earlier code, now behind the log: no format record.
        stale_at = await write_ingests(events)
        await project(stores, events, "g1", stale_at)
        head = await write_issues(events)
        await admin.set_active_generation("g1")
        await stores.set_format("g1", None)
        assert await admin.generation_format("g1") == UNRECORDED_FORMAT

        health = RecordedHealth()
        async with running_projector(stores, health):

            async def rebuilt() -> bool:
                return await admin.active_generation() == "g2" and (
                    await checkpoint_of(stores, "g2") == head
                )

            await eventually(rebuilt, "rebuilt")
            # Then the projector goes on in the new generation.
            later = await append(events, "series/S0/points/9", ingested("S0", BASE_US * 2, 3))

            async def followed() -> bool:
                return await checkpoint_of(stores, "g2") == later

            await eventually(followed, "projecting into g2")

        (warning,) = format_warnings(caplog)  # one WARNING, saying why
        assert "generation g1 holds read models of format 1" in warning
        assert f"older than format {READ_MODEL_FORMAT}" in warning
        assert "keyed by (series, issue id)" in warning
        assert "queries read g1" in warning
        assert any("rebuilding" in reason and "g2" in reason for reason in health.reasons)

        # The old generation was left as it was, still readable; the new one is a clean
        # projection of the whole log, of the current format.
        assert await admin.list_generations() == ["g1", "g2"]
        assert await checkpoint_of(stores, "g1") == stale_at
        assert await admin.generation_format("g1") == UNRECORDED_FORMAT
        assert await admin.generation_format("g2") == READ_MODEL_FORMAT
        await project(stores, events, "clean", later)
        rebuilt_dump = await admin.dump_all("g2")  # type: ignore[attr-defined]
        assert rebuilt_dump == await admin.dump_all("clean")  # type: ignore[attr-defined]
        issues = [(i.series_id, i.status) for i in rebuilt_dump["issues"]]
        assert issues == [("S0", "open"), ("S1", "rejected")]

        # Started again: the generation is of the current format, nothing is rebuilt.
        caplog.clear()
        async with running_projector(stores, RecordedHealth()):
            await eventually(followed, "projecting into g2 again")
            await asyncio.sleep(0.3)
        assert format_warnings(caplog) == []
        assert await admin.active_generation() == "g2"
        assert await admin.list_generations() == ["clean", "g1", "g2"]
    finally:
        await admin.close()
        await events.close()


async def test_a_first_start_builds_the_current_format_and_rebuilds_nothing(
    stores: Stores, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    events = await SqliteEventStore.open(tmp_path / "events.db")
    admin = await stores.read_store()
    try:
        head = await write_events(events)
        for _ in range(2):  # a first start, then a restart (a writer reopening g1)
            async with running_projector(stores, RecordedHealth()):

                async def projected() -> bool:
                    return await checkpoint_of(stores, "g1") == head

                await eventually(projected, "projected")
        assert format_warnings(caplog) == []
        assert await admin.list_generations() == ["g1"]
        assert await admin.generation_format("g1") == READ_MODEL_FORMAT
        found = await admin.list_issues(IssueFilter(), "", 10)
        assert [(i.series_id, i.issue_id) for i in found] == [
            ("S0", SAME_ISSUE),
            ("S1", SAME_ISSUE),
        ]
    finally:
        await admin.close()
        await events.close()


async def test_an_unfinished_rebuild_is_dropped_and_the_old_generation_stays_active(
    stores: Stores, tmp_path: Path
) -> None:
    async with active_g1(stores, tmp_path, None) as (events, admin, head):
        # An event no code can project: the rebuild halts there and cannot finish.
        record = encode("series/P/points/0", ingested("P", BASE_US, 3))
        await append(events, "series/P/points/0", dataclasses.replace(record, data=b"{"))

        health = RecordedHealth()
        async with running_projector(stores, health):

            async def halted() -> bool:
                return any("cannot project the event" in r for r in health.reasons)

            await eventually(halted, "halted")
            assert "g2" in await admin.list_generations()
            assert await admin.active_generation() == "g1"
        assert await admin.list_generations() == ["g1"]  # dropped on the way out
        assert await admin.active_generation() == "g1"
        assert await checkpoint_of(stores, "g1") == head
        assert health.reasons[-1].startswith("cannot project the event")


async def test_a_generation_of_a_newer_format_is_refused(stores: Stores, tmp_path: Path) -> None:
    async with active_g1(stores, tmp_path, READ_MODEL_FORMAT + 1) as (_, admin, _):
        with pytest.raises(GenerationFormatError, match=f"format {READ_MODEL_FORMAT + 1}"):
            await asyncio.wait_for(
                _project(stores.settings, RecordedHealth(), asyncio.Event()), TIMEOUT_S
            )
        assert await admin.list_generations() == ["g1"]


@pytest.mark.parametrize("command", ["rebuild", "run"])
async def test_a_rebuild_never_switches_behind_the_old_generation(
    stores: Stores, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    """Once the rebuild caught up with the head it saw, the running projector (old code, in
    the `run` case of a stale format) projects a later event into the old generation: the
    switch waits until the new one has it too, or the read model queries see would go back."""
    form = None if command == "run" else READ_MODEL_FORMAT
    async with active_g1(stores, tmp_path, form) as (events, admin, _):
        caught_up = projector_main._catch_up
        later: list[int] = []

        async def running_projector_goes_on(app: Any) -> None:
            await caught_up(app)
            if later:
                return
            later.append(await append(events, "series/S0/points/9", ingested("S0", BASE_US * 2, 3)))
            await stores.set_format("g1", READ_MODEL_FORMAT)  # as the old code writes it
            await project(stores, events, "g1", later[0])
            if command == "run":
                await stores.set_format("g1", None)

        switches: list[tuple[str, int | None, int | None]] = []
        set_active = type(admin).set_active_generation

        async def recorded(store: Any, name: str) -> None:
            old = await admin.active_generation()
            assert old is not None
            switches.append(
                (name, await checkpoint_of(stores, name), await checkpoint_of(stores, old))
            )
            await set_active(store, name)

        monkeypatch.setattr(projector_main, "_catch_up", running_projector_goes_on)
        monkeypatch.setattr(type(admin), "set_active_generation", recorded)
        if command == "rebuild":
            await asyncio.wait_for(projector_main.rebuild(stores.settings), TIMEOUT_S)
        else:
            async with running_projector(stores, RecordedHealth()):

                async def switched() -> bool:
                    return await admin.active_generation() == "g2"

                await eventually(switched, "switched")

        assert switches == [("g2", later[0], later[0])]
        assert await admin.active_generation() == "g2"
