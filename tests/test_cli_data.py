"""`distkv client data …` and `client log …` end to end: a real server, the real CLI.

Also the helpers behind them (value building, -d folding, dates, the
verb-first argument order), tested in-process.
"""

from __future__ import annotations

import queue
import signal
import subprocess
import textwrap
import threading
import time
from collections.abc import Iterator

import anyio
import pytest
from procs import ServerProc, base_config, distkv_cmd, free_port, run_cli

from distkv.codec import packb
from distkv.command.client.data import cli as data_cli
from distkv.command.util import DictFolder, add_dates, build_value
from distkv.util import NotGiven
from distkv.util.path import P, PathShortener
from distkv.util.yaml import yload

# --- helpers, in-process ----------------------------------------------------------------


def test_build_value():
    assert build_value(NotGiven, eval_=[(":", "123")]) == 123
    assert build_value(NotGiven, vars_=[("one", "XXX")], eval_=[("two", "2")]) == {
        "one": "XXX", "two": 2,
    }
    old = {"one": "XXX", "two": 2}
    assert build_value(old, eval_=[("one", "1")]) == {"one": 1, "two": 2}
    assert build_value({"a": 1}, vars_=[("b.c", "x")]) == {"a": 1, "b": {"c": "x"}}
    assert build_value(5, vars_=[("a", "x")]) == {"a": "x"}
    assert build_value({"a": 1, "b": 2}, eval_=[("a", "-")]) == {"b": 2}
    assert build_value({"a": 1}, eval_=[("x.y", "-")]) == {"a": 1}
    assert build_value({"a": 1}, eval_=[(":", "-")]) is NotGiven
    assert build_value(NotGiven, path_=[(":", "a.b:3")]) == P("a.b:3")
    assert build_value(NotGiven, eval_=[(":", "(1, 'x', None)")]) == (1, "x", None)
    with pytest.raises(ValueError, match="Cannot evaluate 'foo'"):
        build_value(NotGiven, eval_=[(":", "foo")])
    with pytest.raises(ValueError, match="Invalid path 'a..b'"):
        build_value(NotGiven, vars_=[("a..b", "x")])


def test_dict_folder():
    f = DictFolder("_")
    f.add((), 0)
    f.add(("a",), 1)
    f.add(("a", "b", "c"), {"x": None})
    assert f.result() == {"_": 0, "a": {"_": 1, "b": {"c": {"_": {"x": None}}}}}
    g = DictFolder("_")
    g.add(("a",), None)
    g.add(("b",), None)
    g.add(("b", "c"), None)
    assert g.result(simplify=True) == {"a": None, "b": {"c": None}}


def test_add_dates():
    now = 1_700_000_000.0
    val = {"t": now - 10, "old": 12, "_x": now, "sub": [{"when": now + 3600}], "flag": True}
    add_dates(val, now=now)
    assert set(val) == {"t", "_t", "old", "_x", "sub", "flag"}
    assert set(val["sub"][0]) == {"when", "_when"}
    assert val["_t"].count(":") == 2 and val["sub"][0]["_when"].count(":") == 2
    val = {"t": now}
    add_dates(val, now=now)
    assert val["_t"].endswith(".000") and len(val["_t"]) == 23


def _parsed(*args: str) -> tuple[str, list[str]]:
    """How the data group reads ARGS: (path, [verb, verb args…])."""

    async def parse():
        ctx = await data_cli.make_context("data", list(args), resilient_parsing=True)
        return ctx.params["path"], [*ctx._protected_args, *ctx.args]

    return anyio.run(parse)


def test_verb_first_order():
    assert _parsed("one.two", "get", "-rd_") == ("one.two", ["get", "-rd_"])
    assert _parsed("get", "-rd_", "one") == ("one", ["get", "-rd_"])
    assert _parsed("set", "-v", "one", "X", "-e", "two", "2", "a.b") == (
        "a.b", ["set", "-v", "one", "X", "-e", "two", "2"],
    )
    assert _parsed("set", "-e", ":", "-", "a") == ("a", ["set", "-e", ":", "-"])
    assert _parsed("watch", "-s", "one") == ("one", ["watch", "-s"])
    # path-first wins whenever the second word is a verb
    assert _parsed("get", "list") == ("get", ["list"])
    assert _parsed("get") == ("get", [])


# --- end to end ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProc]:
    with ServerProc(["-I", "Testing", "n1"]) as srv:
        yield srv


def dkv(server: ServerProc, *args: str, input: str | None = None,
        client_args: tuple[str, ...] = (), global_args: tuple[str, ...] = ()
        ) -> subprocess.CompletedProcess:
    return server.client(*client_args, "data", *args, input=input, global_args=global_args)


def ok(res: subprocess.CompletedProcess) -> str:
    assert res.returncode == 0, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr, res.stderr
    return res.stdout


def failed(res: subprocess.CompletedProcess) -> str:
    """A failure with exactly one line on stderr; returns that line."""
    assert res.returncode == 1, (res.returncode, res.stdout, res.stderr)
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    return lines[0]


def test_root_value(server):
    assert ok(dkv(server, ":")) == "'Testing'\n"
    # an auth string is kept for servers that ask for a login; this one doesn't
    assert ok(dkv(server, ":", client_args=("-a", "_test name=joe"))) == "'Testing'\n"


def test_tutorial_flow(server):
    assert ok(dkv(server, "one.two.three", "set", "-e", ":", "123")) == ""
    ok(dkv(server, "one.two.three.four", "set", "-e", ":", "1234"))
    ok(dkv(server, "one.two.three.four.five", "set", "-v", "one", "XXX", "-e", "two", "2"))
    assert ok(dkv(server, "one.two.three")) == "123\n"
    assert ok(dkv(server, "one.two.three.four.five")) == "one: XXX\ntwo: 2\n"
    ok(dkv(server, "one.two.three.four.five", "set", "-e", "one", "1"))
    assert ok(dkv(server, "one.two.three.four.five", "get")) == "one: 1\ntwo: 2\n"

    as_dict = textwrap.dedent("""\
        two:
          three:
            _: 123
            four:
              _: 1234
              five:
                _:
                  one: 1
                  two: 2
        """)
    assert ok(dkv(server, "get", "-rd_", "one")) == as_dict  # the tutorial's spelling
    assert ok(dkv(server, "one", "get", "-rd_")) == as_dict
    assert ok(dkv(server, "one", "get", "-r")) == textwrap.dedent("""\
        - !P two.three: 123
        - !P two.three.four: 1234
        - !P two.three.four.five:
            one: 1
            two: 2
        """)
    assert ok(dkv(server, "one.two", "get", "-r", "-M", "2", "-m", "2")) == (
        "- !P three.four: 1234\n"
    )


def test_list(server):
    ok(dkv(server, "lst.a.x", "set", "-e", ":", "1"))
    ok(dkv(server, "lst.b", "set", "-v", ":", "b"))
    assert ok(dkv(server, "lst", "list")) == "- !P a\n- !P b\n"
    assert ok(dkv(server, "lst", "list", "-d", "_")) == "a: null\nb:\n  _: b\n"
    assert ok(dkv(server, "lst", "list", "-m", "2")) == "- !P a\n- !P a.x\n- !P b\n"
    assert ok(dkv(server, "lst", "list", "-m", "2", "-d", "_")) == (
        "a:\n  x:\n    _: 1\nb:\n  _: b\n"
    )


def test_missing_value(server):
    res = dkv(server, "not.there")
    assert ok(res) == ""
    assert res.stderr == "No data at not.there\n"
    res = dkv(server, "not.there", global_args=("-q",))
    assert ok(res) == "" and res.stderr == ""


def test_value_kinds(server):
    ok(dkv(server, "kind.str", "set", "-v", ":", "hello"))
    assert ok(dkv(server, "kind.str")) == "'hello'\n"
    assert ok(dkv(server, "kind.str", "get", "-R")) == "hello"
    ok(dkv(server, "kind.path", "set", "-p", ":", "a.b:3"))
    assert ok(dkv(server, "kind.path")) == "!P a.b:3\n...\n"
    ok(dkv(server, "kind.tuple", "set", "-e", ":", "(1, b'x', None)"))
    assert ok(dkv(server, "kind.tuple")) == "- 1\n- !bin x\n- null\n"
    ok(dkv(server, "kind.map", "set", "-p", "p", "x.y", "-e", "n", "-5"))
    assert ok(dkv(server, "kind.map")) == "n: -5\np: !P x.y\n"


def test_set_merges_and_deletes(server):
    ok(dkv(server, "merge", "set", "-e", ":", "{'a': 1, 'b': {'c': 2}}"))
    ok(dkv(server, "merge", "set", "-v", "b.d", "x", "-e", "a", "-"))
    assert ok(dkv(server, "merge")) == "b:\n  c: 2\n  d: x\n"
    # removing the whole value deletes the entry
    ok(dkv(server, "merge", "set", "-e", ":", "-"))
    assert ok(dkv(server, "merge")) == ""


def test_set_new_and_last(server):
    ok(dkv(server, "fresh", "set", "-n", "-e", ":", "1"))
    line = failed(dkv(server, "fresh", "set", "-n", "-e", ":", "2"))
    assert line == "ClientChainError: Entry already exists at fresh"
    assert ok(dkv(server, "fresh")) == "1\n"

    meta = yload(ok(dkv(server, "fresh", client_args=("-m",))))
    chain = meta["chain"]
    line = failed(dkv(server, "fresh", "set", "-l", chain["node"], str(chain["tick"] + 100),
                      "-e", ":", "3"))
    assert line.startswith("ClientChainError: ")
    ok(dkv(server, "fresh", "set", "-l", chain["node"], str(chain["tick"]), "-e", ":", "3"))
    assert ok(dkv(server, "fresh")) == "3\n"

    res = dkv(server, "fresh", "set", "-n", "-l", "n1", "1", "-e", ":", "4")
    assert res.returncode == 2 and "mutually exclusive" in res.stderr
    res = dkv(server, "fresh", "set")
    assert res.returncode == 2 and "Nothing to set" in res.stderr


def test_metadata_output(server):
    set_reply = yload(ok(dkv(server, "meta.x", "set", "-e", ":", "42", client_args=("-m",))))
    assert set_reply["changed"] is True
    assert set_reply["chain"]["node"] == "n1"
    assert isinstance(set_reply["tock"], int)

    reply = yload(ok(dkv(server, "meta.x", client_args=("-m",))))
    assert reply["value"] == 42
    assert reply["chain"]["node"] == "n1"
    assert reply["chain"]["tick"] == set_reply["chain"]["tick"]
    assert reply["tock"] == set_reply["tock"]

    tree = yload(ok(dkv(server, "meta", "get", "-rd_", client_args=("-m",))))
    assert tree["x"]["_"]["value"] == 42
    assert tree["x"]["_"]["chain"]["node"] == "n1"


def test_delete(server):
    ok(dkv(server, "del.a", "set", "-v", ":", "A"))
    ok(dkv(server, "del.a.b", "set", "-v", ":", "B"))
    ok(dkv(server, "del.c", "set", "-v", ":", "C"))

    line = failed(dkv(server, "del.a", "delete", "-p", "wrong"))
    assert line.startswith("ClientError: ") or line.startswith("ServerError: ")
    assert ok(dkv(server, "del.a")) == "'A'\n"

    ok(dkv(server, "del.a", "delete", "-p", "A"))
    assert ok(dkv(server, "del.a")) == ""
    assert ok(dkv(server, "del.a.b")) == "'B'\n"  # children are not affected

    ok(dkv(server, "del", "delete", "-r"))
    assert ok(dkv(server, "del", "get", "-r")) == ""

    res = dkv(server, "del.c", "delete", "-r", "-p", "C")
    assert res.returncode == 2


def test_add_date(server):
    now = time.time()
    ok(dkv(server, "dated", "set", "-e", "ts", repr(now), "-e", "n", "3"))
    out = yload(ok(dkv(server, "dated", "get", "-D")))
    assert out["ts"] == now and out["n"] == 3
    assert out["_ts"].startswith(time.strftime("%Y-%m-%d ", time.localtime(now)))
    assert "_n" not in out


def test_update_from_file(server, tmp_path):
    ok(dkv(server, "upd.gone", "set", "-v", ":", "soon"))
    short = PathShortener()
    recs = [{"nodes": {"x": 1}, "tock": 5}]
    for path, value in [("a", 1), ("a.b", 2), ("gone", None), ("a.b.c", 3), ("d", {"e": 4})]:
        if value is None:  # a deletion record of a change log
            rec = {"node": "x", "tick": 7, "path": P(path), "tock": 2}
        else:
            rec = {"value": value, "path": P(path), "tock": 1}
        short(rec)
        recs.append(rec)
    fn = tmp_path / "upd.mp"
    fn.write_bytes(b"".join(packb(r) for r in recs))
    assert ok(dkv(server, "upd", "update", "-i", str(fn))) == ""
    assert ok(dkv(server, "upd", "get", "-rd_")) == textwrap.dedent("""\
        a:
          _: 1
          b:
            _: 2
            c:
              _: 3
        d:
          _:
            e: 4
        """)
    line = failed(dkv(server, "upd", "update", "-i", str(tmp_path / "missing")))
    assert line == f"Error: No such file or directory: {tmp_path / 'missing'}"


def test_errors(server):
    line = failed(dkv(server, "a..b"))
    assert line.startswith("Error: Invalid path 'a..b'")
    line = failed(dkv(server, "x", "set", "-e", ":", "os.system('true')"))
    assert line.startswith("Error: Cannot evaluate ")
    port = free_port()
    line = failed(run_cli(port, "client", "data", ":"))
    assert line.startswith(f"ServerConnectionError: Cannot connect to 127.0.0.1:{port}")
    # help never connects
    res = run_cli(port, "client", "data", ":", "get", "--help")
    assert res.returncode == 0 and "--recursive" in res.stdout


class LineReader:
    """Collect a subprocess's stdout lines in a thread, for reading with timeouts."""

    def __init__(self, proc: subprocess.Popen):
        self.lines: queue.Queue[str] = queue.Queue()
        self.thread = threading.Thread(target=self._run, args=(proc,), daemon=True)
        self.thread.start()

    def _run(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self.lines.put(line)

    def until(self, text: str, timeout: float = 20.0) -> str:
        """Everything read up to and including the first `---` document containing text."""
        got = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"{text!r} not seen; got {''.join(got)!r}") from None
            got.append(line)
            if line == "---\n" and text in "".join(got).rsplit("---\n", 2)[-2]:
                return "".join(got)


def test_monitor(server):
    ok(dkv(server, "mon.x", "set", "-e", ":", "1"))
    proc = subprocess.Popen(
        distkv_cmd(*base_config(server.port), "client", "data", "mon", "monitor", "-s"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        reader = LineReader(proc)
        head = reader.until("state: uptodate")
        docs = head.split("---\n")
        assert docs[0].startswith("value: 1\n") and "path: !P mon.x\n" in docs[0]
        assert "time: " in docs[1] and "_time: " in docs[1]

        ok(dkv(server, "mon.y.z", "set", "-v", "a", "b"))
        doc = reader.until("path: !P mon.y.z").split("---\n")[-2]
        assert doc.startswith("value:\n  a: b\n")
        assert "time: " in doc

        ok(dkv(server, "mon.x", "delete"))
        doc = reader.until("path: !P mon.x\n").split("---\n")[-2]
        assert "value" not in doc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            rc = proc.wait(15)
        finally:
            proc.kill()
    assert rc == 130
    assert "Traceback" not in proc.stderr.read()


def test_watch_alias_only(server):
    ok(dkv(server, "only.v", "set", "-v", ":", "here"))
    # -o with -s: the value, then the command ends when none... it waits for changes;
    # an absent entry ends at once.
    res = dkv(server, "only.absent", "watch", "-s", "-o")
    assert ok(res) == ""
    proc = subprocess.Popen(
        distkv_cmd(*base_config(server.port), "client", "data", "watch", "-o", "-s", "only.v"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        reader = LineReader(proc)
        assert reader.lines.get(timeout=20) == "here\n"
        ok(dkv(server, "only.v", "set", "-v", ":", "again"))
        assert reader.lines.get(timeout=20) == "again\n"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            assert proc.wait(15) == 130
        finally:
            proc.kill()
            proc.stdout.close()
            proc.stderr.close()


def test_log_save_dest_stop(server, tmp_path):
    ok(dkv(server, "logged", "set", "-v", ":", "before"))
    snap = tmp_path / "snap.dkv"
    assert ok(server.client("log", "save", str(snap))) == ""
    out = subprocess.run(
        distkv_cmd("-c", "/dev/null", "dump", "file", "-f", "logged", str(snap)),
        capture_output=True, text=True, timeout=60,
    ).stdout
    assert "value: before\n" in out and "path: !P logged\n" in out

    log = tmp_path / "changes.dkv"
    res = server.client("-m", "log", "dest", "-i", str(log))
    assert yload(ok(res))["result"] is True
    ok(dkv(server, "logged", "set", "-v", ":", "after"))
    res = server.client("-m", "log", "stop")
    assert yload(ok(res))["result"] is True
    ok(dkv(server, "logged", "set", "-v", ":", "unlogged"))
    out = subprocess.run(
        distkv_cmd("-c", "/dev/null", "dump", "file", "-f", "logged", str(log)),
        capture_output=True, text=True, timeout=60,
    ).stdout
    assert "value: after\n" in out
    assert "unlogged" not in out and "before" not in out


def test_server_loads_dump_init(tmp_path):
    fn = tmp_path / "0.dkv"
    res = subprocess.run(distkv_cmd("-c", "/dev/null", "dump", "init", "n7", str(fn)),
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    with ServerProc(["-l", str(fn), "n7"]) as srv:
        assert ok(srv.client("data", ":")) == "'Initial data'\n"
