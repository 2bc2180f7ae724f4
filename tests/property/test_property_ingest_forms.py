"""Form invariance through the real servicer: a history sent as per-point IngestPoints, as
columns of decimal texts or of scaled integers, in BulkIngest streams of one chunk or many,
decides what the same points given to the handlers in one command per delivery decide.

The servicer (qis_command.entrypoints.grpc_service.CommandService) is called in this process,
without a network: its request mapping, its BulkIngest read-ahead and its command contexts are
the ones a client meets. Every value is written with MAX_PLACES places, the scale a scaled-integer
column declares, so that the three forms carry the very same decimals (a column has one scale;
123.45 at scale 4 is 123.4500, another decimal than "123.45").
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from google.protobuf import duration_pb2, timestamp_pb2
from hypothesis import example, given, settings
from hypothesis import strategies as st
from qis.data.v1 import command_service_pb2 as pb
from qis.data.v1 import values_pb2
from qis_command.entrypoints.grpc_service import CommandService
from qis_runtime import identity

from tests.property.history import MAX_PLACES, SERIES, History, Point, snap_of
from tests.property.service import (
    PROPERTY,
    RICH,
    USER,
    WHOLE,
    Effect,
    Scenario,
    Service,
    assert_same_effect,
    delivered,
    effect_of,
    instant_us,
    scenarios,
)

NOW_US = instant_us(2025)
FORMS = ("points", "texts", "unscaled")
US = 1_000_000


def at_max_places(h: History) -> History:
    """The same history with every value written with MAX_PLACES decimal places."""

    def fixed(points: Sequence[Point]) -> tuple[Point, ...]:
        return tuple((snap, f"{Decimal(text):.{MAX_PLACES}f}") for snap, text in points)

    return History(
        h.shape,
        fixed(h.primary),
        fixed(h.secondary),
        tuple((source, fixed(points)) for source, points in h.deliveries),
        h.missing,
    )


@dataclass(frozen=True, slots=True)
class Sending:
    """How the deliveries go over the wire: in which form, `size` points per request (at most
    the protocol's 10,000), each request an IngestPoints call or all of a delivery's requests
    one BulkIngest stream."""

    form: str
    size: int
    bulk: bool


sendings = st.builds(
    Sending, st.sampled_from(FORMS), st.sampled_from([7, 366, 1_000, 10_000]), st.booleans()
)


def request(
    command_id: str, source: str, points: Sequence[Point], form: str
) -> pb.IngestPointsRequest:
    out = pb.IngestPointsRequest(
        command_id=command_id, series=f"series/{SERIES}", source=f"sources/{source}"
    )
    snaps = [snap_of(us) for us, _ in points]
    if form == "points":
        for snap, (us, text) in zip(snaps, points, strict=True):
            out.points.append(
                values_pb2.DataPoint(
                    snap_time=timestamp_pb2.Timestamp(seconds=us // US, nanos=us % US * 1_000),
                    utc_offset=duration_pb2.Duration(seconds=snap.offset_s),
                    value=values_pb2.DataValue(price=values_pb2.Price(value=text)),
                )
            )
        return out
    columns = out.columns
    columns.snap_time_micros.extend(us for us, _ in points)
    columns.utc_offset_minutes.extend(s.offset_s // 60 for s in snaps)
    if form == "texts":
        columns.prices.texts.extend(text for _, text in points)
    else:
        scaled = [int(Decimal(text).scaleb(MAX_PLACES)) for _, text in points]
        columns.prices.CopyFrom(values_pb2.DecimalColumn(unscaled=scaled, scale=MAX_PLACES))
    return out


class Context:
    """What the servicer asks of a gRPC call's context."""

    def invocation_metadata(self) -> tuple[Any, ...]:
        return ()

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"

    async def abort(self, code: Any, details: str = "", trailing_metadata: Any = ()) -> None:
        raise AssertionError(f"aborted: {code} {details}")


def chunks(points: Sequence[Point], size: int) -> Iterator[Sequence[Point]]:
    for start in range(0, len(points), size):
        yield points[start : start + size]


async def stream(
    requests: Sequence[pb.IngestPointsRequest],
) -> AsyncIterator[pb.IngestPointsRequest]:
    for r in requests:
        yield r


async def sent(scenario: Scenario, h: History, how: Sending) -> Effect:
    """The setup and the metrics through the handlers, the deliveries through the servicer."""
    service = Service.start(NOW_US)
    steps = scenario.steps(NOW_US)
    ingests = [s for s in steps if type(s.command).__name__ == "IngestPoints"]
    setup = steps[: steps.index(ingests[0])]
    metrics = steps[steps.index(ingests[-1]) + 1 :]
    await service.run(setup)
    servicer = CommandService(service.handlers, lambda: NOW_US)
    token = identity._current.set(identity.Identity(USER))
    try:
        accepted = 0
        for k, (source, points) in enumerate(h.deliveries):
            requests = [
                request(f"wire-{k}-{j}", source, chunk, how.form)
                for j, chunk in enumerate(chunks(points, how.size))
            ]
            if how.bulk:
                async for answer in servicer.BulkIngest(stream(requests), Context()):  # type: ignore[arg-type]
                    assert answer.HasField("result"), answer
                    accepted += answer.result.accepted
            else:
                for r in requests:
                    single = await servicer.IngestPoints(r, Context())  # type: ignore[arg-type]
                    accepted += single.accepted
    finally:
        identity._current.reset(token)
    assert accepted == len(h.primary) + len(h.secondary)
    await service.run(metrics)
    return effect_of(await service.log())


async def handled(scenario: Scenario) -> Effect:
    service = Service.start(NOW_US)
    await service.run(scenario.steps(NOW_US))
    return effect_of(await service.log())


# Each example sends a 22-year history again per sending: half the profile's examples.
@settings(PROPERTY, max_examples=max(1, PROPERTY.max_examples // 2))
@given(scenarios(), st.lists(sendings, min_size=1, max_size=1))
@example(
    RICH,
    [
        Sending(form, size, bulk)
        for form, size, bulk in zip(FORMS, (7, 1_000, 10_000), (True, False, True), strict=True)
    ],
)
def test_every_form_over_the_servicer_decides_what_the_handlers_do(
    scenario: Scenario, how: list[Sending]
) -> None:
    h = at_max_places(scenario.history)
    reference = delivered(scenario, h, WHOLE)
    expected = asyncio.run(handled(reference))
    for sending in how:
        got = asyncio.run(sent(reference, h, sending))
        assert_same_effect(got, expected)


def numeric(effect: Effect) -> dict[int, tuple[Any, ...]]:
    """Each published point's latest version with its value as a number."""
    out = {}
    for snap, (version, value, flags, quality, sources, method, *_) in effect.officials.items():
        out[snap] = (version, Decimal(json.loads(value)), flags, quality, sources, method)
    return out


def fired(effect: Effect) -> dict[int, list[tuple[object, ...]]]:
    """Each point's issues without their evidence, which quotes the values as written."""
    return {s: sorted({i[:4] for i in v}) for s, v in effect.issues.items()}


@settings(PROPERTY)
@given(scenarios())
@example(RICH)
def test_values_written_with_more_places_decide_the_same(scenario: Scenario) -> None:
    """A value as its own text or padded to MAX_PLACES (what a scaled-integer column makes of
    it) is the same number: the same rules fire and the same numbers are published."""
    own = asyncio.run(handled(dataclasses.replace(scenario, cuts=(WHOLE,))))
    padded = asyncio.run(handled(delivered(scenario, at_max_places(scenario.history), WHOLE)))
    assert fired(own) == fired(padded)
    assert {s: r[-1][-1] for s, r in own.reconciled.items()} == padded.statuses
    assert numeric(own) == numeric(padded)
