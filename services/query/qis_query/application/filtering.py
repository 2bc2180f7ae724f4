"""The AIP-160 subset the list RPCs filter by: comparisons joined by AND.

    filter := [ term { "AND" term } ]
    term   := field operator value
    operator := "=" | "!=" | "<" | "<=" | ">" | ">="
    value  := a double-quoted string (escapes \\" and \\\\) | a bare enum value name ("OPEN")

Whitespace between tokens is free; "AND" and enum names are upper case. Pure: text in, typed
comparisons out. Which fields a listing takes, with which operators and values, is the
listing's table of FieldSpecs; anything else (an unknown field, an operator the field does not
take, a value of the wrong form, OR, NOT, parentheses, trailing text) is a FilterError:
INVALID_ARGUMENT on `filter`, saying what is wrong and at which character (0-based), so that a
client can point at it.
"""

from __future__ import annotations

import dataclasses
import enum
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from qis_domain.bounds import MAX_TEXT_LENGTH, quoted
from qis_domain.errors import FieldViolation, InvalidArgument
from qis_domain.snaps import parse_snap

FILTER = "filter"
MAX_FILTER_LENGTH = MAX_TEXT_LENGTH
"""Characters of a filter at most: every comparison is evaluated on every record a call scans,
so the length of a filter bounds the work of a call (a real one is a few dozen characters)."""

R = TypeVar("R")
Value = str | int
"""What a comparison compares with: a string, or an instant in microseconds since the epoch."""


class Op(enum.Enum):
    EQ = "="
    NE = "!="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="


EQUALITY = frozenset({Op.EQ, Op.NE})
ORDERING = frozenset(Op)
_HOLDS: dict[Op, Callable[[Any, Any], bool]] = {
    Op.EQ: operator.eq,
    Op.NE: operator.ne,
    Op.LT: operator.lt,
    Op.LE: operator.le,
    Op.GT: operator.gt,
    Op.GE: operator.ge,
}


@dataclass(frozen=True, slots=True)
class EnumField:
    """A field whose values are bare enum value names; `words` maps each to the value compared."""

    words: Mapping[str, str]
    ops: frozenset[Op] = EQUALITY


@dataclass(frozen=True, slots=True)
class QuotedField:
    """A field whose values are quoted strings, each turned into the value compared by `parse`,
    which raises ValueError saying why a string is not one. `form` describes the value in
    errors."""

    parse: Callable[[str], Value]
    form: str
    ops: frozenset[Op] = EQUALITY


FieldSpec = EnumField | QuotedField


def enum_field(values: Iterable[str]) -> EnumField:
    """The values of a domain enumeration, each named by itself in upper case: the contract's
    enum value name without its prefix ("jump" is QUALITY_RULE_JUMP, written `JUMP`)."""
    return EnumField({value.upper(): value for value in values})


def string_field() -> QuotedField:
    return QuotedField(str, 'a string in quotes, e.g. "alice"')


def _instant(text: str) -> int:
    return parse_snap(text).utc_us


def timestamp_field(ops: frozenset[Op]) -> QuotedField:
    """Instants, as RFC 3339 timestamps with an offset and at most microseconds, in quotes."""
    return QuotedField(
        _instant, 'an RFC 3339 timestamp in quotes, e.g. "2024-03-01T00:00:00Z"', ops
    )


@dataclass(frozen=True, slots=True)
class Comparison:
    field: str
    op: Op
    value: Value
    offset: int = dataclasses.field(default=0, compare=False, repr=False)
    """Where the comparison starts in the filter, for what a listing refuses after parsing.
    Left out of the repr, which digests a filter into its page tokens: spacing is no change."""

    def holds(self, stored: object) -> bool:
        return _HOLDS[self.op](stored, self.value)


class FilterError(InvalidArgument):
    """A malformed filter: INVALID_ARGUMENT on `filter`, whose description says what is wrong
    and at which character (0-based) of the filter."""

    def __init__(self, offset: int, problem: str) -> None:
        super().__init__([FieldViolation(FILTER, f"{problem} (at character {offset})")])
        self.offset = offset
        self.problem = problem


def parse_filter(text: str, fields: Mapping[str, FieldSpec]) -> tuple[Comparison, ...]:
    """The comparisons of `text`, in order; none for an empty filter. Raises FilterError."""
    if len(text) > MAX_FILTER_LENGTH:
        raise InvalidArgument.single(
            FILTER, f"at most {MAX_FILTER_LENGTH:,} characters, got {len(text):,}"
        )
    tokens = _tokenize(text)
    comparisons: list[Comparison] = []
    at = 0
    if tokens[0].kind is _Kind.END:
        return ()
    while True:
        comparisons.append(_comparison(tokens[at : at + 3], fields))
        following = tokens[at + 3]
        if following.kind is _Kind.END:
            return tuple(comparisons)
        if following.kind is not _Kind.WORD or following.text != "AND":
            raise FilterError(following.offset, _not_and(following))
        at += 4


def predicate(
    comparisons: Sequence[Comparison], stored: Mapping[str, Callable[[R], object]]
) -> Callable[[R], bool] | None:
    """Whether a record meets every comparison, reading each field with `stored`; None when
    there is no comparison (every record does)."""
    if not comparisons:
        return None
    checks = [(stored[c.field], c) for c in comparisons]
    return lambda record: all(c.holds(read(record)) for read, c in checks)


# --- tokens ------------------------------------------------------------------------------------


class _Kind(enum.Enum):
    WORD = enum.auto()  # a field name, an enum value name, AND
    STRING = enum.auto()
    OPERATOR = enum.auto()
    END = enum.auto()


@dataclass(frozen=True, slots=True)
class _Token:
    kind: _Kind
    text: str  # a word, an operator, or a string's content with its escapes resolved
    offset: int


_OPERATOR_START = "=!<>"
_NOT_IN_WORDS = frozenset('"=!<>()')
_ESCAPED = frozenset('"\\')


def _tokenize(text: str) -> list[_Token]:
    """The tokens of `text`, then an END token at its length."""
    tokens: list[_Token] = []
    at, length = 0, len(text)
    while at < length:
        char = text[at]
        if char.isspace():
            at += 1
        elif char == '"':
            value, end = _string(text, at)
            tokens.append(_Token(_Kind.STRING, value, at))
            at = end
        elif char in _OPERATOR_START:
            symbol = text[at : at + 2] if text[at : at + 2] in ("!=", "<=", ">=") else char
            if symbol == "!":
                raise FilterError(at, "'!' is not an operator: NOT is not supported, use !=")
            tokens.append(_Token(_Kind.OPERATOR, symbol, at))
            at += len(symbol)
        elif char in "()":
            raise FilterError(at, "parentheses are not supported: join comparisons with AND")
        else:
            end = at
            while end < length and not text[end].isspace() and text[end] not in _NOT_IN_WORDS:
                end += 1
            tokens.append(_Token(_Kind.WORD, text[at:end], at))
            at = end
    tokens.append(_Token(_Kind.END, "", length))
    return tokens


def _string(text: str, start: int) -> tuple[str, int]:
    """The content of the string opening at `start`, and where it ends (after its quote)."""
    chars: list[str] = []
    at = start + 1
    while at < len(text):
        char = text[at]
        if char == '"':
            return "".join(chars), at + 1
        if char == "\\":
            escaped = text[at + 1 : at + 2]
            if not escaped:
                break
            if escaped not in _ESCAPED:
                raise FilterError(at, f'unknown escape \\{escaped}: the escapes are \\" and \\\\')
            chars.append(escaped)
            at += 2
        else:
            chars.append(char)
            at += 1
    raise FilterError(start, 'unterminated string: no closing "')


# --- terms -------------------------------------------------------------------------------------


def _comparison(term: list[_Token], fields: Mapping[str, FieldSpec]) -> Comparison:
    """`field operator value` from the next three tokens (the last may be past the term when it
    is malformed: each is looked at only once the one before is right)."""
    name = term[0]
    if name.kind is not _Kind.WORD:
        raise FilterError(name.offset, f"expected a field name, found {_describe(name)}")
    if name.text in ("OR", "NOT") or name.text.startswith("-"):
        raise FilterError(name.offset, f"{quoted(name.text)}: {_UNSUPPORTED}")
    spec = fields.get(name.text)
    if spec is None:
        known = ", ".join(fields)
        raise FilterError(name.offset, f"unknown field {quoted(name.text)}: one of {known}")
    symbol = term[1]
    if symbol.kind is not _Kind.OPERATOR:
        raise FilterError(
            symbol.offset,
            f"expected an operator (=, !=, <, <=, >, >=) after {name.text},"
            f" found {_describe(symbol)}",
        )
    op = Op(symbol.text)
    if op not in spec.ops:
        allowed = " or ".join(o.value for o in Op if o in spec.ops)
        raise FilterError(symbol.offset, f"{name.text} takes {allowed}, not {op.value}")
    return Comparison(name.text, op, _value(name.text, spec, term[2]), name.offset)


_UNSUPPORTED = "only comparisons joined by AND are supported (no OR, NOT or '-': negate with !=)"


def _value(name: str, spec: FieldSpec, token: _Token) -> Value:
    if token.kind not in (_Kind.WORD, _Kind.STRING):
        raise FilterError(token.offset, f"expected a value for {name}, found {_describe(token)}")
    if isinstance(spec, EnumField):
        if token.kind is _Kind.STRING or token.text not in spec.words:
            names = ", ".join(spec.words)
            problem = f"{_describe(token)} is not a {name}: {name} takes one of {names}"
            raise FilterError(token.offset, f"{problem}, without quotes")
        return spec.words[token.text]
    if token.kind is _Kind.WORD:
        raise FilterError(token.offset, f"{name} takes {spec.form}, not {_describe(token)}")
    try:
        return spec.parse(token.text)
    except ValueError as error:
        raise FilterError(token.offset, f"{name} takes {spec.form}: {error}") from None


def _not_and(token: _Token) -> str:
    if token.kind is _Kind.WORD and token.text in ("OR", "NOT"):
        return f"{quoted(token.text)}: {_UNSUPPORTED}"
    found = _describe(token)
    if token.kind is _Kind.WORD and token.text.upper() == "AND":
        return f"expected AND (upper case) or the end of the filter, found {found}"
    return f"expected AND or the end of the filter, found {found}"


def _describe(token: _Token) -> str:
    match token.kind:
        case _Kind.END:
            return "the end of the filter"
        case _Kind.STRING:
            return f"the string {quoted(token.text)}"
        case _Kind.OPERATOR:
            return f"'{token.text}'"
        case _Kind.WORD:
            return quoted(token.text)
