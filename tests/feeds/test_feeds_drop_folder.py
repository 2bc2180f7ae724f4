"""The drop folder against the real command service: files ingested by `qis ingest`'s code,
filed in done/ or failed/ with a report, never read while still being written."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from qis.data.v1 import command_service_pb2_grpc as cmd_grpc
from qis_cli.kinds import ValueKind
from qis_feeds.adapters.drop_folder import DropFolder, DropFolderSettings

from tests.feeds.feeds_support import FEEDER, command_service, define_series

ROWS = "snap,value\n" + "".join(f"2024-06-03T00:00:0{i}Z,{100 + i}.5\n" for i in range(6))


@pytest.fixture
async def folder(tmp_path: Path) -> AsyncIterator[DropFolder]:
    async with command_service() as served:
        for series in ("BTC.USD", "ETH.USD"):
            await define_series(served.stub, series, "files")
        with grpc.insecure_channel(served.address) as channel:
            settings = DropFolderSettings(tmp_path, "files", ValueKind.PRICE, settle_s=0.3)
            yield DropFolder(settings, cmd_grpc.CommandServiceStub(channel), FEEDER)


async def test_a_file_is_ingested_then_filed_with_its_report(folder: DropFolder) -> None:
    root = folder.path
    (root / "BTC.USD.csv").write_text(ROWS)
    [outcome] = await folder.sweep()
    assert outcome.ok
    assert outcome.file == root / "done" / "BTC.USD.csv"
    report = (root / "done" / "BTC.USD.csv.report.txt").read_text()
    assert "-> series/BTC.USD from sources/files" in report
    assert "accepted:                      6" in report
    assert not (root / "BTC.USD.csv").exists()
    # The same file again: answered with duplicates, filed under another name.
    shutil.copy(outcome.file, root / "BTC.USD.csv")
    [again] = await folder.sweep()
    assert again.ok
    assert again.file.parent.name == "done"
    assert again.file != outcome.file
    assert "duplicates:                    6" in again.report


async def test_rejected_rows_and_unreadable_files_go_to_failed(folder: DropFolder) -> None:
    root = folder.path
    (root / "ETH.USD.csv").write_text(ROWS + "2024-06-03T00:00:09,1\n")  # no offset
    (root / "NOPE.csv").write_text(ROWS)  # no such series
    (root / "ETH.USD.txt").write_text(ROWS)  # no known format
    outcomes = {o.file.name: o for o in await folder.sweep()}
    assert {o.file.parent.name for o in outcomes.values()} == {"failed"}
    assert "has no UTC offset" in outcomes["ETH.USD.csv"].report
    assert "accepted:                      6" in outcomes["ETH.USD.csv"].report
    assert "NOT_FOUND" in outcomes["NOPE.csv"].report
    assert "cannot tell the format" in outcomes["ETH.USD.txt"].report
    health = await folder.get_health()
    assert (health.requests, health.errors) == (3, 3)


async def test_a_long_running_folder_keeps_counts_not_every_outcome(
    folder: DropFolder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder fed for months must not hold every file's report in memory: it keeps the latest
    outcomes and counts all of them."""
    monkeypatch.setattr(folder, "outcomes", type(folder.outcomes)(maxlen=2))
    root = folder.path
    for n in range(4):
        (root / f"NOPE{n}.csv").write_text(ROWS)  # no such series: failed, quickly
        await folder.sweep()
    (root / "BTC.USD.csv").write_text(ROWS)
    await folder.sweep()
    assert [o.file.name for o in folder.outcomes] == ["NOPE3.csv", "BTC.USD.csv"]
    health = await folder.get_health()
    assert (health.requests, health.errors) == (5, 4)


async def test_a_file_being_written_is_read_whole_once_it_held_still(folder: DropFolder) -> None:
    root = folder.path
    path = root / "BTC.USD.csv"
    half = len(ROWS) // 2

    async def write_slowly() -> None:
        with path.open("w") as out:
            out.write(ROWS[:half])
            out.flush()
            await asyncio.sleep(0.15)  # less than settle_s: the sweep must not take it yet
            out.write(ROWS[half:])

    writer = asyncio.create_task(write_slowly())
    await asyncio.sleep(0.05)
    assert await folder.sweep() == []  # it grew while the sweep watched it
    await writer
    [outcome] = await folder.sweep()
    assert "rows read:                     6" in outcome.report


async def test_in_progress_names_wait_for_their_rename(folder: DropFolder) -> None:
    root = folder.path
    (root / "BTC.USD.csv.part").write_text(ROWS)
    (root / ".BTC.USD.csv").write_text(ROWS)
    assert await folder.sweep() == []
    (root / "BTC.USD.csv.part").rename(root / "BTC.USD.csv")
    [outcome] = await folder.sweep()
    assert outcome.ok


async def test_the_watch_ingests_what_is_dropped_while_it_runs(folder: DropFolder) -> None:
    root = folder.path
    stop = asyncio.Event()
    watching = asyncio.create_task(folder.run(stop))
    await asyncio.sleep(0.2)
    (root / "BTC.USD.csv").write_text(ROWS)
    for _ in range(100):
        if folder.outcomes:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(watching, 10)
    assert [o.file.name for o in folder.outcomes] == ["BTC.USD.csv"]
    assert (root / "done" / "BTC.USD.csv").exists()
