"""The command fingerprint: computed faster for batches of points, yet the very digest stored
records hold, so a retry of a command recorded before still finds its first outcome."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from qis_command.application.commands import IngestPoints, PublishPoints
from qis_domain.command_log import _sequence_repr, fingerprint
from qis_domain.snaps import Snap
from qis_domain.values import OhlcBar, Price, Volume

# Digests computed by the fingerprint of commit 05aeb16 (the repr of every field), as
# CommandAccepted events of stores written since hold them.
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
    ),
    (
        IngestPoints("VOL", "bbg", ((Snap(-5, 0), Volume(Decimal("0.000"), "shares")),)),
        "02ea58db09e56ebc0f49f36e97c57c970201d178ca961538942f3e27ed4e303a",
    ),
    (
        IngestPoints(
            "BAR",
            "bbg",
            [(Snap(7), OhlcBar(Decimal(1), Decimal(2), Decimal("0.5"), Decimal("1.5"), None))],
        ),
        "b2a9cb73e878b3dbe39945c1e7daa48433d539b581b4d360812b5b30dbe89645",
    ),
    (
        PublishPoints("SPX", [Snap(1), Snap(2, -3600)], "ok"),
        "905d43bf62b0cfcbded8b81490f41c64bac8c8ee50c7631c309e031a6aa1aad1",
    ),
    (
        IngestPoints("SPX", "bbg", []),
        "f54254544c8170d25c55e32ce62d1847afd3fb2d52033a8086dfba99ddf87130",
    ),
]


@pytest.mark.parametrize(("command", "digest"), RECORDED)
def test_the_fingerprint_of_a_recorded_command_is_unchanged(command: object, digest: str) -> None:
    assert fingerprint(command) == digest


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
