"""An unmodified upstream 0.65.0 client talks to our server.

Upstream's own ``distkv client`` CLI (run by ``distkv-ref``) and a script using
upstream's ``distkv.client.open_client`` under trio set, get, list, dump and
watch data. Every test runs twice, on a fresh server each time: ours and the
released one; both must print exactly the expected text (tocks and times,
which vary by run, are masked). Ticks are part of the text: the sequences are
deterministic on a fresh single node.
"""

from __future__ import annotations

import os
import re
import selectors
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from procs import ServerProc, free_port
from upstream import (  # noqa: F401 - fixtures: broker, upstream_venv
    RefVenv,
    UpstreamServer,
    broker_fixture,
    ref_cli,
    ref_env,
    ref_python,
    upstream_venv_fixture,
)

pytestmark = pytest.mark.upstream

NODE = "test_0"
SERVER_ARGS = ["-e", "-I", "123", NODE]
VARYING = re.compile(r"^(\s*)(tock|time|_time): .*$", re.M)


def masked(text: str) -> str:
    """Output with run-dependent fields (tock, time, _time) replaced by '*'."""
    return VARYING.sub(r"\1\2: *", text)


@pytest.fixture(params=["ours", "upstream"])
def port(request: pytest.FixtureRequest) -> Iterator[int]:
    """A fresh server: ours, then the released 0.65.0 for comparison."""
    if request.param == "ours":
        with ServerProc(SERVER_ARGS) as s:
            yield s.port
    else:
        venv = request.getfixturevalue("upstream_venv")
        mqtt = request.getfixturevalue("broker")
        with UpstreamServer(venv, mqtt.uri, SERVER_ARGS) as s:
            yield s.port


# (arguments after `client`, exit code, stdout, stderr)
CLI_SESSION: list[tuple[list[str], int, str, str]] = [
    (["data", "foo.bar", "set", "-v", ":", "hello"], 0, "", ""),
    (["data", "foo.bar", "get"], 0, "'hello'\n", ""),
    (["data", "foo.baz", "set", "-e", ":", "42"], 0, "", ""),
    (["data", "foo.dict", "set", "-v", "a", "1", "-e", "b", "2", "-e", "c.d", "(1,2)"],
     0, "", ""),
    (["data", "foo", "get", "-rd_"], 0,
     "bar:\n  _: hello\nbaz:\n  _: 42\ndict:\n  _:\n    a: '1'\n    b: 2\n    c:\n"
     "      d:\n      - 1\n      - 2\n", ""),
    (["data", "foo", "list"], 0, "- !P bar\n- !P baz\n- !P dict\n", ""),
    (["data", ":", "list"], 0, "- !P :n\n- !P :.distkv\n- !P foo\n", ""),
    (["-m", "data", "foo.baz", "get"], 0,
     "chain:\n  node: test_0\n  prev: null\n  tick: 3\nseq: 2\ntock: *\nvalue: 42\n", ""),
    (["-m", "data", "foo.baz", "set", "-v", ":", "43"], 0,
     "chain:\n  node: test_0\n  prev: null\n  tick: 5\nchanged: true\nseq: 3\ntock: *\n", ""),
    (["data", "foo.bar", "delete"], 0, "", ""),
    (["data", "foo", "get", "-rd_"], 0,
     "baz:\n  _: '43'\ndict:\n  _:\n    a: '1'\n    b: 2\n    c:\n      d:\n      - 1\n"
     "      - 2\n", ""),
    (["data", "foo.nope", "get"], 0, "", "No data at foo.nope\n"),
    (["data", "foo", "delete", "-r"], 0, "", ""),
    (["data", "foo", "get", "-rd_"], 0, "{}\n", ""),
    (["data", ":", "get"], 0, "123\n", ""),
]


def test_cli_session(upstream_venv: RefVenv, port: int) -> None:
    for args, code, out, err in CLI_SESSION:
        res = ref_cli(upstream_venv, port, *args)
        assert (res.returncode, masked(res.stdout), res.stderr) == (code, out, err), args


def test_cli_monitor(upstream_venv: RefVenv, port: int) -> None:
    cmd = [str(upstream_venv.launcher), "-c", "/dev/null", "client", "-h", "127.0.0.1",
           "-p", str(port), "-m", "data", "mon", "monitor", "-s"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=ref_env())
    try:
        out = read_until(proc, "state: uptodate\n", 20.0)
        assert ref_cli(upstream_venv, port, "data", "mon.x", "set", "-v", ":", "hi")\
            .returncode == 0
        assert ref_cli(upstream_venv, port, "data", "mon.x.y", "set", "-e", ":", "3")\
            .returncode == 0
        out += read_until(proc, "value: 3\n", 20.0)
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()
    assert masked(out) == (
        "_time: *\nseq: 2\nstate: uptodate\ntime: *\ntock: *\n---\n"
        "_time: *\nchain:\n  node: test_0\n  prev: null\n  tick: 2\npath: !P mon.x\n"
        "time: *\ntock: *\nvalue: hi\n---\n"
        "_time: *\nchain:\n  node: test_0\n  prev: null\n  tick: 3\npath: !P mon.x.y\n"
        "time: *\ntock: *\nvalue: 3\n---\n"
    )


def read_until(proc: subprocess.Popen, marker: str, timeout: float) -> str:
    """Read the process's output until it holds ``marker`` and a complete record."""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    fd = proc.stdout.fileno()
    buf = b""
    deadline = time.monotonic() + timeout
    try:
        while not (marker in (text := buf.decode(errors="replace"))
                   and text.endswith("---\n")):
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                pytest.fail(f"no {marker!r} in time; got:\n{buf.decode(errors='replace')}")
            chunk = os.read(fd, 65536)
            if not chunk:
                pytest.fail(f"process ended before {marker!r}; got:\n{buf.decode()}")
            buf += chunk
    finally:
        sel.close()
    return buf.decode()


CLIENT_SCRIPT = '''
import sys
import anyio
from distkv.client import open_client
from moat.util import P


def clean(x):
    if isinstance(x, dict):
        return {k: clean(v) for k, v in sorted(x.items(), key=str) if k != "tock"}
    if isinstance(x, (list, tuple)):
        return [clean(v) for v in x]
    return x


def show(tag, value):
    print(tag, repr(clean(value)), flush=True)


async def main(port):
    async with open_client(connect={"host": "127.0.0.1", "port": port}) as c:
        show("set", await c.set(P("py.a"), value=1, chain=None, nchain=2))
        show("set", await c.set(P("py.b.c"), value="two", nchain=2))
        show("set", await c.set(P("py.b.d"), value={"x": (1, 2), "y": None}))
        show("set", await c.set(P("py.a"), value=11, nchain=2))
        show("get", await c.get(P("py.a"), nchain=2))
        show("get", await c.get(P("py.nothing"), nchain=1))
        show("list", await c.list(P("py")))
        show("list", await c.list(P("py.b"), with_data=True))
        show("tree", [r async for r in c.get_tree(P("py"), nchain=1)])
        got = []
        async with c.watch(P("py.b"), fetch=True, nchain=1) as w:
            async for r in w:
                got.append(r)
                if r.get("state") == "uptodate":
                    await c.set(P("py.b.c"), value="three")
                elif r.get("value") == "three":
                    break
        show("watch", got)
        try:
            await c.set(P("py.a"), value=5, chain=None)
        except Exception as exc:
            show("error", [type(exc).__name__, *exc.args])
        show("delete", await c.delete(P("py.a"), nchain=1))
        show("set", await c.set(P("py.b"), value="b"))
        show("delete_tree", await c.delete(P("py.b"), recursive=True))
        show("tree", [r async for r in c.get_tree(P("py"))])
        show("tock", type(await c.get_tock()).__name__)


anyio.run(main, int(sys.argv[1]), backend="trio")
'''


def chain(tick: int) -> str:
    return f"{{'node': 'test_0', 'prev': None, 'tick': {tick}}}"


EXPECTED_SCRIPT_OUTPUT = [
    f"set {{'chain': {chain(2)}, 'changed': True, 'seq': 2}}",
    f"set {{'chain': {chain(3)}, 'changed': True, 'seq': 3}}",
    "set {'changed': True, 'seq': 4}",
    f"set {{'chain': {chain(5)}, 'changed': True, 'prev': 1, 'seq': 5}}",
    f"get {{'chain': {chain(5)}, 'seq': 6, 'value': 11}}",
    "get {'chain': None, 'seq': 7}",
    "list ['a', 'b']",
    "list {'c': 'two', 'd': {'x': [1, 2], 'y': None}}",
    f"tree [{{'chain': {chain(5)}, 'path': P('a'), 'seq': 10, 'value': 11}}, "
    f"{{'chain': {chain(3)}, 'path': P('b.c'), 'seq': 10, 'value': 'two'}}, "
    f"{{'chain': {chain(4)}, 'path': P('b.d'), 'seq': 10, "
    "'value': {'x': [1, 2], 'y': None}}]",
    f"watch [{{'chain': {chain(3)}, 'path': P('py.b.c'), 'seq': 11, 'value': 'two'}}, "
    f"{{'chain': {chain(4)}, 'path': P('py.b.d'), 'seq': 11, "
    "'value': {'x': [1, 2], 'y': None}}, {'seq': 11, 'state': 'uptodate'}, "
    f"{{'chain': {chain(6)}, 'path': P('py.b.c'), 'seq': 11, 'value': 'three'}}]",
    "error ['ServerError', \"ClientChainError('Entry already exists at py.a')\"]",
    f"delete {{'chain': {chain(7)}, 'changed': True, 'prev': 11, 'seq': 15}}",
    "set {'changed': True, 'seq': 16}",
    # py.b, py.b.c, py.b.d: all three have values, so fixed and upstream counts agree
    "delete_tree {'changed': 3, 'seq': 17}",
    "tree []",
    "tock 'int'",
]


def test_python_client(upstream_venv: RefVenv, port: int) -> None:
    res = ref_python(upstream_venv, CLIENT_SCRIPT, str(port))
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == EXPECTED_SCRIPT_OUTPUT


def test_python_client_streams_many_entries(upstream_venv: RefVenv, port: int) -> None:
    """A dump long enough for several flow-control acks from upstream's client."""
    script = '''
import sys, anyio
from distkv.client import open_client
from moat.util import P

async def main(port):
    async with open_client(connect={"host": "127.0.0.1", "port": port}) as c:
        for i in range(300):
            await c.set(P("many") + (i,), value=i)
        got = [(r.path, r.value) async for r in c.get_tree(P("many"))]
        print(len(got), got == [((i,), i) for i in range(300)])
        print(sorted(await c.list(P("many")))[:3])

anyio.run(main, int(sys.argv[1]), backend="trio")
'''
    res = ref_python(upstream_venv, script, str(port))
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["300 True", "[0, 1, 2]"]


def test_reference_venv_is_the_released_0_65_0(upstream_venv: RefVenv) -> None:
    res = ref_python(upstream_venv, "import sys; from importlib.metadata import version; "
                                    "print(version('distkv'), sys.version_info[:2])")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "0.65.0 (3, 11)"


def listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as in /proc/net/tcp*) with a listener on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                addr, _, hexport = fields[1].partition(":")
                if fields[3] == "0A" and int(hexport, 16) == port:
                    found.add(addr)
    return found


def test_reference_launcher_applies_overrides_and_binds_the_host(
        upstream_venv: RefVenv, broker: Any) -> None:
    """Our launcher's two fixes: -C works, and only 127.0.0.1 is listened on."""
    server = UpstreamServer(upstream_venv, broker.uri, SERVER_ARGS,
                            global_args=["-C", f"server.bind_default.port={free_port()}"])
    server.port = int(server.global_args[1].rpartition("=")[2])  # the config names another
    with server:
        assert listening_addresses(server.port) == {"0100007F"}  # 127.0.0.1
        res = ref_cli(upstream_venv, server.port, "data", ":", "get")
        assert (res.returncode, res.stdout) == (0, "123\n")
