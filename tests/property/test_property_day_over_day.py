"""The day_over_day rule over 20 years of XNYS closes (2004-2023): each value against the
official close of the previous XNYS session, whatever the split of the history into commands.

The series also has a jump limit (an error: a held close is not official, so the next session
has no prior official and raises nothing), and day_over_day itself may be an error (a close it
holds is no prior official for the next one): a chain of decisions in which each close depends
on how the one before it was settled. The issues, official versions and statuses equal a
reference computed here from the definition alone (the test's own calendar, exact fractions),
and one command, a command per session and random chunks give the same events."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from fractions import Fraction
from functools import cached_property

from hypothesis import example, given, settings
from hypothesis import strategies as st
from qis_command.application.commands import DefineSeries, IngestPoints, RegisterSource
from qis_domain.commands import CommandContext
from qis_domain.definitions import (
    DataSourceConfig,
    DayOverDayCheck,
    SeriesDefinition,
    ValidationRules,
)

from tests.property.history import (
    PRIMARY,
    SERIES,
    Cuts,
    Point,
    close_us,
    local_day,
    prices,
    sessions,
)
from tests.property.service import PROPERTY, USER, Effect, Service, effect_of, instant_us
from tests.service.command.command_support import daily_series

NOW_US = instant_us(2025)
DAYS = tuple(d for d in sessions() if 2004 <= d.year <= 2023)


@dataclass(frozen=True)
class Case:
    """A history and the rules of an example."""

    seed: int
    skipped: float  # share of sessions without a close
    shock: float  # share of closes that move far
    band: tuple[str | None, str | None, str | None, str | None]  # pct, rise, fall, abs
    severity: str
    jump: str | None
    last_year: int = 2023

    @cached_property
    def points(self) -> list[Point]:
        rng = random.Random(self.seed)
        level, out = 100.0, []
        for day in DAYS:
            if day.year > self.last_year:
                break
            if rng.random() < self.skipped:
                continue
            move = rng.gauss(0, 0.01)
            if rng.random() < self.shock:
                move = rng.choice((-1, 1)) * rng.uniform(0.02, 0.12)
            level = max(1.0, level * (1 + move))
            out.append((close_us(day), f"{level:.{rng.randint(2, 4)}f}"))
        return out

    @property
    def check(self) -> DayOverDayCheck:
        pct, rise, fall, abs_ = (None if b is None else Decimal(b) for b in self.band)
        return DayOverDayCheck(
            max_percent=pct,
            max_rise_percent=rise,
            max_fall_percent=fall,
            max_abs=abs_,
            severity="error" if self.severity == "error" else "warning",
        )

    @property
    def definition(self) -> SeriesDefinition:
        rules = ValidationRules(
            max_jump_percent=None if self.jump is None else Decimal(self.jump),
            day_over_day=self.check,
        )
        return daily_series(PRIMARY, rules=rules)


BANDS = st.sampled_from(
    [
        ("3", None, None, None),
        ("5", None, None, "4"),
        (None, "2", "6", None),
        ("4", "2", None, None),
        (None, None, None, "3"),
    ]
)
CASES = st.builds(
    Case,
    st.integers(0, 2**32),
    st.sampled_from([0.0, 0.03, 0.2]),
    st.sampled_from([0.02, 0.1]),
    BANDS,
    st.sampled_from(["warning", "error"]),
    st.sampled_from([None, "8", "15"]),
)
RICH = Case(7, 0.03, 0.1, ("3", None, None, "2"), "error", "8")


def expected(case: Case) -> tuple[dict[date, set[str]], dict[date, str], set[date]]:
    """Rules raised per day, each day's status, and the days made official: the rules as
    documented, computed session by session. "Previous" of jump: the close before (every gap
    here is far shorter than the three buckets the look-back reaches)."""
    ordinal = {d: i for i, d in enumerate(sessions())}
    days = {close_us(d): d for d in DAYS}
    check = case.check
    rules: dict[date, set[str]] = {}
    statuses: dict[date, str] = {}
    official: dict[date, Fraction] = {}
    previous: Fraction | None = None
    for snap, text in case.points:
        day, x = days[snap], Fraction(text)
        failed: dict[str, bool] = {}  # rule -> holds
        jump = None if case.jump is None else Fraction(case.jump)
        if jump is not None and previous is not None and abs(x - previous) * 100 > jump * previous:
            failed["jump"] = True
        prior_day = sessions()[ordinal[day] - 1]
        if (prior := official.get(prior_day)) is not None and x != prior:
            rise, fall = check.limits()
            limit = rise if x > prior else fall
            bands = []
            if limit is not None:
                bands.append(abs(x - prior) * 100 > Fraction(limit) * prior)
            if check.max_abs is not None:
                bands.append(abs(x - prior) > Fraction(check.max_abs))
            if bands and all(bands):
                failed["day_over_day"] = case.severity == "error"
        if failed:
            rules[day] = set(failed)
        held = any(failed.values())
        statuses[day] = "held" if held else "published"
        if not held:
            official[day] = x
        previous = x
    return rules, statuses, set(official)


async def run(case: Case, chunks: list[list[Point]]) -> Effect:
    service = Service.start(NOW_US)
    h = service.handlers
    ctx = CommandContext("register", USER, NOW_US)
    await h.register_source(RegisterSource(PRIMARY, DataSourceConfig(provider="test")), ctx)
    await h.define_series(
        DefineSeries(SERIES, case.definition), CommandContext("define", USER, NOW_US)
    )
    for j, chunk in enumerate(chunks):
        ingest = IngestPoints(SERIES, PRIMARY, prices(chunk))
        await h.ingest(ingest, CommandContext(f"ingest-{j}", USER, NOW_US))
    return effect_of(await service.log())


def observed(effect: Effect) -> tuple[dict[date, set[str]], dict[date, str], set[date]]:
    statuses = {local_day(s): status for s, status in effect.statuses.items()}
    officials = {local_day(s) for s in effect.officials}
    return effect.rules_by_day(), statuses, officials


@settings(PROPERTY)
@given(CASES, st.lists(st.floats(0.0, 1.0), max_size=30))
@example(RICH, [0.1, 0.1001, 0.5, 0.77])
def test_twenty_years_of_day_over_day_match_the_reference_however_chunked(
    case: Case, fractions: list[float]
) -> None:
    whole = asyncio.run(run(case, [case.points]))
    want = expected(case)
    assert observed(whole) == want
    assert any("day_over_day" in r for r in want[0].values())  # the rule did fire
    chunked = Cuts(tuple(fractions), ()).split(case.points)
    assert asyncio.run(run(case, [list(c) for c in chunked])) == whole


def test_a_command_per_session_gives_what_one_command_gives() -> None:
    """Ten years of one example, one command per close: each command sees the prior session's
    official as the previous command left it, exactly what the one command decided in
    between."""
    case = Case(11, 0.03, 0.1, (None, "2", "4", None), "error", "10", last_year=2013)
    whole = asyncio.run(run(case, [case.points]))
    assert asyncio.run(run(case, [[p] for p in case.points])) == whole
    assert observed(whole) == expected(case)
