"""Wire conformance: raw msgpack over TCP against a real ``distkv server``.

The exchanges of spec 16 §1-3 are replayed in order on one fresh server whose
root holds 123 (node ``test_0``), and every reply is compared field by field:
exact keys and values where the protocol fixes them (ticks included, since the
replay is deterministic), type and consistency only for tocks. Also: the
greeting, the ``qlen`` hello, stream flow control with a small window, the
path forms of shortened stream records, and the ext-3/ext-2 bytes themselves.

Run with ``DISTKV_WIRE_TARGET=upstream`` to check the assertions against the
released 0.65.0 (see tests/upstream.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import msgpack
import pytest
from upstream import broker_fixture, upstream_venv_fixture, wire_server  # noqa: F401
from wire import TOCK, WireClient

from distkv.codec import packb
from distkv.util.path import Path

NODE = "test_0"
SERVER_ARGS = ["-e", "-I", "123", NODE]


def P(*elems: Any) -> Path:  # noqa: N802 - reads like the spec's P('…')
    return Path(*elems)


def chain(tick: int) -> dict:
    return {"node": NODE, "tick": tick, "prev": None}


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest) -> Iterator[Any]:
    with wire_server(request, SERVER_ARGS) as s:
        yield s


# ---------------------------------------------------------------------------
# The replay of spec 16 §1-3.


@dataclass
class Replay:
    """What the server answered during the replay, by request seq."""

    greeting: dict = field(default_factory=dict)
    replies: dict[int, Any] = field(default_factory=dict)
    broke_at: str | None = None

    def __getitem__(self, seq: int) -> Any:
        if seq not in self.replies:
            pytest.fail(f"request {seq} was not answered: the replay stopped ({self.broke_at})")
        return self.replies[seq]


def run_replay(port: int) -> Replay:
    res = Replay()
    c = WireClient(port)
    replies = res.replies

    def single(msg: dict) -> None:
        replies[msg["seq"]] = c.request(msg)

    def stream(msg: dict) -> None:
        replies[msg["seq"]] = c.stream(msg)

    try:
        res.greeting = c.greeting
        c.send({"seq": 0, "qlen": 10})
        single({"seq": 1, "action": "get_value", "path": P()})
        single({"seq": 2, "action": "get_value", "path": P("nope", "x"), "nchain": 2})
        single({"seq": 3, "action": "set_value", "path": P("test"), "value": 1234,
                "nchain": 2, "chain": None})
        single({"seq": 4, "action": "set_value", "path": P("test"), "value": 1234,
                "nchain": 2, "chain": None})
        single({"seq": 5, "action": "set_value", "path": P("test"), "value": 123,
                "nchain": 2, "chain": {"node": NODE, "tick": 2}})
        single({"seq": 6, "action": "set_value", "path": P("test", "foo"), "value": 123,
                "nchain": 0})
        single({"seq": 7, "action": "set_value", "path": P("test", "foo", "bap"), "value": 12,
                "nchain": 0})
        single({"seq": 8, "action": "set_value", "path": P("test", "foo", "bar", "baz"),
                "value": 1, "nchain": 0})
        single({"seq": 9, "action": "set_value", "path": P("test"), "value": 1234, "nchain": 0})
        stream({"seq": 10, "action": "get_tree", "path": P("test"), "nchain": 0})
        stream({"seq": 11, "action": "get_tree", "path": P(), "nchain": 1, "min_depth": 1,
                "max_depth": 2})
        single({"seq": 12, "action": "set_value", "path": P("test"), "value": 1234,
                "nchain": 1, "prev": 999})
        single({"seq": 13, "action": "set_value", "path": P("test"), "value": 5,
                "chain": {"node": NODE, "tick": 1}})
        single({"seq": 14, "action": "delete_value", "path": P("test", "foo"), "nchain": 3})
        single({"seq": 15, "action": "delete_value", "path": P("never", "was"), "nchain": 3})
        single({"seq": 16, "action": "enum", "path": P()})
        single({"seq": 17, "action": "enum", "path": P("test"), "with_data": True})
        single({"seq": 18, "action": "get_state", "nodes": True, "known": True,
                "missing": True, "remote_missing": True, "present": True, "deleted": True,
                "node_drop": True})

        # watch with fetch, one live change, stop
        c.send({"seq": 20, "action": "watch", "path": P("test"), "fetch": True, "nchain": 1})
        watch = []
        while not watch or watch[-1].get("state") != "uptodate":
            watch.append(c.recv_for(20))
        replies[20] = watch
        single({"seq": 21, "action": "set_value", "path": P("test", "foo", "zz"), "value": "w",
                "nchain": 0})
        watch.append(c.recv_for(20))
        single({"seq": 22, "action": "stop", "task": 20})
        watch.append(c.recv_for(20))

        single({"seq": 23, "action": "get_tock"})
        single({"seq": 24, "action": "test_acl", "path": P("test")})
        single({"seq": 25, "action": "auth_info"})
        single({"seq": 27, "action": "set_value", "path": P("x"), "value": 1, "idem": True,
                "nchain": 1})
        single({"seq": 28, "action": "set_value", "path": P("x"), "value": 1, "idem": True,
                "nchain": 1})
        single({"seq": 31, "action": "delete_tree", "path": P("test"), "nchain": 0})
        stream({"seq": 40, "action": "get_tree", "path": P("test"), "nchain": 0})
        single({"seq": 32, "action": "get_value", "node": NODE, "tick": 1})
        single({"seq": 33, "action": "get_value", "node": NODE, "tick": 5, "nchain": 2})
        single({"seq": 34, "action": "root", "path": P("x")})
    except Exception as exc:  # noqa: BLE001 - recorded; the tests name the missing replies
        res.broke_at = f"after {sorted(replies)[-1:]}: {exc!r}"
    finally:
        c.close()
    return res


@pytest.fixture(scope="module")
def replay(server: Any) -> Replay:
    return run_replay(server.port)


def test_replay_greeting(replay: Replay) -> None:
    g = replay.greeting
    assert g == {"seq": 0, "version": g.get("version"), "node": NODE, "tick": 1, "tock": TOCK,
                 "qlen": 10}
    assert isinstance(g["version"], tuple) and len(g["version"]) == 3
    assert all(isinstance(v, int) for v in g["version"])
    assert g["version"] >= (0, 65, 0)


def test_get_root_value(replay: Replay) -> None:
    assert replay[1] == {"value": 123, "tock": TOCK, "seq": 1}


def test_get_missing_entry(replay: Replay) -> None:
    assert replay[2] == {"chain": None, "seq": 2, "tock": TOCK}


def test_set_new_entry_with_chain_none(replay: Replay) -> None:
    assert replay[3] == {"changed": True, "chain": chain(2), "tock": TOCK, "seq": 3}


def test_set_existing_entry_with_chain_none_fails(replay: Replay) -> None:
    assert replay[4] == {"error": "ClientChainError('Entry already exists at test')",
                         "seq": 4, "tock": TOCK}


def test_set_with_matching_chain(replay: Replay) -> None:
    assert replay[5] == {"changed": True, "chain": chain(3), "tock": TOCK, "seq": 5}


def test_set_without_chain_on_new_entries(replay: Replay) -> None:
    for seq in (6, 7, 8):
        assert replay[seq] == {"changed": True, "tock": TOCK, "seq": seq}


def test_set_without_chain_returns_prev(replay: Replay) -> None:
    assert replay[9] == {"changed": True, "prev": 123, "tock": TOCK, "seq": 9}


def test_write_tocks_increase(replay: Replay) -> None:
    tocks = [replay[s]["tock"] for s in (3, 5, 6, 7, 8, 9)]
    assert tocks == sorted(tocks) and len(set(tocks)) == len(tocks)


def test_get_tree_below_a_path(replay: Replay) -> None:
    msgs = replay[10]
    t = {s: replay[s]["tock"] for s in (6, 7, 8, 9)}  # the tocks the writes reported
    assert msgs == [
        {"state": "start", "seq": 10, "wseq": 1, "tock": TOCK},
        {"value": 1234, "tock": t[9], "path": (), "depth": 0, "seq": 10, "wseq": 2},
        {"value": 123, "tock": t[6], "path": ("foo",), "depth": 0, "seq": 10, "wseq": 3},
        {"value": 12, "tock": t[7], "path": ("bap",), "depth": 1, "seq": 10, "wseq": 4},
        {"value": 1, "tock": t[8], "path": ("bar", "baz"), "depth": 1, "seq": 10, "wseq": 5},
        {"state": "end", "seq": 10, "wseq": 6, "tock": TOCK},
    ]
    # below a non-empty prefix every shortened path is a plain array
    assert [type(m["path"]) for m in msgs[1:-1]] == [tuple] * 4


def test_get_tree_from_root_with_depth_limits(replay: Replay) -> None:
    msgs = replay[11]
    assert msgs == [
        {"state": "start", "seq": 11, "wseq": 1, "tock": TOCK},
        {"value": 1234, "chain": chain(7), "tock": replay[9]["tock"], "path": ("test",),
         "depth": 0, "seq": 11, "wseq": 2},
        {"value": 123, "chain": chain(4), "tock": replay[6]["tock"], "path": ("foo",),
         "depth": 1, "seq": 11, "wseq": 3},
        {"state": "end", "seq": 11, "wseq": 4, "tock": TOCK},
    ]
    # nothing stripped (root prefix, depth 0): a Path; otherwise a plain array
    assert type(msgs[1]["path"]) is Path
    assert type(msgs[2]["path"]) is tuple


def test_prev_mismatch(replay: Replay) -> None:
    assert replay[12] == {"error": "ClientError('Data is 1234 not 999 at test')",
                          "seq": 12, "tock": TOCK}


def test_chain_mismatch(replay: Replay) -> None:
    assert replay[13] == {
        "error": "ClientChainError('Chain is <NodeEvent test_0:7 (7,)> not "
                 "<NodeEvent test_0:1 (1,)> for test')",
        "seq": 13,
        "tock": TOCK,
    }


def test_delete_value(replay: Replay) -> None:
    assert replay[14] == {"changed": True, "prev": 123, "chain": chain(8), "tock": TOCK,
                          "seq": 14}


def test_delete_missing_value_still_creates_an_event(replay: Replay) -> None:
    assert replay[15] == {"changed": False, "chain": chain(9), "tock": TOCK, "seq": 15}


def test_enum_root(replay: Replay) -> None:
    assert replay[16] == {"result": ("test",), "seq": 16, "tock": TOCK}


def test_enum_with_data_skips_valueless_children(replay: Replay) -> None:
    assert replay[17] == {"result": {}, "seq": 17, "tock": TOCK}


def test_get_state(replay: Replay) -> None:
    assert replay[18] == {
        "nodes": {NODE: 9},
        "known": {NODE: ((2, 5),)},
        "present": {NODE: (1, (5, 10))},
        "deleted": {NODE: ((8, 10),)},
        "missing": {},
        "remote_missing": {},
        "node_drop": (),
        "node": NODE,
        "tock": TOCK,
        "seq": 18,
    }


def test_watch_fetch_change_stop(replay: Replay) -> None:
    msgs = replay[20]
    t = {s: replay[s]["tock"] for s in (7, 8, 9, 21)}
    assert msgs == [
        {"state": "start", "seq": 20, "wseq": 1, "tock": TOCK},
        {"value": 1234, "chain": chain(7), "tock": t[9], "path": (), "depth": 0,
         "seq": 20, "wseq": 2},
        # the valueless `foo` is skipped
        {"value": 12, "chain": chain(5), "tock": t[7], "path": ("foo", "bap"), "depth": 0,
         "seq": 20, "wseq": 3},
        {"value": 1, "chain": chain(6), "tock": t[8], "path": ("bar", "baz"), "depth": 1,
         "seq": 20, "wseq": 4},
        {"state": "uptodate", "seq": 20, "wseq": 5, "tock": TOCK},
        {"value": "w", "chain": chain(10), "tock": t[21], "path": ("zz",), "depth": 1,
         "seq": 20, "wseq": 6},
        {"state": "end", "seq": 20, "wseq": 7, "tock": TOCK},
    ]


def test_live_change_reply_and_stop(replay: Replay) -> None:
    assert replay[21] == {"changed": True, "tock": TOCK, "seq": 21}
    assert replay[22] == {"result": True, "seq": 22, "tock": TOCK}


def test_get_tock_is_fresh(replay: Replay) -> None:
    assert replay[23] == {"tock": TOCK, "seq": 23}
    assert replay[23]["tock"] > replay[21]["tock"]


def test_test_acl_without_auth(replay: Replay) -> None:
    assert replay[24] == {"access": True, "seq": 24, "tock": TOCK}


def test_auth_info_without_auth(replay: Replay) -> None:
    assert replay[25] == {"seq": 25, "tock": TOCK}


def test_idempotent_set(replay: Replay) -> None:
    assert replay[27] == {"changed": True, "chain": chain(11), "tock": TOCK, "seq": 27}
    # no new event: same chain, and the tock is the entry's (unchanged) one
    assert replay[28] == {"tock": replay[27]["tock"], "changed": False, "chain": chain(11),
                          "seq": 28}


def test_delete_tree_counts_deleted_values(replay: Replay) -> None:
    # test, test.foo.bap, test.foo.bar.baz and test.foo.zz had values. (0.65.0
    # also counted the valueless test.foo and test.foo.bar: spec 15 #4, fixed.)
    assert replay[31] == {"changed": 4, "seq": 31, "tock": TOCK}
    assert [m.get("state") for m in replay[40]] == ["start", "end"]


def test_get_value_by_event(replay: Replay) -> None:
    assert replay[32] == {"value": 123, "tock": replay[1]["tock"], "path": (), "seq": 32}
    assert type(replay[32]["path"]) is Path


def test_get_value_by_superseded_event(replay: Replay) -> None:
    assert replay[33] == {"error": "KeyError(5)", "seq": 33, "tock": TOCK}


def test_root_replies_with_the_new_root(replay: Replay) -> None:
    assert replay[34] == {"value": 1, "chain": chain(11), "tock": replay[27]["tock"],
                          "path": (), "seq": 34}


def test_delete_tree_stream(server: Any) -> None:
    """§2's delete_tree with nchain, with spec 15 #4 fixed: only entries that had
    a value produce a record (0.65.0 also sent `a` and the deleted `a.b`, and a
    spurious reply after the end)."""
    with WireClient(server.port, qlen=10) as c:
        c.request({"seq": 1, "action": "set_value", "path": P("dt", "b"), "value": 1})
        c.request({"seq": 2, "action": "delete_value", "path": P("dt", "b")})
        c.request({"seq": 3, "action": "set_value", "path": P("dt", "c"), "value": 2})
        tick = c.request({"seq": 4, "action": "set_value", "path": P("dt", "d"), "value": 3,
                          "nchain": 1})["chain"]["tick"]
        msgs = c.stream({"seq": 8, "action": "delete_tree", "path": P("dt"), "nchain": 2})
        # 0.65.0 sends these without wseq; if present they must count from 1
        wseqs = [m.pop("wseq") for m in msgs if "wseq" in m]
        assert wseqs in ([], list(range(1, len(msgs) + 1)))
        assert msgs == [
            {"state": "start", "seq": 8, "tock": TOCK},
            {"node": NODE, "tick": tick + 1, "prev": None, "path": ("c",), "old_value": 2,
             "tock": TOCK, "depth": 0, "seq": 8},
            {"node": NODE, "tick": tick + 2, "prev": None, "path": ("d",), "old_value": 3,
             "tock": TOCK, "depth": 0, "seq": 8},
            {"state": "end", "seq": 8, "tock": TOCK},
        ]
        assert c.collect(0.3) == []


# ---------------------------------------------------------------------------
# Connection start and flow control.


def test_greeting_then_silence_after_qlen_hello(server: Any) -> None:
    with WireClient(server.port) as c:
        g = c.greeting
        assert sorted(g) == ["node", "qlen", "seq", "tick", "tock", "version"]
        assert g["seq"] == 0 and g["node"] == NODE and g["qlen"] == 10
        assert isinstance(g["tick"], int) and isinstance(g["tock"], int)
        # the hello is not answered: the next message is the reply to seq 1
        c.send({"seq": 0, "qlen": 10})
        c.send({"seq": 1, "action": "get_tock"})
        assert c.recv() == {"tock": TOCK, "seq": 1}
        assert c.collect(0.2) == []


def fill(c: WireClient, prefix: str, n: int) -> None:
    """Write prefix.0 … prefix.(n-1) = i, pipelined."""
    for i in range(n):
        c.send({"seq": 1000 + i, "action": "set_value", "path": P(prefix, i), "value": i})
    for i in range(n):
        assert "error" not in c.recv_for(1000 + i)


def test_stream_waits_for_acks_with_a_small_window(server: Any) -> None:
    with WireClient(server.port, qlen=4) as c:
        fill(c, "fc", 12)
        c.send({"seq": 1, "action": "get_tree", "path": P("fc")})
        got = []

        def take(n: int) -> None:
            for _ in range(n):
                got.append(c.recv_for(1))
            # with W=4 at most 3 messages may be unacknowledged: then silence
            assert c.collect(0.3) == []

        take(3)  # wseq 1..3
        c.send({"seq": 1, "state": "ack", "ack": 3})
        take(3)  # wseq 4..6
        c.send({"seq": 1, "state": "ack", "ack": 6})
        take(3)  # wseq 7..9
        c.send({"seq": 1, "state": "ack", "ack": 9})
        take(3)  # wseq 10..12
        c.send({"seq": 1, "state": "ack", "ack": 12})
        got += c.read_stream(1)
        assert [m["wseq"] for m in got] == list(range(1, 15))
        assert got[0]["state"] == "start" and got[-1]["state"] == "end"
        assert [m["value"] for m in got[1:-1]] == list(range(12))
        assert [m["path"] for m in got[1:-1]] == [(i,) for i in range(12)]


def test_no_flow_control_without_the_hello(server: Any) -> None:
    with WireClient(server.port) as c:  # never sends {seq: 0, qlen: …}: window 0
        fill(c, "nofc", 30)
        msgs = c.stream({"seq": 1, "action": "get_tree", "path": P("nofc")})
        assert [m.get("value") for m in msgs[1:-1]] == list(range(30))


def test_per_request_qlen_is_a_window_too(server: Any) -> None:
    with WireClient(server.port) as c:
        fill(c, "rq", 10)
        c.send({"seq": 1, "action": "get_tree", "path": P("rq"), "qlen": 5})
        first = [c.recv_for(1) for _ in range(4)]
        assert [m["wseq"] for m in first] == [1, 2, 3, 4]
        assert c.collect(0.3) == []
        c.send({"seq": 1, "state": "ack", "ack": 4})
        rest = c.read_stream(1, ack=True, window=5)
        assert [m.get("value") for m in first[1:] + rest[:-1]] == list(range(10))


# ---------------------------------------------------------------------------
# The encoding itself: ext 3 (Path) and ext 2 (big int) bytes.


def raw_request(fields: list[tuple[str, bytes]]) -> bytes:
    """A request map with hand-encoded values (fields: name -> encoded value)."""
    out = bytearray([0x80 | len(fields)])
    for name, value in fields:
        out += msgpack.packb(name) + value
    return bytes(out)


def test_path_ext_bytes_in_requests_and_replies(server: Any) -> None:
    with WireClient(server.port) as c:
        # ("foo", 12, True) = foo:12:t, hand-encoded
        c.send_raw(raw_request([
            ("seq", packb(1)), ("action", packb("set_value")),
            ("path", bytes.fromhex("c70603a3666f6f0cc3")), ("value", packb(7)),
            ("nchain", packb(1)),
        ]))
        tick = c.recv_for(1)["chain"]["tick"]
        # a plain array path addresses the same entry
        assert c.request({"seq": 2, "action": "get_value", "path": ["foo", 12, True]}) \
            == {"value": 7, "tock": TOCK, "seq": 2}
        # the entry's full path comes back as ext 3 with exactly these bytes
        c.raw.clear()
        reply = c.request({"seq": 3, "action": "get_value", "node": NODE, "tick": tick})
        assert reply["path"] == ("foo", 12, True) and type(reply["path"]) is Path
        assert packb("path") + bytes.fromhex("c70603a3666f6f0cc3") in c.raw

        # a tuple as a path element: ((1, 2),) = :1,2
        c.send_raw(raw_request([
            ("seq", packb(4)), ("action", packb("set_value")),
            ("path", bytes.fromhex("c7030392" "0102")), ("value", packb("tup")),
            ("nchain", packb(1)),
        ]))
        tick = c.recv_for(4)["chain"]["tick"]
        c.raw.clear()
        reply = c.request({"seq": 5, "action": "get_value", "node": NODE, "tick": tick})
        assert reply["value"] == "tup" and reply["path"] == ((1, 2),)
        assert packb("path") + bytes.fromhex("c703039201" "02") in c.raw

        # ("a",) is a fixext 2; the root () an empty ext 8
        r = c.request({"seq": 6, "action": "set_value", "path": P("a"), "value": 0, "nchain": 1})
        c.raw.clear()
        c.request({"seq": 7, "action": "get_value", "node": NODE, "tick": r["chain"]["tick"]})
        assert packb("path") + bytes.fromhex("d503a161") in c.raw
        c.raw.clear()
        c.request({"seq": 8, "action": "get_value", "node": NODE, "tick": 1})
        assert packb("path") + bytes.fromhex("c70003") in c.raw


def test_bigint_ext_round_trip(server: Any) -> None:
    big = bytes.fromhex("c70902" "01" "0000000000000000")  # 2**64
    with WireClient(server.port) as c:
        c.send_raw(raw_request([
            ("seq", packb(1)), ("action", packb("set_value")), ("path", packb(P("big"))),
            ("value", big),
        ]))
        assert "error" not in c.recv_for(1)
        c.raw.clear()
        assert c.request({"seq": 2, "action": "get_value", "path": P("big")})["value"] == 2**64
        assert packb("value") + big in c.raw
