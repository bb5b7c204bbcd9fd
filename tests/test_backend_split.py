"""Splitting big server messages into ``_p0`` chunks and joining them again (05 §4)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from distkv.codec import packb, unpackb
from distkv.server.backend.split import BadChunkError, Joiner, Splitter
from distkv.util.path import P


def test_small_message_is_sent_as_is() -> None:
    msg = {"node": "test_1", "tick": 1, "prev": None, "path": P("foo.bar"), "value": "baz"}
    payloads = Splitter("test_1").pack(msg)
    assert payloads == [packb(msg)]
    assert Joiner().feed(unpackb(payloads[0])) == msg


def test_450_bytes_is_not_split_but_451_is() -> None:
    s = Splitter("n")
    overhead = len(packb({"value": b"x" * 300})) - 300  # map, key, bin16 header
    for size, parts in ((450, 1), (451, 2)):
        msg = {"value": b"x" * (size - overhead)}
        assert len(packb(msg)) == size
        assert len(s.pack(msg)) == parts


def test_600_byte_value_from_test_1_makes_two_chunks_of_429_and_the_rest() -> None:
    # the wire example (16 §5): 450 - 15 - len("test_1") = 429
    msg = {"node": "test_1", "tick": 4, "prev": None, "path": P("big"), "value": "v" * 600,
           "tock": 31}
    data = packb(msg)
    s = Splitter("test_1")
    parts = [unpackb(p) for p in s.pack(msg)]
    assert [p["_p0"][:3] for p in parts] == [("test_1", 1, 1), ("test_1", 1, -2)]
    assert len(parts[0]["_p0"][3]) == 429
    assert parts[0]["_p0"][3] + parts[1]["_p0"][3] == data
    # the next split message gets the next sequence number
    assert [unpackb(p)["_p0"][:3] for p in s.pack(msg)] == [("test_1", 2, 1), ("test_1", 2, -2)]


def test_chunk_length_depends_on_the_node_name() -> None:
    msg = {"value": b"\x00" * 5000}
    for name in ("a", "a-much-longer-node-name"):
        parts = [unpackb(p)["_p0"] for p in Splitter(name).pack(msg)]
        assert {len(p[3]) for p in parts[:-1]} == {450 - 15 - len(name)}
        assert [p[2] for p in parts] == [*range(1, len(parts)), -len(parts)]
        assert all(len(packb({"_p0": p})) <= 450 for p in parts)


def test_chunks_in_any_order_join_to_the_original() -> None:
    msg = {"path": P("a.b"), "value": tuple(range(1000)), "tock": 5}
    parts = [unpackb(p) for p in Splitter("x").pack(msg)]
    assert len(parts) > 3
    random.Random(3).shuffle(parts)
    j = Joiner()
    results = [j.feed(p) for p in parts]
    assert results[:-1] == [None] * (len(parts) - 1)
    assert results[-1] == msg
    assert j.pending == 0


def test_messages_of_two_senders_interleave() -> None:
    a, b = Splitter("a"), Splitter("b")
    ma, mb = {"value": "a" * 1000}, {"value": "b" * 1000}
    pa, pb = [unpackb(p) for p in a.pack(ma)], [unpackb(p) for p in b.pack(mb)]
    j = Joiner()
    out = [r for x, y in zip(pa, pb, strict=True) for r in (j.feed(x), j.feed(y)) if r is not None]
    assert out == [ma, mb]


def test_existing_p_keys_survive_the_round_trip() -> None:
    msg = {"_p0": "zero", "_p1": ("one",), "x": 1}
    (payload,) = Splitter("n").pack(msg)
    # on the wire the user's keys moved up by one and _p0 is the empty marker
    assert unpackb(payload) == {"_p0": "", "_p1": "zero", "_p2": ("one",), "x": 1}
    assert msg == {"_p0": "zero", "_p1": ("one",), "x": 1}  # the caller's map is untouched
    assert Joiner().feed(unpackb(payload)) == msg


def test_existing_p_keys_in_a_split_message() -> None:
    msg = {"_p0": b"y" * 2000, "value": 3}
    parts = [unpackb(p) for p in Splitter("n").pack(msg)]
    j = Joiner()
    assert [j.feed(p) for p in parts][-1] == msg


def test_upstream_style_message_with_only_the_marker() -> None:
    # what an upstream sender produces for a reassembled or escaped map
    assert Joiner().feed({"_p0": "", "x": 1}) == {"x": 1}


def test_incomplete_messages_are_bounded() -> None:
    j = Joiner(max_pending=3)
    s = Splitter("n")
    firsts = [unpackb(s.pack({"v": "x" * 1000})[0]) for _ in range(5)]
    for p in firsts:
        assert j.feed(p) is None
    assert (j.pending, j.dropped) == (3, 2)


def test_incomplete_bytes_are_bounded() -> None:
    j = Joiner(max_bytes=1000)
    s = Splitter("n")
    for _ in range(4):
        j.feed(unpackb(s.pack({"v": "x" * 1000})[0]))
    assert j.pending == 2  # 2 × 449 bytes fit, a third one pushes the oldest out
    assert j.dropped == 2


def test_a_duplicated_chunk_does_not_break_joining() -> None:
    msg = {"value": "z" * 1200}
    parts = [unpackb(p) for p in Splitter("n").pack(msg)]
    j = Joiner()
    assert j.feed(parts[0]) is None
    assert j.feed(parts[0]) is None
    assert [j.feed(p) for p in parts[1:]][-1] == msg


@pytest.mark.parametrize(
    "part",
    [
        ["n", 1, 1],  # too short
        "garbage",
        ["n", 1, 0, b"x"],  # position 0 does not exist
        ["n", "1", 1, b"x"],
        ["n", 1, 1, "not bytes"],
        [["unhashable"], 1, 1, b"x"],
    ],
)
def test_malformed_chunks_are_refused(part: object) -> None:
    with pytest.raises(BadChunkError, match="malformed message part"):
        Joiner().feed({"_p0": part})


def test_reassembled_garbage_is_refused() -> None:
    j = Joiner()
    with pytest.raises(BadChunkError, match="is not a map"):
        j.feed({"_p0": ["n", 1, -1, packb([1, 2])]})
    with pytest.raises(BadChunkError, match="does not unpack"):
        j.feed({"_p0": ["n", 2, -1, b"\xc1"]})


def test_too_long_node_name_is_refused() -> None:
    with pytest.raises(ValueError, match="node name too long"):
        Splitter("x" * 435)


values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**70) | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=5).map(tuple)
    | st.dictionaries(st.text(max_size=4), inner, max_size=5),
    max_leaves=40,
)


@given(
    # escaping only covers _p keys that run from _p0 without a gap (as upstream's)
    msg=st.builds(
        lambda plain, ps: {**plain, **{f"_p{i}": v for i, v in enumerate(ps)}},
        st.dictionaries(st.sampled_from(["value", "path", "x"]), values),
        st.lists(values, max_size=3),
    ),
    node=st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=30),
    seed=st.integers(0, 1000),
)
def test_round_trip(msg: dict, node: str, seed: int) -> None:
    parts = [unpackb(p) for p in Splitter(node).pack(msg)]
    assert all(len(packb(p)) <= 450 + 15 for p in parts)
    random.Random(seed).shuffle(parts)
    j = Joiner()
    done = [r for r in (j.feed(p) for p in parts) if r is not None]
    assert done == [msg]
