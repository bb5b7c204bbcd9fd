"""The request hot path's shortcuts give the same results as the long way.

Decoded paths are cached, message size limits are checked per burst when a
burst is small, field validation skips conversion when every typed field is
already fine, and a local write books its ticks in one call.
"""

from __future__ import annotations

import pytest

from distkv.codec import packb, unpackb
from distkv.core.store import Store
from distkv.exceptions import ClientError
from distkv.protocol import ProtocolError
from distkv.server.registry import REGISTRY
from distkv.server.session import _Reader
from distkv.util import attrdict
from distkv.util.path import Path


def test_repeated_paths_decode_equal() -> None:
    data = packb(Path("a", 1, None))
    first, second = unpackb(data), unpackb(data)
    assert first == second == Path("a", 1, None)
    assert type(first) is Path and type(second) is Path


def test_paths_with_mutable_elements_are_not_shared() -> None:
    data = packb(Path("a", {"k": 1}))
    first = unpackb(data)
    first[1]["k"] = 2
    assert unpackb(data) == Path("a", attrdict(k=1))


def test_many_distinct_paths_decode_correctly() -> None:
    for i in range(10_000):
        assert unpackb(packb(Path("fill", f"k{i}"))) == Path("fill", f"k{i}")


def test_small_burst_larger_than_the_limit_is_fine() -> None:
    reader = _Reader(64)
    msgs = [{"seq": i, "action": "get_tock"} for i in range(20)]
    data = b"".join(packb(m) for m in msgs)
    assert len(data) > 64
    got = reader.feed(data[:50]) + reader.feed(data[50:])
    assert got == msgs


def test_oversized_message_within_a_burst_is_refused() -> None:
    reader = _Reader(64)
    data = packb({"seq": 1}) + packb({"seq": 2, "value": "x" * 100}) + packb({"seq": 3})
    with pytest.raises(ProtocolError, match="message larger than 64 bytes"):
        reader.feed(data)


def test_non_map_in_a_small_burst_is_refused() -> None:
    reader = _Reader(1024)
    with pytest.raises(ProtocolError, match="expected a map, got int"):
        reader.feed(packb({"seq": 1}) + packb(5))


def test_validation_converts_and_refuses_as_before() -> None:
    cmd = REGISTRY.single["set_value"]
    ok = {"action": "set_value", "seq": 1, "path": Path("a"), "value": [1], "nchain": 2}
    cmd.validate(ok)
    assert ok["path"] == Path("a") and ok["nchain"] == 2
    conv = {"action": "set_value", "seq": 1, "path": ("a", "b"), "value": 1, "nchain": None}
    cmd.validate(conv)
    assert conv == {"action": "set_value", "seq": 1, "path": Path("a", "b"), "value": 1}
    assert type(conv["path"]) is Path
    with pytest.raises(ClientError, match="the field 'nchain' must be an integer, not 'x'"):
        cmd.validate({"action": "set_value", "seq": 1, "path": Path("a"), "nchain": "x"})
    with pytest.raises(ClientError, match="the field 'path' is required"):
        cmd.validate({"action": "set_value", "seq": 1, "value": 1})


def test_local_writes_keep_tick_bookkeeping() -> None:
    s = Store("a")
    entries = [s.follow(("k", i), create=True) for i in range(3)]
    for _ in range(3):
        for e in entries:
            s.local_change(e, 1)
    node = s.nodes["a"]
    assert node.present.to_wire() == [[7, 10]]
    assert node.superseded.to_wire() == [[1, 7]]
    assert not node.missing()
