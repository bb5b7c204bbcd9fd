"""Paths: the Path type, the text syntax, shortening (distkv.util.path)."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from distkv.util.path import P, Path, PathLongener, PathShortener


def typed(x: Any) -> Any:
    """``x`` with the type of every item made visible (so True != 1 != 1.0)."""
    if isinstance(x, tuple):
        return ("tuple", tuple(typed(i) for i in x))
    return (type(x).__name__, x)


# 03 §2.3, both directions
ROUND_TRIP = [
    ((), ":"),
    (("a", "b"), "a.b"),
    ((".distkv", "config"), ":.distkv.config"),
    ((None, "auth"), ":n.auth"),
    (("a.b",), "a:.b"),
    (("a:b",), "a::b"),
    (("a b",), "a:_b"),
    (("a_b",), "a_b"),
    (("",), ":e"),
    (("a", ""), "a:e"),
    ((12,), ":12"),
    ((-3,), ":-3"),
    ((31,), ":31"),
    (("foo", 12, True), "foo:12:t"),
    ((1, "a"), ":1.a"),
    (("a", 1, "b"), "a:1.b"),
    ((1.5,), ":1:.5"),
    ((1.0,), ":1:.0"),
    ((True, False, None), ":t:f:n"),
    ((b"abc",), ":vabc"),
    ((b"\x00\xff",), ":y00ff"),
    (((1, 2),), ":1,2"),
    (((),), ":()"),
    (("x", ("a", 1)), "x:'a',1"),
    (("123",), "123"),
    (("a", "b c.d:e"), "a.b:_c:.d::e"),
    # more of the same rules
    (("", ""), ":e:e"),
    (("", "a"), ":e.a"),
    ((b"a b.c:d",), ":va:_b:.c::d"),
    ((b"",), ":v"),
    ((b"a_b",), ":va_b"),
    ((2**70,), ":1180591620717411303424"),
    ((-(2**70),), ":-1180591620717411303424"),
    ((1e16,), ":1e+16"),
    ((("a b", 1.5),), ":'a:_b',1:.5"),
    (((1, (2, 3)),), ":1,(2,:_3)"),
    ((1, 2), ":1:2"),
    ((True, 1), ":t:1"),
    (("a", None, "b"), "a:n.b"),
    (("_",), "_"),
    ((" a",), ":_a"),
    (("..",), ":.:."),
    (("ü",), "ü"),
    # upstream prints ":b'x',1", which reads back as a bad binary number
    (((b"x", 1),), ":(b'x',1)"),
]


@pytest.mark.parametrize(("elems", "text"), ROUND_TRIP)
def test_print(elems: tuple, text: str) -> None:
    assert str(Path.build(elems)) == text


@pytest.mark.parametrize(("elems", "text"), ROUND_TRIP)
def test_parse(elems: tuple, text: str) -> None:
    p = P(text)
    assert type(p) is Path
    assert typed(tuple(p)) == typed(elems)


# the escape table of the tutorial, and other accepted spellings
@pytest.mark.parametrize(
    ("text", "elems"),
    [
        (":.", (".",)),
        ("::", (":",)),
        (":_", (" ",)),
        (":t", (True,)),
        (":f", (False,)),
        (":n", (None,)),
        (":e", ("",)),
        (":x1f", (31,)),
        (":xFF", (255,)),
        (":x1f_2", (0x1F2,)),
        (":x1.a", (1, "a")),
        (":b101", (5,)),
        (":b10_1", (5,)),
        (":y00ff", (b"\x00\xff",)),
        (":y", (b"",)),
        (":va:.b", (b"a.b",)),
        (":vab:_c_d", (b"ab c_d",)),
        (":12", (12,)),
        (":0x10", (16,)),
        (":-0x10", (-16,)),
        (":+3", (3,)),
        (":1_000", (1000,)),
        (":1e5", (100000.0,)),
        (":'a'", ("a",)),
        (":'a:_b'", ("a b",)),
        (":b'x'", None),  # ':b' takes binary digits: an error, see below
        (":None", (None,)),
        (":True", (True,)),
        (":1,", ((1,),)),
        (":(1,(2,3))", ((1, (2, 3)),)),
        (":1:_", (1,)),
        ("a b", ("a b",)),
        ("a. b", ("a", " b")),
        ("a::.b", ("a:", "b")),
        (":t::a", (True, ":a")),
        (":t:.", (True, ".")),
        (":e::", ("", ":")),
        ("a.:t", ("a", True)),
        ("a.:1.b", ("a", 1, "b")),
        ("a.::", ("a", ":")),
        (":n:t", (None, True)),
        ("__", ("__",)),
    ],
)
def test_escapes(text: str, elems: tuple | None) -> None:
    if elems is None:
        with pytest.raises(ValueError):
            P(text)
        return
    assert typed(tuple(P(text))) == typed(elems)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "The empty string is not a path (use ':' for the root)"),
        (".a", "Invalid path '.a' at position 0: empty element (a leading '.')"),
        ("a.", "Invalid path 'a.' at position 1: empty element (a trailing '.')"),
        ("a..b", "Invalid path 'a..b' at position 2: empty element ('..')"),
        (":1..a", "Invalid path ':1..a' at position 3: empty element ('..')"),
        (":t.", "Invalid path ':t.' at position 2: empty element (a trailing '.')"),
        (
            "a:",
            "Invalid path 'a:' at position 1: a ':' at the end needs an escape character after it",
        ),
        (
            ":distkv",
            "Invalid path ':distkv' at position 0: Cannot evaluate 'distkv': names are not allowed",
        ),
        (
            "a:foo()",
            "Invalid path 'a:foo()' at position 1: Cannot evaluate 'foo()': "
            "function calls are not allowed",
        ),
        (
            ":1+2",
            "Invalid path ':1+2' at position 0: Cannot evaluate '1+2': operators are not allowed",
        ),
        (":ta", "Invalid path ':ta' at position 0: Cannot evaluate 'ta': names are not allowed"),
        (":ea", "Invalid path ':ea' at position 0: Cannot evaluate 'ea': names are not allowed"),
        (":1::", "Invalid path ':1::' at position 0: Cannot evaluate '1:': invalid syntax"),
        (
            ":[1]",
            "Invalid path ':[1]' at position 0: '[1]' is not usable as a path element (a list)",
        ),
        (
            ":{1::2}",
            "Invalid path ':{1::2}' at position 0: "
            "'{1:2}' is not usable as a path element (a dict)",
        ),
        (
            ":{1}",
            "Invalid path ':{1}' at position 0: '{1}' is not usable as a path element (a set)",
        ),
        (
            ":{1:2}",
            "Invalid path ':{1:2}' at position 0: Cannot evaluate '{1': "
            "invalid syntax ('{' was never closed)",
        ),
        (":x", "Invalid path ':x' at position 0: bad hex number ''"),
        (":xz", "Invalid path ':xz' at position 0: bad hex number 'z'"),
        ("a:x1f:.", "Invalid path 'a:x1f:.' at position 1: bad hex number '1f.'"),
        (":b2", "Invalid path ':b2' at position 0: bad binary number '2'"),
        (":y0", "Invalid path ':y0' at position 0: bad hex bytes '0'"),
        (":yzz", "Invalid path ':yzz' at position 0: bad hex bytes 'zz'"),
        (":vü", "Invalid path ':vü' at position 0: bad ASCII bytes 'ü'"),
        (":t_", "Invalid path ':t_' at position 2: expected '.' or ':' before '_'"),
        (":e_", "Invalid path ':e_' at position 2: expected '.' or ':' before '_'"),
        (":m", "Invalid path ':m' at position 0: ':m' needs a mark after it"),
        (":mr:mq", "Invalid path ':mr:mq' at position 3: conflicting marks 'r' and 'q'"),
        ("a:mr.", "Invalid path 'a:mr.' at position 4: empty element (a trailing '.')"),
    ],
)
def test_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        P(text)
    assert str(info.value) == message


def test_not_text() -> None:
    with pytest.raises(TypeError, match="P\\(\\) wants a string, not int"):
        P(12)  # type: ignore[arg-type]


def test_p_passes_sequences() -> None:
    p = Path("a", 1)
    assert P(p) is p
    assert type(P(("a", 1))) is Path and P(("a", 1)) == p
    assert type(P(["a", 1])) is Path and P(["a", 1]) == p


def test_path_is_a_tuple() -> None:
    p = Path("a", "b", 3)
    assert isinstance(p, tuple)
    assert p == ("a", "b", 3)
    assert hash(p) == hash(("a", "b", 3))
    assert {p: 1}[("a", "b", 3)] == 1
    assert Path.build(x for x in "ab") == Path("a", "b")
    assert Path() == () and str(Path()) == ":"
    assert Path.from_str("a.b") == ("a", "b")


def test_slicing_and_indexing() -> None:
    p = P("a.b.c")
    assert p[1] == "b" and p[-1] == "c"
    assert type(p[1:]) is Path and p[1:] == ("b", "c")
    assert type(p[:0]) is Path and p[:0] == ()
    assert type(p[::2]) is Path and p[::2] == ("a", "c")


def test_adding() -> None:
    p = P("a.b")
    assert type(p + ("c",)) is Path and p + ("c",) == ("a", "b", "c")
    assert type(p + ["c"]) is Path
    assert type(p + P("c")) is Path
    assert type(("x",) + p) is Path and ("x",) + p == ("x", "a", "b")
    assert type(["x"] + p) is Path and ["x"] + p == ("x", "a", "b")
    with pytest.raises(TypeError):
        p + "c"  # noqa: B018
    assert type(p | ("c", 1)) is Path and p | ("c", 1) == ("a", "b", ("c", 1))
    assert p / 3 == ("a", "b", 3)


def test_repr() -> None:
    assert repr(P("a.b")) == "P('a.b')"
    assert repr(Path()) == "P(':')"
    assert repr(Path("x", ("a", 1))) == "P(\"x:'a',1\")"


def test_marks() -> None:
    p = P("a:mr.b")
    assert p.mark == "r"
    assert p == ("a", "b") == P("a.b")
    assert hash(p) == hash(P("a.b"))
    assert str(p) == ":mr.a.b"
    assert repr(p) == "P(':mr.a.b')"
    assert P(str(p)).mark == "r" and P(str(p)) == p
    assert P("a:mr").mark == "r" and P("a:mr") == ("a",)
    assert P("a:mr::b") == ("a", ":b")
    assert P(":mr:1").mark == "r" and P(":mr:1") == (1,)
    assert str(P(":mr:1")) == ":mr:1"
    assert P("a:mrb").mark == "rb"
    assert P(":mr:mr").mark == "r"
    empty = P(":mr:")
    assert empty == () and empty.mark == "r" and str(empty) == ":mr:"
    assert P("a.b").mark == ""
    # the mark sticks to '+' on the left, not to slices
    assert (p + ("c",)).mark == "r" and (p + ("c",)) == ("a", "b", "c")
    assert p[1:].mark == ""
    assert (P("x") + p).mark == "r" and (p | "c").mark == "r" and (p / "c").mark == "r"
    with pytest.raises(ValueError, match="^Cannot join paths with different marks: 'r', 'q'$"):
        p + P("c:mq")
    assert p.with_mark("").mark == "" and type(p.with_mark("")) is Path
    assert Path("a").with_mark("q").mark == "q"


def test_pickle_and_copy() -> None:
    for p in (P("a.b:12"), Path(), Path(("x", 1)), P("a:mr")):
        for q in (pickle.loads(pickle.dumps(p)), copy.copy(p), copy.deepcopy(p)):
            assert q == p
            assert isinstance(q, Path)
            assert q.mark == p.mark
    assert copy.deepcopy({"root": Path(":distkv")})["root"] == (":distkv",)


_names = st.text(alphabet=st.sampled_from("ab:._ -üx\n'\""), max_size=6) | st.text(max_size=4)
_scalars = (
    _names
    | st.integers()
    | st.integers(min_value=2**64, max_value=2**80)
    | st.booleans()
    | st.none()
    | st.binary(max_size=5)
    | st.floats(allow_nan=False, allow_infinity=False)
)
_tuples = st.recursive(
    st.tuples() | st.lists(_scalars, min_size=1, max_size=3).map(tuple),
    lambda inner: st.lists(inner | _scalars, min_size=2, max_size=3).map(tuple),
    max_leaves=6,
)
_element = _scalars | _tuples.filter(lambda t: len(t) != 1)


@given(st.lists(_element, max_size=5))
def test_text_round_trip(elems: list) -> None:
    """``P(str(p)) == p``, types included.

    Except for 1-tuples (documented: ``(1,)`` prints as ``:1``).
    """
    p = Path.build(elems)
    assert typed(tuple(P(str(p)))) == typed(tuple(p))


def test_one_tuple_does_not_round_trip() -> None:
    p = Path((1,))
    assert str(p) == ":1"
    assert P(str(p)) == (1,) and P(str(p))[0] == 1


# --- shortening ---------------------------------------------------------------


def test_shortener_example() -> None:
    """04 §5: get_tree of 'test' after setting test, test.foo, test.foo.bap, test.foo.bar.baz."""
    s = PathShortener(P("test"))
    assert s.short(P("test")) == (0, ())
    assert s.short(P("test.foo")) == (0, ("foo",))
    assert s.short(P("test.foo.bap")) == (1, ("bap",))
    assert s.short(P("test.foo.bar.baz")) == (1, ("bar", "baz"))


def test_shortener_types() -> None:
    """Empty prefix: depth-0 suffixes are Paths, the others plain tuples (10 §2)."""
    s = PathShortener()
    d, p = s.short(P(":"))
    assert (d, type(p)) == (0, Path)
    d, p = s.short(P("foo"))
    assert (d, p, type(p)) == (0, ("foo",), Path)
    d, p = s.short(P("foo.bar"))
    assert (d, p, type(p)) == (1, ("bar",), tuple)
    s = PathShortener(P("x"))
    d, p = s.short(P("x.a"))
    assert (d, p, type(p)) == (0, ("a",), tuple)


def test_shortener_records() -> None:
    s = PathShortener(P("a"))
    rec = {"path": P("a.b.c"), "value": 1}
    s(rec)
    assert rec == {"path": ("b", "c"), "value": 1, "depth": 0}
    rec = {"path": P("a.b.d")}
    s(rec)
    assert rec == {"path": ("d",), "depth": 1}


def test_shortener_refuses_outside_paths() -> None:
    s = PathShortener(P("a.b"))
    with pytest.raises(ValueError, match="^x.y is not below a.b$"):
        s.short(P("x.y"))


def test_longener() -> None:
    lg = PathLongener(P("test"))
    assert lg.long(0, ()) == P("test")
    assert lg.long(0, ("foo",)) == P("test.foo")
    assert lg.long(1, ["bap"]) == P("test.foo.bap")
    res = lg.long(1, P("bar.baz"))
    assert res == P("test.foo.bar.baz") and type(res) is Path
    rec = {"path": ("x",), "depth": 2, "value": 3}
    lg(rec)
    assert rec == {"path": P("test.foo.bar.x"), "value": 3}
    rec = {"value": 3}
    lg(rec)
    assert rec == {"value": 3}


def test_longener_bad_depth() -> None:
    lg = PathLongener()
    lg.long(0, ("a", "b"))
    with pytest.raises(ValueError, match="^Bad depth 3: the previous path has 2 elements$"):
        lg.long(3, ("c",))
    with pytest.raises(ValueError, match="^Bad depth -1"):
        lg.long(-1, ("c",))
    with pytest.raises(ValueError, match="^Bad depth '1'"):
        lg.long("1", ("c",))  # type: ignore[arg-type]


@given(st.lists(st.lists(st.sampled_from(["a", "b", 1, None]), max_size=4), max_size=10))
def test_shorten_then_lengthen(paths: list[list]) -> None:
    prefix = P("pre.fix")
    s = PathShortener(prefix)
    lg = PathLongener(prefix)
    for elems in paths:
        full = prefix + elems
        depth, suffix = s.short(full)
        assert lg.long(depth, suffix) == full
