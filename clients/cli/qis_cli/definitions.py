"""`qis register-source` and `qis define-series`: a newcomer's first two commands."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from qis.data.v1 import command_service_pb2, series_pb2, values_pb2

from qis_cli.errors import CliError

DATA_TYPES = ("price", "volume", "ohlc_bar", "options_chain", "corporate_action")
FREQUENCIES = ("tick", "second", "minute", "hourly", "daily", "weekly", "monthly")


def new_command_id() -> str:
    """A fresh id: a definition is typed once by a person, not re-run from a file, so there is
    nothing to derive it from. `--command-id` makes a scripted setup repeatable."""
    return str(uuid.uuid4())


def parse_source_spec(text: str) -> series_pb2.SeriesSource:
    """'ID' or 'ID:PRIORITY'. Ids may contain ':', so only an all-digit last part is read as
    the priority ('feed:v2' is an id; 'feed:v2:1' is that id with priority 1)."""
    source_id, sep, tail = text.rpartition(":")
    if sep and source_id and tail.isdigit():
        return series_pb2.SeriesSource(source=f"sources/{source_id}", priority=int(tail))
    if not text:
        raise CliError("--source needs an id, e.g. --source bloomberg:1")
    # Priority 0 lets the server rank sources in the order given.
    return series_pb2.SeriesSource(source=f"sources/{text}")


@dataclass(frozen=True, slots=True)
class SeriesSpec:
    series_id: str
    data_type: str
    frequency: str
    unit: str
    sources: Sequence[str]
    require_positive: bool = False
    time_zone: str = ""
    calendar: str = ""
    manual_publication: bool = False
    precision: int = 0
    description: str = ""

    def request(self, command_id: str) -> command_service_pb2.DefineSeriesRequest:
        publication = series_pb2.PublicationPolicy(
            mode=series_pb2.PUBLICATION_MODE_MANUAL
            if self.manual_publication
            else series_pb2.PUBLICATION_MODE_AUTOMATIC
        )
        series = series_pb2.Series(
            data_type=values_pb2.DataType.Value(f"DATA_TYPE_{self.data_type.upper()}"),
            frequency=series_pb2.Frequency.Value(f"FREQUENCY_{self.frequency.upper()}"),
            unit=self.unit,
            precision=self.precision,
            time_zone=self.time_zone,
            calendar=self.calendar,
            sources=[parse_source_spec(s) for s in self.sources],
            validation=series_pb2.ValidationRules(require_positive=self.require_positive),
            publication=publication,
            description=self.description,
        )
        return command_service_pb2.DefineSeriesRequest(
            command_id=command_id, series_id=self.series_id, series=series
        )


def register_source_request(
    command_id: str, source_id: str, provider: str, description: str
) -> command_service_pb2.RegisterDataSourceRequest:
    return command_service_pb2.RegisterDataSourceRequest(
        command_id=command_id,
        source_id=source_id,
        # Proto3 booleans default to false; a source registered by hand is meant to be used.
        source=series_pb2.DataSource(provider=provider, description=description, enabled=True),
    )


def outcome_text(what: str, response: command_service_pb2.CommandResponse) -> str:
    if response.duplicate:
        return (
            f"{what}: already done by this command id, nothing changed"
            f" (commit position {response.commit_position})"
        )
    return f"{what} (commit position {response.commit_position})"
