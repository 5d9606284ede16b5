"""Label expressions and node labels: grammar, precedence, quoting, errors, validation messages."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from builds.labels import (
    MAX_PAREN_NESTING,
    MAX_TREE_DEPTH,
    And,
    Iff,
    Implies,
    LabelAtom,
    LabelExpression,
    LabelExpressionError,
    Not,
    Or,
    count_matching_nodes,
    label_counts,
    node_labels,
    parse_label_expression,
    parse_label_string,
    quote_label,
    validate_label_expression,
)

a, b, c, d = (LabelAtom(x) for x in "abcd")


def parse(text: str) -> LabelExpression:
    expr = parse_label_expression(text)
    assert expr is not None
    return expr


def error_of(text: str) -> str:
    with pytest.raises(LabelExpressionError) as info:
        parse_label_expression(text)
    assert isinstance(info.value, ValueError)
    return str(info.value)


# --- grammar ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a", a),
        ("!a", Not(a)),
        ("a && b", And(a, b)),
        ("a || b", Or(a, b)),
        ("a -> b", Implies(a, b)),
        ("a <-> b", Iff(a, b)),
        ("(a)", a),
        ("((a))", a),
        ("!(a)", Not(a)),
        ("!(!a)", Not(Not(a))),
        ('"a"', a),
        ('!"a"', Not(a)),
    ],
)
def test_each_construct(text, expected):
    assert parse(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        # ! binds tightest, then &&, ||, ->, <->.
        ("a || b && c", Or(a, And(b, c))),
        ("a && b || c", Or(And(a, b), c)),
        ("!a && b", And(Not(a), b)),
        ("!a || !b", Or(Not(a), Not(b))),
        ("a -> b || c", Implies(a, Or(b, c))),
        ("a || b -> c", Implies(Or(a, b), c)),
        ("a && b -> c && d", Implies(And(a, b), And(c, d))),
        ("a <-> b -> c", Iff(a, Implies(b, c))),
        ("a -> b <-> c", Iff(Implies(a, b), c)),
        ("a <-> b || c && !d", Iff(a, Or(b, And(c, Not(d))))),
        ("(a || b) && c", And(Or(a, b), c)),
        ("a && (b <-> c)", And(a, Iff(b, c))),
    ],
)
def test_precedence(text, expected):
    assert parse(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a && b && c", And(And(a, b), c)),
        ("a || b || c", Or(Or(a, b), c)),
        ("a <-> b <-> c", Iff(Iff(a, b), c)),
        ("a <-> b <-> c <-> d", Iff(Iff(Iff(a, b), c), d)),
        ("a || (b || c)", Or(a, Or(b, c))),
        ("(a -> b) -> c", Implies(Implies(a, b), c)),
        ("a -> (b -> c)", Implies(a, Implies(b, c))),
    ],
)
def test_associativity(text, expected):
    assert parse(text) == expected


def test_implies_is_not_associative_which_is_why_it_does_not_chain():
    only_b = frozenset({"b"})
    assert parse("(a -> b) -> c").matches(only_b) is False
    assert parse("a -> (b -> c)").matches(only_b) is True
    assert error_of("a -> b -> c") == (
        "Invalid boolean expression: ‘->’ at column 8 cannot follow another ‘->’; "
        "add parentheses, e.g. ‘(a -> b) -> c’"
    )


@pytest.mark.parametrize(
    "text, expected",
    [
        ("x86-64", LabelAtom("x86-64")),
        ("x86-64&&linux", And(LabelAtom("x86-64"), LabelAtom("linux"))),
        ("a->b", Implies(a, b)),
        ("a-->b", Implies(LabelAtom("a-"), b)),
        ("-", LabelAtom("-")),
        ("a-", LabelAtom("a-")),
        ("-a", LabelAtom("-a")),
        ("a-b-c", LabelAtom("a-b-c")),
        ("!-x", Not(LabelAtom("-x"))),
        ("a<->b", Iff(a, b)),
        ("jdk-1.8 || jdk-11", Or(LabelAtom("jdk-1.8"), LabelAtom("jdk-11"))),
        ("arch=amd64", LabelAtom("arch=amd64")),
        ("ünïcödé", LabelAtom("ünïcödé")),
        ("a.b:c/d@e", LabelAtom("a.b:c/d@e")),
    ],
)
def test_atoms_with_dashes_and_other_characters(text, expected):
    assert parse(text) == expected


@pytest.mark.parametrize(
    "text",
    ["a&&b||!c", "  a && b || !c  ", "\ta\t&&\tb\n||\n!c", "a\u00a0&&\u2003b || ! c"],
)
def test_whitespace_is_insignificant_between_tokens(text):
    assert parse(text) == Or(And(a, b), Not(c))


@pytest.mark.parametrize("text", [None, "", " ", "\t\n  "])
def test_blank_expression_means_no_restriction(text):
    assert parse_label_expression(text) is None


# --- string literals ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, name",
    [
        ('"my label"', "my label"),
        ('"a && b"', "a && b"),
        ('"!(x)"', "!(x)"),
        ('"a->b"', "a->b"),
        ('"it\'s"', "it's"),
        ('""', ""),
        (r'"say \"hi\""', 'say "hi"'),
        (r'"back\\slash"', "back\\slash"),
        (r'"\b\t\n\f\r\"\'\\"', "\b\t\n\f\r\"'\\"),
        ('"raw\ttab"', "raw\ttab"),
    ],
)
def test_string_literals(text, name):
    assert parse(text) == LabelAtom(name)


def test_string_literal_inside_an_expression():
    expr = parse('"my label"&&!"other one"')
    assert expr == And(LabelAtom("my label"), Not(LabelAtom("other one")))
    assert expr.matches(frozenset({"my label"}))
    assert not expr.matches(frozenset({"my label", "other one"}))


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, detail",
    [
        ("a &", "unexpected ‘&’ at column 3; did you mean ‘&&’?"),
        ("a&&&b", "unexpected ‘&’ at column 4; did you mean ‘&&’?"),
        ("a | b", "unexpected ‘|’ at column 3; did you mean ‘||’?"),
        ("a < b", "unexpected ‘<’ at column 3; did you mean ‘<->’?"),
        ("a <- b", "unexpected ‘<’ at column 3; did you mean ‘<->’?"),
        ("a > b", "unexpected ‘>’ at column 3; did you mean ‘->’?"),
        ("a - > b", "unexpected ‘>’ at column 5; did you mean ‘->’?"),
        ("'a'", "unexpected ‘'’ at column 1; quote a label with double quotes"),
        ("a'b", "unexpected ‘'’ at column 2; quote a label with double quotes"),
        ('"abc', "unterminated string literal starting at column 1"),
        ('a && "b\\"', "unterminated string literal starting at column 6"),
        ('"abc\\', "unterminated string literal starting at column 1"),
        (
            '"a\\x"',
            "invalid escape ‘\\x’ at column 3; allowed are \\\" \\' \\\\ \\b \\t \\n \\f \\r",
        ),
        ('"a\nb"', "line break inside the string literal starting at column 1"),
        ('"a\rb"', "line break inside the string literal starting at column 1"),
        (
            "a b",
            "unexpected ‘b’ at column 3; expected ‘&&’, ‘||’, ‘->’, ‘<->’ or the end of the expression",
        ),
        (
            'a"b"',
            'unexpected ‘"b"’ at column 2; expected ‘&&’, ‘||’, ‘->’, ‘<->’ or the end of the expression',
        ),
        (
            "a (b)",
            "unexpected ‘(’ at column 3; expected ‘&&’, ‘||’, ‘->’, ‘<->’ or the end of the expression",
        ),
        (
            "a !b",
            "unexpected ‘!’ at column 3; expected ‘&&’, ‘||’, ‘->’, ‘<->’ or the end of the expression",
        ),
        ("a)", "unexpected ‘)’ at column 2; no ‘(’ to close"),
        ("(a))", "unexpected ‘)’ at column 4; no ‘(’ to close"),
        ("(a", "expected ‘)’ to close the ‘(’ at column 1, but found the end of the expression"),
        (
            "((a) || b",
            "expected ‘)’ to close the ‘(’ at column 1, but found the end of the expression",
        ),
        ("(a b)", "expected ‘)’ to close the ‘(’ at column 1, but found ‘b’ at column 4"),
        ("()", "expected a label, ‘!’ or ‘(’, but found ‘)’ at column 2"),
        ("&& a", "expected a label, ‘!’ or ‘(’, but found ‘&&’ at column 1"),
        ("a &&", "expected a label, ‘!’ or ‘(’, but found the end of the expression"),
        ("a || || b", "expected a label, ‘!’ or ‘(’, but found ‘||’ at column 6"),
        ("a <->", "expected a label, ‘!’ or ‘(’, but found the end of the expression"),
        ("-> a", "expected a label, ‘!’ or ‘(’, but found ‘->’ at column 1"),
        (
            "!",
            "expected a label or ‘(’ after the ‘!’ at column 1, but found the end of the expression",
        ),
        ("!!a", "expected a label or ‘(’ after the ‘!’ at column 1, but found ‘!’ at column 2"),
        (
            "a && !&& b",
            "expected a label or ‘(’ after the ‘!’ at column 6, but found ‘&&’ at column 7",
        ),
        (
            "a -> b -> c",
            "‘->’ at column 8 cannot follow another ‘->’; add parentheses, e.g. ‘(a -> b) -> c’",
        ),
        (
            "(a->b->c)",
            "‘->’ at column 6 cannot follow another ‘->’; add parentheses, e.g. ‘(a -> b) -> c’",
        ),
    ],
)
def test_error_messages(text, detail):
    with pytest.raises(LabelExpressionError) as info:
        parse_label_expression(text)
    assert str(info.value) == f"Invalid boolean expression: {detail}"
    assert info.value.detail == detail


def test_error_carries_the_column():
    with pytest.raises(LabelExpressionError) as info:
        parse_label_expression("linux && && arm")
    assert info.value.column == 10
    with pytest.raises(LabelExpressionError) as info:
        parse_label_expression("linux &&")
    assert info.value.column is None


def test_parentheses_nesting_limit():
    deepest = "(" * MAX_PAREN_NESTING + "a" + ")" * MAX_PAREN_NESTING
    assert parse(deepest) == a
    too_deep = "(" + deepest + ")"
    assert error_of(too_deep) == (
        f"Invalid boolean expression: parentheses nested more than {MAX_PAREN_NESTING} deep "
        f"at column {MAX_PAREN_NESTING + 1}"
    )


def test_operator_depth_limit():
    longest = " && ".join(["a"] * MAX_TREE_DEPTH)  # n operands make n - 1 nested operators
    assert parse(longest).matches(frozenset({"a"}))
    assert str(parse(longest)) == longest
    too_long = longest + " && a"
    assert error_of(too_long) == (
        f"Invalid boolean expression: more than {MAX_TREE_DEPTH} nested operators"
    )


# --- evaluation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, truth_table",
    [
        # rows: (a, b) = (F, F), (F, T), (T, F), (T, T)
        ("a && b", (False, False, False, True)),
        ("a || b", (False, True, True, True)),
        ("a -> b", (True, True, False, True)),
        ("a <-> b", (True, False, False, True)),
        ("!a", (True, True, False, False)),
    ],
)
def test_truth_tables(text, truth_table):
    expr = parse(text)
    rows = [frozenset(), frozenset({"b"}), frozenset({"a"}), frozenset({"a", "b"})]
    assert tuple(expr.matches(labels) for labels in rows) == truth_table


def test_matching_is_exact_and_case_sensitive():
    assert parse("linux").matches(frozenset({"linux", "docker"}))
    assert not parse("linux").matches(frozenset({"Linux"}))
    assert not parse("linux").matches(frozenset({"linux-arm"}))
    assert parse("linux && docker").matches(frozenset({"linux", "docker"}))
    assert not parse("linux && docker").matches(frozenset({"linux"}))


def test_atoms():
    assert parse('a && (b || !"c d") -> a <-> x86-64').atoms() == frozenset(
        {"a", "b", "c d", "x86-64"}
    )


def test_ast_is_immutable_hashable_and_compared_by_structure():
    expr = parse("a && b")
    with pytest.raises(dataclasses.FrozenInstanceError):
        expr.lhs = c  # type: ignore[misc]
    with pytest.raises(AttributeError):
        expr.extra = 1  # type: ignore[attr-defined]
    assert parse("a&&b") == expr
    assert hash(parse("(a)&&(b)")) == hash(expr)
    assert parse("a || b") != expr
    assert Implies(a, b) != Iff(a, b)
    assert {expr, parse("a && b")} == {expr}


# --- rendering ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, canonical",
    [
        ("a&&b", "a && b"),
        ("((a))", "a"),
        ("(a || b) || c", "a || b || c"),
        ("a || (b || c)", "a || (b || c)"),
        ("a || (b && c)", "a || b && c"),
        ("(a || b) && c", "(a || b) && c"),
        ("(a -> b) -> c", "(a -> b) -> c"),
        ("a -> (b -> c)", "a -> (b -> c)"),
        ("(a <-> b) <-> c", "a <-> b <-> c"),
        ("a <-> (b <-> c)", "a <-> (b <-> c)"),
        ("!(!a)", "!(!a)"),
        ("!(a&&b)", "!(a && b)"),
        ('"a"', "a"),
        ('"my label"', '"my label"'),
        ('"a->b"', '"a->b"'),
        ('"a-"', "a-"),
        ('""', '""'),
        (r'"q\"q"', r'"q\"q"'),
        ('"it\'s"', '"it\'s"'),
        (r'"tab\tnew\nline\\"', r'"tab\tnew\nline\\"'),
        ("a->b", "a -> b"),
    ],
)
def test_canonical_rendering(text, canonical):
    assert str(parse(text)) == canonical
    assert parse(canonical) == parse(text)


@pytest.mark.parametrize(
    "name, quoted",
    [
        ("linux", "linux"),
        ("x86-64", "x86-64"),
        ("my label", '"my label"'),
        ("a&b", '"a&b"'),
        ("a|b", '"a|b"'),
        ("!", '"!"'),
        ("(x)", '"(x)"'),
        ("a<b", '"a<b"'),
        ("a>b", '"a>b"'),
        ("a->b", '"a->b"'),
        ("'", '"\'"'),
        ('"', r'"\""'),
        ("", '""'),
        ("back\\slash", "back\\slash"),
    ],
)
def test_quote_label(name, quoted):
    assert quote_label(name) == quoted
    assert parse(quoted) == LabelAtom(name)


# --- property tests -------------------------------------------------------------------------

label_names = st.one_of(
    st.sampled_from(
        [
            "linux",
            "arm64",
            "x86-64",
            "built-in",
            "a-",
            "-",
            "->",
            "a->b",
            "my label",
            'say "hi"',
            "it's",
            "back\\slash",
            "&&",
            "",
            "tab\there",
            "line\nbreak",
            "ünï",
        ]
    ),
    st.text(max_size=6),
    st.text(alphabet="ab-<>&|!()\"'\\ \t\n", max_size=6),
)


def _extend(children):
    return st.one_of(
        children.map(Not),
        st.builds(And, children, children),
        st.builds(Or, children, children),
        st.builds(Implies, children, children),
        st.builds(Iff, children, children),
    )


expressions = st.recursive(label_names.map(LabelAtom), _extend, max_leaves=16)


def fully_parenthesized(expr: LabelExpression) -> str:
    """Jenkins syntax with every subexpression in parentheses, so precedence never matters."""
    match expr:
        case LabelAtom(name):
            return quote_label(name)
        case Not(operand):
            return f"!({fully_parenthesized(operand)})"
        case And(lhs, rhs):
            return f"({fully_parenthesized(lhs)})&&({fully_parenthesized(rhs)})"
        case Or(lhs, rhs):
            return f"({fully_parenthesized(lhs)})||({fully_parenthesized(rhs)})"
        case Implies(lhs, rhs):
            return f"({fully_parenthesized(lhs)})->({fully_parenthesized(rhs)})"
        case Iff(lhs, rhs):
            return f"({fully_parenthesized(lhs)})<->({fully_parenthesized(rhs)})"
    raise AssertionError(expr)


def as_python(expr: LabelExpression) -> str:
    """The same expression as Python source over a set `L`, evaluated by Python itself."""
    match expr:
        case LabelAtom(name):
            return f"({name!r} in L)"
        case Not(operand):
            return f"(not {as_python(operand)})"
        case And(lhs, rhs):
            return f"({as_python(lhs)} and {as_python(rhs)})"
        case Or(lhs, rhs):
            return f"({as_python(lhs)} or {as_python(rhs)})"
        case Implies(lhs, rhs):
            return f"((not {as_python(lhs)}) or {as_python(rhs)})"
        case Iff(lhs, rhs):
            return f"({as_python(lhs)} == {as_python(rhs)})"
    raise AssertionError(expr)


def label_sets_for(expr: LabelExpression):
    return st.frozensets(st.one_of(st.sampled_from(sorted(expr.atoms())), label_names))


@settings(max_examples=300)
@given(expressions)
def test_rendering_round_trips(expr):
    rendered = str(expr)
    assert parse(rendered) == expr
    assert str(parse(rendered)) == rendered
    assert parse(fully_parenthesized(expr)) == expr


@settings(max_examples=300)
@given(st.data())
def test_matches_agrees_with_python_booleans(data):
    expr = data.draw(expressions)
    labels = data.draw(label_sets_for(expr))
    expected = eval(as_python(expr), {"L": labels})  # noqa: S307 - source built from repr()
    assert expr.matches(labels) is expected
    assert parse(str(expr)).matches(labels) is expected
    assert parse(fully_parenthesized(expr)).matches(labels) is expected


@settings(max_examples=200)
@given(st.data())
def test_de_morgan(data):
    left, right = data.draw(expressions), data.draw(expressions)
    labels = data.draw(label_sets_for(And(left, right)))
    negated_and = parse(f"!(({left}) && ({right}))")
    or_of_negations = parse(f"!({left}) || !({right})")
    assert negated_and.matches(labels) == or_of_negations.matches(labels)


# Flat expressions (no parentheses) checked against Python, whose `not`/`and`/`or` have the same
# relative precedence; `->` and `<->` are built around them by hand from the grammar.
flat_names = st.sampled_from(["a", "b", "c", "x86-64", '"my label"'])
negatable = st.tuples(st.booleans(), flat_names)
or_level = st.lists(st.lists(negatable, min_size=1, max_size=3), min_size=1, max_size=3)
implies_level = st.lists(or_level, min_size=1, max_size=2)
iff_level = st.lists(implies_level, min_size=1, max_size=3)
spacing = st.sampled_from(["", " ", "  ", "\t"])


@settings(max_examples=300)
@given(iff_level, st.data())
def test_precedence_without_parentheses_matches_python(tree, data):
    def jenkins_name(name: str) -> str:
        return name

    def python_name(name: str) -> str:
        return repr(name.strip('"'))

    def sep(op: str) -> str:
        return data.draw(spacing) + op + data.draw(spacing)

    def jenkins_or(groups):
        return sep("||").join(
            sep("&&").join(("!" if neg else "") + jenkins_name(n) for neg, n in group)
            for group in groups
        )

    def python_or(groups):
        return " or ".join(
            " and ".join(("not " if neg else "") + f"({python_name(n)} in L)" for neg, n in group)
            for group in groups
        )

    def python_implies(part):
        if len(part) == 1:
            return f"({python_or(part[0])})"
        return f"((not ({python_or(part[0])})) or ({python_or(part[1])}))"

    text = sep("<->").join(sep("->").join(jenkins_or(g) for g in part) for part in tree)
    source = python_implies(tree[0])
    for part in tree[1:]:
        source = f"({source} == {python_implies(part)})"

    expr = parse(text)
    for labels in [frozenset(), frozenset({"a"}), frozenset({"a", "c"}), frozenset({"b"})]:
        for extra in [frozenset(), frozenset({"x86-64", "my label"})]:
            env = {"L": labels | extra}
            assert expr.matches(labels | extra) is eval(source, env), (text, source)  # noqa: S307


@settings(max_examples=500)
@given(st.one_of(st.text(), st.text(alphabet="ab -<>&|!()\"'\\\t\n", max_size=20)))
def test_any_text_parses_or_raises_label_expression_error(text):
    try:
        expr = parse_label_expression(text)
    except LabelExpressionError as error:
        assert str(error).startswith("Invalid boolean expression: ")
    else:
        if expr is not None:
            assert parse(str(expr)) == expr


# --- node labels ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, labels",
    [
        (None, set()),
        ("", set()),
        ("   ", set()),
        ("linux", {"linux"}),
        ("linux docker", {"linux", "docker"}),
        ("  linux\tdocker\n\rarm64  ", {"linux", "docker", "arm64"}),
        ("linux linux", {"linux"}),
        ('"my label" linux', {"my label", "linux"}),
        ("'single quoted' x", {"single quoted", "x"}),
        ('a"b c"d', {"ab cd"}),
        (r'"say \"hi\""', {'say "hi"'}),
        (r"x\ y", {"x y"}),
        (r"C:\Tools", {r"C:\Tools"}),  # a backslash before an ordinary letter stays
        (r"\x", {r"\x"}),  # ... and so does one that starts a label
        (r'"a\\b"', {"a\\b"}),
        ('"" x', {"x"}),  # empty labels are dropped
        ('"unterminated label', {"unterminated label"}),
        ("x86-64 a&&b", {"x86-64", "a&&b"}),
    ],
)
def test_parse_label_string(text, labels):
    assert parse_label_string(text) == frozenset(labels)


def _quote_for_label_string(label: str) -> str:
    return '"' + label.replace("\\", "\\\\").replace('"', '\\"') + '"'


@given(st.frozensets(st.text(min_size=1, max_size=8)))
def test_quoted_labels_survive_the_label_string(labels):
    text = " ".join(_quote_for_label_string(label) for label in labels)
    assert parse_label_string(text) == labels


def test_node_labels_include_the_self_label():
    assert node_labels("agent-1", "linux docker") == frozenset({"agent-1", "linux", "docker"})
    assert node_labels("agent-1", "") == frozenset({"agent-1"})
    assert node_labels("(built-in)", "java", is_builtin=True) == frozenset({"built-in", "java"})
    assert parse("agent-1 && docker").matches(node_labels("agent-1", "linux docker"))


NODES = [
    node_labels("(built-in)", "", is_builtin=True),
    node_labels("agent-1", "linux docker x86-64"),
    node_labels("agent-2", "linux x86-64"),
    node_labels("mac-1", '"mac os" arm64'),
]
KNOWN = label_counts(NODES)


def test_label_counts():
    assert KNOWN == {
        "built-in": 1,
        "agent-1": 1,
        "agent-2": 1,
        "mac-1": 1,
        "linux": 2,
        "docker": 1,
        "x86-64": 2,
        "mac os": 1,
        "arm64": 1,
    }


@pytest.mark.parametrize(
    "text, count",
    [
        ("", 4),
        ("linux", 2),
        ("linux && !docker", 1),
        ('"mac os" || built-in', 2),
        ("!linux", 2),
        ("linux -> docker", 3),
        ("linux <-> x86-64", 4),
        ("windows", 0),
    ],
)
def test_count_matching_nodes(text, count):
    assert count_matching_nodes(parse_label_expression(text), NODES) == count
    assert count_matching_nodes(parse_label_expression(text), iter(NODES)) == count


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, messages",
    [
        ("", []),
        ("   ", []),
        (None, []),
        ("linux", [("info", "Label ‘linux’ matches 2 nodes")]),
        ("docker", [("info", "Label ‘docker’ matches 1 node")]),
        ("built-in", [("info", "Label ‘built-in’ matches 1 node")]),
        ('"mac os"', [("info", 'Label ‘"mac os"’ matches 1 node')]),
        ("linux&&!docker", [("info", "Label ‘linux && !docker’ matches 1 node")]),
        ("!windows", [("info", "Label ‘!windows’ matches 4 nodes")]),
        (
            "linux && (",
            [
                (
                    "error",
                    "Invalid boolean expression: expected a label, ‘!’ or ‘(’, "
                    "but found the end of the expression",
                )
            ],
        ),
        (
            "lnux",
            [
                (
                    "warning",
                    "No agent matches this label expression. "
                    "Did you mean ‘linux’ instead of ‘lnux’?",
                )
            ],
        ),
        (
            "docker && dockr",
            [
                (
                    "warning",
                    "No agent matches this label expression. "
                    "Did you mean ‘docker’ instead of ‘dockr’?",
                )
            ],
        ),
        (
            "ARM64",
            [
                (
                    "warning",
                    "No agent matches this label expression. "
                    "Did you mean ‘arm64’ instead of ‘ARM64’?",
                )
            ],
        ),
        ("docker && agent-2", [("warning", "No agent matches this label expression.")]),
        ("windows", [("warning", "No agent matches this label expression.")]),
        (
            "master",
            [
                ("warning", "The label ‘master’ is obsolete; use ‘built-in’"),
                ("warning", "No agent matches this label expression."),
            ],
        ),
        (
            "master || linux",
            [
                ("warning", "The label ‘master’ is obsolete; use ‘built-in’"),
                ("info", "Label ‘master || linux’ matches 2 nodes"),
            ],
        ),
    ],
)
def test_validate_label_expression(text, messages):
    assert validate_label_expression(text, KNOWN, nodes=NODES) == messages


def test_validate_without_node_label_sets_counts_single_labels_only():
    assert validate_label_expression("linux", KNOWN) == [("info", "Label ‘linux’ matches 2 nodes")]
    assert validate_label_expression("windws", {"windows": 3}) == [
        (
            "warning",
            "No agent matches this label expression. Did you mean ‘windows’ instead of ‘windws’?",
        )
    ]
    # With operators the count needs each node's labels; only certain findings are reported.
    assert validate_label_expression("linux && docker", KNOWN) == []
    assert validate_label_expression("master && linux", KNOWN) == [
        ("warning", "The label ‘master’ is obsolete; use ‘built-in’")
    ]
    assert validate_label_expression("a &&& b", KNOWN) == [
        ("error", "Invalid boolean expression: unexpected ‘&’ at column 5; did you mean ‘&&’?")
    ]


def test_a_node_really_labelled_master_is_not_obsolete():
    nodes = [node_labels("old", "master")]
    assert validate_label_expression("master", label_counts(nodes), nodes=nodes) == [
        ("info", "Label ‘master’ matches 1 node")
    ]
