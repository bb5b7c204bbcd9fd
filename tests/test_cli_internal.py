"""``distkv client internal …`` against a real server process."""

from __future__ import annotations

import pytest
from procs import ServerProc, run_cli

from distkv.util.path import P
from distkv.util.yaml import yload


@pytest.fixture(scope="module")
def server():
    with ServerProc(["-I", "Testing", "n1"]) as srv:
        yield srv


def ok(srv, *args):
    res = srv.client("internal", *args)
    assert res.returncode == 0, res.stderr
    return yload(res.stdout)


def test_state_flags(server):
    assert set(ok(server, "state")) == {"node", "tock"}
    assert ok(server, "state", "-n")["nodes"]["n1"] >= 1
    assert set(ok(server, "state", "-s")) == {"node", "tock", "superseded"}
    assert set(ok(server, "state", "-k")) == {"node", "tock", "superseded"}
    res = ok(server, "state", "-a")
    assert set(res) == {"node", "tock", "nodes", "deleted", "missing", "remote_missing",
                        "present", "superseded"}
    assert res["present"]["n1"] == [1]


def test_get_and_enum(server):
    assert ok(server, "get", "n1", "1") == "Testing"
    assert 1 in ok(server, "enum", "n1")
    res = server.client("internal", "get", "n1", "99999")
    assert res.returncode == 1 and "99999" in res.stderr


def test_mark(server):
    res = ok(server, "mark", "zz", "5", "6")
    assert res["known"]["zz"] == [[5, 7]]
    res = ok(server, "mark", "-d", "yy", "3")
    assert res["deleted"]["yy"] == [3]


def test_deleter_and_dump(server):
    assert ok(server, "deleter", "a", "b") == {"nodes": ["a", "b"]}
    assert ok(server, "deleter") == {"nodes": ["a", "b"]}
    assert ok(server, "dump", ":")["actor"]["del"]["_"] == {"nodes": ["a", "b"]}
    assert ok(server, "deleter", "-d", "a") == {"nodes": ["b"]}
    assert ok(server, "deleter", "-d") == {"nodes": []}


def test_kill_refuses_head(tmp_path):
    init = tmp_path / "init.dkv"
    res = run_cli(0, "dump", "init", "other", str(init))
    assert res.returncode == 0, res.stderr
    with ServerProc(["-l", str(init), "n2"]) as srv:
        res = srv.client("internal", "kill", "other")
        assert res.returncode == 1
        assert "other" in res.stderr and "entry" in res.stderr
        assert "Traceback" not in res.stderr
        res = srv.client("internal", "enum", "other", global_args=["-vv"])
        assert yload(res.stdout) == [{"tick": 1, "path": P(":")}]
        assert ok(srv, "enum", "-C", "other") == [1]
        assert ok(srv, "enum", "-c", "other") == []
        assert srv.client("internal", "kill", "other").returncode == 0
        assert ok(srv, "mark", "ghost", "1")["known"]["ghost"] == [1]
        assert srv.client("internal", "kill", "ghost").returncode == 0
        assert "ghost" not in ok(srv, "state", "-n")["nodes"]
