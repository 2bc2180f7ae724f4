"""Masked updates (AIP-134) of a series and a source, decided on the loaded state: a change
another writer makes between the load and the append is kept, never overwritten by a merge
made before it; an expected schema version is checked on that same state; and the command's
fingerprint covers the mask and the expected version."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial

import pytest
from google.protobuf import field_mask_pb2
from qis.data.v1 import series_pb2
from qis_adapters.eventstore.codec import EventCodec
from qis_adapters.proto.definitions import series_update_from_proto
from qis_command.application.commands import ConfigureSource, EvolveSeries
from qis_command.application.repository import Repository
from qis_domain.command_log import COMMAND_REUSED
from qis_domain.data_source import DataSource, source_stream
from qis_domain.definitions import DataSourceConfig, Update, ValidationRules
from qis_domain.errors import Aborted, AlreadyExists
from qis_domain.reference_data import ReferenceData, definition_stream

from tests.service.command.command_support import App, daily_series, new_app
from tests.service.command.test_command_lost_update import InterleavingStore

RULES = ValidationRules()
Command = Callable[[App], Awaitable[object]]


def evolve(values: dict[str, object], expected: int = 0, command_id: str = "mine") -> Command:
    async def run(app: App) -> object:
        command = EvolveSeries("SPX", Update(values=values), "because", expected)
        return await app.handlers.evolve_series(command, app.ctx(command_id))

    return run


def configure(values: dict[str, object], command_id: str = "mine") -> Command:
    async def run(app: App) -> object:
        command = ConfigureSource("a", Update(values=values))
        return await app.handlers.configure_source(command, app.ctx(command_id))

    return run


async def every_interleaving(mine: Command, other: Command) -> list[tuple[App, object, bool]]:
    """`mine` run with `other` slipped in before each of its store calls in turn: per
    interleaving, the application, what `mine` answered or raised, and whether it conflicted."""
    runs: list[tuple[App, object, bool]] = []
    at = 0
    while True:
        at += 1
        store = InterleavingStore()
        app = App.on(store)
        await app.define(daily_series("a", rules=RULES))
        store.other, store.at, store.calls = partial(other, app), at, 0
        outcome: object
        try:
            outcome = await mine(app)
        except Exception as error:
            outcome = error
        if store.other is not None:
            return runs  # `mine` made fewer store calls than `at`: every interleaving was tried
        runs.append((app, outcome, app.handlers.conflicts_retried > 0))


async def series_of(app: App) -> ReferenceData:
    repository = Repository(app.store, EventCodec())
    return await repository.load(definition_stream("SPX"), lambda: ReferenceData("SPX"))


async def test_a_masked_evolution_keeps_a_change_made_between_its_load_and_its_append() -> None:
    runs = await every_interleaving(
        evolve({"description": "S&P 500"}), evolve({"precision": 4}, command_id="other")
    )
    assert len(runs) > 3
    for app, outcome, _ in runs:
        assert not isinstance(outcome, Exception), outcome
        series = await series_of(app)
        definition = series.require_definition()
        assert (definition.precision, definition.description) == (4, "S&P 500")
        assert series.schema_version == 3
    assert any(conflicted for _, _, conflicted in runs), "no interleaving produced a conflict"


async def test_an_expected_schema_version_is_checked_on_the_state_the_update_applies_to() -> None:
    # The other evolution always lands before this one's append: whether it came before the
    # load or in between (a conflict, then a reload), the update is refused, never applied.
    runs = await every_interleaving(
        evolve({"description": "S&P 500"}, expected=1),
        evolve({"precision": 4}, command_id="other"),
    )
    for app, outcome, _ in runs:
        assert isinstance(outcome, Aborted), outcome
        assert outcome.reason == "SCHEMA_VERSION_MISMATCH"
        definition = (await series_of(app)).require_definition()
        assert (definition.precision, definition.description) == (4, "")
    assert any(conflicted for _, _, conflicted in runs), "no interleaving produced a conflict"


async def test_a_masked_configuration_keeps_a_change_made_between_load_and_append() -> None:
    runs = await every_interleaving(
        configure({"description": "primary"}), configure({"enabled": False}, command_id="other")
    )
    for app, outcome, _ in runs:
        assert not isinstance(outcome, Exception), outcome
        repository = Repository(app.store, EventCodec())
        source = await repository.load(source_stream("a"), lambda: DataSource("a"))
        expected = DataSourceConfig(provider="test", description="primary", enabled=False)
        assert source.config == expected
    assert any(conflicted for _, _, conflicted in runs), "no interleaving produced a conflict"


# --- the fingerprint covers the mask and the expected version ---


def mask_of(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=paths)


@pytest.mark.parametrize(
    "retry",
    [
        # the same effect (precision 0 is the current one), but another mask
        EvolveSeries("SPX", Update(values={"description": "d", "precision": 0}), "because"),
        # the same update from another version
        EvolveSeries("SPX", Update(values={"description": "d"}), "because", 1),
    ],
    ids=["mask", "expected_schema_version"],
)
async def test_a_retry_with_another_mask_or_version_reuses_the_command_id(
    retry: EvolveSeries,
) -> None:
    app = new_app()
    await app.define(daily_series("a", rules=RULES))
    first = EvolveSeries("SPX", Update(values={"description": "d"}), "because")
    await app.handlers.evolve_series(first, app.ctx("evolve-1"))
    with pytest.raises(AlreadyExists) as refused:
        await app.handlers.evolve_series(retry, app.ctx("evolve-1"))
    assert refused.value.reason == COMMAND_REUSED


async def test_a_retry_naming_the_same_fields_in_another_order_is_the_same_command() -> None:
    app = new_app()
    await app.define(daily_series("a", rules=RULES))
    series = series_pb2.Series(description="d", precision=2)
    updates = [
        series_update_from_proto(series, mask_of(*paths))
        for paths in (["description", "precision"], ["precision", "description"])
    ]
    done = await app.handlers.evolve_series(
        EvolveSeries("SPX", updates[0], "because"), app.ctx("evolve-1")
    )
    retried = await app.handlers.evolve_series(
        EvolveSeries("SPX", updates[1], "because"), app.ctx("evolve-1")
    )
    assert (retried.duplicate, retried.outcome) == (True, done.outcome)
