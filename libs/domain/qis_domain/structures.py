"""Term structures and surfaces: their tenors, the DataSchema a series declares for them (its
axes and checks), and the shape a value must have to be accepted at all.

A value that breaks its shape (unsorted or repeated nodes, a tenor or coordinate outside the
declared unit, a hole in a declared full grid, too many nodes) is malformed: refused with a
violation naming the node, nothing stored. The checks on well-formed nodes (spikes, jumps, flat
spots, monotonicity, arbitrage) flag and hold instead: qis_domain.structure_checks.
"""

from __future__ import annotations

import enum
import functools
import itertools
import re
from collections.abc import Iterator, Sequence
from decimal import Decimal
from fractions import Fraction
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from qis_domain.bounds import MAX_ID_LENGTH, quoted
from qis_domain.errors import FieldViolation
from qis_domain.values import DataType, Structure, StructureNode, Surface, TermStructure

MAX_STRUCTURE_NODES = 2_000
"""Nodes of one curve or surface: a volatility surface of 40 expiries x 50 strikes is 2,000.
One value is one event's worth of nodes, and the whole structure travels in every message
about the point."""

MAX_TENOR_LENGTH = 32
_TENOR = re.compile(r"P(?:([0-9]{1,4})Y)?(?:([0-9]{1,4})M)?(?:([0-9]{1,4})W)?(?:([0-9]{1,5})D)?")
_DAYS_PER_YEAR = 365


class TenorUnit(enum.StrEnum):
    """The one ISO 8601 designator a series' tenors use (None on the axis: any mix)."""

    DAYS = "days"
    WEEKS = "weeks"
    MONTHS = "months"
    YEARS = "years"


_DESIGNATORS = {TenorUnit.YEARS: 0, TenorUnit.MONTHS: 1, TenorUnit.WEEKS: 2, TenorUnit.DAYS: 3}


class CoordinateUnit(enum.StrEnum):
    """What a surface's second axis holds."""

    STRIKE = "strike"  # any decimal: rate strikes may be negative
    MONEYNESS = "moneyness"  # forward moneyness K/F, above 0
    DELTA = "delta"  # from -1 to 1


class Monotonicity(enum.StrEnum):
    NON_DECREASING = "non_decreasing"
    NON_INCREASING = "non_increasing"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


Name = Annotated[str, Field(max_length=MAX_ID_LENGTH)]


class TenorAxis(_Frozen):
    name: Name = ""
    unit: TenorUnit | None = None


class CoordinateAxis(_Frozen):
    name: Name = ""
    unit: CoordinateUnit


class StructureChecks(_Frozen):
    """The checks per node (qis_domain.structure_checks): None, 0 or False disables each."""

    max_node_spike_percent: Annotated[Decimal, Field(gt=0)] | None = None
    max_node_jump_percent: Annotated[Decimal, Field(gt=0)] | None = None
    flat_spot_nodes: Annotated[int, Field(ge=0, le=MAX_STRUCTURE_NODES)] = 0
    calendar_arbitrage: bool = False
    butterfly_arbitrage: bool = False

    @model_validator(mode="after")
    def _a_run(self) -> StructureChecks:
        if self.flat_spot_nodes in (1, 2):
            raise ValueError("flat_spot_nodes is 0 (off) or at least 3: two equal nodes are common")
        return self


class StructureSchema(_Frozen):
    """The DataSchema of a term structure or surface series. `coordinate_axis` is a surface's
    second axis (None for a term structure); `full_grid`: every tenor of a surface has a node at
    every coordinate of the same value; `monotonicity`: along the tenor axis."""

    tenor_axis: TenorAxis = TenorAxis()
    coordinate_axis: CoordinateAxis | None = None
    max_nodes: Annotated[int, Field(ge=1, le=MAX_STRUCTURE_NODES)] = MAX_STRUCTURE_NODES
    full_grid: bool = False
    monotonicity: Monotonicity | None = None
    checks: StructureChecks = StructureChecks()

    @model_validator(mode="after")
    def _surface_only(self) -> StructureSchema:
        axis = self.coordinate_axis
        if axis is None and (self.full_grid or self.checks.calendar_arbitrage):
            raise ValueError("full_grid and calendar_arbitrage need a coordinate axis (surfaces)")
        if self.checks.butterfly_arbitrage and (
            axis is None or axis.unit is not CoordinateUnit.MONEYNESS
        ):
            raise ValueError("butterfly_arbitrage needs a coordinate axis of forward moneyness")
        return self


def check_schema_fits(
    schema: StructureSchema | None, data_type: DataType, path: str, v: list[FieldViolation]
) -> None:
    """A structure only on term structure and surface series, with their number of axes."""
    if schema is None:
        return
    if data_type not in (DataType.TERM_STRUCTURE, DataType.SURFACE):
        v.append(FieldViolation(path, "only term structure and surface series have a structure"))
    elif data_type is DataType.TERM_STRUCTURE and schema.coordinate_axis is not None:
        v.append(FieldViolation(f"{path}.coordinate_axis", "a term structure has one axis"))
    elif data_type is DataType.SURFACE and schema.coordinate_axis is None:
        v.append(FieldViolation(f"{path}.coordinate_axis", "required for surfaces"))


@functools.lru_cache(maxsize=4096)
def tenor_years(tenor: str) -> Fraction | None:
    """The length of an ISO 8601 period of whole years, months, weeks and days ("P1Y6M") in
    years, Y + M/12 + (7W + D)/365, exactly; None if `tenor` is not one. The order it gives is
    the order of the tenor axis, and equal lengths are the same tenor ("P12M" and "P1Y").
    Cached: a series uses a few dozen tenors, in every one of its values."""
    match = _TENOR.fullmatch(tenor)
    if match is None or tenor == "P":
        return None
    y, m, w, d = (int(part or 0) for part in match.groups())
    return Fraction(y) + Fraction(m, 12) + Fraction(7 * w + d, _DAYS_PER_YEAR)


def _in_unit(tenor: str, unit: TenorUnit | None) -> bool:
    if unit is None:
        return True
    match = _TENOR.fullmatch(tenor)
    assert match is not None  # a tenor, by the caller
    used = [i for i, part in enumerate(match.groups()) if part is not None]
    return used == [_DESIGNATORS[unit]]


def _coordinate_problem(coordinate: Decimal, unit: CoordinateUnit) -> str | None:
    if unit is CoordinateUnit.MONEYNESS and coordinate <= 0:
        return "a forward moneyness is above 0"
    if unit is CoordinateUnit.DELTA and not -1 <= coordinate <= 1:
        return "a delta is from -1 to 1"
    return None


def node_name(value: Structure, i: int) -> str:
    """How evidence names a node: its tenor, and a surface node's coordinate after a space."""
    if isinstance(value, TermStructure):
        return value.nodes[i].tenor
    node = value.nodes[i]
    return f"{node.tenor} {node.coordinate}"


def structure_violations(
    value: Structure, schema: StructureSchema | None, path: str, v: list[FieldViolation]
) -> None:
    """Records why `value` (at `path`, e.g. "points[3].value") is malformed for a series of
    `schema` (None: the shape any structure must have: tenors, order, at most
    MAX_STRUCTURE_NODES nodes), each violation naming its node."""
    at = f"{path}.{value.data_type.value}"
    nodes: Sequence[StructureNode] = value.nodes
    limit = MAX_STRUCTURE_NODES if schema is None else schema.max_nodes
    if not nodes:
        v.append(FieldViolation(f"{at}.nodes", "at least one node is required"))
        return
    if len(nodes) > limit:
        v.append(FieldViolation(f"{at}.nodes", f"{len(nodes):,} nodes, more than {limit:,}"))
        return
    unit = None if schema is None else schema.tenor_axis.unit
    keys: list[tuple[Fraction, Decimal] | None] = []
    for i, node in enumerate(nodes):
        years = tenor_years(node.tenor)
        if years is None:
            v.append(FieldViolation(f"{at}.nodes[{i}].tenor", _not_a_tenor(node.tenor)))
        elif not _in_unit(node.tenor, unit):
            reason = f"{quoted(node.tenor)} is not in the tenor axis' unit, {unit}"
            v.append(FieldViolation(f"{at}.nodes[{i}].tenor", reason))
        coordinate = getattr(node, "coordinate", Decimal(0))
        keys.append(None if years is None else (years, coordinate))
    if isinstance(value, Surface) and schema is not None:
        _coordinates(value, schema, at, v)
    _ordered(value, keys, at, v)
    if schema is not None and schema.full_grid and isinstance(value, Surface) and not v:
        _full_grid(value, at, v)


def _not_a_tenor(tenor: str) -> str:
    return (
        f"{quoted(tenor)} is not a tenor: an ISO 8601 period of years, months, weeks and days"
        ' in upper case ("P3M", "P1Y6M", "P30D")'
    )


def _coordinates(value: Surface, schema: StructureSchema, at: str, v: list[FieldViolation]) -> None:
    axis = schema.coordinate_axis
    if axis is None:
        return
    for i, node in enumerate(value.nodes):
        problem = _coordinate_problem(node.coordinate, axis.unit)
        if problem is not None:
            v.append(FieldViolation(f"{at}.nodes[{i}].coordinate", f"{node.coordinate}: {problem}"))


def _ordered(
    value: Structure,
    keys: Sequence[tuple[Fraction, Decimal] | None],
    at: str,
    v: list[FieldViolation],
) -> None:
    what = "tenor" if isinstance(value, TermStructure) else "(tenor, coordinate)"
    for i, (before, key) in enumerate(itertools.pairwise(keys), start=1):
        if before is None or key is None or before < key:
            continue
        if before == key:
            reason = f"the same {what} as nodes[{i - 1}]"
        else:
            reason = f"nodes are by increasing {what}: {node_name(value, i)} after {node_name(value, i - 1)}"
        v.append(FieldViolation(f"{at}.nodes[{i}]", reason))


def _full_grid(value: Surface, at: str, v: list[FieldViolation]) -> None:
    """Each tenor at every coordinate: the nodes are sorted and unique by now, so a grid of
    T tenors and C coordinates has T x C nodes exactly when none is missing."""
    tenors = {tenor_years(n.tenor): n.tenor for n in value.nodes}
    coordinates = {n.coordinate for n in value.nodes}
    if len(value.nodes) == len(tenors) * len(coordinates):
        return
    present = {(tenor_years(n.tenor), n.coordinate) for n in value.nodes}
    missing = [
        f"{tenor} {c}"
        for years, tenor in tenors.items()
        for c in sorted(coordinates)
        if (years, c) not in present
    ]
    shown = ", ".join(missing[:10]) + (
        f" and {len(missing) - 10} more" if len(missing) > 10 else ""
    )
    v.append(FieldViolation(f"{at}.nodes", f"not a full grid: no node at {shown}"))


def lines(value: Structure) -> Iterator[tuple[str, list[int]]]:
    """The lines of nodes the checks walk, each as (axis, node indices in order along it): a
    term structure is one line along its tenors; a surface has one line along the tenor axis
    per coordinate and one along the coordinate axis per tenor. `value` is well-formed."""
    if isinstance(value, TermStructure):
        yield "tenor", list(range(len(value.nodes)))
        return
    by_tenor: dict[str, list[int]] = {}
    by_coordinate: dict[Decimal, list[int]] = {}
    for i, node in enumerate(value.nodes):  # sorted by (tenor, coordinate)
        by_tenor.setdefault(node.tenor, []).append(i)
        by_coordinate.setdefault(node.coordinate, []).append(i)
    for c in sorted(by_coordinate):
        yield "tenor", by_coordinate[c]
    for indices in by_tenor.values():
        yield "coordinate", indices
