"""The event registry: JSON encode/decode of every event type, upcasters, unknown types."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from typing import Any, ClassVar

import pytest
from pydantic import ValidationError
from qis_domain.definitions import (
    AccessPolicy,
    BreakAction,
    Classification,
    ClassificationLimit,
    DataSourceConfig,
    HealthReport,
    Permission,
    PublicationMode,
    PublicationPolicy,
    ReconciliationMethod,
    ReconciliationPolicy,
    SeriesDefinition,
    SeriesSource,
    SourceRestriction,
    SourceStatus,
    SourceUsage,
    TimeWindow,
    ValidationRules,
)
from qis_domain.events import (
    ALL_EVENT_TYPES,
    AccessDenied,
    AccessPolicyAdded,
    AccessPolicyChanged,
    AccessPolicyRemoved,
    CommandAccepted,
    ConsumerGroupCheckpointed,
    DataIngested,
    DataPublished,
    DataReconciled,
    DataRestated,
    DataSourceConfigured,
    DataSourceHealthReported,
    DataSourceRegistered,
    DataSourceStatusChanged,
    DomainEvent,
    EventMetadata,
    EventRegistry,
    Issue,
    ManualOverrideExpired,
    ManualOverrideSet,
    OfficialRow,
    ParkedEntriesReplayed,
    PolicyRefusal,
    PublicationScheduled,
    QualityApproved,
    QualityIssueDetected,
    QualityMetricsCalculated,
    QualityOverridden,
    QualityRejected,
    QualityRetracted,
    SchemaEvolved,
    SeriesDefined,
    SourceAdded,
    TopicDefinition,
    TopicDeleted,
    TopicEntryParked,
    TopicSet,
    UnknownEventType,
    default_registry,
)
from qis_domain.events.scheduler import (
    DueWork,
    LevelWatch,
    OpenWindow,
    ScheduledLevel,
    ScheduledSeries,
    SchedulerCheckpointed,
    SchedulerSnapshot,
)
from qis_domain.service_levels import Deadline, ServiceLevel
from qis_domain.snaps import Frequency
from qis_domain.values import (
    CorporateAction,
    CorporateActionType,
    DataType,
    OptionQuote,
    OptionRight,
    OptionsChain,
    value_to_doc,
)

S1 = 1_709_328_600_000_000  # 2024-03-01T21:30:00Z
S2 = 1_709_591_400_000_000  # 2024-03-04T22:30:00Z

DEFINITION = SeriesDefinition(
    data_type=DataType.PRICE,
    frequency=Frequency.DAILY,
    unit="USD",
    precision=2,
    time_zone="America/New_York",
    calendar="XNYS",
    sources=(
        SeriesSource(source_id="bbg", priority=1),
        SeriesSource(source_id="refinitiv", priority=2),
    ),
    validation=ValidationRules(require_positive=True, max_jump_percent=Decimal("12.5")),
    reconciliation=ReconciliationPolicy(
        method=ReconciliationMethod.MEDIAN,
        tolerance_bps=Decimal("2.5"),
        tolerance_abs=Decimal("0.01"),
        on_break=BreakAction.BLOCK,
    ),
    publication=PublicationPolicy(
        mode=PublicationMode.MANUAL, min_sources=2, min_quality_score=Decimal("0.75")
    ),
    description="S&P 500 close",
)
CONFIG = DataSourceConfig(
    provider="bloomberg",
    description="B-PIPE",
    rate_limit_per_minute=600,
    cost_per_request=Decimal("0.0025"),
    settings={"host": "bpipe.local", "port": "8194"},
)
CHAIN_DOC = value_to_doc(
    OptionsChain(
        (
            OptionQuote(
                date(2024, 6, 21), Decimal(5100), OptionRight.CALL, Decimal("101.5"), None, None
            ),
        ),
        Decimal("5123.41"),
    )
)
ACTION_DOC = value_to_doc(
    CorporateAction(CorporateActionType.STOCK_SPLIT, date(2024, 6, 10), ratio=Decimal(10))
)
# Every kind of condition: they are a discriminated union, decoded by their `kind`.
POLICY = AccessPolicy(
    principals=("role:data-ops", "user:alice"),
    resources=("series/EQ.*", "sources/bbg*"),
    permissions=(Permission.READ, Permission.PUBLISH),
    conditions=(
        TimeWindow(
            days=(1, 2, 3, 4, 5), start_s=7 * 3600, end_s=19 * 3600, time_zone="Europe/London"
        ),
        ClassificationLimit(max_level=Classification.CONFIDENTIAL),
        SourceRestriction(sources=("sources/bbg",)),
    ),
    description="exception queue",
)

EXAMPLES: dict[type[DomainEvent], DomainEvent] = {
    TopicSet: TopicSet(
        name="ops-domain.quality-alert",
        definition=TopicDefinition(event_types=("QualityIssueDetected",), min_severity="error"),
    ),
    TopicDeleted: TopicDeleted(name="ops-domain.quality-alert"),
    ConsumerGroupCheckpointed: ConsumerGroupCheckpointed(
        topic="t.a", group="g", position=5, index=0, settled=((2, 0),)
    ),
    TopicEntryParked: TopicEntryParked(
        topic="t.a", group="g", position=5, index=0, attempts=3, last_error="x"
    ),
    ParkedEntriesReplayed: ParkedEntriesReplayed(topic="t.a", group="g", entries=((5, 0),)),
    SchedulerCheckpointed: SchedulerCheckpointed(
        snapshot=SchedulerSnapshot(
            position=42,
            series=(
                ScheduledSeries(
                    series_id="SPX",
                    frequency=Frequency.DAILY,
                    time_zone="America/New_York",
                    level=(
                        level := ScheduledLevel(
                            level=ServiceLevel(publication=Deadline(after_s=3600)),
                            frequency=Frequency.DAILY,
                            time_zone="America/New_York",
                            calendar="XNYS",
                            sources=("a", "b"),
                        )
                    ),
                ),
            ),
            due=(DueWork(kind="cutoff", series_id="SPX", start_us=0, times=(S1,)),),
            windows=(
                OpenWindow(
                    series_id="SPX", start_us=0, end_us=S1, last_position=40, last_seen_us=S1
                ),
            ),
            watches=(
                LevelWatch(
                    series_id="SPX",
                    rule="late_publication",
                    source_id="",
                    deadline=Deadline(after_s=3600),
                    severity="warning",
                    level=level,
                    start_us=0,
                    next_us=S1,
                    until_us=None,
                ),
            ),
        )
    ),
    SeriesDefined: SeriesDefined(series_id="SPX", definition=DEFINITION),
    SchemaEvolved: SchemaEvolved(
        series_id="SPX",
        definition=DEFINITION.model_copy(update={"precision": 3}),
        schema_version=2,
        reason="exchange moved to three decimals",
    ),
    SourceAdded: SourceAdded(series_id="SPX", source_id="refinitiv", priority=2),
    DataSourceRegistered: DataSourceRegistered(source_id="bbg", config=CONFIG),
    DataSourceConfigured: DataSourceConfigured(
        source_id="bbg", config=CONFIG.model_copy(update={"enabled": False})
    ),
    DataSourceHealthReported: DataSourceHealthReported(
        source_id="bbg",
        day_us=0,
        report=HealthReport(
            status=SourceStatus.DEGRADED,
            start_us=S1,
            end_us=S2,
            requests=4,
            failures=1,
            rate_limited=1,
            latency_p50_us=1_500,
            latency_p99_us=90_000,
            last_success_us=S1,
            last_error="HTTP 429",
        ),
        cost=Decimal("0.000000000000000004"),
        status_since_us=S1,
        day_usage=SourceUsage(reports=2, requests=9, failures=1, cost=Decimal("9E-18")),
    ),
    DataSourceStatusChanged: DataSourceStatusChanged(
        source_id="bbg", previous=None, status=SourceStatus.DOWN, at_us=S2, last_error="gone"
    ),
    DataIngested: DataIngested(
        series_id="SPX",
        source_id="bbg",
        data_type=DataType.PRICE,
        unit="USD",
        snaps=[S1, S2],
        offsets=[-18_000, 0],
        values=["5123.41", "-0.5"],
    ),
    QualityIssueDetected: QualityIssueDetected(
        series_id="SPX",
        issues=[
            Issue(
                issue_id="6e0f1a2b-0000-5000-8000-000000000001",
                snap_us=S2,
                source_id="bbg",
                rule="positive",
                severity="error",
                blocking=True,
                evidence={"value": "-0.5"},
            ),
            Issue(
                issue_id="6e0f1a2b-0000-5000-8000-000000000002",
                snap_us=S1,
                source_id="",
                rule="source_break",
                severity="warning",
                blocking=False,
                evidence={"chosen": "5123.41", "sources": {"refinitiv": "5130"}},
            ),
        ],
    ),
    DataReconciled: DataReconciled(
        series_id="OPT",
        data_type=DataType.OPTIONS_CHAIN,
        unit="",
        snaps=[S1],
        values=[CHAIN_DOC],
        methods=["priority"],
        contributions=[{"bbg": "5123.41"}],
        excluded=[[]],
        quality_scores=["1"],
        statuses=["published"],
    ),
    DataPublished: DataPublished(
        series_id="SPX",
        data_type=DataType.PRICE,
        unit="USD",
        mode="automatic",
        snaps=[S1, S2],
        versions=[1, 1],
        values=["5123.41", "5130.00"],
        quality_scores=["1", "0.8"],
        sources=[["bbg"], ["bbg", "refinitiv"]],
        methods=["priority", "median"],
        flags=[[], ["source_break"]],
        reasons=["", ""],
        causes=["", ""],
    ),
    DataRestated: DataRestated(
        series_id="AAPL-CA",
        data_type=DataType.CORPORATE_ACTION,
        unit="",
        snaps=[S1],
        versions=[2],
        values=[ACTION_DOC],
        quality_scores=["1"],
        sources=[["manual"]],
        methods=["manual"],
        flags=[[]],
        reasons=["ratio confirmed by the issuer"],
        causes=["manual_correction"],
    ),
    PublicationScheduled: PublicationScheduled(
        series_id="SPX", snaps=[S1], due_us=[S1 + 3_600_000_000]
    ),
    QualityApproved: QualityApproved(
        series_id="SPX", issue_ids=["i-1"], snaps=[S2], reason="confirmed with the vendor"
    ),
    QualityRejected: QualityRejected(
        series_id="SPX", issue_ids=["i-2"], snaps=[S1], reason="bad tick"
    ),
    QualityOverridden: QualityOverridden(
        series_id="SPX", issue_ids=["i-3", "i-4"], snaps=[S1, S1], reason="exchange official close"
    ),
    QualityRetracted: QualityRetracted(
        series_id="SPX", issue_ids=["i-5"], snaps=[S1], reason="look-back judged again"
    ),
    ManualOverrideSet: ManualOverrideSet(
        series_id="SPX", snaps=[S1], expires_us=[S2], reason_codes=["EXCHANGE_CORRECTION"]
    ),
    ManualOverrideExpired: ManualOverrideExpired(series_id="SPX", snaps=[S1]),
    QualityMetricsCalculated: QualityMetricsCalculated(
        series_id="SPX",
        window_start_us=S1,
        window_end_us=S2,
        accuracy="0.95",
        completeness="1",
        timeliness="0.9",
        consistency="0.99",
        expected_snaps=21,
        received_snaps=21,
        compared_points=20,
        agreeing_points=19,
        publications=21,
        on_time=19,
        checked_values=42,
        clean_values=41,
        missing_sessions=["2024-01-16"],
        uncovered_days=0,
    ),
    CommandAccepted: CommandAccepted(
        command_id="c-1", fingerprint="ab" * 32, streams=["series/SPX/points/0"]
    ),
    AccessPolicyAdded: AccessPolicyAdded(
        policy_id="data-ops", policy=POLICY, revision=1, reason="exception queue team"
    ),
    AccessPolicyChanged: AccessPolicyChanged(
        policy_id="data-ops",
        policy=POLICY.model_copy(update={"conditions": ()}),
        revision=2,
        reason="around the clock",
    ),
    AccessPolicyRemoved: AccessPolicyRemoved(policy_id="data-ops", revision=2, reason="team gone"),
    AccessDenied: AccessDenied(
        user_id="rita",
        roles=["reader"],
        method="PublishPoints",
        permission="publish",
        resource="series/SPX",
        classification="confidential",
        refusals=[PolicyRefusal(policy_id="readers", reason="grants read, not publish")],
        policy_version=4,
        peer="ipv4:127.0.0.1:50000",
        denied_us=S1,
    ),
}


def test_examples_cover_every_event_type() -> None:
    assert set(EXAMPLES) == set(ALL_EVENT_TYPES)
    assert len({cls.event_type for cls in ALL_EVENT_TYPES}) == len(ALL_EVENT_TYPES)


@pytest.mark.parametrize("cls", ALL_EVENT_TYPES, ids=lambda c: c.event_type)
def test_encode_decode_round_trip(cls: type[DomainEvent]) -> None:
    registry = default_registry()
    event = EXAMPLES[cls]
    data = registry.encode(event)
    assert isinstance(data, bytes)
    json.loads(data)  # plain JSON
    decoded = registry.decode(cls.event_type, data, cls.event_version)
    assert type(decoded) is cls
    assert decoded == event
    assert registry.encode(decoded) == data


def test_decimals_are_encoded_as_strings_never_floats() -> None:
    registry = default_registry()
    payload = json.loads(registry.encode(EXAMPLES[SeriesDefined]))
    definition = payload["definition"]
    assert definition["reconciliation"]["tolerance_bps"] == "2.5"
    assert definition["publication"]["min_quality_score"] == "0.75"
    assert definition["validation"]["max_jump_percent"] == "12.5"
    config = json.loads(registry.encode(EXAMPLES[DataSourceRegistered]))["config"]
    assert config["cost_per_request"] == "0.0025"


def test_official_rows_give_the_per_point_view() -> None:
    published = EXAMPLES[DataPublished]
    assert isinstance(published, DataPublished)
    rows = list(published.rows())
    assert rows[1] == OfficialRow(
        snap_us=S2,
        version=1,
        value="5130.00",
        quality_score="0.8",
        sources=["bbg", "refinitiv"],
        method="median",
        flags=["source_break"],
        reason="",
        cause="",
    )
    assert [r.snap_us for r in rows] == [S1, S2]


def test_columns_must_have_one_entry_per_snap() -> None:
    with pytest.raises(ValidationError, match="column offsets has 1 entries for 2 snaps"):
        DataIngested(
            series_id="SPX",
            source_id="bbg",
            data_type=DataType.PRICE,
            unit="USD",
            snaps=[S1, S2],
            offsets=[0],
            values=["1", "2"],
        )
    registry = default_registry()
    payload = json.loads(registry.encode(EXAMPLES[DataPublished]))
    payload["versions"] = [1]
    with pytest.raises(ValidationError):
        registry.decode("DataPublished", json.dumps(payload).encode(), 1)


def test_events_are_immutable_and_strict() -> None:
    event = EXAMPLES[SourceAdded]
    assert isinstance(event, SourceAdded)
    with pytest.raises(ValidationError):
        event.priority = 3
    registry = default_registry()
    payload = json.loads(registry.encode(event))
    payload["unexpected"] = 1
    with pytest.raises(ValidationError):
        registry.decode("SourceAdded", json.dumps(payload).encode(), 1)


def test_unknown_event_type() -> None:
    registry = default_registry()
    assert not registry.knows("DataDeleted")
    assert registry.knows("DataIngested")
    with pytest.raises(UnknownEventType, match="DataDeleted"):
        registry.decode("DataDeleted", b"{}", 1)


def test_a_type_cannot_be_registered_twice() -> None:
    registry = default_registry()
    with pytest.raises(ValueError, match="registered twice"):
        registry.register(SourceAdded)


# --- upcasters ---


class SourceAddedV3(DomainEvent):
    """A test-local event whose schema went through two versions before this one:
    v1 {series, source}; v2 renamed the fields; v3 added `priority`."""

    event_type: ClassVar[str] = "TestSourceAdded"
    event_version: ClassVar[int] = 3
    series_id: str
    source_id: str
    priority: int


def _v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    return {"series_id": payload["series"], "source_id": payload["source"]}


def _v2_to_v3(payload: dict[str, Any]) -> dict[str, Any]:
    return {**payload, "priority": 99}


def _registry(calls: list[str]) -> EventRegistry:
    registry = EventRegistry([SourceAddedV3])

    def step1(payload: dict[str, Any]) -> dict[str, Any]:
        calls.append("v1")
        return _v1_to_v2(payload)

    def step2(payload: dict[str, Any]) -> dict[str, Any]:
        calls.append("v2")
        return _v2_to_v3(payload)

    registry.register_upcaster("TestSourceAdded", 1, step1)
    registry.register_upcaster("TestSourceAdded", 2, step2)
    return registry


def test_upcasters_run_in_order_from_the_stored_version() -> None:
    calls: list[str] = []
    registry = _registry(calls)
    old = json.dumps({"series": "SPX", "source": "bbg"}).encode()
    decoded = registry.decode("TestSourceAdded", old, 1)
    assert decoded == SourceAddedV3(series_id="SPX", source_id="bbg", priority=99)
    assert calls == ["v1", "v2"]


def test_a_middle_version_runs_only_the_later_upcasters() -> None:
    calls: list[str] = []
    registry = _registry(calls)
    v2 = json.dumps({"series_id": "SPX", "source_id": "bbg"}).encode()
    assert registry.decode("TestSourceAdded", v2, 2) == SourceAddedV3(
        series_id="SPX", source_id="bbg", priority=99
    )
    assert calls == ["v2"]


def test_the_current_version_needs_no_upcaster() -> None:
    calls: list[str] = []
    registry = _registry(calls)
    event = SourceAddedV3(series_id="SPX", source_id="bbg", priority=1)
    assert registry.decode("TestSourceAdded", registry.encode(event), 3) == event
    assert calls == []


def test_a_missing_upcaster_is_an_error() -> None:
    registry = EventRegistry([SourceAddedV3])
    registry.register_upcaster("TestSourceAdded", 2, _v2_to_v3)
    old = json.dumps({"series": "SPX", "source": "bbg"}).encode()
    with pytest.raises(ValueError, match="no upcaster for TestSourceAdded v1"):
        registry.decode("TestSourceAdded", old, 1)


def test_upcasters_of_a_subclass_of_a_real_event() -> None:
    class SourceAddedV2(SourceAdded):
        event_version: ClassVar[int] = 2
        weight: str

    registry = EventRegistry([SourceAddedV2])
    registry.register_upcaster("SourceAdded", 1, lambda p: {**p, "weight": "1.0"})
    v1 = default_registry().encode(EXAMPLES[SourceAdded])
    decoded = registry.decode("SourceAdded", v1, 1)
    assert isinstance(decoded, SourceAddedV2)
    assert (decoded.source_id, decoded.priority, decoded.weight) == ("refinitiv", 2, "1.0")


def test_event_metadata_is_flat_strings() -> None:
    metadata = EventMetadata(
        command_id="cmd-1",
        user_id="alice",
        correlation_id="corr-1",
        causation_id="cmd-0",
        traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    )
    dumped = metadata.model_dump()
    assert all(isinstance(v, str) for v in dumped.values())
    assert dumped["schema_version"] == "1"
    assert EventMetadata.model_validate_json(metadata.model_dump_json()) == metadata


# --- the jump rule's old name ---


def test_a_v1_spike_issue_and_flag_read_as_jump() -> None:
    """Version 1 called the jump rule "spike"; "spike" now names the out-and-back rule."""
    registry = default_registry()
    v1_issue = {
        "series_id": "SPX",
        "issues": [
            {
                "issue_id": "1-a",
                "snap_us": 1,
                "source_id": "bbg",
                "rule": "spike",
                "severity": "error",
                "blocking": True,
                "evidence": {"previous": "100", "value": "130"},
            },
            {
                "issue_id": "1-b",
                "snap_us": 1,
                "source_id": "bbg",
                "rule": "stale",
                "severity": "warning",
                "blocking": False,
                "evidence": {},
            },
        ],
    }
    issue = registry.decode("QualityIssueDetected", json.dumps(v1_issue).encode(), 1)
    assert isinstance(issue, QualityIssueDetected)
    assert [i.rule for i in issue.issues] == ["jump", "stale"]
    published = EXAMPLES[DataPublished].model_dump(mode="json")
    published["flags"] = [["spike", "calendar"], *published["flags"][1:]]
    decoded = registry.decode("DataPublished", json.dumps(published).encode(), 1)
    assert isinstance(decoded, DataPublished)
    assert decoded.flags[0] == ["jump", "calendar"]
    # what is written now is version 2 and reads as written
    current = EXAMPLES[QualityIssueDetected]
    again = registry.decode("QualityIssueDetected", registry.encode(current), 2)
    assert again == current
