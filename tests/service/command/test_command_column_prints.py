"""A columnar IngestPoints is fingerprinted from its columns (ScalarPoints, hashed by
command_log._scalar_columns), and that must be byte for byte what was hashed of its points
before, so records written before still recognise their retries, and the per-point form of the
same points is still the same command.

The digests below were computed by the code before any print (364efd0: points_from_columns,
then legacy_fingerprint / fingerprint of the points), for columnar requests through each path
the columns have: offsets none, one or one per row; prices and volumes; extreme instants and
offsets; "-0", zeros after "0.", 36-digit texts; texts not reused (written from the figures)."""

from __future__ import annotations

import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from qis.data.v1 import command_service_pb2 as pb
from qis.data.v1 import values_pb2
from qis_command.application.commands import IngestPoints
from qis_command.entrypoints.grpc_service import ingest_command
from qis_domain import bounds
from qis_domain.command_log import (
    COMMAND_REUSED,
    CommandRecord,
    _columns,
    _scalar_columns,
    fingerprint,
    legacy_fingerprint,
)
from qis_domain.errors import AlreadyExists, FieldViolation
from qis_domain.scalar_points import ScalarPoints
from qis_domain.series_bucket import Recorded

US = 1_000_000
M = bounds.MAX_UTC_OFFSET_SECONDS // 60
T = 1_700_000_000_000_000

# (kind, snaps, offset minutes, texts), legacy digest, scheme-2 digest: as recorded before.
RECORDED = [
    (
        ("prices", [T, T + 60 * US], [], ["5012.25", "-0.50"]),
        "501df248055803d6f487775b450579439a9cefe7f63e631cc6297f031de21123",
        "2:5fff7cf54bb89acee65c5b1da334257842cf86e3c693c3b5b08392b447fdd78c",
    ),
    (
        ("prices", [T, T + 60 * US], [-300], ["5012.25", "-0.50"]),
        "f88c6e4e4b2cda05a409ba8f15b8bcc0743e548ebfd893d1cbd0d799abc20e9d",
        "2:f23aea5ee4a4f5aa06dbc9bd1c7607755cbfd62d56de129fb787efaf92be12fb",
    ),
    (
        ("prices", [T, T + 60 * US], [-300, 60], ["5012.25", "-0.50"]),
        "cf23fa706695d8a6b7409819776dda2e6a315f8bd66a1b44cd22739ee967418e",
        "2:4fce36881d1e384c4c6f25792158508f6cbfa207809f66f5c836860769173d49",
    ),
    (
        ("volumes", [bounds.MIN_INSTANT_US, bounds.MAX_INSTANT_US], [-M, M], ["0", "-0"]),
        "6452132a7155c70080365c6cd63f93a7439ae1acd909ae26861953b8797a2376",
        "2:5eb2fffb1c9af5ce029ab92638062daf2d055932021af2d7436df4eb6a8eb54e",
    ),
    (
        ("prices", [-5], [M], ["0.000001"]),
        "59fefd45c6a8ee7e012c67fea57e6cc97200a84a23bd6c674cbb9c7904025827",
        "2:8447692e143210f3fa6a4d594bd4aff1e89c487954de3412f2507378be4c300c",
    ),
    (  # unsorted snaps; the most zeros a zero or a digit takes after "0." as its own text
        ("prices", [7, 3], [], ["0.000000", "-0.0000010"]),
        "17c2e08cc96699d8ff1ec555726974ef11473b315d335490b66972217e77f4cc",
        "2:dc3a271d9cded4f97aa0fc1ec97bc14dee69b6d0ecfb56e0bae5b7b1804be771",
    ),
    (  # texts longer than the column's fast bound, at the bounds
        (
            "volumes",
            [1, 2, 3],
            [0],
            [
                "999999999999999999.999999999999999999",
                "0.000000000000000001",
                "1.000000000000000000",
            ],
        ),
        "bee23aefe9747d30414edb57fe039e37445f7aa53b351eb8bfad735e2972fd30",
        "2:48ca251b53bbd75b0244974bc6d2f641082e9b7d55276c1306fa9af5fb7639ad",
    ),
    (  # texts that are not their Decimals' own: no print, the points are hashed
        ("prices", [1, 2, 3, 4, 5, 6], [], ["+1", "01", ".5", "1.", "1E+3", "2e-2"]),
        "699907336e97f707c7281fd58d0960e9504d2dc325551ea10d0e6c281fa65c0c",
        "2:5a7271f84963aeec7ce0b3076cdc55173cd13c48064ffc84413a03c1b7764b14",
    ),
    (
        ("prices", [10], [], ["0.0000001"]),
        "ef56325002a87ea781d9dc9961bfcee61e0c85219e94a50c6b351244c0436ada",
        "2:12ea9c7b3f07eb1f0491becd9bc828c3e3dc4c0757221ceccc029bff56223fbd",
    ),
]
Case = tuple[str, list[int], list[int], list[str]]


def columnar(case: Case) -> pb.IngestPointsRequest:
    kind, snaps, minutes, texts = case
    request = pb.IngestPointsRequest(command_id="c-1", series="series/SPX", source="sources/bbg")
    request.columns.snap_time_micros.extend(snaps)
    request.columns.utc_offset_minutes.extend(minutes)
    getattr(request.columns, kind).CopyFrom(values_pb2.DecimalColumn(texts=texts))
    return request


def per_point(case: Case) -> pb.IngestPointsRequest:
    kind, snaps, minutes, texts = case
    request = pb.IngestPointsRequest(command_id="c-1", series="series/SPX", source="sources/bbg")
    for i, (us, text) in enumerate(zip(snaps, texts, strict=True)):
        point = request.points.add()
        point.snap_time.CopyFrom(timestamp_pb2.Timestamp(seconds=us // US, nanos=us % US * 1000))
        if kind == "prices":
            point.value.price.value = text
        else:
            point.value.volume.quantity = text
        if minutes:
            offset = 60 * minutes[i if len(minutes) > 1 else 0]
            point.utc_offset.CopyFrom(duration_pb2.Duration(seconds=offset))
    return request


def command_of(request: pb.IngestPointsRequest) -> IngestPoints:
    violations: list[FieldViolation] = []
    command = ingest_command(request, violations)
    assert violations == []
    assert command is not None
    return command


@pytest.mark.parametrize(("case", "legacy", "digest"), RECORDED)
def test_a_columnar_command_keeps_the_fingerprints_recorded_before_the_print(
    case: Case, legacy: str, digest: str
) -> None:
    command = command_of(columnar(case))
    assert fingerprint(command) == digest
    assert legacy_fingerprint(command) == legacy
    # ... so a retry of a command recorded in either scheme is answered, not refused
    for stored in (legacy, digest):
        record = CommandRecord("series/SPX", "c-1")
        [accepted] = record.accept(stored, ["series/SPX/points/0"])
        record.apply(accepted, Recorded("c-1", "feed", 1, 0))
        assert record.earlier_streams(fingerprint(command), command) == ["series/SPX/points/0"]


@pytest.mark.parametrize(("case", "legacy", "digest"), RECORDED)
def test_the_per_point_form_of_the_same_points_is_the_same_command(
    case: Case, legacy: str, digest: str
) -> None:
    command = command_of(per_point(case))
    assert (fingerprint(command), legacy_fingerprint(command)) == (digest, legacy)


@pytest.mark.parametrize("kind", ["prices", "volumes"])
def test_the_servicer_keeps_a_column_of_own_texts_in_columns(kind: str) -> None:
    """Columns are wired through (else every columnar batch pays a pass over its points)."""
    command = command_of(columnar((kind, [T, T + 1], [60], ["1.50", "-0.000001"])))
    assert type(command.points) is ScalarPoints
    assert command.points.own_texts() is command.points.texts
    assert _scalar_columns(command.points) == _columns(list(command.points))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (("prices", [T], [], ["1.5"]), ("prices", [T], [], ["1.50"])),
        (("prices", [T], [], ["0"]), ("prices", [T], [], ["-0"])),
        (("prices", [T], [], ["1"]), ("volumes", [T], [], ["1"])),
        (("prices", [T], [], ["1"]), ("prices", [T], [1], ["1"])),
        (("prices", [T, T + 1], [], ["1", "2"]), ("prices", [T + 1, T], [], ["2", "1"])),
        (("prices", [T, T + 1], [], ["1", "23"]), ("prices", [T, T + 1], [], ["12", "3"])),
    ],
)
def test_columnar_commands_that_differ_do_not_share_a_fingerprint(a: Case, b: Case) -> None:
    first, second = command_of(columnar(a)), command_of(columnar(b))
    assert type(first.points) is ScalarPoints
    assert type(second.points) is ScalarPoints
    assert fingerprint(first) != fingerprint(second)
    record = CommandRecord("series/SPX", "c-1")
    [accepted] = record.accept(fingerprint(first), ["series/SPX/points/0"])
    record.apply(accepted, Recorded("c-1", "feed", 1, 0))
    with pytest.raises(AlreadyExists) as refused:
        record.earlier_streams(fingerprint(second), second)
    assert refused.value.reason == COMMAND_REUSED


def test_no_offsets_and_a_zero_offset_are_the_same_command() -> None:
    """The same points (a snap with offset 0), whichever way the offsets column says it."""
    prints = {
        fingerprint(command_of(columnar(("prices", [T, T + 1], minutes, ["1", "2"]))))
        for minutes in ([], [0], [0, 0])
    }
    assert len(prints) == 1
