"""The SQL ``WHERE`` subset that Mongoose ``load`` accepts in ``filter=`` (reference 5.2, pinned contract).

Supported: ``=``, ``<>``, ``!=``, ``>``, ``>=``, ``<``, ``<=``, ``[NOT] LIKE`` (``%`` and ``_``), ``IS [NOT] NULL``,
``[NOT] IN (...)``, ``AND``, ``OR``, ``NOT``, parentheses; literals ``N'..'``, ``'..'`` (``''`` escapes a quote),
numbers. Keywords are case-insensitive; string comparison is case-insensitive like SQL Server's default
collation. Property types decide how values compare (numbers numerically, datetimes as datetimes).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

PropType = Literal["String", "Decimal", "Int", "DateTime"]
Row = Mapping[str, Any]
Predicate = Callable[[Row], bool]


class FilterError(ValueError):
    """The filter does not parse or names an unknown property; the message quotes where."""


_TOKEN = re.compile(
    r"\s*(?:(?P<str>[Nn]?'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<op><>|!=|>=|<=|=|>|<)"
    r"|(?P<lp>\()|(?P<rp>\))|(?P<comma>,)|(?P<word>[A-Za-z_][A-Za-z0-9_.]*))"
)


@dataclass(frozen=True)
class Comparison:
    prop: str
    op: str  # = <> > >= < <= LIKE NOTLIKE ISNULL NOTNULL IN NOTIN
    values: tuple[str, ...]
    quoted: bool


@dataclass(frozen=True)
class BoolOp:
    op: Literal["AND", "OR", "NOT"]
    parts: tuple[Node, ...]


Node = Comparison | BoolOp

_DATETIME_FORMATS = ("%Y%m%d %H:%M:%S.%f", "%Y%m%d %H:%M:%S", "%Y%m%d", "%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S",
                     "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d")  # fmt: skip


def parse_datetime(text: str) -> dt.datetime:
    """Mongoose datetime literal (``20250115 10:22:33.000``, ISO forms too) as a naive UTC datetime."""
    value = text.strip().rstrip("Z")
    for fmt in _DATETIME_FORMATS:
        try:
            return dt.datetime.strptime(value, fmt)
        except ValueError:
            continue
    raise FilterError(f"{text!r} is not a date/time (use 'YYYYMMDD HH:MM:SS.fff')")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, str, int]] = []
        pos = 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            m = _TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                raise FilterError(f"filter: unexpected character {text[pos:].lstrip()[:1]!r} at position {pos + 1}")
            kind = m.lastgroup or ""
            self.tokens.append((kind, m.group(kind), m.start(kind) + 1))
            pos = m.end()
        self.i = 0

    def peek(self) -> tuple[str, str, int]:
        return self.tokens[self.i] if self.i < len(self.tokens) else ("end", "", len(self.text) + 1)

    def take(self) -> tuple[str, str, int]:
        tok = self.peek()
        self.i += 1
        return tok

    def keyword(self, word: str) -> bool:
        kind, value, _ = self.peek()
        if kind == "word" and value.upper() == word:
            self.i += 1
            return True
        return False

    def parse(self) -> Node:
        node = self.or_expr()
        kind, value, pos = self.peek()
        if kind != "end":
            raise FilterError(f"filter: unexpected {value!r} at position {pos}")
        return node

    def or_expr(self) -> Node:
        parts = [self.and_expr()]
        while self.keyword("OR"):
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else BoolOp("OR", tuple(parts))

    def and_expr(self) -> Node:
        parts = [self.unary()]
        while self.keyword("AND"):
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else BoolOp("AND", tuple(parts))

    def unary(self) -> Node:
        if self.keyword("NOT"):
            return BoolOp("NOT", (self.unary(),))
        kind, value, pos = self.peek()
        if kind == "lp":
            self.take()
            node = self.or_expr()
            kind, value, pos = self.take()
            if kind != "rp":
                raise FilterError(f"filter: expected ')' at position {pos}, got {value or 'end of filter'!r}")
            return node
        return self.comparison()

    def literal(self) -> tuple[str, bool]:
        kind, value, pos = self.take()
        if kind == "str":
            body = value[1:] if value[0] in "Nn" else value
            return body[1:-1].replace("''", "'"), True
        if kind == "num":
            return value, False
        raise FilterError(f"filter: expected a literal at position {pos}, got {value or 'end of filter'!r}")

    def comparison(self) -> Node:
        kind, prop, pos = self.take()
        if kind != "word":
            raise FilterError(f"filter: expected a property name at position {pos}, got {prop or 'end of filter'!r}")
        if self.keyword("IS"):
            negate = self.keyword("NOT")
            if not self.keyword("NULL"):
                raise FilterError(f"filter: expected NULL after {prop} IS")
            return Comparison(prop, "NOTNULL" if negate else "ISNULL", (), False)
        negate = self.keyword("NOT")
        if self.keyword("LIKE"):
            value, _ = self.literal()
            return Comparison(prop, "NOTLIKE" if negate else "LIKE", (value,), True)
        if self.keyword("IN"):
            kind, value, pos = self.take()
            if kind != "lp":
                raise FilterError(f"filter: expected '(' after IN at position {pos}")
            values: list[str] = []
            quoted = False
            while True:
                v, q = self.literal()
                values.append(v)
                quoted = quoted or q
                kind, value, pos = self.take()
                if kind == "rp":
                    break
                if kind != "comma":
                    raise FilterError(f"filter: expected ',' or ')' in IN list at position {pos}")
            return Comparison(prop, "NOTIN" if negate else "IN", tuple(values), quoted)
        if negate:
            raise FilterError(f"filter: expected LIKE or IN after {prop} NOT")
        kind, op, pos = self.take()
        if kind != "op":
            raise FilterError(f"filter: expected an operator after {prop} at position {pos}, got {op or 'end'!r}")
        value, quoted = self.literal()
        return Comparison(prop, "<>" if op == "!=" else op, (value,), quoted)


def parse_filter(text: str) -> Node | None:
    """The AST of a filter, or None for a blank one."""
    if not text or not text.strip():
        return None
    return _Parser(text).parse()


def _convert(prop: str, kind: PropType, value: str) -> Any:
    if kind == "String":
        return value.casefold()
    if kind == "DateTime":
        return parse_datetime(value)
    try:
        return Decimal(value)
    except InvalidOperation:
        raise FilterError(f"filter: {prop} is numeric, {value!r} is not a number") from None


def _like(pattern: str) -> re.Pattern[str]:
    out = []
    for ch in pattern:
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)


def compile_filter(node: Node | None, types: Mapping[str, PropType]) -> Predicate | None:
    """A predicate over typed rows (``str``/``Decimal``/``int``/``datetime``, None for NULL)."""
    if node is None:
        return None
    lower = {name.lower(): name for name in types}

    def build(n: Node) -> Predicate:
        if isinstance(n, BoolOp):
            parts = [build(p) for p in n.parts]
            if n.op == "AND":
                return lambda row: all(p(row) for p in parts)
            if n.op == "OR":
                return lambda row: any(p(row) for p in parts)
            inner = parts[0]
            return lambda row: not inner(row)
        name = lower.get(n.prop.lower())
        if name is None:
            raise FilterError(f"filter: {n.prop} is not a property of this IDO")
        kind = types[name]
        op = n.op
        if op in ("ISNULL", "NOTNULL"):
            want_null = op == "ISNULL"
            return lambda row: (row.get(name) in (None, "")) == want_null
        if op in ("LIKE", "NOTLIKE"):
            rx = _like(n.values[0])
            positive = op == "LIKE"
            return lambda row: (row.get(name) is not None and rx.fullmatch(_text(row[name])) is not None) == positive
        if op in ("IN", "NOTIN"):
            choices = {_convert(name, kind, v) for v in n.values}
            inside = op == "IN"
            return lambda row: (_norm(row.get(name), kind) in choices) == inside
        literal = _convert(name, kind, n.values[0])
        compare = _COMPARE[op]
        return lambda row: (v := _norm(row.get(name), kind)) is not None and compare(v, literal)

    return build(node)


def _text(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.strftime("%Y%m%d %H:%M:%S.%f")[:-3]
    return str(value)


def _norm(value: Any, kind: PropType) -> Any:
    if value is None:
        return None
    if kind == "String":
        return str(value).casefold()
    if kind == "DateTime":
        return value.replace(tzinfo=None) if isinstance(value, dt.datetime) else parse_datetime(str(value))
    if isinstance(value, Decimal):
        return value
    return Decimal(value)


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b, "<>": lambda a, b: a != b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
}  # fmt: skip


def lower_bounds(node: Node | None, prop: str) -> list[str]:
    """Raw literals ``v`` of every ``prop >= v`` / ``prop > v`` / ``prop = v`` in a top-level conjunction."""
    if node is None:
        return []
    parts: tuple[Node, ...] = node.parts if isinstance(node, BoolOp) and node.op == "AND" else (node,)
    return [
        part.values[0]
        for part in parts
        if isinstance(part, Comparison) and part.prop.lower() == prop.lower() and part.op in (">=", ">", "=")
    ]
