"""The consumer groups' timings and bounds as QIS_TOPICS_* settings of qis-query: validated at
start (a bad value names its variable), wired by the composition root, and changing what a
group does."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError
from qis_adapters.readstore.memory import InMemoryReadStore
from qis_query import bootstrap
from qis_query.application.topics import DEFAULT_GROUP_SETTINGS, GroupSettings
from qis_query.settings import QuerySettings

from tests.service.query.test_query_topic_groups import Client, Log, eventually, log, serve

__all__ = ["log"]  # the fixture, used by name


def test_the_defaults_are_the_group_settings_defaults() -> None:
    assert QuerySettings().group_settings() == DEFAULT_GROUP_SETTINGS


def test_every_variable_reaches_the_group_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {
        "POLL_S": "0.05",
        "CHECKPOINT_EVERY_S": "7.5",
        "CHECKPOINT_EVERY": "3",
        "READ_AHEAD": "50",
        "READ_BATCH": "10",
        "REPLAY_SCAN_S": "2",
        "REPLAY_CHUNK": "20",
    }
    for name, value in values.items():
        monkeypatch.setenv(f"QIS_TOPICS_{name}", value)
    assert QuerySettings().group_settings() == GroupSettings(
        poll_s=0.05,
        checkpoint_every_s=7.5,
        checkpoint_every=3,
        read_ahead=50,
        read_batch=10,
        replay_scan_s=2.0,
        replay_chunk=20,
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("POLL_S", "0"),
        ("POLL_S", "-1"),
        ("CHECKPOINT_EVERY_S", "3601"),
        ("CHECKPOINT_EVERY", "0"),
        ("READ_AHEAD", "100001"),
        ("READ_BATCH", "1001"),
        ("REPLAY_SCAN_S", "soon"),
        ("REPLAY_CHUNK", "1001"),  # a ReplayParkedEntries command moves 1,000 at most
    ],
)
def test_a_bad_value_stops_the_process_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(f"QIS_TOPICS_{name}", value)
    with pytest.raises(ValidationError) as refused:
        QuerySettings()
    assert f"topics_{name.lower()}" in str(refused.value)


async def test_the_composition_root_serves_the_groups_with_the_settings(
    log: tuple[Log, InMemoryReadStore],
) -> None:
    settings = QuerySettings(
        auth="dev", query_address="127.0.0.1:0", flight_address="", topics_read_ahead=7
    )
    app = await bootstrap.build(settings, log[1])
    try:
        assert app.groups.settings == settings.group_settings()
        assert app.groups.settings.read_ahead == 7
    finally:
        await app.close()


@pytest.mark.parametrize("every", [1, 100])
async def test_checkpoint_every_decides_when_a_settled_entry_is_recorded(
    log: tuple[Log, InMemoryReadStore], every: int
) -> None:
    the_log, reader = log
    # Time never makes a checkpoint due here: only the count of settled entries can.
    settings = QuerySettings(
        topics_poll_s=0.01, topics_checkpoint_every_s=3600, topics_checkpoint_every=every
    ).group_settings()
    async with serve(the_log, reader, settings) as stub:
        c = Client(stub, "c")
        await asyncio.sleep(0.1)  # joined: the group starts at the end of the (empty) log
        key = await the_log.entry("S1")
        c.ack(await c.next())
        if every == 1:
            await eventually(lambda: _recorded(the_log, key))
        else:
            await asyncio.sleep(0.3)  # thirty steps of the runner
            assert the_log.checkpoints == []
        await c.close()


async def _recorded(the_log: Log, key: tuple[int, int]) -> bool:
    return the_log.checkpoints[-1:] == [key]
