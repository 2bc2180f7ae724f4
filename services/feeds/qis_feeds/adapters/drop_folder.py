"""A drop folder (watchfiles): files put in a folder are ingested as `qis ingest` would, then
moved to done/ or failed/ with a report beside them.

The same code as `qis ingest` (qis_cli: the readers of CSV, Parquet, JSON and JSON Lines, the
chunks with ids derived from the file's content, the pipelined BulkIngest with resends of a
rejected chunk's valid rows): a file dropped twice is answered with duplicates the second time.
It is not a DataProvider: files are rows, not raw values, and go through that code whole.

A file still being written is not read half-way: names that say "in progress" (a leading dot,
.tmp, .part, .partial, .crdownload) are left alone, and a file is read only once its size and
modification time held still for `settle_s`. Writers that can should write under such a name
and rename when done (a rename is atomic); the settle time covers those that cannot.

A file with rejected rows goes to failed/ (its report lists them); so does a file that cannot be
read, or whose import stopped (an unknown series, the service unreachable). Nothing of a file in
failed/ is lost: what was committed stays, and dropping the file again resumes it.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from qis.data.v1 import command_service_pb2_grpc
from qis_cli.chunks import ImportKey, file_digest
from qis_cli.errors import CliError
from qis_cli.ingest import IngestSummary, IngestTarget, render_summary, run_ingest
from qis_cli.kinds import ValueKind
from qis_cli.progress import Progress
from qis_cli.readers import ImportFile, column_map, detect_format, read_rows
from watchfiles import awatch

from qis_feeds.application.ports import ProviderHealth

log = logging.getLogger("qis.feeds.drop_folder")
DONE, FAILED = "done", "failed"
RECENT_OUTCOMES = 100
"""Outcomes a drop folder keeps (its counts are of every file)."""
_IN_PROGRESS = (".tmp", ".part", ".partial", ".crdownload")

Metadata = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class DropFolderSettings:
    path: Path
    source_id: str
    kind: ValueKind
    series_id: str | None = None
    """None: the file's name without its extension names the series (BTC.USD.csv: BTC.USD)."""
    columns: str = ""
    """As `qis ingest --columns`: FIELD=COLUMN,..."""
    settle_s: float = 2.0
    chunk_size: int = 1_000


@dataclass(frozen=True, slots=True)
class Outcome:
    file: Path
    """Where the file is now, in done/ or failed/."""
    ok: bool
    report: str


def _in_progress(path: Path) -> bool:
    return path.name.startswith(".") or path.suffix.lower() in _IN_PROGRESS


class DropFolder:
    name = "drop_folder"

    def __init__(
        self,
        settings: DropFolderSettings,
        stub: command_service_pb2_grpc.CommandServiceStub,
        metadata: Metadata,
    ) -> None:
        self._settings = settings
        self._stub = stub
        self._metadata = metadata
        self._renamed = column_map(settings.columns, settings.kind.fields)
        self.outcomes: deque[Outcome] = deque(maxlen=RECENT_OUTCOMES)
        """The latest files' outcomes: a folder that runs for months must not keep them all."""
        self._files = 0
        self._failed = 0
        self._last_error = ""
        self._last_success_us: int | None = None

    @property
    def path(self) -> Path:
        return self._settings.path

    async def get_health(self) -> ProviderHealth:
        return ProviderHealth(
            connected=True,
            requests=self._files,
            errors=self._failed,
            last_success_us=self._last_success_us,
            last_error=self._last_error,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Ingests what is there, then what comes, until `stop` is set."""
        await self.sweep()
        async for _ in awatch(self._settings.path, stop_event=stop, recursive=False):
            await self.sweep()

    async def sweep(self) -> list[Outcome]:
        """Ingests every file of the folder that held still for `settle_s`."""
        before = self._candidates()
        if not before:
            return []
        await asyncio.sleep(self._settings.settle_s)
        after = self._candidates()
        done = []
        for path, stat in sorted(after.items()):
            if before.get(path) == stat:
                done.append(await asyncio.to_thread(self._ingest, path))
        return done

    def _candidates(self) -> dict[Path, tuple[int, int]]:
        found = {}
        for path in self._settings.path.iterdir():
            if path.is_file() and not _in_progress(path):
                stat = path.stat()
                found[path] = (stat.st_size, stat.st_mtime_ns)
        return found

    def _ingest(self, path: Path) -> Outcome:
        settings = self._settings
        series_id = settings.series_id or path.stem
        target = IngestTarget(series_id, settings.source_id, settings.kind)
        try:
            file_format = detect_format(path, None)
            rows = read_rows(
                ImportFile(path, file_format, settings.kind.fields, self._renamed), log.warning
            )
            key = ImportKey(
                file_digest(path), series_id, settings.source_id, settings.chunk_size, self._renamed
            )
            summary = IngestSummary(rows.label, self._renamed)
            run_ingest(
                self._stub,
                target,
                rows.rows,
                key,
                self._metadata,
                summary,
                Progress(io.StringIO(), rows.expected),
            )
            report = render_summary(summary, path.name, target)
            ok = summary.stopped is None and not summary.rejected_rows
        except CliError as error:
            report = f"{path.name} -> {target.series_name}: {error}"
            ok = False
        return self._file(path, ok, report)

    def _file(self, path: Path, ok: bool, report: str) -> Outcome:
        where = self._settings.path / (DONE if ok else FAILED)
        where.mkdir(exist_ok=True)
        moved = where / path.name
        if moved.exists():  # a file of the same name was dropped before
            moved = where / f"{path.stem}.{time.strftime('%Y%m%dT%H%M%S')}{path.suffix}"
        path.rename(moved)
        moved.with_name(moved.name + ".report.txt").write_text(report + "\n")
        if ok:
            self._last_success_us = time.time_ns() // 1000
        else:
            self._last_error = report.splitlines()[-1]
        log.info("%s -> %s/", path.name, where.name)
        outcome = Outcome(moved, ok, report)
        self.outcomes.append(outcome)
        self._files += 1
        self._failed += not ok
        return outcome
