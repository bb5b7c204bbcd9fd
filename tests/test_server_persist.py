"""Save files, change logs and loading them: file contents and restarts.

In-process servers for the formats; a real ``distkv server`` process for the
crash test (kill -9 under a write load, then a restart from the log).
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path as FSPath
from typing import Any

from inproc import inproc_server
from procs import ServerProc
from wire import TOCK, ConnectionClosed, WireClient

from distkv.codec import make_unpacker, packb
from distkv.util.path import Path

NODE = "test_0"


def P(*elems: Any) -> Path:  # noqa: N802
    return Path(*elems)


def records(fn: FSPath) -> list[dict]:
    up = make_unpacker()
    up.feed(fn.read_bytes())
    return list(up)


class Client(WireClient):
    n = 0

    def __call__(self, action: str, **fields: Any) -> dict:
        self.n += 1
        return self.request({"seq": self.n, "action": action, **fields})


def chain(tick: int, node: str = NODE) -> dict:
    return {"node": node, "tick": tick, "prev": None}


def fill(c: Client) -> None:
    c("set_value", path=P("foo"), value="hello")
    c("set_value", path=P("foo", "bar"), value={"a": 1, "b": (1, 2)})
    c("set_value", path=P("foo", "baz"), value=b"bin\x00")
    c("set_value", path=P("num", 12, True), value=3.5)


# --- save -------------------------------------------------------------------------------


def test_save_file(tmp_path: FSPath) -> None:
    fn, full = tmp_path / "save.dkv", tmp_path / "full.dkv"
    with inproc_server(NODE, init=123) as srv, Client(srv.ports[0]) as c:
        fill(c)
        c("set_internal", path=P("acl", "x"), value="rw")
        assert c("save", path=str(fn)) == {"result": True, "seq": c.n, "tock": TOCK}
        assert c("save", path=str(full), full=True)["result"] is True
    recs = records(fn)
    assert recs[0] == {"nodes": {NODE: 6}, "known": {}, "deleted": {}, "node": NODE,
                       "tock": TOCK}
    assert recs[1:] == [
        {"value": 123, "chain": chain(1), "tock": TOCK, "path": P(), "depth": 0},
        {"value": "hello", "chain": chain(2), "tock": TOCK, "path": P("foo"), "depth": 0},
        {"value": {"a": 1, "b": (1, 2)}, "chain": chain(3), "tock": TOCK, "path": ("bar",),
         "depth": 1},
        {"value": b"bin\x00", "chain": chain(4), "tock": TOCK, "path": ("baz",), "depth": 1},
        {"value": 3.5, "chain": chain(5), "tock": TOCK, "path": P("num", 12, True),
         "depth": 0},
    ]
    assert type(recs[3]["path"]) is tuple and type(recs[2]["path"]) is Path
    # full: the meta tree too (it comes first: the meta root is the root's first child)
    meta = [r for r in records(full) if "value" in r and r["path"] == P(None, "acl", "x")]
    assert meta == [{"value": "rw", "chain": chain(6), "tock": TOCK,
                     "path": P(None, "acl", "x"), "depth": 0}]


def test_restart_from_a_save_file(tmp_path: FSPath) -> None:
    fn = tmp_path / "save.dkv"
    with inproc_server(NODE, init=123) as srv, Client(srv.ports[0]) as c:
        fill(c)
        c("delete_value", path=P("foo", "baz"))
        c("save", path=str(fn))
        last_tick = srv.store.node.tick
    with inproc_server(NODE, load=str(fn)) as srv, Client(srv.ports[0], qlen=10) as c:
        assert c.greeting["tick"] == last_tick
        assert c("get_value", path=P())["value"] == 123
        assert c("get_value", path=P("foo", "bar"))["value"] == {"a": 1, "b": (1, 2)}
        assert "value" not in c("get_value", path=P("foo", "baz"))
        assert c("get_value", path=P("num", 12, True))["value"] == 3.5
        assert c("set_value", path=P("new"), value=1, nchain=1)["chain"]["tick"] == last_tick + 1


# --- change logs --------------------------------------------------------------------------


def test_change_log_with_full_state(tmp_path: FSPath) -> None:
    fn = tmp_path / "log.dkv"
    with inproc_server(NODE, init=123) as srv, Client(srv.ports[0]) as c:
        c("set_value", path=P("foo"), value="old")
        assert c("log", path=str(fn), fetch=True) == {"result": True, "seq": c.n, "tock": TOCK}
        c("set_value", path=P("foo"), value="again")
        c("set_internal", path=P("type", "int"), value={"good": (1,)})
        c("set_value", path=P("foo", "sub"), value=1)
        c("delete_value", path=P("foo", "sub"))
        # every acknowledged change is in the file already, before any flush timer
        recs = records(fn)
    assert [sorted(r) for r in recs[:2]] == [["deleted", "known", "node", "nodes", "tock"]] * 2
    assert recs[1]["nodes"] == {NODE: 2}
    assert [r["value"] for r in recs[2:4]] == [123, "old"]
    # one path shortener for the whole file: "foo" again is depth 1, suffix ()
    assert recs[4:] == [
        {"node": NODE, "tick": 3, "prev": None, "path": (), "value": "again",
         "tock": TOCK, "depth": 1},
        {"node": NODE, "tick": 4, "prev": None, "path": P(None, "type", "int"),
         "value": {"good": (1,)}, "tock": TOCK, "depth": 0},
        {"node": NODE, "tick": 5, "prev": None, "path": P("foo", "sub"), "value": 1,
         "tock": TOCK, "depth": 0},
        {"node": NODE, "tick": 6, "prev": None, "path": (), "tock": TOCK, "depth": 2},
    ]


def test_incremental_log_and_stopping_it(tmp_path: FSPath) -> None:
    fn = tmp_path / "inc.dkv"
    with inproc_server(NODE, init=123) as srv, Client(srv.ports[0]) as c:
        c("set_value", path=P("a"), value=1)
        c("log", path=str(fn))
        c("set_value", path=P("a", "b"), value=2)
        assert c("log") == {"result": True, "seq": c.n, "tock": TOCK}
        c("set_value", path=P("a", "c"), value=3)
    recs = records(fn)
    assert len(recs) == 2 and "nodes" in recs[0]
    assert recs[1] == {"node": NODE, "tick": 3, "prev": None, "path": P("a", "b"), "value": 2,
                       "tock": TOCK, "depth": 0}


def test_a_new_log_replaces_the_old_one(tmp_path: FSPath) -> None:
    one, two = tmp_path / "one.dkv", tmp_path / "two.dkv"
    with inproc_server(NODE, init=123) as srv, Client(srv.ports[0]) as c:
        c("log", path=str(one))
        c("set_value", path=P("x"), value=1)
        c("log", path=str(two))
        c("set_value", path=P("x"), value=2)
        assert [r.get("value") for r in records(one) if "tick" in r] == [1]
        assert [r.get("value") for r in records(two) if "tick" in r] == [2]


# --- loading ---------------------------------------------------------------------------------


def test_loading_applies_deletions_and_keeps_paths_right(tmp_path: FSPath) -> None:
    fn = tmp_path / "log.dkv"
    with inproc_server(NODE, init=123) as srv, Client(srv.ports[0]) as c:
        c("log", path=str(fn), fetch=True)
        c("set_value", path=P("a", "b", "c"), value=1)
        c("set_value", path=P("a", "b", "d"), value=2)
        c("delete_value", path=P("a", "b", "c"))
        # shortened relative to the deletion record just before it
        c("set_value", path=P("a", "b", "c", "e"), value=4)
        c("set_value", path=P("a", "b", "d"), value=3)
        c("delete_value", path=P("a", "b", "d"))
        ticks = srv.store.node.tick
    assert records(fn)[-3]["path"] == ("e",)
    with inproc_server(NODE, load=str(fn)) as srv, Client(srv.ports[0], qlen=10) as c:
        assert c.greeting["tick"] == ticks
        assert "value" not in c("get_value", path=P("a", "b", "c"))
        assert "value" not in c("get_value", path=P("a", "b", "d"))
        assert c("get_value", path=P("a", "b", "c", "e"))["value"] == 4
        assert c("get_value", path=P("a", "b", "d", "e")) == {"seq": c.n, "tock": TOCK}
        state = c("get_state", missing=True, deleted=True)
        assert state["missing"] == {}


def write_file(fn: FSPath, *recs: dict) -> None:
    fn.write_bytes(b"".join(packb(r) for r in recs))


def test_authoritative_load_declares_missing_ticks_superseded(tmp_path: FSPath) -> None:
    fn = tmp_path / "gap.dkv"
    write_file(
        fn,
        {"info": {"nodes": {"other": 5}, "tock": 10}},
        {"value": "v", "chain": chain(3, "other"), "tock": 7, "path": P("k"), "depth": 0},
        {"strange": True},
    )
    with inproc_server(NODE, load=str(fn)) as srv, Client(srv.ports[0]) as c:
        state = c("get_state", nodes=True, missing=True, known=True)
        assert state["nodes"] == {NODE: 0, "other": 5}
        assert state["missing"] == {"other": ((1, 3), (4, 6))}
        assert c("get_value", path=P("k"))["value"] == "v"
        assert c.greeting["tock"] > 10
    with inproc_server(NODE, load=str(fn), authoritative=True) as srv, Client(srv.ports[0]) as c:
        state = c("get_state", missing=True, known=True)
        assert state["missing"] == {}
        assert state["known"] == {"other": ((1, 3), (4, 6))}


# --- kill -9 under load ------------------------------------------------------------------------


def test_kill_9_during_writes_loses_no_acknowledged_write(tmp_path: FSPath) -> None:
    log = tmp_path / "crash.dkv"
    acked: dict[Any, Any] = {}  # path -> value (None: deleted)
    max_tick = 0
    srv = ServerProc(["-I", "Testing", "n1"]).start()
    try:
        with Client(srv.port) as c:
            assert c("log", path=str(log), fetch=True)["result"] is True
            for i in range(50):
                c("set_value", path=P("k", i), value=f"v{i}")
                acked[P("k", i)] = f"v{i}"
            for i in range(0, 50, 5):
                c("delete_value", path=P("k", i))
                acked[P("k", i)] = None

        killer = threading.Timer(0.5, srv.proc.send_signal, (signal.SIGKILL,))
        with Client(srv.port) as c:
            killer.start()
            try:
                seq = 0
                while True:  # pipelined batches until the server is gone
                    batch = []
                    for _ in range(100):
                        seq += 1
                        path = P("w", seq % 700)
                        if seq % 7 == 0:
                            msg = {"seq": seq, "action": "delete_value", "path": path,
                                   "nchain": 1}
                        else:
                            msg = {"seq": seq, "action": "set_value", "path": path,
                                   "value": seq, "nchain": 1}
                        batch.append(msg)
                    c.send_raw(b"".join(packb(m) for m in batch))
                    for m in batch:
                        r = c.recv_for(m["seq"], timeout=10)
                        assert "error" not in r, r
                        acked[m["path"]] = m.get("value")
                        max_tick = max(max_tick, r["chain"]["tick"])
            except (ConnectionClosed, ConnectionResetError, BrokenPipeError):
                pass
            finally:
                killer.cancel()
        assert srv.proc.wait(10) == -signal.SIGKILL
        assert max_tick > 100
    finally:
        srv.stop()

    srv = ServerProc(["-l", str(log), "n1"]).start()
    try:
        with Client(srv.port, qlen=10) as c:
            assert c.greeting["tick"] >= max_tick
            assert c("get_value", path=P())["value"] == "Testing"
            wrong = {}
            for path, value in acked.items():
                got = c("get_value", path=path).get("value")
                if got != value:
                    wrong[path] = (value, got)
            assert wrong == {}
            r = c("set_value", path=P("after"), value=1, nchain=1)
            assert r["chain"]["tick"] == c.greeting["tick"] + 1 > max_tick
    finally:
        srv.stop()

