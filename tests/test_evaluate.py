"""Restricted literal evaluation (distkv.util.evaluate)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from distkv.util.evaluate import literal_eval


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", 0),
        ("123", 123),
        ("-3", -3),
        ("+3", 3),
        ("0x1f", 31),
        ("-0x10", -16),
        ("0b101", 5),
        ("0o17", 15),
        ("1_000", 1000),
        ("18446744073709551616", 2**64),
        ("1.5", 1.5),
        ("-2.5e3", -2500.0),
        ("1e16", 1e16),
        ("'a b'", "a b"),
        ('"x"', "x"),
        ("b'\\x00y'", b"\x00y"),
        ("True", True),
        ("False", False),
        ("None", None),
        ("1,2", (1, 2)),
        ("(1, (2, 'x'))", (1, (2, "x"))),
        ("()", ()),
        ("(1,)", (1,)),
        ("[1, -2]", [1, -2]),
        ("{'a': 1, 2: [3]}", {"a": 1, 2: [3]}),
        ("{1, 2}", {1, 2}),
        ("  42  ", 42),
        ("--3", 3),
    ],
)
def test_literals(text: str, value: object) -> None:
    res = literal_eval(text)
    assert res == value
    assert type(res) is type(value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Cannot evaluate '': it is empty"),
        ("   ", "Cannot evaluate '   ': it is empty"),
        ("foo", "Cannot evaluate 'foo': names are not allowed"),
        ("[1, foo]", "Cannot evaluate '[1, foo]': names are not allowed ('foo')"),
        ("open('x')", "Cannot evaluate \"open('x')\": function calls are not allowed"),
        ("().__class__", "Cannot evaluate '().__class__': attribute access is not allowed"),
        ("1+2", "Cannot evaluate '1+2': operators are not allowed"),
        ("2**100", "Cannot evaluate '2**100': operators are not allowed"),
        ("not 1", "Cannot evaluate 'not 1': operators are not allowed"),
        ("1 < 2", "Cannot evaluate '1 < 2': comparisons are not allowed"),
        ("-'a'", "Cannot evaluate \"-'a'\": unary +/- only apply to numbers"),
        ("-True", "Cannot evaluate '-True': unary +/- only apply to numbers"),
        ("1j", "Cannot evaluate '1j': complex values are not allowed"),
        ("...", "Cannot evaluate '...': ellipsis values are not allowed"),
        ("f'{1}'", "Cannot evaluate \"f'{1}'\": f-strings are not allowed"),
        ("{**a}", "Cannot evaluate '{**a}': '**' is not allowed ('a')"),
        ("(*a,)", "Cannot evaluate '(*a,)': '*' is not allowed ('*a')"),
        ("{[1]: 2}", "Cannot evaluate '{[1]: 2}': dict keys must be hashable ('[1]')"),
        ("{[1]}", "Cannot evaluate '{[1]}': set items must be hashable"),
        ("x[0]", "Cannot evaluate 'x[0]': subscripts are not allowed"),
        ("lambda: 1", "Cannot evaluate 'lambda: 1': lambdas are not allowed"),
        (
            "[i for i in ()]",
            "Cannot evaluate '[i for i in ()]': ListComp expressions are not allowed",
        ),
        ("1 +", "Cannot evaluate '1 +': invalid syntax"),
        ("012", "Cannot evaluate '012': invalid syntax"),
        ("a = 1", "Cannot evaluate 'a = 1': invalid syntax"),
        ("(" * 300 + ")" * 300, "Cannot evaluate"),
    ],
)
def test_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        literal_eval(text)
    assert str(info.value).startswith(message)


def test_not_a_string() -> None:
    with pytest.raises(TypeError, match="wants a string, not int"):
        literal_eval(1)  # type: ignore[arg-type]


_literals = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | st.binary(),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(st.integers() | st.text(), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(_literals)
def test_repr_round_trip(value: object) -> None:
    res = literal_eval(repr(value))
    assert res == value
    assert repr(res) == repr(value)


def test_floats_keep_sign_and_value() -> None:
    res = literal_eval("-0.0")
    assert res == 0.0 and math.copysign(1, res) == -1
