"""Server action semantics, over raw msgpack on TCP against an in-process server.

Each test uses its own part of the tree on one shared server (root value 123,
node ``test_0``); tests that need special configuration start their own.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path as FSPath
from typing import Any

import pytest
from inproc import inproc_server, make_config
from procs import free_port
from wire import TOCK, WireClient

from distkv.codec import packb
from distkv.exceptions import ServerConnectionError
from distkv.server import Server
from distkv.util.path import Path

NODE = "test_0"


def P(*elems: Any) -> Path:  # noqa: N802
    return Path(*elems)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with inproc_server(NODE, init=123) as srv:
        yield srv


@pytest.fixture
def c(server: Server) -> Iterator[WireClient]:
    with WireClient(server.ports[0], qlen=10) as cl:
        yield cl


class Seq:
    """Request numbers for one test."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> int:
        self.n += 1
        return self.n


def req(c: WireClient, action: str, **fields: Any) -> dict:
    req.n += 1
    return c.request({"seq": req.n, "action": action, **fields})


req.n = 1000


def stream(c: WireClient, action: str, **fields: Any) -> list[dict]:
    req.n += 1
    return c.stream({"seq": req.n, "action": action, **fields}, ack=True)


def items(msgs: list[dict]) -> list[dict]:
    """Stream messages without seq/wseq/state markers."""
    return [
        {k: v for k, v in m.items() if k not in ("seq", "wseq")}
        for m in msgs
        if "state" not in m
    ]


def tick(server: Server) -> int:
    return server.store.node.tick


# --- connection start -----------------------------------------------------------------


def test_greeting(server: Server) -> None:
    with WireClient(server.ports[0]) as cl:
        g = cl.greeting
    assert g == {"seq": 0, "version": (0, 70, 0), "node": NODE, "tick": tick(server),
                 "tock": TOCK, "qlen": 10}


def test_greeting_lists_auth_methods_once_meta_auth_exists() -> None:
    with inproc_server("a1", init=1) as srv:
        with WireClient(srv.ports[0]) as cl:
            assert "auth" not in cl.greeting
            req(cl, "set_internal", path=P("auth"), value={"current": "password"})
            req(cl, "set_internal", path=P("auth", "_test", "user", "x"), value={})
            req(cl, "set_internal", path=P("auth", "password", "user", "y"), value={})
            assert req(cl, "auth_info") == {"value": {"current": "password"}, "tock": TOCK,
                                            "seq": req.n}
        with WireClient(srv.ports[0]) as cl:
            assert cl.greeting["auth"] == ("password", "_test")


def test_window_comes_from_hello(server: Server) -> None:
    with WireClient(server.ports[0]) as cl:  # no hello: no flow control, no wseq
        msgs = stream(cl, "get_tree", path=P(), max_depth=0)
        assert all("wseq" not in m for m in msgs)
    with WireClient(server.ports[0], qlen=6) as cl:
        msgs = stream(cl, "get_tree", path=P(), max_depth=0)
        assert [m["wseq"] for m in msgs] == list(range(1, len(msgs) + 1))


# --- single entries ------------------------------------------------------------------------


def test_set_value_reply_fields_in_order(c: WireClient, server: Server) -> None:
    r = req(c, "set_value", path=P("sv"), value=1, nchain=2)
    assert list(r) == ["changed", "chain", "tock", "seq"]
    assert r["chain"] == {"node": NODE, "tick": tick(server), "prev": None}
    r = req(c, "set_value", path=P("sv"), value=2, nchain=1)
    assert list(r) == ["changed", "prev", "chain", "tock", "seq"]
    assert r["prev"] == 1 and r["changed"] is True
    # neither prev nor the old value when a chain precondition was given
    r = req(c, "set_value", path=P("sv"), value=3, chain=r["chain"])
    assert list(r) == ["changed", "chain", "tock", "seq"]
    # nchain 0: no chain
    r = req(c, "set_value", path=P("sv"), value=3, nchain=0)
    assert r == {"changed": False, "prev": 3, "tock": TOCK, "seq": req.n}


def test_set_value_default_nchain_is_one(c: WireClient, server: Server) -> None:
    req(c, "set_value", path=P("dn"), value=1)
    r = req(c, "set_value", path=P("dn"), value=2)
    assert r["chain"] == {"node": NODE, "tick": tick(server), "prev": None}


def test_set_value_needs_a_value(c: WireClient) -> None:
    r = req(c, "set_value", path=P("nv"))
    assert r == {"error": "ClientError(\"Call 'delete_value' if you want to clear the value\")",
                 "seq": req.n, "tock": TOCK}


def test_idem_writes_nothing_for_an_equal_value(c: WireClient, server: Server) -> None:
    first = req(c, "set_value", path=P("idem"), value=1, idem=True, nchain=1)
    t = tick(server)
    again = req(c, "set_value", path=P("idem"), value=1, idem=True, nchain=1)
    assert again == {"tock": first["tock"], "changed": False, "chain": first["chain"],
                     "seq": req.n}
    assert tick(server) == t
    # a value of another type is a change even if it compares equal
    r = req(c, "set_value", path=P("idem"), value=True, idem=True, nchain=1)
    assert r["changed"] is False and r["chain"]["tick"] == t + 1


def test_prev_and_chain_preconditions(c: WireClient, server: Server) -> None:
    req(c, "set_value", path=P("pc"), value=10)
    r = req(c, "set_value", path=P("pc"), value=11, prev=9)
    assert r["error"] == "ClientError('Data is 10 not 9 at pc')"
    r = req(c, "set_value", path=P("pc"), value=11, chain=None)
    assert r["error"] == "ClientChainError('Entry already exists at pc')"
    r = req(c, "set_value", path=P("pc", "new"), value=1, chain={"node": NODE, "tick": 1})
    assert r["error"] == "ClientChainError('Entry is new at pc.new')"
    assert req(c, "set_value", path=P("pc"), value=11, prev=10)["changed"] is True


def test_delete_value(c: WireClient) -> None:
    req(c, "set_value", path=P("dv"), value="x")
    r = req(c, "delete_value", path=P("dv"), nchain=1)
    assert list(r) == ["changed", "prev", "chain", "tock", "seq"] and r["prev"] == "x"
    assert req(c, "get_value", path=P("dv")) == {"tock": TOCK, "seq": req.n}
    # deleting what was never there still makes an event
    r = req(c, "delete_value", path=P("dv", "never"), nchain=1)
    assert r["changed"] is False and "prev" not in r and r["chain"]["node"] == NODE
    r = req(c, "delete_value", path=P("dv"), value=1)
    assert r["error"] == "ClientError(\"A deleted entry can't have a value\")"


def test_get_value(c: WireClient) -> None:
    assert req(c, "get_value", path=P()) == {"value": 123, "tock": TOCK, "seq": req.n}
    assert req(c, "get_value", path=P("no", "such"), nchain=2) == \
        {"chain": None, "seq": req.n, "tock": TOCK}
    assert req(c, "get_value", path=P("no", "such")) == {"seq": req.n, "tock": TOCK}
    req(c, "set_value", path=P("gv"), value={"a": (1, 2)})
    r = req(c, "get_value", path=P("gv"), nchain=3)
    assert r["value"] == {"a": (1, 2)} and r["chain"]["node"] == NODE


def test_get_value_by_event(c: WireClient, server: Server) -> None:
    assert req(c, "get_value", node=NODE, tick=1) == \
        {"value": 123, "tock": TOCK, "path": P(), "seq": req.n}
    req(c, "set_value", path=P("ev", "x"), value="one")
    t = tick(server)
    assert req(c, "get_value", node=NODE, tick=t) == \
        {"value": "one", "tock": TOCK, "path": P("ev", "x"), "seq": req.n}
    req(c, "set_value", path=P("ev", "x"), value="two")
    assert req(c, "get_value", node=NODE, tick=t)["error"] == f"KeyError({t})"
    assert req(c, "get_value", node="nobody", tick=1)["error"] == "KeyError('nobody')"


def test_enum(c: WireClient) -> None:
    req(c, "set_value", path=P("en", "a"), value=1)
    req(c, "set_value", path=P("en", "b", "deep"), value=2)
    req(c, "set_value", path=P("en", "c"), value=None)
    assert req(c, "enum", path=P("en"))["result"] == ("a", "c")
    assert req(c, "enumerate", path=P("en"), empty=True)["result"] == ("a", "b", "c")
    assert req(c, "enum", path=P("en"), with_data=True)["result"] == {"a": 1, "c": None}
    assert req(c, "enum", path=P("en"), with_data=True, empty=True)["result"] == \
        {"a": 1, "b": None, "c": None}
    # a path that does not exist has no children (not an error)
    assert req(c, "enum", path=P("en", "nope"))["result"] == ()
    assert req(c, "enum", path=P("en", "nope"), with_data=True)["result"] == {}


def test_internal_actions_are_relative_to_the_meta_root(c: WireClient) -> None:
    r = req(c, "set_internal", path=P("acl", "x"), value="rw")
    assert r["changed"] is True
    assert req(c, "get_value", path=P(None, "acl", "x"))["value"] == "rw"
    assert req(c, "get_internal", path=P("acl", "x"))["value"] == "rw"
    assert req(c, "enum_internal", path=P("acl"))["result"] == ("x",)
    recs = items(stream(c, "get_tree_internal", path=P("acl")))
    assert recs == [{"value": "rw", "tock": TOCK, "path": ("x",), "depth": 0}]
    assert req(c, "delete_internal", path=P("acl", "x"))["changed"] is True
    assert "value" not in req(c, "get_internal", path=P("acl", "x"))


def test_null_path_elements(c: WireClient) -> None:
    assert req(c, "get_value", path=P("a", None))["error"] == \
        "ValueError('Null path element')"


# --- subtrees ----------------------------------------------------------------------------


def fill_tree(c: WireClient, top: str) -> None:
    req(c, "set_value", path=P(top), value=1234)
    req(c, "set_value", path=P(top, "foo"), value=123)
    req(c, "set_value", path=P(top, "foo", "bap"), value=12)
    req(c, "set_value", path=P(top, "foo", "bar", "baz"), value=1)


def test_get_tree_records_and_path_shortening(c: WireClient) -> None:
    fill_tree(c, "gt")
    msgs = stream(c, "get_tree", path=P("gt"))
    assert msgs[0] == {"state": "start", "seq": req.n, "wseq": 1, "tock": TOCK}
    assert msgs[-1] == {"state": "end", "seq": req.n, "wseq": len(msgs), "tock": TOCK}
    assert items(msgs) == [
        {"value": 1234, "tock": TOCK, "path": (), "depth": 0},
        {"value": 123, "tock": TOCK, "path": ("foo",), "depth": 0},
        {"value": 12, "tock": TOCK, "path": ("bap",), "depth": 1},
        {"value": 1, "tock": TOCK, "path": ("bar", "baz"), "depth": 1},
    ]
    assert all(type(m["path"]) is tuple for m in items(msgs))


def test_get_tree_depth_window_and_empty(c: WireClient) -> None:
    fill_tree(c, "gd")
    recs = items(stream(c, "get_tree", path=P("gd"), min_depth=1, max_depth=2, nchain=1))
    assert [(r["path"], r["depth"], r["value"]) for r in recs] == \
        [(("foo",), 0, 123), (("bap",), 1, 12)]
    assert all(r["chain"]["node"] == NODE for r in recs)
    recs = items(stream(c, "get_tree", path=P("gd", "foo"), empty=True))
    assert [(r["path"], r.get("value")) for r in recs] == \
        [((), 123), (("bap",), 12), (("bar",), None), (("baz",), 1)]


def test_get_tree_from_the_root_sends_paths(c: WireClient) -> None:
    recs = items(stream(c, "get_tree", path=P(), max_depth=0))
    assert recs == [{"value": 123, "tock": TOCK, "path": P(), "depth": 0}]
    assert type(recs[0]["path"]) is Path


def test_get_tree_of_a_missing_path_is_empty(c: WireClient) -> None:
    msgs = stream(c, "get_tree", path=P("gone", "away"))
    assert [m.get("state") for m in msgs] == ["start", "end"]


def test_delete_tree_only_deletes_values(c: WireClient, server: Server) -> None:
    req(c, "set_value", path=P("dt", "b"), value=1)
    req(c, "set_value", path=P("dt", "b", "c"), value=2)
    req(c, "set_value", path=P("dt", "d", "e"), value=3)
    t = tick(server)
    assert req(c, "delete_tree", path=P("dt")) == {"changed": 3, "seq": req.n, "tock": TOCK}
    assert tick(server) == t + 3  # no events for valueless entries
    assert items(stream(c, "get_tree", path=P("dt"))) == []
    assert req(c, "delete_tree", path=P("dt")) == {"changed": 0, "seq": req.n, "tock": TOCK}
    assert req(c, "delete_tree", path=P("dt", "nothing", "here"))["changed"] == 0
    assert req(c, "delete_tree", path=P())["error"] == \
        "ClientError(\"You can't delete the root node\")"


def test_delete_tree_with_nchain_streams_the_deletions(c: WireClient, server: Server) -> None:
    req(c, "set_value", path=P("ds", "c"), value=2)
    req(c, "set_value", path=P("ds", "d"), value=3)
    t = tick(server)
    msgs = stream(c, "delete_tree", path=P("ds"), nchain=2)
    assert items(msgs) == [
        {"node": NODE, "tick": t + 1, "prev": None, "path": ("c",), "old_value": 2,
         "tock": TOCK, "depth": 0},
        {"node": NODE, "tick": t + 2, "prev": None, "path": ("d",), "old_value": 3,
         "tock": TOCK, "depth": 0},
    ]
    # nothing follows the end
    assert c.collect(0.2) == []


# --- watch and stop -----------------------------------------------------------------------


def test_watch_fetch_then_changes_then_stop(c: WireClient, server: Server) -> None:
    fill_tree(c, "wt")
    req(c, "delete_value", path=P("wt", "foo"))
    c.send({"seq": 20, "action": "watch", "path": P("wt"), "fetch": True, "nchain": 1})
    got = [c.recv_for(20) for _ in range(5)]
    assert got[0]["state"] == "start"
    assert items(got[1:4]) == [
        {"value": 1234, "chain": TOCK_CHAIN(), "tock": TOCK, "path": (), "depth": 0},
        {"value": 12, "chain": TOCK_CHAIN(), "tock": TOCK, "path": ("foo", "bap"), "depth": 0},
        {"value": 1, "chain": TOCK_CHAIN(), "tock": TOCK, "path": ("bar", "baz"), "depth": 1},
    ]
    assert got[4]["state"] == "uptodate"
    assert req(c, "set_value", path=P("wt", "foo", "zz"), value="w", nchain=0)["changed"]
    change = c.recv_for(20)
    assert {k: change[k] for k in ("value", "path", "depth")} == \
        {"value": "w", "path": ("zz",), "depth": 1}
    assert change["chain"] == {"node": NODE, "tick": tick(server), "prev": None}
    req(c, "delete_value", path=P("wt", "foo", "zz"))
    change = c.recv_for(20)
    assert "value" not in change and change["path"] == () and change["depth"] == 2
    assert req(c, "stop", task=20) == {"result": True, "seq": req.n, "tock": TOCK}
    assert c.recv_for(20)["state"] == "end"
    assert req(c, "stop", task=20) == {"result": False, "seq": req.n, "tock": TOCK}


class TOCK_CHAIN:  # noqa: N801
    """Matches a one-link chain of this node, any tick."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, dict) and other.get("node") == NODE and "tick" in other


def test_watch_skips_meta_and_respects_depth(c: WireClient) -> None:
    c.send({"seq": 30, "action": "watch", "path": P("wd"), "min_depth": 1, "max_depth": 1})
    assert c.recv_for(30)["state"] == "start"
    req(c, "set_value", path=P("wd"), value=0)  # depth 0: too shallow
    req(c, "set_value", path=P("wd", "a", "b"), value=2)  # depth 2: too deep
    req(c, "set_value", path=P("wd", None, "m"), value=3)  # meta: never
    req(c, "set_value", path=P("wd", "a"), value=1)
    msgs = c.collect(0.3)
    assert [(m["path"], m["value"]) for m in msgs if m.get("seq") == 30] == [(("a",), 1)]
    req(c, "stop", task=30)


def test_watch_without_fetch_sends_no_uptodate(c: WireClient) -> None:
    c.send({"seq": 31, "action": "watch", "path": P("wn")})
    assert c.recv_for(31)["state"] == "start"
    assert c.collect(0.2) == []
    req(c, "stop", task=31)
    assert c.recv_for(31)["state"] == "end"


def test_watcher_that_falls_behind_is_ended_with_an_error() -> None:
    with inproc_server("w1", init=1, conf={"server.watch_queue": 5}) as srv:
        with WireClient(srv.ports[0], qlen=4) as slow, WireClient(srv.ports[0]) as w:
            slow.send({"seq": 1, "action": "watch", "path": P("f")})
            assert slow.recv_for(1)["state"] == "start"
            # With a window of 4, three messages may be unacknowledged: the
            # stream's start and two changes; five more wait in the queue.
            for i in range(20):
                req(w, "set_value", path=P("f", i), value=i)
            msgs = slow.read_stream(1)  # no acks
            err = [m for m in msgs if "error" in m]
            assert len(err) == 1
            assert "watcher fell behind" in err[0]["error"]
            assert "notifications dropped" in err[0]["error"]
            assert err[0]["error"].startswith("WatcherOverflow(")
            assert msgs[-1]["state"] == "end"
            assert sum("value" in m for m in msgs) == 2
            # the connection is fine
            assert req(slow, "get_value", path=P("f", 19))["value"] == 19


def test_a_blocked_stream_does_not_block_other_requests(c: WireClient) -> None:
    for i in range(20):
        req(c, "set_value", path=P("bs", i), value=i)
    c.send({"seq": 40, "action": "get_tree", "path": P("bs")})  # never acked: blocks at wseq 9
    assert req(c, "get_value", path=P("bs", 3)) == {"value": 3, "tock": TOCK, "seq": req.n}
    assert len(c.pending(40)) == 9
    assert req(c, "stop", task=40)["result"] is True
    msgs = c.read_stream(40)
    assert msgs[-1]["state"] == "end"


def test_stop_of_a_finished_request(c: WireClient) -> None:
    assert req(c, "stop", task=999_999)["result"] is False


# --- errors --------------------------------------------------------------------------------


def test_unknown_and_missing_actions_keep_the_connection(c: WireClient) -> None:
    assert req(c, "nonexistent") == \
        {"error": "ClientError(\"Unknown action: 'nonexistent'\")", "seq": req.n, "tock": TOCK}
    assert c.request({"seq": 77, "path": P("x")}) == \
        {"error": "ClientError(\"The request has no 'action'\")", "seq": 77, "tock": TOCK}
    assert req(c, "get_value", path=P())["value"] == 123


@pytest.mark.parametrize(
    ("fields", "text"),
    [
        ({"path": 5}, "get_value: the field 'path' must be a path, not 5"),
        ({"path": ("a", {"b": 1})}, "the field 'path' must be a path"),
        ({"path": P("a"), "nchain": "x"}, "the field 'nchain' must be an integer, not 'x'"),
    ],
)
def test_mistyped_fields(c: WireClient, fields: dict, text: str) -> None:
    r = req(c, "get_value", **fields)
    assert r["error"].startswith("ClientError(") and text in r["error"]
    assert req(c, "get_tock")["tock"] > 0


def test_mistyped_stream_fields_give_an_error_stream(c: WireClient) -> None:
    msgs = stream(c, "get_tree", path=P("a"), min_depth="deep")
    assert [m.get("state") for m in msgs] == ["start", None, "end"]
    assert "the field 'min_depth' must be an integer" in msgs[1]["error"]


def test_missing_required_field(c: WireClient) -> None:
    r = req(c, "enum_node")
    assert r["error"] == "ClientError(\"enum_node: the field 'node' is required\")"


def test_malformed_input_closes_only_that_connection(server: Server) -> None:
    with WireClient(server.ports[0]) as bad, WireClient(server.ports[0]) as good:
        bad.send_raw(b"\x93\x01\x02\x03")  # an array, not a map
        msg = bad.recv()
        assert "seq" not in msg and msg["error"] == "expected a map, got tuple"
        assert bad.is_closed_by_server()
        assert req(good, "get_value", path=P())["value"] == 123


def test_oversized_message_closes_the_connection() -> None:
    with inproc_server("big", init=1, conf={"server.max_message": 1000}) as srv:
        with WireClient(srv.ports[0]) as cl:
            # many small pipelined requests are fine …
            cl.send_raw(b"".join(packb({"seq": i, "action": "get_tock"}) for i in range(1, 200)))
            assert all("tock" in cl.recv_for(i) for i in range(1, 200))
            # … one big one is not
            cl.send({"seq": 500, "action": "set_value", "path": P("x"), "value": "v" * 2000})
            msg = cl.recv()
            assert msg["error"] == "message larger than 1000 bytes" and "seq" not in msg
            assert cl.is_closed_by_server()


# --- the connection's root -------------------------------------------------------------------


def test_root_changes_the_connection_root(server: Server) -> None:
    with WireClient(server.ports[0], qlen=10) as cl:
        req(cl, "set_value", path=P("ch", "x"), value=1)
        req(cl, "set_value", path=P("ch", "x", "y", "z"), value=2)
        r = req(cl, "root", path=P("ch", "x"))
        assert r == {"value": 1, "chain": TOCK_CHAIN(), "tock": TOCK, "path": (), "seq": req.n}
        assert req(cl, "get_value", path=P())["value"] == 1
        assert req(cl, "get_value", path=P("y", "z"))["value"] == 2
        recs = items(stream(cl, "get_tree", path=P("y")))
        assert [(r["path"], r["depth"]) for r in recs] == [(("z",), 0)]
        recs = items(stream(cl, "get_tree", path=P()))
        assert [(r["path"], r["depth"]) for r in recs] == [(P(), 0), (("y", "z"), 0)]
        assert req(cl, "get_value", path=P(None, "auth"))["error"] == \
            "ValueError('Null path element')"
        t = server.store.node.tick
        assert req(cl, "get_value", node=NODE, tick=t)["path"] == P("y", "z")


# --- bookkeeping actions ----------------------------------------------------------------------


def test_get_state_and_get_tock(c: WireClient, server: Server) -> None:
    r = req(c, "get_state", nodes=True, known=True, present=True, deleted=True, missing=True,
            remote_missing=True, node_drop=True, from_server="x")
    assert list(r) == ["nodes", "known", "present", "deleted", "missing", "remote_missing",
                       "node_drop", "node", "tock", "seq"]
    assert r["nodes"] == {NODE: tick(server)} and r["node"] == NODE
    assert r["missing"] == {}
    assert req(c, "get_state") == {"node": NODE, "tock": TOCK, "seq": req.n}
    t1 = req(c, "get_tock")["tock"]
    assert req(c, "get_tock")["tock"] > t1


def test_update_enum_node_kill_node(c: WireClient) -> None:
    r = req(c, "update", path=P("up", "x"), value="remote", tock=5,
            chain={"node": "other", "tick": 3, "prev": None})
    assert r == {"result": False, "seq": req.n, "tock": TOCK}
    assert req(c, "get_value", path=P("up", "x"), nchain=1)["chain"] == \
        {"node": "other", "tick": 3, "prev": None}
    assert req(c, "enum_node", node="other")["result"] == (3,)
    assert req(c, "kill_node", node="other")["error"] == \
        "ServerError('Node other has entry 3')"
    req(c, "set_value", path=P("up", "x"), value="local")
    assert req(c, "enum_node", node="other", current=True)["result"] == ()
    assert req(c, "kill_node", node="other") == {"seq": req.n, "tock": TOCK}
    assert req(c, "enum_node", node="other")["error"] == "KeyError('other')"
    r = req(c, "get_state", node_drop=True)
    assert r["node_drop"] == ("other",)


def test_check_deleted_and_fake_info(c: WireClient) -> None:
    assert req(c, "check_deleted", nodes={NODE: [1, [2, 4]]}) == {"seq": req.n, "tock": TOCK}
    r = req(c, "fake_info", missing={"zz": [1]}, ticks={"zz": 4})
    assert r == {"seq": req.n, "tock": TOCK}
    state = req(c, "get_state", nodes=True, remote_missing=True, missing=True)
    assert state["nodes"]["zz"] == 4
    assert state["remote_missing"]["zz"] == (1,)
    assert state["missing"]["zz"] == ((1, 5),)


def test_log_without_path_stops_logging(c: WireClient) -> None:
    assert req(c, "log") == {"result": True, "seq": req.n, "tock": TOCK}
    assert req(c, "log", path=None) == {"result": True, "seq": req.n, "tock": TOCK}


# --- the backend pass-through ----------------------------------------------------------------


def test_msg_send_without_backend_says_so(c: WireClient) -> None:
    r = req(c, "msg_send", topic="hello", data={"x": 1})
    assert r["error"].startswith("NoBackendError('no backend: no broker at mqtt://127.0.0.1:")
    msgs = stream(c, "msg_monitor", topic="hello")
    assert [m.get("state") for m in msgs] == ["start", None, "end"]
    assert msgs[1]["error"].startswith("NoBackendError('no backend")


def test_msg_send_and_monitor_on_the_memory_backend() -> None:
    bus = f"bus{free_port()}"
    conf = {"server.backend": "memory", "server.memory": {"bus": bus}, "root": "test"}
    with inproc_server("m1", init=1, conf=conf) as srv:
        with WireClient(srv.ports[0], qlen=10) as mon, WireClient(srv.ports[0]) as snd:
            mon.send({"seq": 1, "action": "msg_monitor", "topic": "hello.+"})
            mon.send({"seq": 2, "action": "msg_monitor", "topic": P(":x"), "raw": True})
            assert mon.recv_for(1)["state"] == "start"
            assert mon.recv_for(2)["state"] == "start"
            assert req(snd, "msg_send", topic=P("hello", "world"), data={"x": 1}) == \
                {"seq": req.n, "tock": TOCK}
            assert req(snd, "msg_send", topic=":x", raw=b"\x01\x02") == \
                {"seq": req.n, "tock": TOCK}
            got = mon.recv_for(1)
            assert (got["topic"], got["data"]) == (("hello", "world"), {"x": 1})
            got = mon.recv_for(2)  # ':' topics get the configured root in front
            assert (got["topic"], got["raw"]) == (("test", ":x"), b"\x01\x02")
            assert req(snd, "msg_send", topic="hello")["error"] == \
                "ClientError(\"msg_send needs exactly one of 'data' and 'raw'\")"


# --- listeners and startup ---------------------------------------------------------------------


def test_every_bind_entry_gets_a_listener_on_its_host() -> None:
    p1, p2 = free_port(), free_port()
    cfg = make_config()
    cfg.server.bind = [{"port": p1}, {"port": p2, "host": "127.0.0.2"}]
    with inproc_server("b1", init=1, cfg=cfg) as srv:
        assert srv.ports == [p1, p2]
        with WireClient(p1) as a:
            assert a.greeting["node"] == "b1"
        s = socket.create_connection(("127.0.0.2", p2), timeout=5)
        s.close()
        with pytest.raises(OSError):  # bound to 127.0.0.2 only
            socket.create_connection(("127.0.0.1", p2), timeout=5).close()


def test_tls_listener(tmp_path: FSPath) -> None:
    import ssl

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )
    cfg = make_config()
    cfg.server.bind_default.ssl = {"cert": str(cert), "key": str(key)}
    with inproc_server("t1", init="secret", cfg=cfg) as srv:
        ctx = ssl.create_default_context(cafile=str(cert))
        ctx.check_hostname = False
        with socket.create_connection(("127.0.0.1", srv.ports[0]), timeout=5) as raw:
            with ctx.wrap_socket(raw) as tls:
                from distkv.codec import make_unpacker

                up = make_unpacker()
                tls.sendall(packb({"seq": 1, "action": "get_value", "path": P()}))
                got: list = []
                deadline = time.monotonic() + 5
                while len(got) < 2 and time.monotonic() < deadline:
                    up.feed(tls.recv(65536))
                    got.extend(up)
                assert got[0]["node"] == "t1"
                assert got[1]["value"] == "secret"


def test_empty_standalone_server_starts_a_new_network() -> None:
    with inproc_server("e1", conf={"server.no_broker": "standalone"}) as srv:
        with WireClient(srv.ports[0], qlen=10) as cl:
            assert cl.greeting["tick"] == 0
            assert items(stream(cl, "get_tree", path=P())) == []
            assert req(cl, "set_value", path=P("a"), value=1, nchain=1)["chain"]["tick"] == 1


def test_no_broker_with_fail_policy_refuses_to_start() -> None:
    import anyio

    cfg = make_config({"server.no_broker": "fail"})

    async def main() -> None:
        await Server("f1", cfg).serve()

    with pytest.raises(ServerConnectionError, match=r"no broker at mqtt://127\.0\.0\.1:\d+"):
        anyio.run(main)


def test_watch_sees_a_write_sent_right_behind_it(c: WireClient) -> None:
    # watch and set_value in one TCP write: the set is read before the watch's
    # task runs, yet the watch must report it (its listener attaches at dispatch)
    c.send_raw(
        packb({"seq": 901, "action": "watch", "path": P("race"), "nchain": 0})
        + packb({"seq": 902, "action": "set_value", "path": P("race", "x"), "value": 7})
    )
    assert c.recv_for(902)["changed"] is True
    seen = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not any("value" in m for m in seen):
        seen.append(c.recv_for(901, timeout=5))
    assert seen[0]["state"] == "start"
    change = next(m for m in seen if "value" in m)
    assert change["value"] == 7 and change["path"] == ("x",)
