"""The ReferenceData (series definition) and DataSource aggregates."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import pytest
from qis_domain.commands import CommandContext, CommandOutcome
from qis_domain.data_source import DataSource, source_stream
from qis_domain.definitions import (
    BenchmarkCheck,
    DataSourceConfig,
    PublicationPolicy,
    ReconciliationMethod,
    ReconciliationPolicy,
    SeriesDefinition,
    SeriesSource,
    UnderlyingCheck,
    Update,
    ValidationRules,
)
from qis_domain.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from qis_domain.events import (
    DataSourceConfigured,
    DataSourceRegistered,
    DomainEvent,
    SchemaEvolved,
    SeriesDefined,
    SourceAdded,
)
from qis_domain.reference_data import ReferenceData, definition_stream
from qis_domain.series_bucket import Recorded
from qis_domain.service_levels import Deadline, ServiceLevel, SourceDeadline
from qis_domain.snaps import Frequency
from qis_domain.values import DataType

KNOWN = {"bbg", "refinitiv", "ecb", "coingecko"}


def ctx(command_id: str = "cmd-1", user_id: str = "alice") -> CommandContext:
    return CommandContext(command_id, user_id, now_us=1_709_294_400_000_000)


def sources(*pairs: tuple[str, int]) -> tuple[SeriesSource, ...]:
    return tuple(SeriesSource(source_id=s, priority=p) for s, p in pairs)


def eurusd(**changes: object) -> SeriesDefinition:
    base = SeriesDefinition(
        data_type=DataType.PRICE,
        frequency=Frequency.DAILY,
        unit="USD",
        precision=5,
        time_zone="Europe/London",
        sources=sources(("bbg", 1), ("refinitiv", 2)),
        validation=ValidationRules(require_positive=True),
        reconciliation=ReconciliationPolicy(tolerance_bps=Decimal(5)),
    )
    return base.model_copy(update=changes)


class Log:
    """Applies events the way the repository does: one position per append, stream versions
    counting up from 0."""

    def __init__(self) -> None:
        self.position = 0

    def commit(
        self,
        aggregate: ReferenceData | DataSource,
        events: Sequence[DomainEvent],
        c: CommandContext,
    ) -> None:
        self.position += 10
        first = 0 if aggregate.version is None else aggregate.version + 1
        for offset, event in enumerate(events):
            aggregate.apply(event, Recorded(c.command_id, c.user_id, self.position, first + offset))


def defined(definition: SeriesDefinition | None = None) -> tuple[ReferenceData, Log]:
    series = ReferenceData("EURUSD")
    log = Log()
    c = ctx("define")
    log.commit(series, series.define(definition or eurusd(), KNOWN, c), c)
    return series, log


# --- define ---


def test_define_emits_series_defined() -> None:
    series = ReferenceData("EURUSD")
    events = series.define(eurusd(), KNOWN, ctx())
    assert events == [SeriesDefined(series_id="EURUSD", definition=eurusd())]
    assert series.definition is None  # deciding changes nothing; applying does


def test_apply_sets_the_definition_and_remembers_the_command() -> None:
    series, log = defined()
    assert series.definition == eurusd()
    assert series.schema_version == 1
    assert series.version == 0
    assert series.outcome_of("define") == CommandOutcome(log.position)
    assert series.outcome_of("another") is None
    assert series.stream == definition_stream("EURUSD") == "series/EURUSD"


def test_second_define_already_exists() -> None:
    series, _ = defined()
    with pytest.raises(AlreadyExists) as info:
        series.define(eurusd(), KNOWN, ctx("cmd-2"))
    assert info.value.resource.name == "series/EURUSD"


def _violations(definition: SeriesDefinition) -> dict[str, str]:
    with pytest.raises(InvalidArgument) as info:
        ReferenceData("X").define(definition, KNOWN, ctx())
    return {v.field: v.description for v in info.value.violations}


def test_duplicate_source_is_a_violation_at_its_index() -> None:
    found = _violations(eurusd(sources=sources(("bbg", 1), ("ecb", 2), ("bbg", 3))))
    assert list(found) == ["series.sources[2].source"]
    assert found["series.sources[2].source"] == "listed twice"


def test_duplicate_or_non_positive_priorities_are_violations() -> None:
    found = _violations(eurusd(sources=sources(("bbg", 1), ("ecb", 1), ("refinitiv", 0))))
    assert set(found) == {"series.sources[1].priority", "series.sources[2].priority"}


def test_price_and_volume_need_a_unit() -> None:
    assert "series.unit" in _violations(eurusd(unit=""))
    assert "series.unit" in _violations(eurusd(unit="", data_type=DataType.VOLUME))
    series = ReferenceData("bars")
    assert series.define(eurusd(unit="", data_type=DataType.OHLC_BAR), KNOWN, ctx())


def test_unknown_time_zone() -> None:
    found = _violations(eurusd(time_zone="Europe/Atlantis"))
    assert found == {"series.time_zone": "unknown time zone 'Europe/Atlantis'"}


def test_min_sources_above_the_sources_configured() -> None:
    found = _violations(eurusd(publication=PublicationPolicy(min_sources=3)))
    assert list(found) == ["series.publication.min_sources"]
    ok = eurusd(publication=PublicationPolicy(min_sources=2))
    assert ReferenceData("X").define(ok, KNOWN, ctx())


def test_no_sources() -> None:
    assert "series.sources" in _violations(eurusd(sources=()))


def test_every_violation_is_reported_at_once() -> None:
    bad = eurusd(
        unit="",
        time_zone="Mars/Olympus",
        sources=sources(("bbg", 1), ("bbg", 1)),
        publication=PublicationPolicy(min_sources=3),
    )
    assert set(_violations(bad)) == {
        "series.sources[1].source",
        "series.sources[1].priority",
        "series.unit",
        "series.time_zone",
        "series.publication.min_sources",
    }


def test_unknown_source_is_not_found_with_its_field_path() -> None:
    definition = eurusd(sources=sources(("bbg", 1), ("nasdaq", 2)))
    with pytest.raises(NotFound) as info:
        ReferenceData("X").define(definition, KNOWN, ctx())
    assert info.value.resource.name == "sources/nasdaq"
    assert info.value.field == "series.sources[1].source"


# --- evolve ---


def test_evolve_before_define_is_not_found() -> None:
    with pytest.raises(NotFound) as info:
        ReferenceData("EURUSD").evolve(eurusd(), "why", KNOWN, ctx())
    assert info.value.resource.name == "series/EURUSD"
    assert info.value.field == "series.name"


@pytest.mark.parametrize(
    "change",
    [{"data_type": DataType.VOLUME}, {"frequency": Frequency.HOURLY}],
    ids=["data_type", "frequency"],
)
def test_data_type_and_frequency_are_immutable(change: dict[str, object]) -> None:
    series, _ = defined()
    with pytest.raises(FailedPrecondition, match="immutable"):
        series.evolve(eurusd(**change), "change it", KNOWN, ctx("evolve"))


@pytest.mark.parametrize("reason", ["", "   "])
def test_evolve_needs_a_reason(reason: str) -> None:
    series, _ = defined()
    with pytest.raises(InvalidArgument) as info:
        series.evolve(eurusd(precision=4), reason, KNOWN, ctx("evolve"))
    assert [v.field for v in info.value.violations] == ["reason"]


def test_evolve_validates_the_new_definition() -> None:
    series, _ = defined()
    with pytest.raises(InvalidArgument) as info:
        series.evolve(eurusd(time_zone="Nowhere/Land"), "tz", KNOWN, ctx("evolve"))
    assert [v.field for v in info.value.violations] == ["series.time_zone"]
    evolved = eurusd(sources=sources(("bbg", 1), ("refinitiv", 2), ("nasdaq", 3)))
    with pytest.raises(NotFound) as missing:
        series.evolve(evolved, "add nasdaq", KNOWN, ctx("evolve"))
    assert missing.value.field == "series.sources[2].source"


def test_identical_definition_evolves_nothing() -> None:
    series, _ = defined()
    assert series.evolve(eurusd(), "no-op", KNOWN, ctx("evolve")) == []


def test_evolve_with_new_sources_emits_schema_evolved_and_source_added() -> None:
    series, log = defined()
    new = eurusd(
        sources=sources(("ecb", 1), ("bbg", 2), ("refinitiv", 3), ("coingecko", 4)),
        reconciliation=ReconciliationPolicy(method=ReconciliationMethod.MEDIAN),
    )
    c = ctx("evolve")
    events = series.evolve(new, "add ECB fixing and a crypto feed", KNOWN, c)
    assert events == [
        SchemaEvolved(
            series_id="EURUSD",
            definition=new,
            schema_version=2,
            reason="add ECB fixing and a crypto feed",
        ),
        SourceAdded(series_id="EURUSD", source_id="ecb", priority=1),
        SourceAdded(series_id="EURUSD", source_id="coingecko", priority=4),
    ]
    log.commit(series, events, c)
    assert series.definition == new
    assert series.schema_version == 2
    assert series.version == 3
    assert series.outcome_of("evolve") == CommandOutcome(log.position)


def test_evolve_without_new_sources_emits_only_schema_evolved() -> None:
    series, log = defined()
    c = ctx("evolve-1")
    first = series.evolve(eurusd(precision=4), "fewer digits", KNOWN, c)
    assert [type(e) for e in first] == [SchemaEvolved]
    log.commit(series, first, c)
    c = ctx("evolve-2")
    second = series.evolve(eurusd(precision=3), "even fewer", KNOWN, c)
    assert isinstance(second[0], SchemaEvolved)
    assert second[0].schema_version == 3


# --- updates (AIP-134 masks, merged on the loaded state) ---


def update(**values: object) -> Update:
    return Update(values=values)


def test_an_update_replaces_what_it_names_and_keeps_the_rest() -> None:
    series, _ = defined()
    merged = series.updated(update(precision=2, description="EUR in USD"))
    assert merged == eurusd(precision=2, description="EUR in USD")


def test_an_update_clears_a_field_to_its_default() -> None:
    series, _ = defined()
    merged = series.updated(update(validation=ValidationRules(), time_zone="UTC"))
    assert merged.validation == ValidationRules()  # require_positive back to False
    assert merged.time_zone == "UTC"
    assert (merged.precision, merged.sources) == (5, eurusd().sources)


def test_an_update_naming_a_field_the_definition_lacks_is_refused() -> None:
    series, _ = defined()
    with pytest.raises(ValueError, match="colour"):
        series.updated(update(colour="blue"))


def test_an_update_that_clears_the_sources_is_invalid_as_a_definition_would_be() -> None:
    series, _ = defined()
    merged = series.updated(update(sources=()))
    with pytest.raises(InvalidArgument) as info:
        series.evolve(merged, "no sources", KNOWN, ctx("evolve"))
    assert [v.field for v in info.value.violations] == ["series.sources"]


@pytest.mark.parametrize(
    ("values", "immutable"),
    [
        ({"data_type": DataType.PRICE, "precision": 4}, False),
        ({"frequency": Frequency.DAILY, "precision": 4}, False),
        ({"data_type": DataType.VOLUME}, True),
        ({"frequency": Frequency.HOURLY}, True),
    ],
)
def test_an_update_may_name_data_type_and_frequency_only_unchanged(
    values: dict[str, object], immutable: bool
) -> None:
    series, _ = defined()
    merged = series.updated(Update(values=values))
    if immutable:
        with pytest.raises(FailedPrecondition) as info:
            series.evolve(merged, "change", KNOWN, ctx("evolve"))
        assert info.value.reason == "IMMUTABLE_FIELD"
    else:
        assert series.evolve(merged, "change", KNOWN, ctx("evolve"))


def test_the_unit_of_an_update_is_checked_against_the_series_data_type() -> None:
    # The edge cannot: an update need not name the data type.
    series, _ = defined()
    merged = series.updated(update(unit="shares"))
    with pytest.raises(InvalidArgument) as info:
        series.evolve(merged, "unit", KNOWN, ctx("evolve"))
    assert [v.field for v in info.value.violations] == ["series.unit"]
    assert "ISO 4217" in info.value.violations[0].description


@pytest.mark.parametrize("expected", [0, 2])
def test_an_expected_schema_version_that_is_current_or_zero_passes(expected: int) -> None:
    series, log = defined()
    c = ctx("evolve-1")
    log.commit(series, series.evolve(eurusd(precision=4), "first", KNOWN, c), c)
    assert series.updated(update(precision=3), expected) == eurusd(precision=3)


@pytest.mark.parametrize("expected", [1, 3])
def test_an_expected_schema_version_that_is_not_current_is_aborted(expected: int) -> None:
    series, log = defined()
    c = ctx("evolve-1")
    log.commit(series, series.evolve(eurusd(precision=4), "first", KNOWN, c), c)
    with pytest.raises(Aborted) as info:
        series.updated(update(precision=3), expected)
    assert info.value.reason == "SCHEMA_VERSION_MISMATCH"
    assert f"at schema version 2, not {expected}" in str(info.value)


def test_an_update_of_an_undefined_series_is_not_found_whatever_the_version() -> None:
    with pytest.raises(NotFound) as info:
        ReferenceData("EURUSD").updated(update(precision=3), 7)
    assert info.value.field == "series.name"


# --- DataSource ---

BBG = DataSourceConfig(
    provider="bloomberg",
    rate_limit_per_minute=600,
    cost_per_request=Decimal("0.002"),
    settings={"host": "bpipe.local"},
)


def registered() -> tuple[DataSource, Log]:
    source = DataSource("bbg")
    log = Log()
    c = ctx("register")
    log.commit(source, source.register(BBG, c), c)
    return source, log


def test_register_then_apply() -> None:
    source = DataSource("bbg")
    assert not source.exists
    events = source.register(BBG, ctx("register"))
    assert events == [DataSourceRegistered(source_id="bbg", config=BBG)]
    source, log = registered()
    assert source.exists
    assert source.config == BBG
    assert source.version == 0
    assert source.outcome_of("register") == CommandOutcome(log.position)
    assert source.stream == source_stream("bbg") == "sources/bbg"


def test_register_twice_already_exists() -> None:
    source, _ = registered()
    with pytest.raises(AlreadyExists) as info:
        source.register(BBG, ctx("again"))
    assert info.value.resource.name == "sources/bbg"


def test_configure_unknown_source_is_not_found() -> None:
    with pytest.raises(NotFound) as info:
        DataSource("ghost").configure(update(provider="x"), ctx())
    assert info.value.resource.name == "sources/ghost"
    assert info.value.field == "source.name"


def test_configure_changes_what_the_update_names() -> None:
    source, log = registered()
    c = ctx("disable")
    events = source.configure(update(enabled=False, settings={}), c)
    changed = BBG.model_copy(update={"enabled": False, "settings": {}})
    assert events == [DataSourceConfigured(source_id="bbg", config=changed)]
    log.commit(source, events, c)
    assert source.config == changed
    assert source.version == 1
    assert source.outcome_of("disable") == CommandOutcome(log.position)


@pytest.mark.parametrize("values", [{}, {"provider": "bloomberg", "rate_limit_per_minute": 600}])
def test_configure_with_the_same_values_does_nothing(values: dict[str, object]) -> None:
    source, _ = registered()
    assert source.configure(Update(values=values), ctx("same")) == []


def test_a_service_level_is_checked_against_the_series_it_ends_up_in() -> None:
    """An update naming the service level alone reaches the domain unchecked against the
    series' frequency and sources (the edge cannot know them): the aggregate checks it, naming
    the fields as the contract does."""
    series, _ = defined()
    level = ServiceLevel(
        first_snap_s=16 * 3600,
        arrival=Deadline(local_time_s=10 * 3600),  # 10:00 the same day: before a 16:00 snap
        source_arrivals=(SourceDeadline(source_id="ice", deadline=Deadline(after_s=60)),),
    )
    update = Update(values={"service_level": level})
    with pytest.raises(InvalidArgument) as refused:
        series.evolve(series.updated(update), "deadlines", KNOWN, ctx("evolve"))
    assert [(v.field, v.description) for v in refused.value.violations] == [
        ("series.service_level.arrival", "falls before the snap: add days_after"),
        ("series.service_level.source_arrivals[0].source", "not a source of the series"),
    ]
    with pytest.raises(InvalidArgument):
        ReferenceData("EURUSD").define(eurusd(service_level=level), KNOWN, ctx())
    fine = level.model_copy(
        update={"arrival": Deadline(local_time_s=10 * 3600, days_after=1), "source_arrivals": ()}
    )
    assert series.evolve(series.updated(Update(values={"service_level": fine})), "ok", KNOWN, ctx())


def test_a_series_is_not_its_own_benchmark_or_underlying() -> None:
    own = ValidationRules(
        benchmark=BenchmarkCheck(series_id="EURUSD", max_residual_multiple=Decimal(3)),
        underlying=UnderlyingCheck(series_id="EURUSD"),
    )
    with pytest.raises(InvalidArgument) as refused:
        ReferenceData("EURUSD").define(eurusd(validation=own), KNOWN, ctx())
    assert [v.field for v in refused.value.violations] == [
        "series.validation.benchmark.series",
        "series.validation.underlying.series",
    ]
    series, _ = defined()
    with pytest.raises(InvalidArgument):
        series.evolve(eurusd(validation=own), "self", KNOWN, ctx("evolve"))
    other = own.model_copy(update={"underlying": UnderlyingCheck(series_id="EURUSD.FUT")})
    with pytest.raises(InvalidArgument) as refused:
        series.evolve(eurusd(validation=other), "self", KNOWN, ctx("evolve"))
    assert [v.field for v in refused.value.violations] == ["series.validation.benchmark.series"]
