"""YAML input and output (distkv.util.yaml)."""

from __future__ import annotations

import io
from typing import Any

import pytest
import yaml

from distkv.util import attrdict
from distkv.util.path import P, Path
from distkv.util.yaml import ydump, yload, yprint


def test_dump_tags_and_styles() -> None:
    data = attrdict(
        path=P("a.b"),
        root=Path(),
        cfg=P(":.distkv.config"),
        text=b"hello",
        ctl=b"a\x01",
        short=b"\x00\xff",
        long=bytes(range(200, 240)),
        seq=(1, 2, (3,)),
        lines="line1\nline2\n",
        none=None,
        nested={"x": P("foo:12:t"), "y": [attrdict(b=1, a=2)]},
    )
    assert ydump(data) == (
        "path: !P a.b\n"
        "root: !P ':'\n"
        "cfg: !P :.distkv.config\n"
        "text: !bin hello\n"
        'ctl: !bin "a\\x01"\n'
        "short: !hex 00:ff\n"
        "long: !!binary |\n"
        "  yMnKy8zNzs/Q0dLT1NXW19jZ2tvc3d7f4OHi4+Tl5ufo6err7O3u7w==\n"
        "seq:\n"
        "- 1\n"
        "- 2\n"
        "- - 3\n"
        "lines: |\n"
        "  line1\n"
        "  line2\n"
        "none: null\n"
        "nested:\n"
        "  x: !P foo:12:t\n"
        "  y:\n"
        "  - b: 1\n"
        "    a: 2\n"
    )


def test_hex_limit() -> None:
    """Non-ASCII bytes: !hex below 33 bytes, !!binary from 33 on."""
    assert ydump(b"\xff" * 32) == "!hex " + ":".join(["ff"] * 32) + "\n...\n"
    assert ydump(b"\xff" * 33).startswith("!!binary |\n")


def test_load_tags() -> None:
    text = (
        "a: !P a.b\n"
        "b: !P ':'\n"
        "c: !bin abc\n"
        "d: !hex 00:ff\n"
        "e: !hex 00ff10\n"
        "f: !!binary AP8=\n"
        "g: !P [a, 1]\n"
        "h: [1, 2]\n"
    )
    assert yload(text) == {
        "a": ("a", "b"),
        "b": (),
        "c": b"abc",
        "d": b"\x00\xff",
        "e": b"\x00\xff\x10",
        "f": b"\x00\xff",
        "g": ("a", 1),
        "h": [1, 2],
    }
    res = yload(text)
    assert type(res["a"]) is Path and type(res["g"]) is Path
    assert type(res) is dict


def test_load_errors() -> None:
    with pytest.raises(yaml.YAMLError, match="!hex wants hex digits, not 'zz'"):
        yload("a: !hex zz")
    with pytest.raises(ValueError, match="Invalid path 'a..b'"):
        yload("a: !P a..b")


def test_load_attr_and_streams() -> None:
    res = yload("a:\n  b: 1\nc: [{d: 2}]\n", attr=True)
    assert type(res) is attrdict and res.a.b == 1 and res.c[0].d == 2
    assert list(yload("a: 1\n---\nb: !P x.y\n", multi=True)) == [{"a": 1}, {"b": P("x.y")}]
    assert yload(io.StringIO("x: 1\n")) == {"x": 1}
    assert yload(b"x: 1\n") == {"x": 1}


@pytest.mark.parametrize(
    "value",
    [
        {"a": P("a:12.b"), "b": b"\x00", "c": b"text", "d": "multi\nline", "e": [1, 2.5, None]},
        [P(":"), P(":e"), P(":mr.x"), b"", bytes(range(256))],
        {1: 2, None: 3, "x": {"y": {"z": True}}},
        "plain",
        P("a.b"),
        None,
    ],
)
def test_round_trip(value: Any) -> None:
    assert yload(ydump(value)) == value


def test_tuples_load_as_lists() -> None:
    assert yload(ydump({"t": (1, (2,))})) == {"t": [1, [2]]}


def test_keys_keep_their_order() -> None:
    assert ydump({"b": 1, "a": 2, "c": 3}) == "b: 1\na: 2\nc: 3\n"


@pytest.mark.parametrize(
    ("value", "output"),
    [
        (123, "123\n"),
        (2**70, "1180591620717411303424\n"),
        (3.5, "3.5\n"),
        (True, "True\n"),
        ("hello", "'hello'\n"),
        ("a\nb", "'a\\nb'\n"),
        (b"y", "b'y'\n"),
        (None, "null\n...\n"),
        (P("a.b"), "!P a.b\n...\n"),
        (P(":"), "!P ':'\n"),
        ([1, 2], "- 1\n- 2\n"),
        ((1, 2), "- 1\n- 2\n"),
        ({"a": 1}, "a: 1\n"),
        ({P("two.three"): 123}, "!P two.three: 123\n"),
    ],
)
def test_yprint(value: Any, output: str, capsys: pytest.CaptureFixture[str]) -> None:
    yprint(value)
    assert capsys.readouterr().out == output
    buf = io.StringIO()
    yprint(value, stream=buf)
    assert buf.getvalue() == output


def test_recursive_listing_output() -> None:
    """03 §4: the records of a recursive listing without -d."""
    buf = io.StringIO()
    for rec in (
        {P("two.three"): 123},
        {P("two.three.four"): 1234},
        {P("two.three.four.five"): {"one": 1, "two": 2}},
    ):
        yprint([rec], stream=buf)
    assert buf.getvalue() == (
        "- !P two.three: 123\n"
        "- !P two.three.four: 1234\n"
        "- !P two.three.four.five:\n"
        "    one: 1\n"
        "    two: 2\n"
    )


def test_dict_output() -> None:
    """03 §4: the folded output of -d_."""
    data = {"two": {"three": {"_": 123, "four": {"_": 1234, "five": {"_": {"one": 1, "two": 2}}}}}}
    assert ydump(data) == (
        "two:\n"
        "  three:\n"
        "    _: 123\n"
        "    four:\n"
        "      _: 1234\n"
        "      five:\n"
        "        _:\n"
        "          one: 1\n"
        "          two: 2\n"
    )
