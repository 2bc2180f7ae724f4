"""The AIP-160 filter parser on its own: the forms it takes, and each kind of error with the
character it points at. A small table of fields of every kind stands for a listing's."""

from __future__ import annotations

import pytest
from qis_domain.bounds import MAX_INSTANT_US, MIN_INSTANT_US
from qis_domain.errors import InvalidArgument
from qis_query.application.filtering import (
    EQUALITY,
    MAX_FILTER_LENGTH,
    ORDERING,
    Comparison,
    FieldSpec,
    FilterError,
    Op,
    enum_field,
    parse_filter,
    predicate,
    string_field,
    timestamp_field,
)

FIELDS: dict[str, FieldSpec] = {
    "status": enum_field(["open", "approved"]),
    "user": string_field(),
    "time": timestamp_field(ORDERING),
    "snap": timestamp_field(frozenset({Op.EQ})),
}
T_2024 = 1_704_067_200_000_000  # 2024-01-01T00:00:00Z, µs


def parsed(text: str) -> list[tuple[str, str, object]]:
    return [(c.field, c.op.value, c.value) for c in parse_filter(text, FIELDS)]


@pytest.mark.parametrize("text", ["", " ", "\t\n  "])
def test_an_empty_filter_has_no_comparison(text: str) -> None:
    assert parsed(text) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("status = OPEN", [("status", "=", "open")], id="enum-to-domain-value"),
        pytest.param("status!=APPROVED", [("status", "!=", "approved")], id="no-spaces"),
        pytest.param('user = "alice"', [("user", "=", "alice")], id="string"),
        pytest.param('user = ""', [("user", "=", "")], id="empty-string"),
        pytest.param(
            r'user = "say \"hi\" \\ bye"', [("user", "=", 'say "hi" \\ bye')], id="escapes"
        ),
        pytest.param('user = "AND = OR ( )"', [("user", "=", "AND = OR ( )")], id="specials"),
        pytest.param('user="é ü"', [("user", "=", "é ü")], id="unicode"),
        pytest.param('time < "2024-01-01T00:00:00Z"', [("time", "<", T_2024)], id="utc"),
        pytest.param('time <= "2024-01-01T01:00:00+01:00"', [("time", "<=", T_2024)], id="offset"),
        pytest.param(
            'time > "2024-01-01t00:00:00.000001z"', [("time", ">", T_2024 + 1)], id="lower-t-z"
        ),
        pytest.param('time >= "0001-01-01T00:00:00Z"', [("time", ">=", MIN_INSTANT_US)], id="min"),
        pytest.param(
            'time != "9999-12-31T23:59:59.999999Z"', [("time", "!=", MAX_INSTANT_US)], id="max"
        ),
        pytest.param(
            '  status = OPEN\tAND user != "bob"  AND  time>"2024-01-01T00:00:00Z" ',
            [("status", "=", "open"), ("user", "!=", "bob"), ("time", ">", T_2024)],
            id="three-terms",
        ),
        pytest.param(
            "status = OPEN AND status = OPEN",
            [("status", "=", "open"), ("status", "=", "open")],
            id="a-field-twice",
        ),
    ],
)
def test_valid_forms(text: str, expected: list[tuple[str, str, object]]) -> None:
    assert parsed(text) == expected


def test_spacing_changes_neither_the_comparisons_nor_their_repr() -> None:
    """The repr is what page tokens digest: spacing must not make a token another query's."""
    tight = parse_filter('status=OPEN AND user="a"', FIELDS)
    loose = parse_filter('  status =  OPEN   AND user = "a"', FIELDS)
    assert tight == loose
    assert repr(tight) == repr(loose)
    assert [c.offset for c in tight] == [0, 16]
    assert [c.offset for c in loose] == [2, 23]


@pytest.mark.parametrize(
    ("text", "offset", "problem"),
    [
        pytest.param("colour = OPEN", 0, "unknown field 'colour'", id="unknown-field"),
        pytest.param("Status = OPEN", 0, "unknown field 'Status'", id="field-case"),
        pytest.param('"status" = OPEN', 0, "expected a field name", id="quoted-field"),
        pytest.param("= OPEN", 0, "expected a field name", id="no-field"),
        pytest.param("status", 6, "expected an operator", id="no-operator-at-end"),
        pytest.param("status OPEN", 7, "expected an operator", id="no-operator"),
        pytest.param("status : OPEN", 7, "expected an operator", id="has-operator"),
        pytest.param("status ! OPEN", 7, "'!' is not an operator", id="bang"),
        pytest.param("status < OPEN", 7, "status takes = or !=, not <", id="ordering-an-enum"),
        pytest.param('snap > "2024-01-01T00:00:00Z"', 5, "snap takes =, not >", id="op-of-field"),
        pytest.param("status =", 8, "expected a value for status", id="no-value"),
        pytest.param("status == OPEN", 8, "expected a value for status", id="double-equals"),
        pytest.param("status = open", 9, "'open' is not a status", id="enum-case"),
        pytest.param("status = CLOSED", 9, "'CLOSED' is not a status", id="unknown-enum"),
        pytest.param('status = "OPEN"', 9, "the string 'OPEN' is not a status", id="quoted-enum"),
        pytest.param("user = alice", 7, "user takes a string in quotes", id="bare-string"),
        pytest.param(
            "time < 2024-01-01T00:00:00Z", 7, "time takes an RFC 3339 timestamp", id="bare-time"
        ),
        pytest.param(
            'time < "2024-01-01T00:00:00"', 7, "has no UTC offset", id="time-without-offset"
        ),
        pytest.param('time < "2024-01-01"', 7, "has no time", id="date-only"),
        pytest.param(
            'time < "2024-01-01T00:00:00.0000001Z"', 7, "finer than microsecond", id="nanos"
        ),
        pytest.param('time < "2024-02-30T00:00:00Z"', 7, "day is out of range", id="no-such-day"),
        pytest.param(
            'time < "0001-01-01T00:00:00+01:00"', 7, "is outside 0001-01-01", id="before-instants"
        ),
        pytest.param('user = "alice', 7, "unterminated string", id="unterminated"),
        pytest.param('user = "alice\\', 7, "unterminated string", id="escape-at-end"),
        pytest.param('user = "a\\nb"', 9, "unknown escape \\n", id="unknown-escape"),
        pytest.param(
            'status = OPEN OR user = "a"', 14, "'OR': only comparisons joined by AND", id="or"
        ),
        pytest.param("NOT status = OPEN", 0, "'NOT': only comparisons joined by AND", id="not"),
        pytest.param("-status = OPEN", 0, "'-status': only comparisons joined", id="negation"),
        pytest.param("(status = OPEN)", 0, "parentheses are not supported", id="parentheses"),
        pytest.param("status = OPEN)", 13, "parentheses are not supported", id="closing"),
        pytest.param(
            'status = OPEN and user = "a"', 14, "expected AND (upper case)", id="lower-and"
        ),
        pytest.param(
            'status = OPEN user = "a"', 14, "expected AND or the end of the filter", id="no-and"
        ),
        pytest.param('status = OPEN "x"', 14, "expected AND or the end", id="trailing-string"),
        pytest.param("status = OPEN AND", 17, "expected a field name, found the end", id="and-end"),
        pytest.param("AND status = OPEN", 0, "unknown field 'AND'", id="leading-and"),
        pytest.param(
            "status = OPEN AND AND status = OPEN", 18, "unknown field 'AND'", id="and-and"
        ),
    ],
)
def test_every_kind_of_error_says_what_and_where(text: str, offset: int, problem: str) -> None:
    with pytest.raises(FilterError) as refused:
        parse_filter(text, FIELDS)
    assert refused.value.offset == offset
    assert problem in refused.value.problem
    (violation,) = refused.value.violations
    assert violation.field == "filter"
    assert violation.description == f"{refused.value.problem} (at character {offset})"


def test_an_error_names_the_fields_and_values_there_are() -> None:
    with pytest.raises(FilterError) as refused:
        parse_filter("colour = RED", FIELDS)
    assert "one of status, user, time, snap" in refused.value.problem
    with pytest.raises(FilterError) as refused:
        parse_filter("status = CLOSED", FIELDS)
    assert "one of OPEN, APPROVED" in refused.value.problem


def test_a_long_input_is_quoted_by_its_head_only() -> None:
    word = "x" * 10_000
    with pytest.raises(FilterError) as refused:
        parse_filter(f"user = {word[:900]}", FIELDS)
    assert len(refused.value.problem) < 200


def test_a_filter_longer_than_the_bound_is_refused_before_parsing() -> None:
    longest = 'user = "' + "a" * (MAX_FILTER_LENGTH - 9) + '"'
    assert len(longest) == MAX_FILTER_LENGTH
    assert parsed(longest)[0][0] == "user"
    with pytest.raises(InvalidArgument) as refused:
        parse_filter(longest + " ", FIELDS)
    assert not isinstance(refused.value, FilterError)
    (violation,) = refused.value.violations
    assert violation.field == "filter"
    assert "at most 1,024 characters" in violation.description


def test_predicate_holds_when_every_comparison_does() -> None:
    stored = {"user": lambda r: r[0], "time": lambda r: r[1]}
    assert predicate((), stored) is None
    keep = predicate(
        parse_filter('user != "bob" AND time >= "2024-01-01T00:00:00Z"', FIELDS), stored
    )
    assert keep is not None
    assert keep(("alice", T_2024))
    assert not keep(("alice", T_2024 - 1))
    assert not keep(("bob", T_2024))


@pytest.mark.parametrize(
    ("op", "results"),
    [
        (Op.EQ, [False, True, False]),
        (Op.NE, [True, False, True]),
        (Op.LT, [True, False, False]),
        (Op.LE, [True, True, False]),
        (Op.GT, [False, False, True]),
        (Op.GE, [False, True, True]),
    ],
)
def test_each_operator_compares_the_stored_value_with_the_filters(
    op: Op, results: list[bool]
) -> None:
    comparison = Comparison("time", op, 10)
    assert [comparison.holds(stored) for stored in (9, 10, 11)] == results
    assert op in ORDERING
    assert (op in EQUALITY) == (op in (Op.EQ, Op.NE))
