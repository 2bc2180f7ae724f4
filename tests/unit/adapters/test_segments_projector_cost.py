"""A segment extended by versions that come after all its open rows, each snap once (a load, a
live feed), skips the sort: its payload stays byte for byte the one the sort made."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import given, settings
from hypothesis import strategies as st
from qis.data.v1 import values_pb2
from qis_adapters.readstore import segments
from qis_adapters.readstore.port import OPEN_END, OfficialVersion


def _version(snap: int, position: int, text: str) -> OfficialVersion:
    value = values_pb2.DataValue(price=values_pb2.Price(value=text, currency="USD"))
    return OfficialVersion(
        "S", snap, 1, value.SerializeToString(), 1.0, position * 10, position, "", "u", "c",
        ("a",), "priority",
    )  # fmt: skip


def _sorted(current: pa.Table, versions: list[OfficialVersion]) -> pa.Table:
    """The rows as a sort makes them (nothing superseded: each snap once)."""
    still = current.filter(pc.equal(current["position_to"], OPEN_END))
    return pa.concat_tables([still, segments.rows_from_versions(versions)]).sort_by(
        [("snap_us", "ascending"), ("version", "ascending")]
    )


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(1, 5), min_size=1, max_size=5),
    st.lists(st.sampled_from(["1.5", "100.25", "0.000001", "7"]), min_size=1),
    st.booleans(),
)
def test_projector_cost_rows_in_order_encode_as_the_sort_made_them(
    batch_sizes: list[int], texts: list[str], stored: bool
) -> None:
    current, snap = segments.EMPTY, 0
    for position, size in enumerate(batch_sizes, start=1):
        versions = []
        for _ in range(size):
            versions.append(_version(snap, position, texts[snap % len(texts)]))
            snap += 1
        extended = segments.extend(current, versions)
        assert segments.encode(extended) == segments.encode(_sorted(current, versions))
        # The builder extends what it built, or what it read back from the store.
        current = segments.decode(segments.encode(extended)) if stored else extended


def test_projector_cost_rows_out_of_order_are_still_sorted() -> None:
    later, earlier = _version(5, 1, "2"), _version(3, 2, "1")
    rows = segments.extend(segments.extend(segments.EMPTY, [later]), [earlier])
    assert rows["snap_us"].to_pylist() == [3, 5]
