"""Business rules, reconciliation across sources and the quality score."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from qis_domain.definitions import (
    ReconciliationMethod,
    ReconciliationPolicy,
    SeriesDefinition,
    SeriesSource,
    ValidationRules,
)
from qis_domain.quality import quality_score
from qis_domain.reconciliation import reconcile, within_tolerance
from qis_domain.rules import RuleFailure, Severity, check_value
from qis_domain.snaps import Frequency
from qis_domain.values import (
    CorporateAction,
    CorporateActionType,
    DataType,
    DataValue,
    OhlcBar,
    OptionQuote,
    OptionRight,
    OptionsChain,
    Price,
    Volume,
)

POSITIVE = ValidationRules(require_positive=True)
LENIENT = ValidationRules()
EXPIRY = date(2024, 6, 21)


def usd(text: str) -> Price:
    return Price(Decimal(text), "USD")


def bar(o: str, h: str, low: str, c: str) -> OhlcBar:
    return OhlcBar(Decimal(o), Decimal(h), Decimal(low), Decimal(c))


def rules_failed(value: DataValue, rules: ValidationRules = LENIENT) -> list[str]:
    return [f.rule for f in check_value(value, rules)]


# --- positivity ---


@pytest.mark.parametrize(
    ("value", "lowest"),
    [
        (usd("-37.63"), "-37.63"),
        (usd("0"), "0"),
        (Volume(Decimal(-1), "shares"), "-1"),
        (bar("-1", "1", "-2", "-0.5"), "-2"),
    ],
    ids=["negative price", "zero price", "negative volume", "negative bar"],
)
def test_positivity_flags_non_positive_values_when_configured(
    value: DataValue, lowest: str
) -> None:
    [failure] = check_value(value, POSITIVE)
    assert failure.rule == "positive"
    assert failure.severity is Severity.ERROR
    assert failure.blocking
    assert failure.evidence == {"value": lowest}


@pytest.mark.parametrize(
    "value", [usd("-37.63"), usd("0"), Volume(Decimal(-1), "shares"), bar("-1", "1", "-2", "-0.5")]
)
def test_negative_values_are_legitimate_without_the_rule(value: DataValue) -> None:
    assert check_value(value, LENIENT) == []


def test_positive_values_pass_the_rule() -> None:
    assert check_value(usd("0.0001"), POSITIVE) == []
    assert check_value(bar("1", "2", "0.5", "1.5"), POSITIVE) == []


def test_positivity_checks_every_price_of_a_bar() -> None:
    assert "positive" in rules_failed(bar("1", "2", "-0.5", "1.5"), POSITIVE)


# --- OHLC ---


@pytest.mark.parametrize(
    ("o", "h", "low", "c"),
    [
        ("10", "12", "9", "11"),
        ("10", "10", "10", "10"),
        ("9", "11", "9", "11"),
        ("-3", "-1", "-4", "-2"),
    ],
)
def test_consistent_bars_pass(o: str, h: str, low: str, c: str) -> None:
    assert check_value(bar(o, h, low, c), LENIENT) == []


@pytest.mark.parametrize(
    ("o", "h", "low", "c"),
    [
        ("10", "12", "9", "13"),  # close above high
        ("13", "12", "9", "11"),  # open above high
        ("10", "12", "10.5", "11"),  # open below low
        ("10", "12", "9", "8"),  # close below low
        ("10", "8", "12", "10"),  # high below low
    ],
)
def test_inconsistent_bars_fail(o: str, h: str, low: str, c: str) -> None:
    [failure] = check_value(bar(o, h, low, c), LENIENT)
    assert failure.rule == "ohlc_consistency"
    assert failure.severity is Severity.ERROR
    assert failure.evidence == {"open": o, "high": h, "low": low, "close": c}


# --- options chains ---


def quote(
    strike: str,
    right: OptionRight = OptionRight.CALL,
    bid: str | None = None,
    ask: str | None = None,
    iv: str | None = None,
    expiry: date = EXPIRY,
) -> OptionQuote:
    return OptionQuote(
        expiry,
        Decimal(strike),
        right,
        None if bid is None else Decimal(bid),
        None if ask is None else Decimal(ask),
        None if iv is None else Decimal(iv),
    )


def test_a_clean_chain_passes() -> None:
    chain = OptionsChain(
        (
            quote("100", bid="5", ask="5.2", iv="0.2"),
            quote("100", OptionRight.PUT, bid="4", ask="4", iv="0"),  # bid == ask, iv 0: fine
            quote("100", expiry=date(2024, 9, 20)),  # same strike, other expiry
            quote("105"),
        ),
        Decimal(101),
    )
    assert check_value(chain, POSITIVE) == []


def test_chain_bid_above_ask() -> None:
    chain = OptionsChain((quote("100"), quote("105", bid="2.5", ask="2.4")))
    [failure] = check_value(chain, LENIENT)
    assert failure.rule == "option_bid_ask"
    assert failure.severity is Severity.ERROR
    assert failure.evidence == {"quote": 1, "bid": "2.5", "ask": "2.4"}


def test_chain_negative_implied_volatility() -> None:
    chain = OptionsChain((quote("100", iv="-0.01"),))
    [failure] = check_value(chain, LENIENT)
    assert failure.rule == "option_implied_volatility"
    assert failure.evidence == {"quote": 0, "implied_volatility": "-0.01"}


def test_chain_duplicate_strike_per_expiry_and_right() -> None:
    chain = OptionsChain(
        (quote("100"), quote("100", OptionRight.PUT), quote("105"), quote("100.0", bid="1"))
    )
    [failure] = check_value(chain, LENIENT)
    assert failure.rule == "option_strike_unique"
    assert failure.evidence == {"quote": 3, "expiry": "2024-06-21", "strike": "100.0"}


def test_chain_reports_every_failure() -> None:
    chain = OptionsChain((quote("100", bid="3", ask="2", iv="-1"), quote("100", bid="3", ask="2")))
    assert sorted(rules_failed(chain)) == [
        "option_bid_ask",
        "option_bid_ask",
        "option_implied_volatility",
        "option_strike_unique",
    ]


# --- corporate actions ---


def action(
    record: date | None = None, ratio: str | None = None, amount: str | None = None
) -> CorporateAction:
    return CorporateAction(
        CorporateActionType.CASH_DIVIDEND,
        date(2024, 3, 1),
        record,
        None,
        None if ratio is None else Decimal(ratio),
        None if amount is None else Decimal(amount),
        "USD",
    )


def test_corporate_action_record_date_before_ex_date_is_a_warning() -> None:
    [failure] = check_value(action(record=date(2024, 2, 29), amount="0.5"), LENIENT)
    assert failure.rule == "corporate_action_dates"
    assert failure.severity is Severity.WARNING
    assert not failure.blocking
    assert failure.evidence == {"ex_date": "2024-03-01", "record_date": "2024-02-29"}


def test_corporate_action_record_date_on_or_after_ex_date_passes() -> None:
    assert check_value(action(record=date(2024, 3, 1), amount="0.5"), LENIENT) == []
    assert check_value(action(record=date(2024, 3, 4), ratio="2"), LENIENT) == []
    assert check_value(action(), LENIENT) == []


@pytest.mark.parametrize(
    ("ratio", "amount", "evidence"),
    [("0", None, {"ratio": "0"}), (None, "-0.5", {"amount": "-0.5"})],
)
def test_corporate_action_ratio_and_amount_are_positive(
    ratio: str | None, amount: str | None, evidence: dict[str, str]
) -> None:
    [failure] = check_value(action(ratio=ratio, amount=amount), LENIENT)
    assert failure.rule == "corporate_action_positive"
    assert failure.severity is Severity.ERROR
    assert failure.evidence == evidence


def test_corporate_action_both_figures_bad() -> None:
    failures = check_value(action(record=date(2024, 2, 1), ratio="-1", amount="0"), LENIENT)
    assert [(f.rule, f.severity) for f in failures] == [
        ("corporate_action_dates", Severity.WARNING),
        ("corporate_action_positive", Severity.ERROR),
        ("corporate_action_positive", Severity.ERROR),
    ]


@pytest.mark.parametrize(
    ("severity", "blocking"),
    [(Severity.INFO, False), (Severity.WARNING, False), (Severity.ERROR, True)],
)
def test_only_errors_block(severity: Severity, blocking: bool) -> None:
    assert RuleFailure("positive", severity).blocking is blocking


def test_a_rule_the_contract_does_not_name_is_refused() -> None:
    # Clients read rules as the QualityRule enum: an unnamed one would reach them as a number.
    with pytest.raises(ValueError, match="unknown rule 'made_up'"):
        RuleFailure("made_up", Severity.ERROR)


# --- reconciliation ---


def definition(
    method: ReconciliationMethod = ReconciliationMethod.PRIORITY,
    tolerance_bps: str = "0",
    tolerance_abs: str = "0",
    sources: tuple[str, ...] = ("a", "b", "c"),
    data_type: DataType = DataType.PRICE,
) -> SeriesDefinition:
    return SeriesDefinition(
        data_type=data_type,
        frequency=Frequency.DAILY,
        unit="USD",
        sources=tuple(SeriesSource(source_id=s, priority=i + 1) for i, s in enumerate(sources)),
        reconciliation=ReconciliationPolicy(
            method=method,
            tolerance_bps=Decimal(tolerance_bps),
            tolerance_abs=Decimal(tolerance_abs),
        ),
    )


def test_within_tolerance_bps_is_relative_to_the_second_value() -> None:
    policy = ReconciliationPolicy(tolerance_bps=Decimal(10))  # 0.1 %
    assert within_tolerance(usd("100.1"), usd("100"), policy)
    assert not within_tolerance(usd("100.11"), usd("100"), policy)
    assert within_tolerance(usd("-100.1"), usd("-100"), policy)  # abs() of a negative price


def test_within_tolerance_abs_and_the_larger_allowance_wins() -> None:
    policy = ReconciliationPolicy(tolerance_abs=Decimal("0.5"), tolerance_bps=Decimal(10))
    assert within_tolerance(usd("100.5"), usd("100"), policy)  # abs allows 0.5 > 0.1
    assert not within_tolerance(usd("100.51"), usd("100"), policy)
    exact = ReconciliationPolicy()
    assert within_tolerance(usd("1.0"), usd("1.00"), exact)
    assert not within_tolerance(usd("1.0001"), usd("1"), exact)


def test_within_tolerance_without_figures_means_identical() -> None:
    policy = ReconciliationPolicy(tolerance_abs=Decimal(1000))
    one = OptionsChain((quote("100", bid="1"),))
    same = OptionsChain((quote("100", bid="1"),))
    other = OptionsChain((quote("100", bid="2"),))
    assert within_tolerance(one, same, policy)
    assert not within_tolerance(one, other, policy)


def test_priority_picks_the_best_priority_source_present() -> None:
    d = definition()
    result = reconcile({"c": usd("3"), "b": usd("2")}, d)
    assert result.value == usd("2")
    assert result.method is ReconciliationMethod.PRIORITY
    assert result.contributors == ("b",)
    assert result.excluded == ()
    result = reconcile({"c": usd("3"), "a": usd("1"), "b": usd("2")}, d)
    assert result.value == usd("1")
    assert result.contributors == ("a",)


def test_priority_reports_breaks_beyond_tolerance_in_bps() -> None:
    d = definition(tolerance_bps="50")  # 0.5 % of 100 = 0.5
    result = reconcile({"a": usd("100"), "b": usd("100.5"), "c": usd("100.51")}, d)
    assert result.value == usd("100")
    assert result.breaks == ("c",)


def test_priority_reports_breaks_beyond_absolute_tolerance() -> None:
    d = definition(tolerance_abs="0.02")
    result = reconcile({"a": usd("1.00"), "b": usd("0.98"), "c": usd("1.03")}, d)
    assert result.breaks == ("c",)


def test_median_odd_count_picks_the_middle_source() -> None:
    d = definition(ReconciliationMethod.MEDIAN, tolerance_bps="100")
    result = reconcile({"a": usd("101"), "b": usd("100"), "c": usd("150")}, d)
    assert result.value == usd("101")
    assert result.method is ReconciliationMethod.MEDIAN
    assert result.contributors == ("a", "b", "c")
    assert result.breaks == ("c",)


def test_median_even_count_picks_a_real_source_value() -> None:
    d = definition(ReconciliationMethod.MEDIAN, tolerance_bps="1000", sources=("a", "b", "c", "d"))
    values: dict[str, DataValue] = {
        "a": usd("100"),
        "b": usd("104"),
        "c": usd("101"),
        "d": usd("110"),
    }
    result = reconcile(values, d)
    # The arithmetic median is 102.5, which no source sent. Both middle values are 1.5 away;
    # the one of the better-priority source (b) is published.
    assert result.value == usd("104")
    assert result.contributors == ("a", "b", "c", "d")
    assert result.breaks == ()


def test_median_even_count_tie_goes_to_the_better_priority() -> None:
    d = definition(ReconciliationMethod.MEDIAN, tolerance_bps="1000")
    assert reconcile({"b": usd("102"), "c": usd("100")}, d).value == usd("102")
    assert reconcile({"b": usd("100"), "c": usd("102")}, d).value == usd("100")


def test_consensus_excludes_an_outlier_and_reports_it() -> None:
    d = definition(ReconciliationMethod.CONSENSUS, tolerance_bps="10", sources=("a", "b", "c", "d"))
    values: dict[str, DataValue] = {
        "a": usd("100.00"),
        "b": usd("100.04"),
        "c": usd("100.02"),
        "d": usd("150"),
    }
    result = reconcile(values, d)
    assert result.method is ReconciliationMethod.CONSENSUS
    assert result.excluded == ("d",)
    assert result.breaks == ("d",)
    assert result.contributors == ("a", "b", "c")
    assert result.value == usd("100.02")  # median of the agreeing sources


def test_consensus_when_everyone_agrees_excludes_nobody() -> None:
    d = definition(ReconciliationMethod.CONSENSUS, tolerance_abs="1")
    result = reconcile({"a": usd("10"), "b": usd("10.5"), "c": usd("9.5")}, d)
    assert result.excluded == ()
    assert result.breaks == ()
    assert result.value == usd("10")


@pytest.mark.parametrize("method", list(ReconciliationMethod))
def test_a_single_source_is_taken_as_is(method: ReconciliationMethod) -> None:
    result = reconcile({"b": usd("7")}, definition(method))
    assert result.value == usd("7")
    assert result.contributors == ("b",)
    assert result.breaks == ()


@pytest.mark.parametrize("method", [ReconciliationMethod.MEDIAN, ReconciliationMethod.CONSENSUS])
def test_values_without_a_figure_fall_back_to_priority(method: ReconciliationMethod) -> None:
    d = definition(method, tolerance_abs="100", data_type=DataType.OPTIONS_CHAIN)
    first = OptionsChain((quote("100", bid="1"),))
    second = OptionsChain((quote("100", bid="2"),))
    result = reconcile({"b": second, "a": first, "c": second}, d)
    assert result.method is ReconciliationMethod.PRIORITY
    assert result.value == first
    assert result.contributors == ("a",)
    assert result.breaks == ("b", "c")


def test_sources_not_in_the_definition_rank_last() -> None:
    result = reconcile({"zz": usd("9"), "c": usd("3")}, definition())
    assert result.value == usd("3")


# --- quality score ---


def failure(rule: str, severity: Severity) -> RuleFailure:
    return RuleFailure(rule, severity)


@pytest.mark.parametrize(
    ("failures", "breaks", "score"),
    [
        ([], 0, "1"),
        ([failure("jump", Severity.INFO)], 0, "0.95"),
        ([failure("jump", Severity.WARNING)], 0, "0.8"),
        ([failure("jump", Severity.ERROR)], 0, "0.5"),
        ([], 1, "0.8"),
        ([], 2, "0.6"),
        ([failure("jump", Severity.ERROR), failure("stale", Severity.WARNING)], 0, "0.3"),
        ([failure("jump", Severity.WARNING), failure("stale", Severity.INFO)], 1, "0.55"),
        # one penalty per distinct rule, at its worst severity
        ([failure("jump", Severity.ERROR), failure("jump", Severity.ERROR)], 0, "0.5"),
        ([failure("jump", Severity.WARNING), failure("jump", Severity.ERROR)], 0, "0.5"),
        ([failure("jump", Severity.ERROR), failure("jump", Severity.INFO)], 0, "0.5"),
        # never below zero
        ([failure("jump", Severity.ERROR), failure("stale", Severity.ERROR)], 3, "0"),
    ],
)
def test_quality_score_penalties(failures: list[RuleFailure], breaks: int, score: str) -> None:
    assert quality_score(failures, breaks) == Decimal(score)
