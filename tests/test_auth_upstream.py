"""Logging in across implementations (16 §4): upstream 0.65.0 clients against our server,
our client and CLI against the released server.

Both directions run the password method's Diffie-Hellman exchange and
password box, and the ``_test`` method's user-creation dialogue.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from procs import ServerProc, run_cli
from upstream import (  # noqa: F401 - fixtures: broker, upstream_venv
    RefVenv,
    UpstreamServer,
    broker_fixture,
    ref_cli,
    ref_python,
    upstream_venv_fixture,
)

pytestmark = pytest.mark.upstream

JOE = "password name=joe password=test123"


@pytest.fixture
def our_port() -> Iterator[int]:
    """A real ``distkv server`` process of ours."""
    with ServerProc(["-e", "-I", "123", "test_0"]) as srv:
        yield srv.port


def test_upstream_cli_against_our_server(upstream_venv: RefVenv, our_port: int):
    def ref(*args: str) -> tuple[int, str]:
        res = ref_cli(upstream_venv, our_port, *args)
        return res.returncode, res.stdout + res.stderr

    assert ref("auth", "-m", "password", "user", "add", "name=joe", "password=test123") == (
        0, "joe\n")
    assert ref("auth", "-m", "_test", "user", "add", "name=std") == (0, "std\n")
    assert ref("auth", "-m", "password", "init", "-s") == (
        0, "Authorization switched to password\n")
    assert ref("-a", JOE, "data", ":") == (0, "123\n")
    code, out = ref("-a", "password name=joe password=wrong12", "data", ":")
    assert code != 0 and "Password hashes do not match" in out
    assert ref("-a", JOE, "auth", "user", "list") == (0, "joe\n")
    assert ref("-a", JOE, "auth", "-m", "_test", "user", "list") == (0, "std\n")
    assert ref("-a", JOE, "auth", "-m", "_test", "init", "-s") == (
        0, "Authorization switched to _test\n")
    assert ref("-a", "_test name=std", "data", ":") == (0, "123\n")


UPSTREAM_LOGIN = """
import sys, anyio
from distkv.client import open_client
from moat.util import P

async def main(port):
    async with open_client(connect={"host": "127.0.0.1", "port": port,
                                    "auth": "password name=joe password=test123"}) as c:
        print((await c.get(P(":"))).value)
        await c.set(P("by.upstream"), value="yes")
        print((await c.get(P("by.upstream"))).value)

anyio.run(main, int(sys.argv[1]), backend="trio")
"""

UPSTREAM_TEST_LOGIN = """
import sys, anyio
from distkv.client import open_client
from moat.util import P

async def main(port):
    async with open_client(connect={"host": "127.0.0.1", "port": port,
                                    "auth": "_test name=std"}) as c:
        print((await c.get(P(":"))).value)

anyio.run(main, int(sys.argv[1]), backend="trio")
"""


def test_upstream_library_logs_in(upstream_venv: RefVenv, our_port: int):
    assert run_cli(our_port, "client", "auth", "-m", "password", "user", "add", "name=joe",
                   "password=test123").returncode == 0
    assert run_cli(our_port, "client", "auth", "-m", "password", "init").returncode == 0
    res = ref_python(upstream_venv, UPSTREAM_LOGIN, str(our_port))
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["123", "yes"]
    assert run_cli(our_port, "client", "-a", JOE, "auth", "-m", "_test", "user", "add",
                   "name=std").returncode == 0
    assert run_cli(our_port, "client", "-a", JOE, "auth", "-m", "_test", "init",
                   "-s").returncode == 0
    res = ref_python(upstream_venv, UPSTREAM_TEST_LOGIN, str(our_port))
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["123"]


def test_our_cli_against_the_upstream_server(upstream_venv: RefVenv, broker: Any):
    with UpstreamServer(upstream_venv, broker.uri, ["-e", "-I", "123", "test_0"]) as ref:
        def ours(*args: str) -> tuple[int, str, str]:
            res = run_cli(ref.port, "client", *args)
            return res.returncode, res.stdout, res.stderr

        assert ours("auth", "-m", "password", "user", "add", "name=joe",
                    "password=test123") == (0, "joe\n", "")
        assert ours("auth", "-m", "_test", "user", "add", "name=std") == (0, "std\n", "")
        assert ours("auth", "-m", "password", "init") == (
            0, "Authorization switched to password\n", "")
        assert ours("-a", JOE, "data", ":") == (0, "123\n", "")
        code, out, err = ours("-a", "password name=joe password=wrong12", "data", ":")
        assert (code, err) == (
            1, "ServerError: AuthFailedError('Password hashes do not match', 'joe')\n")
        assert ours("-a", JOE, "auth", "user", "list") == (0, "joe\n", "")
        assert ours("-a", JOE, "auth", "-m", "_test", "init", "-s") == (
            0, "Authorization switched to _test\n", "")
        assert ours("-a", "_test name=std", "data", ":") == (0, "123\n", "")
