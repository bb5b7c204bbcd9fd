"""The user's newest tutorial (seed 002), section by section, with real processes.

A real ``distkv server`` on 127.0.0.1, the real CLI with the tutorial's own command
lines (only the port differs), and assertions on what a user sees. Sections that other
files already assert end to end are not repeated here:

* data commands, ``get -rd_``, ``log dest``: test_cli_data.py; a second server that
  syncs: test_cluster.py; restarting from saved or incremental files:
  test_server_persist.py, test_server_cli.py;
* the ``password`` and ``_test`` set-ups with a terminal prompt, the write-only ACL,
  the integer/percent types and the floatval codec: test_security_e2e.py;
* runners on a broker, retries, ``error list``: test_runner.py, test_errors.py;
  watching and mirroring as example scripts: test_docs.py.

Asserted here: the tutorial's ``kv`` script (for a missing ``distkv`` command) with
its types, the server start line, the internal data after the password
set-up (and ``null`` as an ordinary key), a secret piped into a ``password?`` prompt,
the tutorial's spellings ``auth user set param`` and ``auth user modify --aux``, codec
scripts typed without the empty line between them, code and jobs run by a runner on a
server without a broker (any node, one node, a failing job and its error records), and
the Python API snippets. Where the tutorial is wrong about upstream, the assertions
follow upstream and docs/differences.rst says so.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path as FSPath
from typing import Any

import anyio
import pytest
from procs import ServerProc, base_config, distkv_cmd, free_port, run_cli

from distkv.client import open_client
from distkv.exceptions import ClientChainError
from distkv.obj import ClientEntry, ClientRoot
from distkv.util import NotGiven
from distkv.util.path import P
from distkv.util.yaml import yload

NODE = "tut1"
ROOT = "_test name=root"
JOE = "_test name=joe"
# a busy test machine may take a while to answer
PATIENT = ("-C", "connect.init_timeout=30")


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProc]:
    """The tutorial's first server, without auth (no broker: it runs standalone)."""
    with ServerProc(["-I", "Testing", NODE]) as srv:
        yield srv


@pytest.fixture
def auth_server() -> Iterator[ServerProc]:
    """A fresh server with the ``_test`` users joe and root, as the tutorial sets them up."""
    with ServerProc(["-e", "-I", "123", NODE]) as srv:
        for name in ("joe", "root"):
            assert cli(srv, "auth", "-m", "_test", "user", "add", f"name={name}") == (
                0, f"{name}\n", "")
        assert cli(srv, "auth", "-m", "_test", "init") == (
            0, "Authorization switched to _test\n", "")
        yield srv


def cli(srv: ServerProc, *args: str, auth: str | None = None, input: str | None = None,
        ) -> tuple[int, str, str]:
    """``distkv client [-a AUTH] ARGS…``: (exit code, stdout, stderr)."""
    res = srv.client(*(("-a", auth) if auth else ()), *args, input=input, global_args=PATIENT)
    return res.returncode, res.stdout, res.stderr


def ok(srv: ServerProc, *args: str, auth: str | None = None, input: str | None = None) -> str:
    code, out, err = cli(srv, *args, auth=auth, input=input)
    assert (code, err) == (0, ""), (out, err)
    return out


# --- Start the server ------------------------------------------------------------------


def test_start_line(server: ServerProc) -> None:
    # the tutorial writes '-i Testing'; 0.65.0's -i belongs to -s (the init value is -I)
    res = run_cli(free_port(), "server", "-i", "Testing", NODE)
    assert res.returncode == 2
    assert res.stderr.endswith(
        "Error: '-i' only makes sense with '-s FILE'. (A new network starts with "
        "'-I VALUE'.)\n")
    assert ok(server, "data", ":") == "'Testing'\n"


# --- Path specification ----------------------------------------------------------------


def test_path_escapes(server: ServerProc) -> None:
    for path in ("path:x1F", "path:b101", "path:y6162", "path:t", "path.a:.b", "path.a::b",
                 "path.a:_b", "path:e"):
        assert ok(server, "data", path, "set", "-v", ":", path) == ""
    # integers are printed in decimal, bytes as :v…, True as :t, the empty string as :e
    assert ok(server, "data", "path", "list") == "".join(
        f"- !P {p}\n" for p in (":31", ":5", ":vab", ":t", "a:.b", "a::b", "a:_b", ":e"))
    assert ok(server, "data", "path:31") == "'path:x1F'\n"
    # None only starts the internal data (as in 0.65.0)
    assert cli(server, "data", "path:n", "set", "-v", ":", "x") == (
        1, "", "ServerError: ValueError('Null path element')\n")


# --- Authorization ---------------------------------------------------------------------


def test_password_setup_and_internal_data() -> None:
    with ServerProc(["-I", "Root", NODE]) as srv:
        # no terminal: the secret comes from the pipe (the prompt, no Python warnings)
        asked = "Warning: Password input may be echoed.\nCode: \n"
        assert cli(srv, "auth", "-m", "password", "user", "add", "name=joe",
                   "password?=Code", input="test123\n") == (0, "joe\n", asked)
        assert ok(srv, "auth", "-m", "password", "user", "list") == "joe\n"
        assert ok(srv, "auth", "-m", "password", "init", "-s") == (
            "Authorization switched to password\n")
        assert cli(srv, "data", "get") == (
            1, "", "ClientAuthRequiredError: You need to log in using: password\n")
        assert cli(srv, "-a", "password name=joe password?=Code", "data", ":",
                   input="test123\n") == (0, "'Root'\n", asked)

        joe = "password name=joe password=test123"
        dump = yload(ok(srv, "internal", "dump", ":", auth=joe))
        assert dump["auth"]["_"] == {"current": "password"}
        assert list(dump["auth"]["password"]["user"]) == ["joe"]
        record = dump["auth"]["password"]["user"]["joe"]["_"]
        assert list(record) == ["password"]
        assert record["password"].startswith(b"$argon2id$")  # hashed and salted
        assert b"test123" not in record["password"]

        # "null" is an ordinary key; the internal data (:n) stays out of dumps
        assert ok(srv, "data", "null.foo", "set", "-v", ":", "bar", auth=joe) == ""
        assert ok(srv, "data", ":", "get", "-rd_", auth=joe) == (
            "_: Root\n'null':\n  foo:\n    _: bar\n")


# --- Access restrictions ---------------------------------------------------------------


def test_write_only_storage_with_the_tutorials_spelling(auth_server: ServerProc) -> None:
    srv = auth_server
    assert cli(srv, "data", ":") == (
        1, "", "ClientAuthRequiredError: You need to log in using: _test\n")
    assert ok(srv, "data", ":", auth=JOE) == "123\n"
    assert ok(srv, "acl", "set", "writeonly", "-a", "xc", "wom.#", auth=ROOT) == (
        "old: ''\nnew: xc\n")
    assert ok(srv, "auth", "user", "set", "param", "joe", "acl", "writeonly",
              auth=ROOT) == "joe acl writeonly\n"
    assert ok(srv, "data", "wom.foo.bar", "set", "-e", ":", "42", auth=JOE) == ""
    assert cli(srv, "data", "wom.foo.bar", "set", "-e", ":", "43", auth=JOE) == (
        1, "", "ACLError: ACL writeonly at wom.# grants 'xc', needed: w\n")
    assert cli(srv, "data", "wom.foo", auth=JOE) == (
        1, "", "ACLError: ACL writeonly at wom.# grants 'xc', needed: r\n")
    # a user with an ACL can't manage users, not even himself
    assert cli(srv, "auth", "user", "modify", "--aux", "acl=-", "name=joe", auth=JOE) == (
        1, "", "ACLError: ACL writeonly has no entry for :n.auth, needed: r\n")
    assert ok(srv, "auth", "user", "modify", "--aux", "acl=-", "name=joe", auth=ROOT) == (
        "joe acl -\n")
    assert ok(srv, "data", "wom.foo.bar", auth=JOE) == "42\n"


# --- Code execution, Errors --------------------------------------------------------------


class Runner:
    """``distkv client run [ARGS…] all`` in the background; its output goes to a file."""

    def __init__(self, srv: ServerProc, log: FSPath, *args: str):
        self.log = log
        with log.open("w") as out:
            self.proc = subprocess.Popen(
                distkv_cmd(*base_config(srv.port, PATIENT), "client", "run", *args, "all"),
                stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))

    def wait_for(self, text: str, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while text not in (out := self.log.read_text()):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise AssertionError(f"no {text!r} in the runner's output:\n{out}")
            time.sleep(0.05)
        return out

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def test_code_jobs_and_errors(server: ServerProc, tmp_path: FSPath) -> None:
    assert ok(server, "code", "set", "the.answer",
              input='print("Forty-Two!")\nreturn 42\n') == ""
    assert ok(server, "run", "set", "-c", "the.answer", "-t", "0", "a.question") == ""
    runner = Runner(server, tmp_path / "any.log")
    try:
        out = runner.wait_for("Forty-Two!\n")
    finally:
        runner.stop()
    assert "no message backend" in out and "running alone, without coordination" in out
    assert ok(server, "run", "list", "-t") == "a.question the.answer done\n"

    # the same job for one node only ($(hostname): a runner's default name): a runner of its own
    host = socket.gethostname()
    assert ok(server, "run", "-n", host, "set", "-c", "the.answer", "-t", "0",
              "a.question") == ""
    runner = Runner(server, tmp_path / "single.log", "-n", host)
    try:
        runner.wait_for("Forty-Two!\n")
    finally:
        runner.stop()

    assert ok(server, "code", "set", "the.error", input='raise RuntimeError("Owch")\n') == ""
    assert ok(server, "run", "set", "-c", "the.error", "-t", "0", "what.me.worry") == ""
    runner = Runner(server, tmp_path / "error.log")
    try:
        out = runner.wait_for("RuntimeError('Owch')")
    finally:
        runner.stop()
    assert f"WARNING:distkv.errors:Error :.distkv.error.{host}:" in out
    assert "Forty-Two!" not in out  # a one-shot job does not run again

    errors = yload(ok(server, "error", "list", "-d_"))
    rec = errors["run"][".distkv"]["run"]["any"]["default"]["what"]["me"]["worry"]["_"]
    assert rec["path"] == P(":.distkv.run.any.default.what.me.worry")
    assert (rec["subsystem"], rec["resolved"]) == ("run", False)
    assert rec["count"] >= 1
    short = yload(ok(server, "error", "list", "-d_", ":.distkv.run.any"))
    rec = short["run"]["default"]["what"]["me"]["worry"]["_"]
    assert rec["path"] == P("default.what.me.worry")  # shortened


# --- The Python API ----------------------------------------------------------------------


class OneEntry(ClientEntry):
    """The tutorial's entry class: reports every change (it overrides ``set_value``)."""

    async def set_value(self, value: Any) -> None:
        await super().set_value(value)
        path = " ".join(str(x) for x in self.subpath)
        self.root.lines.append(f"{path}= {value}" if value is not NotGiven
                               else f"{path}: deleted")


class OneRoot(ClientRoot):
    def __init__(self, *args: Any, **kw: Any):
        super().__init__(*args, **kw)
        self.lines: list[str] = []

    @classmethod
    def child_type(cls, name: Any) -> type[ClientEntry]:
        return OneEntry


def test_python_api(server: ServerProc) -> None:
    async def main() -> None:
        with anyio.fail_after(30):
            await tutorial_snippets()

    async def tutorial_snippets() -> None:
        async with open_client(connect={"host": "127.0.0.1", "port": server.port}) as client:
            await client.set(P("one.two.three"), value=("Test", 42, False), chain=None)

            # updating: the chain read guards the write; set returns the new one
            res = await client.get(P("one.two.three"), nchain=2)
            ret = await client.set(P("one.two.three"), value=("Test", res.value[1] + 1, False),
                                   chain=res.chain, nchain=2)
            assert res.chain != ret.chain
            with pytest.raises(ClientChainError):
                await client.set(P("one.two.three"), value=("Test", 0, False),
                                 chain=res.chain)

            async with client.mirror("one", root_type=OneRoot) as root:
                assert root["two"]["three"].value[1] >= 42
                res = await client.set(P("one.two.four"), value=4, nchain=2)
                await root.wait_chain(res.chain)
            assert root.lines == ["two three= ('Test', 43, False)", "two four= 4"]

            lines = []
            async with client.watch(P("one.two"), fetch=True) as watcher:
                async for res in watcher:
                    if "path" not in res:
                        lines.append("(complete)")
                        await client.delete(P("one.two.three"))
                        continue
                    if "value" in res:
                        lines.append(f"{res.path}= {res.value}")
                    else:
                        lines.append(f"{res.path}: deleted")
                        break
            assert lines == ["three= ('Test', 43, False)", "four= 4", "(complete)",
                             "three: deleted"]

    anyio.run(main)


# --- Verification (with the Installation section's script) ----------------------------

KV_SCRIPT = """#!/usr/bin/env python3

import sys
# sys.path[0:0] = (".", "../asyncserf")  # for development

from distkv.command import cmd
cmd()
"""


def test_the_kv_script_and_types(server: ServerProc, tmp_path: FSPath) -> None:
    (tmp_path / "kv").write_text(KV_SCRIPT)

    def kv(*args: str, input: str | None = None) -> tuple[int, str, str]:
        res = subprocess.run(
            [sys.executable, "kv", *base_config(server.port, PATIENT), "client", *args],
            input=input, capture_output=True, text=True, timeout=30, cwd=tmp_path)
        return res.returncode, res.stdout, res.stderr

    assert kv("type", "set", "-g", "0", "-g", "-2", "-g", "123", "-b", "1.2", "-b", '"Hello"',
              "int", input='if int(value) != value: raise ValueError("not an integer")\n'
              ) == (0, "", "")
    assert kv("type", "set", "-g", "0", "-g", "99", "-g", "100", "-b", "-1", "-b", "101",
              "int.percent",
              input='if not (0 <= value <= 100): raise ValueError("not a percentage")\n'
              ) == (0, "", "")
    assert kv("type", "match", "-t", "int.percent", "stats.#.quota") == (0, "", "")
    assert kv("data", "stats.foo.bar.quota", "set", "-v", ":", "123") == (
        1, "", "ClientError: ValueError('not an integer')\n")
    assert kv("data", "stats.foo.bar.quota", "set", "-e", ":", "123") == (
        1, "", "ClientError: ValueError('not a percentage')\n")
    assert kv("data", "stats.foo.bar.quota", "set", "-e", ":", "12") == (0, "", "")
    assert kv("data", "stats.foo.bar.quota") == (0, "12\n", "")


# --- Data mangling ---------------------------------------------------------------------


def test_float_codec_with_the_tutorials_spelling(auth_server: ServerProc) -> None:
    srv = auth_server
    codec = ("codec", "set", "-i", '"12.5"', "12.5", "-o", "13.25", '"13.25"', "float.str")
    # typed as the tutorial shows them, both scripts end up in the encoder
    code, out, err = cli(srv, *codec, auth=JOE,
                         input="return str(value)\nreturn float(value)\n")
    assert (code, out) == (2, "")
    assert err.endswith("Error: The decoder script is empty. On standard input, the "
                        "encoder comes first, then an empty line, then the decoder.\n")
    assert ok(srv, *codec, auth=JOE, input="return str(value)\n\nreturn float(value)\n") == ""
    assert ok(srv, "codec", "convert", "-c", "float.str", "floatval", "monitor.#.value",
              auth=JOE) == "floatval monitor.#.value: float.str\n"
    assert ok(srv, "auth", "user", "modify", "--aux", "codec=floatval", "name=joe",
              auth=JOE) == "joe conv floatval\n"
    assert ok(srv, "data", "monitor.a.b.c.value", "set", "-v", ":", "99.5", auth=JOE) == ""
    assert ok(srv, "data", "monitor.a.b.c.thing", "set", "-v", ":", "12.3", auth=JOE) == ""
    tree = "a:\n  b:\n    c:\n      value:\n        _: {}\n      thing:\n        _: '12.3'\n"
    assert ok(srv, "data", "monitor", "get", "-rd_", auth=ROOT) == tree.format("99.5")
    assert ok(srv, "data", "monitor", "get", "-rd_", auth=JOE) == tree.format("'99.5'")
