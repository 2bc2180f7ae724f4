"""`values.scalar_figures`: a command's values are encoded as the texts of the figures it returns,
so for every batch it answers for, those texts must be what `encode_value` writes, non-canonical
decimals included; any other kind, or a mix, gets None."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st
from qis_domain.values import DataValue, OhlcBar, Price, Volume, encode_value, scalar_figures

decimals = st.decimals() | st.sampled_from(
    [
        Decimal(t)
        for t in ("1.50", "1E+2", "-0", "0E-7", "1.000", "-0.00", "NaN", "sNaN", "Infinity")
    ]
)
units = st.sampled_from(["USD", "EUR", ""])
prices = st.builds(Price, decimals, units)
volumes = st.builds(Volume, decimals, units)
bars = st.builds(OhlcBar, decimals, decimals, decimals, decimals)


@given(st.lists(prices) | st.lists(volumes) | st.lists(prices | volumes | bars))
def test_figures_encode_as_encode_value_and_only_for_one_scalar_kind(
    values: list[DataValue],
) -> None:
    figures = scalar_figures(values)
    kinds = {type(v) for v in values}
    if figures is None:
        assert len(kinds) != 1 or not kinds <= {Price, Volume}
        return
    assert len(kinds) == 1
    assert kinds <= {Price, Volume}
    assert list(map(str, figures)) == list(map(encode_value, values))
    assert [f is v.number for f, v in zip(figures, values, strict=True)] == [True] * len(values)
