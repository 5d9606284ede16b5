"""Jenkins label expressions (`linux && !arm`) and node labels: parse, match, render, validate.

Pure code with no Django imports, so the scheduler, forms and tests can all use it directly.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import ClassVar, Literal

__all__ = [
    "BUILT_IN_LABEL",
    "OBSOLETE_MASTER_LABEL",
    "And",
    "Iff",
    "Implies",
    "LabelAtom",
    "LabelExpression",
    "LabelExpressionError",
    "Not",
    "Or",
    "count_matching_nodes",
    "label_counts",
    "node_labels",
    "parse_label_expression",
    "parse_label_string",
    "quote_label",
    "validate_label_expression",
]

BUILT_IN_LABEL = "built-in"
OBSOLETE_MASTER_LABEL = "master"

# Jenkins' messages (JENKINS.md d5 and a3); Steward has no clouds, so "agent/cloud" became "agent".
INVALID_EXPRESSION = "Invalid boolean expression: {0}"
NO_MATCH = "No agent matches this label expression."
NO_MATCH_DID_YOU_MEAN = NO_MATCH + " Did you mean ‘{1}’ instead of ‘{0}’?"
OBSOLETE_MASTER = "The label ‘master’ is obsolete; use ‘built-in’"

Level = Literal["error", "warning", "info"]

# Deeper input is rejected rather than risking RecursionError in the parser or the tree walkers.
MAX_PAREN_NESTING = 64
MAX_TREE_DEPTH = 256

# Characters that end a bare atom (the lexer's IDENTIFIER_PART exclusions, minus whitespace).
_SPECIAL = frozenset("&|!<>()\"'")
_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "'": "'", "\\": "\\"}
_QUOTE_ESCAPES = {
    "\\": "\\\\",
    '"': '\\"',
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
}

# Precedence, from lowest to highest binding (Jenkins' LabelOperatorPrecedence).
_IFF, _IMPLIES, _OR, _AND, _NOT, _ATOM = range(6)


class LabelExpressionError(ValueError):
    """A label expression that does not parse; the message is Jenkins' wording."""

    def __init__(self, detail: str, column: int | None = None) -> None:
        self.detail = detail
        self.column = column  # 1-based; None when the problem is at the end of the expression
        super().__init__(INVALID_EXPRESSION.format(detail))


# ---------------------------------------------------------------------------------------------
# The syntax tree


class LabelExpression:
    """A parsed label expression; immutable, hashable and comparable by structure."""

    __slots__ = ()
    precedence: ClassVar[int]

    def matches(self, labels: AbstractSet[str]) -> bool:
        """True if a node carrying exactly these labels satisfies the expression."""
        raise NotImplementedError

    def atoms(self) -> frozenset[str]:
        """Every label name the expression mentions."""
        return frozenset(self._walk_atoms())

    def _walk_atoms(self) -> Iterator[str]:
        """Label names from left to right, repeats included (iterative: no recursion limit)."""
        stack: list[LabelExpression] = [self]
        while stack:
            node = stack.pop()
            if isinstance(node, LabelAtom):
                yield node.name
            elif isinstance(node, Not):
                stack.append(node.operand)
            elif isinstance(node, _Binary):
                stack.append(node.rhs)
                stack.append(node.lhs)

    def __str__(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class LabelAtom(LabelExpression):
    """A single label, e.g. `linux` or `"my label"`."""

    name: str
    precedence: ClassVar[int] = _ATOM

    def matches(self, labels: AbstractSet[str]) -> bool:
        return self.name in labels

    def __str__(self) -> str:
        return quote_label(self.name)


@dataclass(frozen=True)
class Not(LabelExpression):
    """`!x`. Jenkins' grammar takes a single `!` before an atom or a parenthesis."""

    operand: LabelExpression
    precedence: ClassVar[int] = _NOT

    def matches(self, labels: AbstractSet[str]) -> bool:
        return not self.operand.matches(labels)

    def __str__(self) -> str:
        if isinstance(self.operand, LabelAtom):
            return f"!{self.operand}"
        return f"!({self.operand})"


@dataclass(frozen=True)
class _Binary(LabelExpression):
    lhs: LabelExpression
    rhs: LabelExpression
    symbol: ClassVar[str]

    def matches(self, labels: AbstractSet[str]) -> bool:
        return self._apply(self.lhs.matches(labels), self.rhs.matches(labels))

    def _apply(self, a: bool, b: bool) -> bool:
        raise NotImplementedError

    def __str__(self) -> str:
        # All four operators group to the left; `->` does not chain at all, so an implication on
        # the left of another one needs parentheses too.
        left, right = str(self.lhs), str(self.rhs)
        if self.lhs.precedence < self.precedence or (
            self.precedence == _IMPLIES and self.lhs.precedence == _IMPLIES
        ):
            left = f"({left})"
        if self.rhs.precedence <= self.precedence:
            right = f"({right})"
        return f"{left} {self.symbol} {right}"


@dataclass(frozen=True)
class And(_Binary):
    """`a && b`"""

    precedence = _AND
    symbol = "&&"

    def _apply(self, a: bool, b: bool) -> bool:
        return a and b


@dataclass(frozen=True)
class Or(_Binary):
    """`a || b`"""

    precedence = _OR
    symbol = "||"

    def _apply(self, a: bool, b: bool) -> bool:
        return a or b


@dataclass(frozen=True)
class Implies(_Binary):
    """`a -> b`: true unless `a` holds and `b` does not."""

    precedence = _IMPLIES
    symbol = "->"

    def _apply(self, a: bool, b: bool) -> bool:
        return (not a) or b


@dataclass(frozen=True)
class Iff(_Binary):
    """`a <-> b`: both or neither."""

    precedence = _IFF
    symbol = "<->"

    def _apply(self, a: bool, b: bool) -> bool:
        return a == b


def quote_label(name: str) -> str:
    """The label as it must be written in an expression: bare if it lexes as one atom."""
    if _is_bare_atom(name):
        return name
    return '"' + "".join(_QUOTE_ESCAPES.get(c, c) for c in name) + '"'


def _is_bare_atom(name: str) -> bool:
    # `>` is special, so a bare name can never contain `->` either.
    return bool(name) and not any(c in _SPECIAL or c.isspace() for c in name)


# ---------------------------------------------------------------------------------------------
# Lexer

_AND_T, _OR_T, _NOT_T, _IMPLIES_T, _IFF_T, _LPAREN, _RPAREN, _ATOM_T, _STRING_T, _EOF = (
    "&&",
    "||",
    "!",
    "->",
    "<->",
    "(",
    ")",
    "atom",
    "string",
    "end",
)


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str
    text: str  # as written (for messages)
    value: str  # the label name for atoms and strings
    column: int  # 1-based


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        col = i + 1
        if c.isspace():
            i += 1
        elif text.startswith("&&", i):
            tokens.append(_Token(_AND_T, "&&", "", col))
            i += 2
        elif text.startswith("||", i):
            tokens.append(_Token(_OR_T, "||", "", col))
            i += 2
        elif text.startswith("->", i):
            tokens.append(_Token(_IMPLIES_T, "->", "", col))
            i += 2
        elif text.startswith("<->", i):
            tokens.append(_Token(_IFF_T, "<->", "", col))
            i += 3
        elif c == "!":
            tokens.append(_Token(_NOT_T, "!", "", col))
            i += 1
        elif c == "(":
            tokens.append(_Token(_LPAREN, "(", "", col))
            i += 1
        elif c == ")":
            tokens.append(_Token(_RPAREN, ")", "", col))
            i += 1
        elif c == '"':
            token, i = _string_literal(text, i)
            tokens.append(token)
        elif c in _SPECIAL:
            raise LabelExpressionError(_stray_character(c, col), col)
        else:
            start = i
            while i < n:
                c = text[i]
                if c in _SPECIAL or c.isspace() or text.startswith("->", i):
                    break
                i += 1
            name = text[start:i]
            tokens.append(_Token(_ATOM_T, name, name, start + 1))
    tokens.append(_Token(_EOF, "", "", n + 1))
    return tokens


def _stray_character(c: str, col: int) -> str:
    hint = {
        "&": "; did you mean ‘&&’?",
        "|": "; did you mean ‘||’?",
        "<": "; did you mean ‘<->’?",
        ">": "; did you mean ‘->’?",
        "'": "; quote a label with double quotes",
    }[c]
    return f"unexpected ‘{c}’ at column {col}{hint}"


def _string_literal(text: str, start: int) -> tuple[_Token, int]:
    """A double-quoted label starting at text[start]; returns the token and the next index."""
    chars: list[str] = []
    i, n = start + 1, len(text)
    while True:
        if i >= n:
            raise LabelExpressionError(
                f"unterminated string literal starting at column {start + 1}", start + 1
            )
        c = text[i]
        if c == '"':
            i += 1
            break
        if c in "\r\n":
            raise LabelExpressionError(
                f"line break inside the string literal starting at column {start + 1}", i + 1
            )
        if c == "\\":
            if i + 1 >= n:
                raise LabelExpressionError(
                    f"unterminated string literal starting at column {start + 1}", start + 1
                )
            escaped = text[i + 1]
            if escaped not in _ESCAPES:
                raise LabelExpressionError(
                    f"invalid escape ‘\\{escaped}’ at column {i + 1}; "
                    "allowed are \\\" \\' \\\\ \\b \\t \\n \\f \\r",
                    i + 1,
                )
            chars.append(_ESCAPES[escaped])
            i += 2
            continue
        chars.append(c)
        i += 1
    return _Token(_STRING_T, text[start:i], "".join(chars), start + 1), i


# ---------------------------------------------------------------------------------------------
# Parser (recursive descent over Jenkins' term1..term6)

_EXPECTED_OPERAND = "expected a label, ‘!’ or ‘(’"


def _describe(token: _Token) -> str:
    if token.kind == _EOF:
        return "the end of the expression"
    return f"‘{token.text}’ at column {token.column}"


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.pos = 0
        self.parens = 0

    @property
    def token(self) -> _Token:
        return self.tokens[self.pos]

    def advance(self) -> _Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def fail(self, detail: str) -> LabelExpressionError:
        column = None if self.token.kind == _EOF else self.token.column
        return LabelExpressionError(detail, column)

    def parse(self) -> LabelExpression:
        expr = self.iff()
        if self.token.kind == _RPAREN:
            raise self.fail(f"unexpected ‘)’ at column {self.token.column}; no ‘(’ to close")
        if self.token.kind != _EOF:
            raise self.fail(
                f"unexpected {_describe(self.token)}; expected ‘&&’, ‘||’, ‘->’, ‘<->’ "
                "or the end of the expression"
            )
        return expr

    def iff(self) -> LabelExpression:  # term1: lowest precedence, chains to the left
        expr = self.implies()
        while self.token.kind == _IFF_T:
            self.advance()
            expr = Iff(expr, self.implies())
        return expr

    def implies(self) -> LabelExpression:  # term2: at most one `->`
        expr = self.or_()
        if self.token.kind == _IMPLIES_T:
            self.advance()
            expr = Implies(expr, self.or_())
            if self.token.kind == _IMPLIES_T:
                raise self.fail(
                    f"‘->’ at column {self.token.column} cannot follow another ‘->’; "
                    "add parentheses, e.g. ‘(a -> b) -> c’"
                )
        return expr

    def or_(self) -> LabelExpression:  # term3
        expr = self.and_()
        while self.token.kind == _OR_T:
            self.advance()
            expr = Or(expr, self.and_())
        return expr

    def and_(self) -> LabelExpression:  # term4
        expr = self.not_()
        while self.token.kind == _AND_T:
            self.advance()
            expr = And(expr, self.not_())
        return expr

    def not_(self) -> LabelExpression:  # term5: one optional `!`
        if self.token.kind == _NOT_T:
            bang = self.advance()
            if self.token.kind not in (_ATOM_T, _STRING_T, _LPAREN):
                raise self.fail(
                    f"expected a label or ‘(’ after the ‘!’ at column {bang.column}, "
                    f"but found {_describe(self.token)}"
                )
            return Not(self.primary())
        return self.primary()

    def primary(self) -> LabelExpression:  # term6
        token = self.token
        if token.kind in (_ATOM_T, _STRING_T):
            self.advance()
            return LabelAtom(token.value)
        if token.kind == _LPAREN:
            self.advance()
            self.parens += 1
            if self.parens > MAX_PAREN_NESTING:
                raise LabelExpressionError(
                    f"parentheses nested more than {MAX_PAREN_NESTING} deep at column "
                    f"{token.column}",
                    token.column,
                )
            expr = self.iff()
            if self.token.kind != _RPAREN:
                raise self.fail(
                    f"expected ‘)’ to close the ‘(’ at column {token.column}, "
                    f"but found {_describe(self.token)}"
                )
            self.advance()
            self.parens -= 1
            return expr
        raise self.fail(f"{_EXPECTED_OPERAND}, but found {_describe(token)}")


def _depth(expr: LabelExpression) -> int:
    deepest = 0
    stack: list[tuple[LabelExpression, int]] = [(expr, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(node, Not):
            stack.append((node.operand, depth + 1))
        elif isinstance(node, _Binary):
            stack.append((node.lhs, depth + 1))
            stack.append((node.rhs, depth + 1))
    return deepest


def parse_label_expression(text: str | None) -> LabelExpression | None:
    """Parse a job's "Restrict where this project can be run" expression.

    A blank expression means "no restriction" and gives None. Raises LabelExpressionError.
    """
    if text is None or not text.strip():
        return None
    expr = _Parser(text).parse()
    if _depth(expr) > MAX_TREE_DEPTH:
        raise LabelExpressionError(f"more than {MAX_TREE_DEPTH} nested operators")
    return expr


# ---------------------------------------------------------------------------------------------
# Node labels

_TOKENIZER_DELIMITERS = " \t\n\r"
# Jenkins' QuotedStringTokenizer drops the backslash only before these; `\W` stays `\W`, which
# keeps Windows paths intact.
_TOKENIZER_ESCAPABLE = "\\\"' "


def parse_label_string(text: str | None) -> frozenset[str]:
    """A node's Labels field: separated by whitespace; "…" or '…' keep spaces inside one label.

    Mirrors Jenkins' QuotedStringTokenizer, except that empty labels (`""`) are dropped.
    """
    labels: set[str] = set()
    if not text:
        return frozenset()
    token: list[str] = []
    has_token = False
    quote = ""  # the open quote character, if inside quotes
    escape = False
    for c in text:
        if escape:
            escape = False
            if c not in _TOKENIZER_ESCAPABLE:
                token.append("\\")
            token.append(c)
        elif quote:
            if c == quote:
                quote = ""
            elif c == "\\":
                escape = True
            else:
                token.append(c)
        elif c in _TOKENIZER_DELIMITERS:
            if has_token:
                labels.add("".join(token))
                token.clear()
                has_token = False
        elif c in "\"'":
            quote = c
            has_token = True
        elif c == "\\" and has_token:
            escape = True
        else:
            # Like Jenkins, a backslash that starts a token is kept literally.
            token.append(c)
            has_token = True
    if has_token:
        labels.add("".join(token))
    labels.discard("")
    return frozenset(labels)


def node_labels(name: str, label_string: str | None, *, is_builtin: bool = False) -> frozenset[str]:
    """All labels of a node: its Labels field plus its self label (its name, or `built-in`)."""
    return parse_label_string(label_string) | {BUILT_IN_LABEL if is_builtin else name}


def label_counts(nodes: Iterable[AbstractSet[str]]) -> dict[str, int]:
    """How many nodes carry each label, from each node's label set (see node_labels)."""
    counts: dict[str, int] = {}
    for labels in nodes:
        for label in labels:
            counts[label] = counts.get(label, 0) + 1
    return counts


def count_matching_nodes(
    expression: LabelExpression | None, nodes: Iterable[AbstractSet[str]]
) -> int:
    """How many of these nodes (given as label sets) satisfy the expression; None matches all."""
    if expression is None:
        return sum(1 for _ in nodes)
    return sum(1 for labels in nodes if expression.matches(labels))


# ---------------------------------------------------------------------------------------------
# Validation for the form field


def _matches_message(expression: LabelExpression, count: int) -> str:
    nodes = "1 node" if count == 1 else f"{count} nodes"
    return f"Label ‘{expression}’ matches {nodes}"


def validate_label_expression(
    text: str | None,
    known_labels: Mapping[str, int],
    *,
    nodes: Iterable[AbstractSet[str]] | None = None,
) -> list[tuple[Level, str]]:
    """Jenkins' checks of a label expression field, as (level, message) pairs; [] if blank.

    `known_labels` maps each label to the number of nodes that carry it (see label_counts).
    Pass `nodes` (each node's label set) to count the nodes an expression with operators
    matches; without it only a single label can be counted.
    """
    try:
        expression = parse_label_expression(text)
    except LabelExpressionError as error:
        return [("error", str(error))]
    if expression is None:
        return []

    results: list[tuple[Level, str]] = []
    atoms = list(dict.fromkeys(expression._walk_atoms()))
    if OBSOLETE_MASTER_LABEL in atoms and known_labels.get(OBSOLETE_MASTER_LABEL, 0) <= 0:
        # Jenkins warns only when nothing matches; a leftover `master || linux` is worth it too.
        results.append(("warning", OBSOLETE_MASTER))

    if nodes is not None:
        count: int | None = count_matching_nodes(expression, nodes)
    elif isinstance(expression, LabelAtom):
        count = max(known_labels.get(expression.name, 0), 0)
    else:
        count = None

    if count is None:
        return results
    if count > 0:
        results.append(("info", _matches_message(expression, count)))
        return results

    present = sorted(label for label, n in known_labels.items() if n > 0)
    for atom in atoms:
        if atom == OBSOLETE_MASTER_LABEL or known_labels.get(atom, 0) > 0:
            continue
        # difflib is case-sensitive ("ARM" and "arm" share nothing), so try that first.
        same_but_case = [label for label in present if label.casefold() == atom.casefold()]
        nearest = same_but_case or difflib.get_close_matches(atom, present, n=1)
        if nearest:
            results.append(("warning", NO_MATCH_DID_YOU_MEAN.format(atom, nearest[0])))
            return results
    results.append(("warning", NO_MATCH))
    return results
