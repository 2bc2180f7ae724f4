"""qis_client in one go, against a running `qis up`:

    python quickstart.py [--command-address HOST:PORT] [--query-address HOST:PORT] [--user NAME]

Defines a data source and a daily price series (fresh ids on every run), ingests three closes,
reads them back (latest, and as of an earlier commit position after a restatement), receives
them through a subscription and resumes it from its token, reads the restated point's history
(with the UTC offset its source stated), pages through the audit trail, ingests more closes in
columns (one list per field) and reads the range back in the columnar view, the same values as
the per-point view, and shows how a malformed batch is refused: INVALID_ARGUMENT with one field
violation per bad field.
The addresses and the user default to QIS_COMMAND_ADDRESS, QIS_QUERY_ADDRESS and QIS_USER, as
for the `qis` command. Exits 0 when every step behaved as described, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from qis.data.v1 import quality_pb2, query_service_pb2, series_pb2, values_pb2
from qis_client import (
    DEFAULT_COMMAND_ADDRESS,
    DEFAULT_QUERY_ADDRESS,
    InvalidArgument,
    QisClient,
    QisError,
    Subscription,
    User,
    Value,
    ValueColumns,
    decimal_of,
    point_columns,
    price,
    rows_as_columns,
    source_name,
    to_datetime,
)

# New York closes at 16:00, five hours behind UTC in early March (a fixed offset: the example
# needs no time-zone database). The service answers in UTC and keeps the offset as lineage.
EST = timezone(timedelta(hours=-5), "EST")
CLOSES = {
    datetime(2024, 3, 1, 16, tzinfo=EST): Decimal("5137.08"),
    datetime(2024, 3, 4, 16, tzinfo=EST): Decimal("5130.95"),
    datetime(2024, 3, 5, 16, tzinfo=EST): Decimal("5078.65"),
}
# A week later, in columns: snaps in one list, closes in another.
MORE_SNAPS = [datetime(2024, 3, day, 16, tzinfo=EST) for day in (11, 12, 13)]
MORE_CLOSES = ["5117.94", "5175.27", "5165.31"]
RESTATED_SNAP = datetime(2024, 3, 4, 16, tzinfo=EST)
RESTATED_VALUE = Decimal("5130.96")
SUBSCRIPTION_WAIT_S = 20.0


class QuickstartFailed(Exception):
    pass


def describe(value: query_service_pb2.OfficialValue) -> str:
    return f"{value.snap_time.ToJsonString()} {decimal_of(value)} v{value.version}"


def receive(subscription: Subscription, wanted: int) -> list[query_service_pb2.OfficialValue]:
    """`wanted` distinct (snap, version) values from a subscription, or QuickstartFailed after
    SUBSCRIPTION_WAIT_S. Delivery is at least once: a value may come twice."""
    timer = threading.Timer(SUBSCRIPTION_WAIT_S, subscription.cancel)
    timer.start()
    seen: dict[tuple[int, int], query_service_pb2.OfficialValue] = {}
    try:
        for value in subscription.values():
            seen.setdefault((value.snap_time.seconds, value.version), value)
            if len(seen) == wanted:
                return list(seen.values())
    finally:
        timer.cancel()
    raise QuickstartFailed(f"the subscription delivered {len(seen)} of {wanted} values")


def expect(what: str, got: object, wanted: object) -> None:
    if got != wanted:
        raise QuickstartFailed(f"{what}: got {got}, expected {wanted}")


def versions(values: Iterable[query_service_pb2.OfficialValue]) -> list[tuple[Decimal, int]]:
    return [(decimal_of(v), v.version) for v in values]


Row = tuple[int, int, str, float, int, int, int, int, list[int]]


def point_rows(values: Iterable[query_service_pb2.OfficialValue]) -> list[Row]:
    """What both views carry of each value: snap and record time (µs), version, value, quality
    score, record and supersede positions, method and flags."""

    def micros(seconds: int, nanos: int) -> int:
        return seconds * 1_000_000 + nanos // 1000

    return [
        (
            micros(v.snap_time.seconds, v.snap_time.nanos),
            v.version,
            v.value.price.value,
            v.quality_score,
            micros(v.record_time.seconds, v.record_time.nanos),
            v.record_position,
            v.supersede_position,
            v.method,
            list(v.flags),
        )
        for v in values
    ]


def column_rows(columns: ValueColumns) -> list[Row]:
    return [
        (snap, version, value, score, record, position, superseded, method, flags)
        for snap, version, value, score, record, position, superseded, method, flags in zip(
            columns.snap_time_micros,
            columns.versions,
            columns.values,
            columns.quality_scores,
            columns.record_time_micros,
            columns.record_positions,
            columns.supersede_positions,
            columns.methods,
            columns.flags,
            strict=True,
        )
    ]


def run(qis: QisClient) -> None:
    suffix = uuid.uuid4().hex[:8]
    source_id, series_id = f"quickstart-{suffix}", f"QUICKSTART.{suffix}"

    qis.register_source(source_id, provider="file", description="qis_client quickstart")
    defined = qis.define_series(
        series_id,
        series_pb2.Series(
            data_type=values_pb2.DATA_TYPE_PRICE,
            frequency=series_pb2.FREQUENCY_DAILY,
            unit="USD",
            sources=[series_pb2.SeriesSource(source=source_name(source_id), priority=1)],
            validation=series_pb2.ValidationRules(require_positive=True),
        ),
    )
    print(f"defined series/{series_id} fed by sources/{source_id}")

    ingest_id = f"quickstart-ingest-{suffix}"
    ingested = qis.ingest(series_id, source_id, CLOSES, command_id=ingest_id)
    print(
        f"ingested {ingested.accepted} points, {ingested.published} published,"
        f" at position {ingested.commit_position}"
    )
    expect("points published", ingested.published, len(CLOSES))

    # min_position: read our own write, even if the projector is a moment behind.
    latest = list(qis.query_range(series_id, min_position=ingested.commit_position))
    for value in latest:
        print(f"latest {describe(value)}")
    expect("latest values", versions(latest), [(v, 1) for v in CLOSES.values()])

    # A subscription from just after the definition: catch-up delivers the three closes.
    with qis.subscribe([series_id], after_position=defined.commit_position) as subscription:
        for value in receive(subscription, len(CLOSES)):
            print(f"received {describe(value)}")
        token = subscription.resume_token

    restated = qis.restate(
        series_id, RESTATED_SNAP, RESTATED_VALUE, reason="exchange correction of the close"
    )
    (now,) = qis.get_values(series_id, [RESTATED_SNAP], min_position=restated.commit_position)
    (then,) = qis.get_values(series_id, [RESTATED_SNAP], as_of_position=ingested.commit_position)
    print(f"restated: latest {describe(now)}")
    print(f"as of position {ingested.commit_position}: {describe(then)}")
    expect(
        "restated point", versions([now, then]), [(RESTATED_VALUE, 2), (CLOSES[RESTATED_SNAP], 1)]
    )

    # Resumed from the token kept above: only what came after it, the restatement.
    with qis.subscribe([series_id], resume_token=token) as resumed:
        (value,) = receive(resumed, 1)
    print(f"resumed subscription received {describe(value)}")
    expect("resumed subscription", versions([value]), [(RESTATED_VALUE, 2)])

    # One item a page, to show the helper putting the pages together: both versions, and the
    # observation they were made from with the offset its source stated.
    history = qis.get_point_history(
        series_id, RESTATED_SNAP, page_size=1, min_position=restated.commit_position
    )
    (observation,) = history.observations
    said = to_datetime(history.versions[0].snap_time, observation.utc_offset)
    print(
        f"history of {history.versions[0].snap_time.ToJsonString()}:"
        f" versions {', '.join(str(v.version) for v in history.versions)};"
        f" {observation.source} sent {decimal_of(observation.value)} at {said.isoformat()}"
    )
    expect("versions in the history", [v.version for v in history.versions], [1, 2])
    expect("snap as the source stated it", said, RESTATED_SNAP)
    expect("offset the source stated", said.utcoffset(), EST.utcoffset(None))

    # Two entries a page: the helper follows the page tokens.
    audit = list(
        qis.list_audit_entries(series_id, page_size=2, min_position=restated.commit_position)
    )
    print(f"audit trail: {len(audit)} entries: {', '.join(e.action for e in audit)}")

    # Columns: the same closes as one list of snaps and one of prices. With the per-point
    # ingestion's command id, it is the same command: answered as a duplicate.
    again = qis.ingest_columns(series_id, source_id, rows_as_columns(CLOSES), command_id=ingest_id)
    print(f"the same closes in columns: duplicate {again.duplicate}")
    expect("the same closes in columns are a duplicate", again.duplicate, True)
    # More closes in columns, as integers at a scale of 2 (no decimal text to parse).
    columns = point_columns(MORE_SNAPS, MORE_CLOSES, scale=2)
    more = qis.ingest_columns(series_id, source_id, columns)
    print(f"ingested {more.accepted} points in columns, {more.published} published")
    # The whole range in the columnar view (two values a message: it pages like the per-point
    # view), and the per-point view of the same range: the same values.
    read = qis.query_range_columns(series_id, page_size=2, min_position=more.commit_position)
    points = list(qis.query_range(series_id, page_size=2, min_position=more.commit_position))
    for snap, text, version, flags in zip(
        read.snap_times(), read.values, read.versions, read.flags, strict=True
    ):
        names = ",".join(quality_pb2.QualityRule.Name(f) for f in flags) or "-"
        print(f"columns {snap:%Y-%m-%dT%H:%M:%SZ} {text} {read.unit} v{version} flags {names}")
    expect("columnar read", column_rows(read), point_rows(points))
    expect("units", {read.unit}, {v.value.price.currency for v in points})
    expect("closes read in columns", read.decimals()[-3:], [Decimal(c) for c in MORE_CLOSES])
    print(f"columnar read = per-point read: {len(read)} values")

    malformed: dict[datetime, Value] = {
        datetime(2024, 3, 6, 16, tzinfo=EST): Decimal("5104.76"),
        # 19 decimal places; a currency code in lower case (codes are compared as sent).
        datetime(2024, 3, 7, 16, tzinfo=EST): Decimal("5157.3600000000000000001"),
        datetime(2024, 3, 8, 16, tzinfo=EST): price(Decimal("5123.69"), currency="usd"),
    }
    try:
        qis.ingest(series_id, source_id, malformed)
    except InvalidArgument as error:
        print(f"rejected: {error.code.name} with {len(error.field_violations)} field violations")
        for violation in error.field_violations:
            print(f"  {violation.field}: {violation.description}")
        fields = [violation.field for violation in error.field_violations]
        refused = ["points[1].value.price.value", "points[2].value.price.currency"]
        expect("fields refused", fields, refused)
    else:
        raise QuickstartFailed("the malformed batch was accepted")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--command-address",
        default=os.environ.get("QIS_COMMAND_ADDRESS") or DEFAULT_COMMAND_ADDRESS,
    )
    parser.add_argument(
        "--query-address", default=os.environ.get("QIS_QUERY_ADDRESS") or DEFAULT_QUERY_ADDRESS
    )
    parser.add_argument("--user", default=os.environ.get("QIS_USER") or "quickstart")
    args = parser.parse_args(argv)
    try:
        with QisClient.connect(args.command_address, args.query_address, User(args.user)) as qis:
            run(qis)
    except (QisError, QuickstartFailed) as error:
        print(f"quickstart failed: {error}", file=sys.stderr)
        return 1
    print("quickstart: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
