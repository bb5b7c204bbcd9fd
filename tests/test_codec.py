"""The msgpack codec (distkv.codec)."""

from __future__ import annotations

import enum
from collections import namedtuple
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from distkv.codec import ExtType, make_unpacker, packb, packer, unpackb
from distkv.util import attrdict
from distkv.util.path import P, Path


def typed(x: Any) -> Any:
    """``x`` with every type made visible, so that True != 1 and () != []."""
    if isinstance(x, dict):
        return (type(x).__name__, [(typed(k), typed(v)) for k, v in x.items()])
    if isinstance(x, (tuple, list)):
        return (type(x).__name__, [typed(i) for i in x])
    return (type(x).__name__, x)


# 03 §1.3, verified against upstream
PATH_HEX = [
    ((), "c7 00 03"),
    (("a",), "d5 03 a1 61"),
    (("a", "b"), "d6 03 a1 61 a1 62"),
    ((None, "auth"), "c7 06 03 c0 a4 61 75 74 68"),
    ((".distkv", "config"), "c7 0f 03 a7 2e 64 69 73 74 6b 76 a6 63 6f 6e 66 69 67"),
    (("foo", 12, True), "c7 06 03 a3 66 6f 6f 0c c3"),
    (((1, 2),), "c7 03 03 92 01 02"),
]


@pytest.mark.parametrize(("elems", "hexdata"), PATH_HEX)
def test_path_encoding(elems: tuple, hexdata: str) -> None:
    p = Path.build(elems)
    assert packb(p).hex(" ") == hexdata
    res = unpackb(bytes.fromhex(hexdata))
    assert type(res) is Path
    assert typed(tuple(res)) == typed(elems)


@pytest.mark.parametrize(
    ("obj", "hexdata"),
    [
        ("ü", "a2 c3 bc"),
        (b"\x00\xff", "c4 02 00 ff"),
        (bytearray(b"x"), "c4 01 78"),
        (0, "00"),
        (-1, "ff"),
        (2**64 - 1, "cf ff ff ff ff ff ff ff ff"),
        (-(2**63), "d3 80 00 00 00 00 00 00 00"),
        (2**64, "c7 09 02 01 00 00 00 00 00 00 00 00"),
        (2**100, "c7 0d 02 10 00 00 00 00 00 00 00 00 00 00 00 00"),
        (1.5, "cb 3f f8 00 00 00 00 00 00"),
        (True, "c3"),
        (False, "c2"),
        (None, "c0"),
        ((1, (2, 3)), "92 01 92 02 03"),
        ([1, [2]], "92 01 91 02"),
        (attrdict(a=1), "81 a1 61 01"),
        ({1: 2, None: 3, (1, 2): 4}, "83 01 02 c0 03 92 01 02 04"),
        (ExtType(5, b"abc"), "c7 03 05 61 62 63"),
        (
            Path(2**70, b"x", 1.5, P("a.b")),
            "c7 1e 03 c7 09 02 40 00 00 00 00 00 00 00 00 "
            "c4 01 78 cb 3f f8 00 00 00 00 00 00 d6 03 a1 61 a1 62",
        ),
        (Path(*["x"] * 20), "c7 28 03" + " a1 78" * 20),
        (
            {"seq": 1, "action": "get_value", "path": P("a.b"), "nchain": 2},
            "84 a3 73 65 71 01 a6 61 63 74 69 6f 6e a9 67 65 74 5f 76 61 6c 75 65 "
            "a4 70 61 74 68 d6 03 a1 61 a1 62 a6 6e 63 68 61 69 6e 02",
        ),
    ],
)
def test_encoding(obj: Any, hexdata: str) -> None:
    """Byte-exact encodings (the same bytes as upstream's packer)."""
    assert packb(obj).hex(" ") == hexdata


def test_decoded_types() -> None:
    res = unpackb(packb({"a": [1, (2, {"b": b"x"})], 2: None, (1, 2): "t"}))
    assert typed(res) == typed(attrdict({"a": (1, (2, attrdict(b=b"x"))), 2: None, (1, 2): "t"}))
    assert res.a[1][1].b == b"x"  # attribute access on maps
    assert list(res) == ["a", 2, (1, 2)]  # key order kept


def test_big_ints() -> None:
    for n in (2**64, 2**64 + 1, 2**200, 2**64 - 1, -(2**63)):
        assert unpackb(packb(n)) == n
    assert unpackb(bytes.fromhex("c70902010000000000000000")) == 2**64


def test_unknown_ext_codes_pass_through() -> None:
    for code in (4, 5, 42, 127):
        data = packb(ExtType(code, b"\x01\x02"))
        res = unpackb(data)
        assert res == ExtType(code, b"\x01\x02")
        assert packb(res) == data
    data = bytes.fromhex("d5 fe 01 02")  # code -2
    res = unpackb(data)
    assert isinstance(res, ExtType) and tuple(res) == (-2, b"\x01\x02")
    assert packb(res) == data


def test_packs_subclasses_as_base_types() -> None:
    class Color(enum.IntEnum):
        RED = 1

    class Name(str):
        pass

    Point = namedtuple("Point", "x y")  # noqa: PYI024

    class Big(int):
        pass

    assert packb(Color.RED) == packb(1)
    assert packb(Name("x")) == packb("x")
    assert packb(Point(1, 2)) == packb((1, 2))
    assert packb(Big(2**70)) == packb(2**70)
    assert packb([attrdict(a=(1,))]) == packb([{"a": [1]}])


def test_marked_path_packs_as_path() -> None:
    p = P("a.b:mr")
    assert packb(p) == packb(P("a.b"))


def test_moat_path_packs_as_ext3() -> None:
    from moat.lib.path import Path as MoatPath

    assert packb(MoatPath.build(["a", "b"])) == packb(P("a.b"))


@pytest.mark.parametrize(
    ("obj", "exc", "message"),
    [
        ({1, 2}, TypeError, "Unable to pack set object: {1, 2}"),
        (object, TypeError, "Unable to pack type object: <class 'object'>"),
        ([1, {"x": 1j}], TypeError, "Unable to pack complex object: 1j"),
        (
            -(2**63) - 1,
            ValueError,
            "Unable to pack -9223372036854775809: integers below -2**63 are not supported",
        ),
        (
            Path("a", -(2**64)),
            ValueError,
            "Unable to pack -18446744073709551616: integers below -2**63 are not supported",
        ),
    ],
)
def test_pack_errors(obj: Any, exc: type, message: str) -> None:
    with pytest.raises(exc) as info:
        packb(obj)
    assert str(info.value) == message
    assert packb("still fine") == b"\xaastill fine"


def test_malformed_path_payload() -> None:
    truncated = bytes.fromhex("c7 03 03 a3 61 62")  # a 3-byte string with 2 bytes
    with pytest.raises(ValueError, match="^Malformed path \\(ext 3\\) payload: a36162$"):
        unpackb(truncated)
    # the pooled path decoder is not left with the broken bytes
    assert unpackb(packb(P("x.y"))) == P("x.y")


def test_streaming_unpacker() -> None:
    msgs = [{"seq": i, "path": P("a") + (i,), "v": (1, 2)} for i in range(50)]
    data = b"".join(packb(m) for m in msgs)
    up = make_unpacker()
    got = []
    for i in range(0, len(data), 7):  # in odd-sized pieces
        up.feed(data[i : i + 7])
        got.extend(up)
    assert got == msgs
    assert all(type(m) is attrdict and type(m.path) is Path and type(m.v) is tuple for m in got)


def test_make_unpacker_passes_options() -> None:
    up = make_unpacker(max_buffer_size=10)
    with pytest.raises(msgpack.BufferFull):
        up.feed(b"\x00" * 11)
    up = make_unpacker(use_list=True)
    up.feed(packb((1, 2)))
    assert next(up) == [1, 2]


def test_packer_is_reusable() -> None:
    pk = packer()
    assert pk.pack(P("a")) + pk.pack({"x": (1,)}) == packb(P("a")) + packb({"x": (1,)})


_keys = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=5)
_scalars = (
    _keys
    | st.integers(min_value=-(2**63), max_value=2**200)
    | st.floats(allow_nan=False)
    | st.binary(max_size=8)
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(_keys, inner, max_size=4).map(attrdict)
        | st.lists(inner, max_size=4).map(Path.build)
        | st.tuples(st.integers(0, 127), st.binary(max_size=5))
        .map(lambda t: ExtType(*t))
        .filter(lambda e: e.code not in (2, 3))
    ),
    max_leaves=25,
)


@given(_values)
def test_round_trip(value: Any) -> None:
    assert typed(unpackb(packb(value))) == typed(value)


def test_lists_decode_as_tuples() -> None:
    assert unpackb(packb([1, [2, {"a": [3]}]])) == (1, (2, {"a": (3,)}))
