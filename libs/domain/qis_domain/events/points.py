"""Events of the per-point state of a series, one stream per time bucket.

Each event carries a batch of points in columns (one list per field, index i = point i): a bulk
load of a thousand points is one event, and decoding it costs a few list validations instead of
a thousand small objects. `rows()` gives the per-point view.

Values are encoded by qis_domain.values.encode_value: a decimal string for price and volume
series (currency or unit in the event's `unit`), a value document for the other data types.

Stored payloads (`json_payload`) write a column whose entries are all equal once, as an object
at the column's place: `"versions":{"all":1}` stands for as many 1s as the event has snaps. Most
columns of a bulk load are such (first versions, one source, no flags): written out, they made
~40 % of the bytes a bulk load stored (more than half of a publication's) and of the time spent
encoding it, and every reader parsed them again. Only columns of two entries or more are
written so, never the snaps (with the series id after them, the head `peek_columns` of
qis_adapters reads), and only when the entries are equal as JSON too: equal strings, integers
or lists of strings, but documents (dicts) only if every row holds the same object (a value
document holds `Any`, and 1 == 1.0 == True in Python). Decoding gives the full lists back, so
no consumer sees a difference; the entries of a column read from its compact form are one
shared object, as in the events the domain makes (an event's columns never change in place).

The compact form is no new schema version: the shape of the events is unchanged, both forms
read at the same version (no upcaster to run: a stored full list decodes on the same path, as
fast as before), and a version bump would not make the code of before fail any louder. That
code reads a payload of a version newer than its own as if it were its own, and refuses a
compact column all the same: an object is not a list ("Input should be a valid array"). So a
mixed deployment stops at the first compact event rather than misreading it (payloads without
a compact column, one-point events for instance, it reads correctly). The code from now on also
refuses a version newer than its own (EventRegistry.decode).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, TypeVar, get_args

import orjson
from pydantic import BaseModel, ConfigDict, GetCoreSchemaHandler, model_validator
from pydantic_core import CoreSchema, core_schema, to_json

from qis_domain.events.base import DomainEvent, JsonDict
from qis_domain.values import DataType

RawValue = str | dict[str, Any]

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class _Once:
    """A column read from its compact form, until `_Columns` makes it a list (it needs the
    number of snaps)."""

    value: Any


class _WrittenOnce:
    """Lets a list field also be read from the compact form of a column, {"all": entry}."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        (item,) = get_args(source)
        once = core_schema.typed_dict_schema(
            {"all": core_schema.typed_dict_field(handler.generate_schema(item))},
            extra_behavior="forbid",
        )
        full = handler(source)
        # The full list first: a stored list is validated as before, on pydantic's JSON path.
        # A column is a list again once validated: serialized as one (model_dump...), not by
        # trying each member of the union in turn (twice as slow).
        return core_schema.union_schema(
            [full, core_schema.no_info_after_validator_function(_once, once)],
            mode="left_to_right",
            serialization=core_schema.plain_serializer_function_ser_schema(
                _same, return_schema=full
            ),
        )


def _same(column: list[Any]) -> list[Any]:
    return column


def _once(compact: dict[str, Any]) -> _Once:
    return _Once(compact["all"])


def _is_once(value: Any) -> bool:
    return isinstance(value, dict) and value.keys() == {"all"}


# A column of a columnar event (the snaps are not one: they are never written in compact form).
Column = Annotated[list[_T], _WrittenOnce()]


class _Columns(DomainEvent):
    """All list fields of a columnar event must have the length of `snaps`: its columns, which
    may be stored written once (see the module docstring), and the snaps themselves."""

    snaps: list[int]
    series_id: str  # second: what `peek_columns` (qis_adapters) reads, with the snaps
    _columns: ClassVar[frozenset[str]] = frozenset()  # the fields declared as Column

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls._columns = frozenset(
            name
            for name, field in cls.model_fields.items()
            if any(isinstance(m, _WrittenOnce) for m in field.metadata)
        )

    @model_validator(mode="after")
    def _same_lengths(self) -> _Columns:
        n = len(self.snaps)
        for name, value in self:
            if isinstance(value, _Once):
                if n < 2:
                    raise ValueError(f"column {name} is written once for {n} snaps (needs 2)")
                # Frozen: the field is replaced in the model's __dict__, within validation.
                self.__dict__[name] = [value.value] * n
            elif isinstance(value, list) and len(value) != n:
                raise ValueError(f"column {name} has {len(value)} entries for {n} snaps")
        return self

    @classmethod
    def written_out(cls, payload: JsonDict) -> JsonDict:
        # By the payload alone, not this version's columns: an upcaster may rename one. No
        # other field of a columnar event is an object.
        n = len(payload.get("snaps") or ())
        return {
            name: [value["all"]] * n if _is_once(value) else value
            for name, value in payload.items()
        }

    def json_payload(self) -> bytes:
        # One serializer call over the fields in declaration order (snaps, then series_id:
        # `peek_columns` reads that head); a model_dump_json that excluded the compact columns
        # and spliced them in after costs more than the whole encoding this way. orjson writes
        # the bytes pydantic-core's to_json writes for what these fields hold (strings, 64-bit
        # integers, string enums, lists and maps of those, finite floats), in a third of the
        # time for a column of texts or of contributions (~0.2 of the 3 µs a point a 1k-point
        # chunk took). to_json writes the rest: what orjson refuses (an integer beyond 64 bits, say,
        # in a value document read back from the store), and a payload with a null, which may
        # be a float that is not finite (orjson writes it as null, to_json as Infinity or NaN,
        # which read back; only value documents hold nulls, or such floats, and prices' and
        # volumes' columns hold no document). Value documents hold JSON's types alone: a
        # datetime or a dataclass there would be written otherwise than by to_json.
        fields = self.__dict__
        n = len(self.snaps)
        payload = {name: self._stored(name, fields[name], n) for name in type(self).model_fields}
        try:
            written = orjson.dumps(payload)
        except orjson.JSONEncodeError:
            return to_json(payload)
        return to_json(payload) if b"null" in written else written

    def _stored(self, name: str, value: Any, n: int) -> Any:
        # Only a column as long as the snaps: read back, one of another length (the domain's
        # events are made unvalidated) must be refused, not stretched to fit.
        if name not in self._columns or n < 2 or len(value) != n:
            return value
        first = value[0]
        # Equal strings, integers and lists of strings are equal JSON; equal documents need
        # not be (a value document holds `Any`, and 1 == 1.0 == True): one is written once
        # only when every row holds that very object.
        if isinstance(first, dict):
            same = all(v is first for v in value)
        else:
            same = value.count(first) == len(value)
        return {"all": first} if same else value


class DataIngested(_Columns):
    """Raw values of one source, as received (after schema validation)."""

    event_type: ClassVar[str] = "DataIngested"
    source_id: str
    data_type: DataType
    unit: str
    offsets: Column[int]  # UTC offset the source sent with each snap, in seconds
    values: Column[RawValue]


class Issue(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    issue_id: str
    snap_us: int
    source_id: str  # "" when the issue is about the reconciled value, not one source's
    rule: str
    severity: str  # "info" | "warning" | "error"
    blocking: bool
    evidence: dict[str, Any]


class QualityIssueDetected(DomainEvent):
    event_type: ClassVar[str] = "QualityIssueDetected"
    event_version: ClassVar[int] = 2  # v1 named the jump rule "spike" (see upcasters)
    series_id: str
    issues: list[Issue]


class DataReconciled(_Columns):
    """The candidate official value of each point after reconciling its sources."""

    event_type: ClassVar[str] = "DataReconciled"
    data_type: DataType
    unit: str
    values: Column[RawValue]
    methods: Column[str]
    contributions: Column[dict[str, str]]  # source id -> the figure it contributed
    excluded: Column[list[str]]  # sources left out as outliers
    quality_scores: Column[str]  # decimal strings in [0, 1]
    statuses: Column[str]  # qis_domain.quality.PointStatus


@dataclass(frozen=True, slots=True)
class OfficialRow:
    snap_us: int
    version: int
    value: RawValue
    quality_score: str
    sources: list[str]
    method: str
    flags: list[str]
    reason: str
    cause: str


class _Official(_Columns):
    event_version: ClassVar[int] = 2  # v1 flagged the jump rule as "spike" (see upcasters)
    data_type: DataType
    unit: str
    versions: Column[int]
    values: Column[RawValue]
    quality_scores: Column[str]
    sources: Column[list[str]]
    methods: Column[str]  # reconciliation method, or "manual"
    flags: Column[list[str]]  # rules failed by what each value was made of
    reasons: Column[str]  # why a version > 1 exists ("" for first versions)
    # late_source | corrected_source | manual_correction | approved_change | ...
    causes: Column[str]
    decided_at_us: int = 0  # the deciding command's clock: publication latency (timeliness)

    def rows(self) -> Iterator[OfficialRow]:
        return map(
            OfficialRow,
            self.snaps,
            self.versions,
            self.values,
            self.quality_scores,
            self.sources,
            self.methods,
            self.flags,
            self.reasons,
            self.causes,
        )


class DataPublished(_Official):
    """First official versions (version 1) of points."""

    event_type: ClassVar[str] = "DataPublished"
    mode: str  # "automatic" | "manual"


class DataRestated(_Official):
    """New official versions (version > 1) of already published points."""

    event_type: ClassVar[str] = "DataRestated"


class PublicationScheduled(_Columns):
    """Points waiting for more sources get a cut-off: at `due_us` they are published with what
    has arrived, or flagged if they are held."""

    event_type: ClassVar[str] = "PublicationScheduled"
    due_us: Column[int]


class _Resolution(DomainEvent):
    """A decision on open quality issues (the exception queue): a person's, but for
    QualityRetracted."""

    series_id: str
    issue_ids: list[str]
    snaps: list[int]  # the point of each issue, parallel to issue_ids
    reason: str


class QualityApproved(_Resolution):
    """The flagged values are accepted as they are: they no longer hold their points."""

    event_type: ClassVar[str] = "QualityApproved"


class QualityRejected(_Resolution):
    """The flagged source values are wrong: they stay stored but no longer count."""

    event_type: ClassVar[str] = "QualityRejected"


class QualityOverridden(_Resolution):
    """The issues are settled by a manual value (see ManualOverrideSet)."""

    event_type: ClassVar[str] = "QualityOverridden"


class QualityRetracted(_Resolution):
    """The system's: the issues no longer hold for the figures their source has sent (a
    backfill or a correction changed what a look-back rule compared with, or the source
    replaced the value they were about). Only open issues are retracted, never a person's
    decision."""

    event_type: ClassVar[str] = "QualityRetracted"


class ManualOverrideSet(_Columns):
    """A manual value stands over automatic reconciliation until `expires_us` (0: for good)."""

    event_type: ClassVar[str] = "ManualOverrideSet"
    expires_us: Column[int]
    reason_codes: Column[str]


class ManualOverrideExpired(_Columns):
    """Automatic reconciliation governs these points again."""

    event_type: ClassVar[str] = "ManualOverrideExpired"
