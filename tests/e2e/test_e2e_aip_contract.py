"""The AIP pass of the v1 contract, through the three real processes: partial updates by
update_mask (AIP-134), optimistic concurrency on a series' schema version, the UTC offset a
source stated coming back as lineage, the exception queue of every series with an AIP-160
filter, the audit trail of a data source and of everything filtered by user and commit time,
and a point's history paged (AIP-158)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf import duration_pb2, field_mask_pb2, text_format
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from qis.data.v1 import command_service_pb2 as cmd
from qis.data.v1 import quality_pb2, series_pb2, values_pb2
from qis.data.v1 import query_service_pb2 as q

from tests.e2e.harness import (
    DAY_US,
    US,
    Clients,
    Cluster,
    as_user,
    ingest_request,
    list_audit,
    list_issues,
    micros,
    point_history,
    price,
    price_series,
    rfc3339,
    setup_series,
    timestamp,
    unique,
)
from tests.e2e.test_e2e_malformed_input import rich_status, violations

pytestmark = pytest.mark.e2e

FIRST = 1_709_240_400 * US  # 2024-02-29T21:00:00Z
HOUR_S = 3_600


# --- helpers ------------------------------------------------------------------------------------


def mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


def full_series(source: str) -> series_pb2.Series:
    """A series with every evolvable field set, so that a change of one shows against the rest."""
    return series_pb2.Series(
        data_type=values_pb2.DATA_TYPE_PRICE,
        frequency=series_pb2.FREQUENCY_DAILY,
        unit="USD",
        precision=2,
        time_zone="America/New_York",
        calendar="XNYS",
        sources=[series_pb2.SeriesSource(source=f"sources/{source}", priority=1)],
        validation=series_pb2.ValidationRules(require_positive=True, max_jump_percent="10"),
        reconciliation=series_pb2.ReconciliationPolicy(
            method=series_pb2.RECONCILIATION_METHOD_PRIORITY, tolerance_bps="5"
        ),
        publication=series_pb2.PublicationPolicy(
            mode=series_pb2.PUBLICATION_MODE_AUTOMATIC,
            min_sources=1,
            cutoff=duration_pb2.Duration(seconds=HOUR_S),
            timeliness_sla=duration_pb2.Duration(seconds=2 * HOUR_S),
        ),
        description="the first definition",
    )


async def get_series(c: Clients, series_id: str, min_position: int = 0) -> series_pb2.Series:
    """The series as GetSeries serves it, normalized."""
    found: series_pb2.Series = await c.query.GetSeries(
        q.GetSeriesRequest(name=f"series/{series_id}", min_position=min_position),
        metadata=as_user("reader"),
    )
    return normalized(found)


async def evolve(
    c: Clients,
    series: series_pb2.Series,
    update_mask: field_mask_pb2.FieldMask | None = None,
    *,
    expected_schema_version: int = 0,
    command_id: str | None = None,
    user: str = "admin",
) -> cmd.CommandResponse:
    reply: cmd.CommandResponse = await c.command.EvolveSeriesSchema(
        cmd.EvolveSeriesSchemaRequest(
            command_id=command_id or unique("evo"),
            series=series,
            reason="a change, for the audit trail",
            update_mask=update_mask,
            expected_schema_version=expected_schema_version,
        ),
        metadata=as_user(user),
    )
    return reply


def normalized(series: series_pb2.Series) -> series_pb2.Series:
    """A copy where an empty message field is unset: the same definition either way."""
    out = series_pb2.Series()
    out.CopyFrom(series)
    message: Message = out  # fields by name
    for fd in out.DESCRIPTOR.fields:
        if fd.message_type is None or fd.is_repeated or not message.HasField(fd.name):
            continue
        if getattr(out, fd.name).ByteSize() == 0:
            message.ClearField(fd.name)
    return out


def text(series: series_pb2.Series) -> str:
    """The text format of a definition: what an assertion shows when two differ."""
    return text_format.MessageToString(series)


def expected(before: series_pb2.Series, version: int, **changed: object) -> series_pb2.Series:
    """`before` with the schema version and the fields in `changed` (None: cleared),
    normalized."""
    out = normalized(before)
    out.schema_version = version
    message: Message = out  # fields by name
    for name, value in changed.items():
        message.ClearField(name)
        if isinstance(value, Message):
            getattr(out, name).CopyFrom(value)
        elif value is not None:
            setattr(out, name, value)
    return normalized(out)


async def refused(
    call: grpc.aio.UnaryUnaryCall[Any, Any], code: grpc.StatusCode
) -> status_pb2.Status:
    """The rich status of a call that must fail with `code`."""
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call
    assert error.value.code() == code, error.value.details()
    return await rich_status(call)


def error_info(status: status_pb2.Status) -> error_details_pb2.ErrorInfo:
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info
    raise AssertionError(f"no ErrorInfo in {status}")


def has_retry_info(status: status_pb2.Status) -> bool:
    return any(d.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for d in status.details)


# --- update_mask ------------------------------------------------------------------------------


async def test_an_evolution_by_update_mask_changes_the_named_field_and_keeps_the_rest(
    cluster: Cluster,
) -> None:
    series_id, feed = unique("mask"), unique("feed")
    name = f"series/{series_id}"
    async with cluster.clients() as c:
        defined = await setup_series(c, series_id, full_series(feed))
        before = await get_series(c, series_id, defined)
        assert (before.schema_version, before.publication.cutoff.seconds) == (1, HOUR_S)

        # Only what the mask names is read: the other fields sent (a unit, no sources) are not.
        one = await evolve(
            c,
            series_pb2.Series(name=name, description="the second definition", unit="EUR"),
            mask("description"),
        )
        after = await get_series(c, series_id, one.commit_position)
        assert text(after) == text(expected(before, 2, description="the second definition"))

        # Without a mask, the fields set in the request are the ones updated.
        two = await evolve(c, series_pb2.Series(name=name, precision=4))
        after = await get_series(c, series_id, two.commit_position)
        assert text(after) == text(
            expected(before, 3, description="the second definition", precision=4)
        )

        # A message field is replaced whole: the cut-off changes, the rest of the policy is
        # what was sent with it.
        publication = series_pb2.PublicationPolicy()
        publication.CopyFrom(before.publication)
        publication.cutoff.seconds = 2 * HOUR_S
        three = await evolve(
            c, series_pb2.Series(name=name, publication=publication), mask("publication")
        )
        after = await get_series(c, series_id, three.commit_position)
        assert after.publication.cutoff == duration_pb2.Duration(seconds=2 * HOUR_S)
        assert text(after) == text(
            expected(
                before, 4, description="the second definition", precision=4, publication=publication
            )
        )

        # A field named by the mask and unset in the request is cleared: as a series defined
        # without it reads.
        bare_id = unique("bare")
        bare_definition = full_series(feed)
        bare_definition.ClearField("validation")
        bare = await get_series(
            c, bare_id, await setup_series(c, bare_id, bare_definition, register_sources=False)
        )
        four = await evolve(c, series_pb2.Series(name=name), mask("validation", "description"))
        after = await get_series(c, series_id, four.commit_position)
        cleared = expected(
            before, 5, precision=4, publication=publication, validation=None, description=None
        )
        if bare.HasField("validation"):  # the defaults a definition reads back with
            cleared.validation.CopyFrom(bare.validation)
        assert text(after) == text(cleared)
        assert after.description == ""

        # Naming an immutable field is fine while its value stays the same.
        five = await evolve(
            c,
            series_pb2.Series(
                name=name, data_type=before.data_type, frequency=before.frequency, unit="EUR"
            ),
            mask("data_type", "frequency", "unit"),
        )
        after = await get_series(c, series_id, five.commit_position)
        assert text(after) == text(expected(cleared, 6, unit="EUR"))

        # "*": every evolvable field, from what was sent.
        everything = full_series(feed)
        everything.name, everything.description = name, "all at once"
        six = await evolve(c, everything, mask("*"))
        after = await get_series(c, series_id, six.commit_position)
        assert text(after) == text(expected(before, 7, description="all at once"))


BAD_MASKS = [
    # (mask paths, status, the field path a violation names, the ErrorInfo reason)
    (["publication.cutoff"], grpc.StatusCode.INVALID_ARGUMENT, "update_mask.paths[0]", "BAD_REQUEST"),
    (["description", "colour"], grpc.StatusCode.INVALID_ARGUMENT, "update_mask.paths[1]", "BAD_REQUEST"),
    (["name"], grpc.StatusCode.INVALID_ARGUMENT, "update_mask.paths[0]", "BAD_REQUEST"),
    (["schema_version"], grpc.StatusCode.INVALID_ARGUMENT, "update_mask.paths[0]", "BAD_REQUEST"),
    (["sources"], grpc.StatusCode.INVALID_ARGUMENT, None, "BAD_REQUEST"),  # cleared: none left
    (["frequency"], grpc.StatusCode.FAILED_PRECONDITION, None, "IMMUTABLE_FIELD"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("paths", "code", "field", "reason"), BAD_MASKS, ids=[",".join(m[0]) for m in BAD_MASKS]
)
async def test_an_evolution_by_a_bad_mask_is_refused_and_changes_nothing(
    cluster: Cluster,
    paths: list[str],
    code: grpc.StatusCode,
    field: str | None,
    reason: str,
) -> None:
    series_id, feed = unique("badmask"), unique("feed")
    async with cluster.clients() as c:
        defined = await setup_series(c, series_id, full_series(feed))
        before = await get_series(c, series_id, defined)
        request = series_pb2.Series(
            name=f"series/{series_id}",
            description="never applied",
            frequency=series_pb2.FREQUENCY_HOURLY,
        )
        status = await refused(
            c.command.EvolveSeriesSchema(
                cmd.EvolveSeriesSchemaRequest(
                    command_id=unique("evo"),
                    series=request,
                    reason="a bad mask",
                    update_mask=mask(*paths),
                ),
                metadata=as_user("admin"),
            ),
            code,
        )
        info = error_info(status)
        assert (info.domain, info.reason) == ("qis.data", reason)
        if field is not None:
            assert [v.field for v in violations(status)] == [field]
        # Nothing changed: a later (valid) evolution is version 2.
        after = await evolve(c, series_pb2.Series(name=before.name, precision=3))
        now = await get_series(c, series_id, after.commit_position)
        assert text(now) == text(expected(before, 2, precision=3))


async def test_a_source_configured_by_update_mask_keeps_what_the_mask_does_not_name(
    cluster: Cluster,
) -> None:
    source_id = unique("vendor")
    resource = f"sources/{source_id}"
    async with cluster.clients() as c:
        registered = await c.command.RegisterDataSource(
            cmd.RegisterDataSourceRequest(
                command_id=unique("reg"),
                source_id=source_id,
                source=series_pb2.DataSource(
                    provider="file",
                    description="the nightly file",
                    rate_limit_per_minute=10,
                    settings={"path": "/drop/prices.csv"},
                ),
            ),
            metadata=as_user("admin"),
        )
        # Disabled, and only that: the provider sent along is not read.
        configured = await c.command.ConfigureDataSource(
            cmd.ConfigureDataSourceRequest(
                command_id=unique("cfg"),
                source=series_pb2.DataSource(name=resource, disabled=True, provider="bloomberg"),
                update_mask=mask("disabled"),
            ),
            metadata=as_user("admin"),
        )
        assert configured.commit_position > registered.commit_position
        trail = await list_audit(c, resource, min_position=configured.commit_position)
        assert [e.action for e in trail] == ["DataSourceRegistered", "DataSourceConfigured"]
        first, then = (dict(e.details) for e in trail)
        for key in ("provider", "description", "settings", "rate_limit_per_minute"):
            assert then[key] == first[key], key
        assert then["provider"] == "file"
        # The domain keeps "enabled" (= not disabled); the details may say either.
        assert first.get("enabled", True) is True
        assert first.get("disabled", False) is False
        assert then.get("enabled") is False or then.get("disabled") is True, then

        # Naming "name" is refused.
        status = await refused(
            c.command.ConfigureDataSource(
                cmd.ConfigureDataSourceRequest(
                    command_id=unique("cfg"),
                    source=series_pb2.DataSource(name=resource, provider="file"),
                    update_mask=mask("provider", "name"),
                ),
                metadata=as_user("admin"),
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert [v.field for v in violations(status)] == ["update_mask.paths[1]"]


# --- expected_schema_version --------------------------------------------------------------------


async def test_an_evolution_from_a_stale_schema_version_is_aborted(cluster: Cluster) -> None:
    series_id, feed = unique("occ"), unique("feed")
    name = f"series/{series_id}"
    async with cluster.clients() as c:
        defined = await setup_series(c, series_id, full_series(feed))
        before = await get_series(c, series_id, defined)

        # Two writers read version 1; the first one's change is applied...
        first_id = unique("evo")
        first = await evolve(
            c,
            series_pb2.Series(name=name, description="writer one"),
            mask("description"),
            expected_schema_version=1,
            command_id=first_id,
        )
        # ...the second one's is refused: ABORTED, no RetryInfo (a blind retry cannot succeed),
        # the reason to branch on, and the current version in the message.
        call = c.command.EvolveSeriesSchema(
            cmd.EvolveSeriesSchemaRequest(
                command_id=unique("evo"),
                series=series_pb2.Series(name=name, description="writer two"),
                reason="from a stale read",
                update_mask=mask("description"),
                expected_schema_version=1,
            ),
            metadata=as_user("admin"),
        )
        status = await refused(call, grpc.StatusCode.ABORTED)
        info = error_info(status)
        assert (info.domain, info.reason) == ("qis.data", "SCHEMA_VERSION_MISMATCH")
        assert not has_retry_info(status)
        assert "2" in status.message, status.message

        current = await get_series(c, series_id, first.commit_position)
        assert text(current) == text(expected(before, 2, description="writer one"))

        # The retry of the applied command is its duplicate; the same id with another expected
        # version is another command (the fingerprint covers it).
        again = await evolve(
            c,
            series_pb2.Series(name=name, description="writer one"),
            mask("description"),
            expected_schema_version=1,
            command_id=first_id,
        )
        assert (again.duplicate, again.commit_position) == (True, first.commit_position)
        reused = await refused(
            c.command.EvolveSeriesSchema(
                cmd.EvolveSeriesSchemaRequest(
                    command_id=first_id,
                    series=series_pb2.Series(name=name, description="writer one"),
                    reason="a change, for the audit trail",
                    update_mask=mask("description"),
                    expected_schema_version=2,
                ),
                metadata=as_user("admin"),
            ),
            grpc.StatusCode.ALREADY_EXISTS,
        )
        assert error_info(reused).reason == "COMMAND_ID_REUSED"
        reused_mask = await refused(
            c.command.EvolveSeriesSchema(
                cmd.EvolveSeriesSchemaRequest(
                    command_id=first_id,
                    series=series_pb2.Series(name=name, description="writer one"),
                    reason="a change, for the audit trail",
                    update_mask=mask("description", "precision"),
                    expected_schema_version=1,
                ),
                metadata=as_user("admin"),
            ),
            grpc.StatusCode.ALREADY_EXISTS,
        )
        assert error_info(reused_mask).reason == "COMMAND_ID_REUSED"

        # Read again and reapplied: accepted. 0 checks nothing.
        second = await evolve(
            c,
            series_pb2.Series(name=name, description="writer two"),
            mask("description"),
            expected_schema_version=current.schema_version,
        )
        unchecked = await evolve(
            c, series_pb2.Series(name=name, precision=3), expected_schema_version=0
        )
        assert second.commit_position < unchecked.commit_position
        final = await get_series(c, series_id, unchecked.commit_position)
        assert text(final) == text(expected(before, 4, description="writer two", precision=3))


# --- the UTC offset a source stated -------------------------------------------------------------


async def test_each_sources_utc_offset_comes_back_in_the_points_history(cluster: Cluster) -> None:
    series_id = unique("offsets")
    new_york, paris, utc = unique("ny"), unique("paris"), unique("utc")
    snap = FIRST
    async with cluster.clients() as c:
        await setup_series(c, series_id, price_series([(new_york, 1), (paris, 2), (utc, 3)]))
        # One instant (21:00Z), stated as 16:00-05:00, 22:00+01:00 and 21:00Z.
        sent = [(new_york, -5 * HOUR_S, "100.00"), (paris, HOUR_S, "100.00"), (utc, None, "100.00")]
        last = 0
        for source, offset_s, value in sent:
            reply = await c.command.IngestPoints(
                ingest_request(unique("ing"), series_id, source, [(snap, value)], offset_s),
                metadata=as_user(f"feed-{source}"),
            )
            assert reply.accepted == 1
            last = reply.commit_position
        history, _ = await point_history(c, series_id, snap, min_position=last)
        assert [
            (o.source, o.utc_offset.seconds, o.utc_offset.nanos) for o in history.observations
        ] == [
            (f"sources/{new_york}", -5 * HOUR_S, 0),
            (f"sources/{paris}", HOUR_S, 0),
            (f"sources/{utc}", 0, 0),
        ]
        # It never changes which instant the snap is: one point, one version.
        (version,) = history.versions
        assert micros(version.snap_time) == snap
        assert version.sources == [f"sources/{new_york}"]


# --- ListQualityIssues of every series, filtered ------------------------------------------------


async def test_quality_issues_of_every_series_are_filtered(cluster: Cluster) -> None:
    first_id, second_id, feed = unique("q1"), unique("q2"), unique("feed")
    days = [FIRST + d * DAY_US for d in range(3)]

    def rules() -> series_pb2.Series:
        series = price_series([(feed, 1)], require_positive=True)
        series.validation.max_jump_percent = "10"
        return series

    async with cluster.clients() as c:
        await setup_series(c, first_id, rules())
        await setup_series(c, second_id, rules(), register_sources=False)
        # The first series: a negative price (POSITIVE, an error). The second: a jump (JUMP).
        r1 = await c.command.IngestPoints(
            ingest_request(unique("ing"), first_id, feed, [(days[0], "-1.00")]),
            metadata=as_user("feeder"),
        )
        r2 = await c.command.IngestPoints(
            ingest_request(
                unique("ing"), second_id, feed, [(days[0], "100.00"), (days[1], "130.00")]
            ),
            metadata=as_user("feeder"),
        )
        assert (r1.flagged, r2.flagged) == (1, 1)
        (negative,) = await list_issues(c, f"series/{first_id}", min_position=r2.commit_position)
        rejected = await c.command.ResolveQualityIssues(
            cmd.ResolveQualityIssuesRequest(
                command_id=unique("res"),
                series=f"series/{first_id}",
                issue_ids=[negative.issue_id],
                resolution=cmd.RESOLUTION_REJECT,
                reason="bad tick",
            ),
            metadata=as_user("checker"),
        )
        head = rejected.commit_position
        ours = f'source = "sources/{feed}"'

        def keys(found: Sequence[q.QualityIssue]) -> list[tuple[str, int, int]]:
            return [(i.series, i.rule, i.status) for i in found]

        # An empty filter means every status: the rejected issue is there, with the open one.
        every = await list_issues(c, "series/-", ours, min_position=head)
        assert sorted(keys(every)) == sorted(
            [
                (f"series/{first_id}", quality_pb2.QUALITY_RULE_POSITIVE, quality_pb2.QUALITY_ISSUE_STATUS_REJECTED),
                (f"series/{second_id}", quality_pb2.QUALITY_RULE_JUMP, quality_pb2.QUALITY_ISSUE_STATUS_OPEN),
            ]
        )  # fmt: skip
        assert {i.source for i in every} == {f"sources/{feed}"}
        assert {i.severity for i in every} == {quality_pb2.SEVERITY_ERROR}
        # Ascending by issue id per series.
        for _, group in itertools.groupby(every, key=lambda i: i.series):
            ids = [i.issue_id for i in group]
            assert ids == sorted(ids)

        # The queue: what is still open, of every series.
        queue = await list_issues(c, "series/-", f"{ours} AND status = OPEN", min_position=head)
        assert keys(queue) == [
            (f"series/{second_id}", quality_pb2.QUALITY_RULE_JUMP, quality_pb2.QUALITY_ISSUE_STATUS_OPEN)
        ]  # fmt: skip
        assert micros(queue[0].snap_time) == days[1]
        by_rule = await list_issues(c, "series/-", f"rule = POSITIVE AND {ours}", min_position=head)
        assert [i.issue_id for i in by_rule] == [negative.issue_id]
        assert by_rule[0].resolved_by == "checker"

        # Times: raised before now, none raised after it; snaps compare as instants.
        now = max(micros(i.raise_time) for i in every)
        raised = f'{ours} AND severity = ERROR AND raise_time <= "{rfc3339(now)}"'
        assert len(await list_issues(c, "series/-", raised, min_position=head)) == 2
        later = f'{ours} AND raise_time > "{rfc3339(now)}"'
        assert await list_issues(c, "series/-", later, min_position=head) == []
        at_snap = f'{ours} AND snap_time = "{rfc3339(days[1])}"'
        assert keys(await list_issues(c, "series/-", at_snap, min_position=head)) == keys(queue)

        # Paging does not change the answer; one series' parent keeps to it.
        paged = await list_issues(c, "series/-", ours, min_position=head, page_size=1)
        assert paged == every
        first_only = await list_issues(c, f"series/{first_id}", ours, min_position=head)
        assert [i.issue_id for i in first_only] == [negative.issue_id]

        # A malformed filter is refused through the real processes too.
        status = await refused(
            c.query.ListQualityIssues(
                q.ListQualityIssuesRequest(parent="series/-", filter="status = open"),
                metadata=as_user("reader"),
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert [v.field for v in violations(status)] == ["filter"]


# --- ListAuditEntries of a source, and of everything --------------------------------------------


async def test_audit_entries_of_a_source_and_of_everything_filtered_by_user_and_time(
    cluster: Cluster,
) -> None:
    source_id, series_id = unique("audited"), unique("audited")
    user = unique("auditee")  # only this test acts as this user
    source_name, series_name = f"sources/{source_id}", f"series/{series_id}"
    async with cluster.clients() as c:
        await c.command.RegisterDataSource(
            cmd.RegisterDataSourceRequest(
                command_id=unique("reg"),
                source_id=source_id,
                source=series_pb2.DataSource(provider="file"),
            ),
            metadata=as_user(user),
        )
        await c.command.ConfigureDataSource(
            cmd.ConfigureDataSourceRequest(
                command_id=unique("cfg"),
                source=series_pb2.DataSource(name=source_name, description="configured"),
                update_mask=mask("description"),
            ),
            metadata=as_user(user),
        )
        head = await setup_series(
            c, series_id, price_series([(source_id, 1)]), user, register_sources=False
        )

        # The source's own trail.
        of_source = await list_audit(c, source_name, min_position=head)
        assert [(e.action, e.user, e.resource) for e in of_source] == [
            ("DataSourceRegistered", user, source_name),
            ("DataSourceConfigured", user, source_name),
        ]
        assert all(e.HasField("commit_time") and not e.HasField("snap_time") for e in of_source)
        of_series = await list_audit(c, series_name, min_position=head)
        assert of_series
        assert {(e.user, e.resource) for e in of_series} == {(user, series_name)}

        # Everything this user did, in commit order: the source's entries, then the series'.
        by_user = await list_audit(c, "-", f'user = "{user}"', min_position=head)
        assert by_user == [*of_source, *of_series]
        positions = [e.commit_position for e in by_user]
        assert positions == sorted(positions)
        # The same, a page of one at a time.
        assert (
            await list_audit(c, "-", f'user = "{user}"', min_position=head, page_size=1) == by_user
        )

        # Split at the configuration's commit time: before it and from it on, nothing lost.
        split = rfc3339(micros(of_source[1].commit_time))
        since = await list_audit(
            c, "-", f'commit_time >= "{split}" AND user = "{user}"', min_position=head
        )
        before = await list_audit(
            c, "-", f'user = "{user}" AND commit_time < "{split}"', min_position=head
        )
        assert [*before, *since] == by_user
        assert of_source[0] in before
        assert of_source[1] == since[0]
        assert all(micros(e.commit_time) >= micros(of_source[1].commit_time) for e in since)
        # An action and another user narrow it.
        configured = await list_audit(
            c, "-", f'user = "{user}" AND action = "DataSourceConfigured"', min_position=head
        )
        assert configured == [of_source[1]]
        assert await list_audit(c, source_name, 'user != "' + user + '"', min_position=head) == []


# --- GetPointHistory paged ----------------------------------------------------------------------


async def test_a_points_history_paged_one_item_at_a_time_is_the_history_in_one_page(
    cluster: Cluster,
) -> None:
    series_id, top, second = unique("paged"), unique("top"), unique("second")
    snap, other = FIRST, FIRST + DAY_US
    async with cluster.clients() as c:
        await setup_series(c, series_id, price_series([(top, 1), (second, 2)]))
        # Version 1 from the second source, version 2 when the top one arrives (late source,
        # beyond 1 bp), version 3 restated by hand, version 4 when the top source corrects.
        await c.command.IngestPoints(
            ingest_request(unique("ing"), series_id, second, [(snap, "100.00"), (other, "1.00")]),
            metadata=as_user("feed-2"),
        )
        await c.command.IngestPoints(
            ingest_request(unique("ing"), series_id, top, [(snap, "101.00")], -5 * HOUR_S),
            metadata=as_user("feed-1"),
        )
        await c.command.RestatePoint(
            cmd.RestatePointRequest(
                command_id=unique("fix"),
                series=f"series/{series_id}",
                snap_time=timestamp(snap),
                value=price("101.50"),
                reason="exchange file",
            ),
            metadata=as_user("carol"),
        )
        last = await c.command.IngestPoints(
            ingest_request(unique("ing"), series_id, top, [(snap, "102.00")]),
            metadata=as_user("feed-1"),
        )

        whole, pages = await point_history(c, series_id, snap, min_position=last.commit_position)
        assert pages == 1
        items = len(whole.versions) + len(whole.observations)
        assert len(whole.versions) >= 3
        assert len(whole.observations) == 3
        assert [v.version for v in whole.versions] == list(range(1, len(whole.versions) + 1))

        request = q.GetPointHistoryRequest(
            series=f"series/{series_id}", snap_time=timestamp(snap), page_size=1
        )
        versions: list[q.OfficialValue] = []
        observations: list[q.SourceObservation] = []
        previous_high = 0
        tokens: list[str] = []
        for _ in range(items + 2):
            page = await c.query.GetPointHistory(request, metadata=as_user("reader"))
            assert len(page.versions) + len(page.observations) <= 1
            assert page.read_position >= last.commit_position
            positions = [v.record_position for v in page.versions] + [
                o.record_position for o in page.observations
            ]
            # Pages walk the commit positions forward.
            assert all(p >= previous_high for p in positions), (positions, previous_high)
            previous_high = max([previous_high, *positions])
            versions += page.versions
            observations += page.observations
            if not page.next_page_token:
                break
            tokens.append(page.next_page_token)
            request.page_token = page.next_page_token
        else:
            raise AssertionError(f"{items} items not read in {items + 2} pages of one")
        assert versions == list(whole.versions)
        assert observations == list(whole.observations)

        # Pages of two: the same items again.
        halves, _ = await point_history(c, series_id, snap, page_size=2)
        assert (halves.versions, halves.observations) == (whole.versions, whole.observations)

        # A token is tied to its point.
        status = await refused(
            c.query.GetPointHistory(
                q.GetPointHistoryRequest(
                    series=f"series/{series_id}", snap_time=timestamp(other), page_token=tokens[0]
                ),
                metadata=as_user("reader"),
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert [v.field for v in violations(status)] == ["page_token"]
