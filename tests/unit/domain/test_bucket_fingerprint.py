"""The command fingerprints stored records hold never change, so a retry of a command recorded
before still finds its first outcome: the legacy fingerprint (computed faster for batches of
points, yet the very digest records written before the scheme "2:" hold) and scheme 2's."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from qis_command.application.commands import IngestPoints, PublishPoints, RegisterSource
from qis_domain import command_log
from qis_domain.command_log import (
    COMMAND_REUSED,
    CommandRecord,
    _sequence_repr,
    fingerprint,
    legacy_fingerprint,
)
from qis_domain.definitions import DataSourceConfig
from qis_domain.errors import AlreadyExists
from qis_domain.series_bucket import Recorded
from qis_domain.snaps import Snap
from qis_domain.values import OhlcBar, Price, Volume

# Per command, its digest by the legacy fingerprint (computed by the code before scheme 2, which
# hashed the repr of every field from commit 05aeb16 on) and by scheme 2, as the CommandAccepted
# events of the stores they wrote hold them.
RECORDED = [
    (
        IngestPoints(
            "SPX",
            "bbg",
            [
                (Snap(1_700_000_000_000_000, 3600), Price(Decimal("5012.25"), "USD")),
                (Snap(1_700_000_060_000_000), Price(Decimal("1E+2"), "")),
            ],
        ),
        "dacb7ed61b47b8343ad62b9170151db7362d9f6aa8341d15dce12876fa339e1f",
        "2:09e6ee9d8a56f837c7040f6e96273eebca42a85cee04b29e8b9ed44fe77678c9",
    ),
    (
        IngestPoints("VOL", "bbg", ((Snap(-5, 0), Volume(Decimal("0.000"), "shares")),)),
        "02ea58db09e56ebc0f49f36e97c57c970201d178ca961538942f3e27ed4e303a",
        "2:edd6006f61339ed8f17c0b6971049d5d488597419ec1592732a301e4f151a3aa",
    ),
    (
        IngestPoints(
            "BAR",
            "bbg",
            [(Snap(7), OhlcBar(Decimal(1), Decimal(2), Decimal("0.5"), Decimal("1.5"), None))],
        ),
        "b2a9cb73e878b3dbe39945c1e7daa48433d539b581b4d360812b5b30dbe89645",
        "2:2df17e4dc89fcd94461dabc87cabe74c7684543ced946896730effc18b187b61",
    ),
    (
        PublishPoints("SPX", [Snap(1), Snap(2, -3600)], "ok"),
        "905d43bf62b0cfcbded8b81490f41c64bac8c8ee50c7631c309e031a6aa1aad1",
        "2:457d7751469611cd1f2cdf9f2a5da629f4d675234635ce657e88dd50e9160efb",
    ),
    (
        IngestPoints("SPX", "bbg", []),
        "f54254544c8170d25c55e32ce62d1847afd3fb2d52033a8086dfba99ddf87130",
        "2:da930371c3b744b5f62812410f3d8946f06f29531fa522305c9d6f217d498a38",
    ),
    (  # one currency: scheme 2 writes the batch as columns
        IngestPoints(
            "SPX",
            "bbg",
            [
                (Snap(1_700_000_000_000_000, -18_000), Price(Decimal("5012.25"), "USD")),
                (Snap(1_700_000_060_000_000, -14_400), Price(Decimal("-0.50"), "USD")),
            ],
        ),
        "3a6e994d5734f366b3c19739a712091fb292068e724c4f70972de482545710e4",
        "2:4f89c252eb653b20f8cff69a5bcdb4c46b3216179e095c52271ff868fbe49ab2",
    ),
    (
        RegisterSource("vendor", DataSourceConfig(provider="p", settings={"b": "2", "a": "1"})),
        "563912a46a64f2aca49c53482f813e24f694a4b5e67a4406d71adde17be865b7",
        "2:99f382c84efaa835063524d5f39e1fe98a0c031897528549494097176654f826",
    ),
]


@pytest.mark.parametrize(("command", "legacy", "digest"), RECORDED)
def test_the_fingerprints_of_a_recorded_command_are_unchanged(
    command: object, legacy: str, digest: str
) -> None:
    assert legacy_fingerprint(command) == legacy
    assert fingerprint(command) == digest


STREAMS = ["series/SPX/points/0"]


def recorded(print_: str) -> CommandRecord:
    record = CommandRecord("series/SPX", "c-1")
    [accepted] = record.accept(print_, STREAMS)
    record.apply(accepted, Recorded("c-1", "feed", 7, 0))
    return record


@pytest.mark.parametrize(("command", "legacy", "digest"), RECORDED)
def test_a_record_is_compared_in_the_scheme_it_was_written_in(
    command: object, legacy: str, digest: str
) -> None:
    other = IngestPoints("NDX", "bbg", [])
    for stored in (legacy, digest):
        assert recorded(stored).earlier_streams(fingerprint(command), command) == STREAMS
        with pytest.raises(AlreadyExists) as refused:
            recorded(stored).earlier_streams(fingerprint(other), other)
        assert refused.value.reason == COMMAND_REUSED


def test_the_legacy_fingerprint_is_computed_only_for_a_record_that_holds_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def legacy(command: object) -> str:
        raise AssertionError("computed for a record of scheme 2")

    monkeypatch.setattr(command_log, "legacy_fingerprint", legacy)
    command, _, digest = RECORDED[0]
    assert recorded(digest).earlier_streams(fingerprint(command), command) == STREAMS


decimals = st.decimals(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [Decimal("-0"), Decimal("1E+2"), Decimal("0E-7"), Decimal("1.000"), Decimal("NaN")]
)
units = st.sampled_from(["", "USD", "shares", "it's", 'say "x"', "é"])
snaps = st.builds(Snap, st.integers(-(2**62), 2**62), st.integers(-86_400, 86_400))
values = (
    st.builds(Price, decimals, units)
    | st.builds(Volume, decimals, units)
    | st.builds(OhlcBar, decimals, decimals, decimals, decimals, st.none() | decimals)
    # not a Decimal: the fast form does not apply, the repr still does
    | st.builds(Price, st.floats(allow_nan=False) | st.text(max_size=3), units)
)
points = st.tuples(snaps, values)
items = points | snaps | st.tuples(snaps, values, values) | st.tuples(values, snaps)


@given(st.lists(items, max_size=6) | st.lists(items, max_size=3).map(tuple))
def test_a_batch_is_written_exactly_as_its_repr(batch: list[object] | tuple[object, ...]) -> None:
    assert _sequence_repr(batch) == repr(batch)
