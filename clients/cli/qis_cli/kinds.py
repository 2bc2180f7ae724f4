"""The data types a flat file can hold, one row per point: what fields a row has and how they
become a DataValue."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
from qis.data.v1 import values_pb2

from qis_cli.chunks import Point
from qis_cli.enums import short_name
from qis_cli.errors import CliError
from qis_cli.readers import RowFields

RepeatedPoints = RepeatedCompositeFieldContainer[values_pb2.DataPoint]
_US_PER_S = 1_000_000
_NS_PER_US = 1_000

_FIELDS = {
    "price": RowFields(("value", "currency"), frozenset({"currency"})),
    "volume": RowFields(("value", "unit"), frozenset({"unit"})),
    "ohlc_bar": RowFields(("open", "high", "low", "close", "volume"), frozenset({"volume"})),
}


class ValueKind(StrEnum):
    """Named like the data types of `qis define-series --type`."""

    PRICE = "price"
    VOLUME = "volume"
    OHLC_BAR = "ohlc_bar"

    @property
    def fields(self) -> RowFields:
        return _FIELDS[self.value]

    @classmethod
    def of(cls, data_type: values_pb2.DataType.ValueType, series_name: str) -> ValueKind:
        name = short_name(values_pb2.DataType.DESCRIPTOR, data_type)
        if name not in _FIELDS:
            kinds = ", ".join(k.value for k in cls)
            raise CliError(f"{series_name} holds {name} values: files can hold {kinds} for now")
        return cls(name)

    def fill(self, points: RepeatedPoints, chunk: Sequence[Point]) -> None:
        # add() and field assignment build the message in place: several times faster than
        # nested constructors, which matters at tens of thousands of rows a second.
        for item in chunk:
            point = points.add()
            # Floor division: an instant before 1970 has negative seconds and positive nanos.
            seconds, micros = divmod(item.snap.utc_us, _US_PER_S)
            point.snap_time.seconds = seconds
            point.snap_time.nanos = micros * _NS_PER_US
            if item.snap.offset_s:  # unset means UTC
                point.utc_offset.seconds = item.snap.offset_s
            values = item.row.values
            if self is ValueKind.PRICE:
                price = point.value.price
                price.value, price.currency = values
            elif self is ValueKind.VOLUME:
                volume = point.value.volume
                volume.quantity, volume.unit = values
            else:
                bar = point.value.bar
                bar.open, bar.high, bar.low, bar.close, bar.volume = values
