"""Auth, ACLs, types and codecs end to end: real ``distkv server`` processes, the real CLI
and the Python client (issue 4; tutorial sections "Authorization", "Access restrictions",
"Verification", "Data mangling").

* the tutorial's ``password`` and ``_test`` set-ups, with the no-echo ``password?`` prompt
  answered through a pseudo terminal;
* the write-only ACL, the integer/percent types, the floatval codec;
* an ACL matrix: for every mode letter a user who has it succeeds and one who lacks it is
  refused — on data, on listings, on watches and on the meta tree — and nothing leaks;
* login failures and garbage in the login messages: a clear error, the server unharmed,
  no password in any log line;
* type and codec code that raises, loops or returns garbage: a clear error, a bounded
  wait, the server keeps serving;
* the dynamic configuration honours ACLs.
"""

from __future__ import annotations

import itertools
import os
import select
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from procs import ServerProc, base_config, distkv_cmd
from wire import WireClient

from distkv.acl import MODES
from distkv.client import open_client
from distkv.exceptions import ACLError, ClientError, DistKVError, ServerError
from distkv.util.path import P

# quick login throttling; the password hash keeps its real (slow) default
SERVER_ARGS = ["-C", "server.login.delay=0.02", "-C", "server.login.max_delay=0.1", "-vvv"]


@pytest.fixture
def srv() -> Iterator[ServerProc]:
    """A fresh server process (auth state is per test); its log is checked for secrets."""
    proc = ServerProc(["-I", "Root", "test1"], global_args=SERVER_ARGS)
    with proc:
        yield proc


def cli(srv: ServerProc, *args: str, auth: str | None = None, input: str | None = None,
        ) -> tuple[int, str, str]:
    """``distkv client [-a AUTH] ARGS…``: (exit code, stdout, stderr)."""
    pre = ("-a", auth) if auth else ()
    res = srv.client(*pre, *args, input=input)
    return res.returncode, res.stdout, res.stderr


def cli_tty(srv: ServerProc, *args: str, answer: str) -> tuple[int, str, str, bytes]:
    """Run the CLI with its stdin on a pseudo terminal and type ``answer`` at the prompt.

    Returns (exit code, stdout, stderr, what the terminal showed after the prompt):
    the last must not contain the answer (no echo).
    """
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen(
            distkv_cmd(*base_config(srv.port), "client", *args),
            stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True,  # no controlling terminal: getpass uses stdin
        )
        os.close(slave)
        slave = -1
        err = b""
        deadline = time.monotonic() + 20
        while b": " not in err:  # the prompt is on stderr
            assert time.monotonic() < deadline, f"no prompt: {err!r}"
            ready, _, _ = select.select([proc.stderr], [], [], 0.5)
            if ready:
                chunk = os.read(proc.stderr.fileno(), 4096)
                assert chunk, f"exited before prompting: {err!r}"
                err += chunk
        os.write(master, answer.encode() + b"\n")
        out, rest = proc.communicate(timeout=30)
        shown = b""
        while select.select([master], [], [], 0.2)[0]:
            try:
                data = os.read(master, 4096)
            except OSError:
                break
            if not data:
                break
            shown += data
        return proc.returncode, out.decode(), (err + rest).decode(), shown
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)


def connect(srv: ServerProc, auth: str | None = None) -> Any:
    conn: dict = {"host": "127.0.0.1", "port": srv.port}
    if auth is not None:
        conn["auth"] = auth
    return open_client(connect=conn)


def run(fn: Any, *args: Any) -> Any:
    return anyio.run(fn, *args)


def assert_no_secret(srv: ServerProc, *secrets: str) -> None:
    """The server's whole log (stdout and stderr, debug level) shows none of ``secrets``."""
    srv.stop()
    assert "INFO:distkv.server" in srv.output  # (the log was captured)
    for secret in secrets:
        assert secret not in srv.output


# --- the tutorial -----------------------------------------------------------------------


def test_password_setup(srv: ServerProc):
    code, out, err, shown = cli_tty(
        srv, "auth", "-m", "password", "user", "add", "name=joe", "password?=Code",
        answer="test123")
    assert (code, out) == (0, "joe\n")
    assert err.startswith("Code: ") and "test123" not in err
    assert b"test123" not in shown  # not echoed
    assert cli(srv, "auth", "-m", "password", "user", "list") == (0, "joe\n", "")
    assert cli(srv, "auth", "-m", "password", "init", "-s") == (
        0, "Authorization switched to password\n", "")
    assert cli(srv, "data", ":") == (
        1, "", "ClientAuthRequiredError: You need to log in using: password\n")
    code, out, err, shown = cli_tty(
        srv, "-a", "password name=joe password?=Code", "data", ":", answer="test123")
    assert (code, out) == (0, "'Root'\n") and b"test123" not in shown
    joe = "password name=joe password=test123"
    assert cli(srv, "data", ":", auth=joe) == (0, "'Root'\n", "")
    # stored salted and slow-hashed, never in clear
    code, out, err = cli(srv, "data", ":n.auth.password.user.joe", auth=joe)
    assert code == 0 and "$argon2id$" in out
    # "null" is an ordinary key name
    assert cli(srv, "data", "null.foo", "set", "-v", ":", "bar", auth=joe) == (0, "", "")
    assert cli(srv, "data", "null.foo", auth=joe) == (0, "'bar'\n", "")
    assert_no_secret(srv, "test123")


def test_test_method_setup(srv: ServerProc):
    assert cli(srv, "auth", "-m", "_test", "user", "add", "name=joe") == (0, "joe\n", "")
    assert cli(srv, "auth", "-m", "_test", "user", "add", "name=root") == (0, "root\n", "")
    assert cli(srv, "auth", "-m", "_test", "init") == (0, "Authorization switched to _test\n", "")
    assert cli(srv, "data", ":") == (
        1, "", "ClientAuthRequiredError: You need to log in using: _test\n")
    assert cli(srv, "data", ":", auth="_test name=joe") == (0, "'Root'\n", "")
    code, out, err = cli(srv, "data", ":", auth="_test name=nobody")
    assert (code, err) == (1, "ServerError: AuthFailedError('Unknown user', 'nobody')\n")


def setup_test_users(srv: ServerProc, *names: str) -> None:
    for name in ("root", *names):
        assert cli(srv, "auth", "-m", "_test", "user", "add", f"name={name}")[0] == 0
    assert cli(srv, "auth", "-m", "_test", "init")[0] == 0


ROOT = "_test name=root"
JOE = "_test name=joe"


def test_write_only_acl(srv: ServerProc):
    setup_test_users(srv, "joe")
    assert cli(srv, "acl", "set", "writeonly", "-a", "xc", "wom.#", auth=ROOT)[0] == 0
    assert cli(srv, "auth", "user", "param", "joe", "acl", "writeonly", auth=ROOT) == (
        0, "joe acl writeonly\n", "")

    # the tutorial's commands: the first write works, the second is refused
    assert cli(srv, "data", "wom.foo.bar", "set", "-e", ":", "42", auth=JOE) == (0, "", "")
    assert cli(srv, "data", "wom.foo.bar", "set", "-e", ":", "43", auth=JOE) == (
        1, "", "ACLError: ACL writeonly at wom.# grants 'xc', needed: w\n")

    async def writes() -> None:
        async with connect(srv, JOE) as c:
            with pytest.raises(ACLError) as err:
                await c.set(P("wom.foo.bar"), 43)
            assert err.value.args == ("ACL writeonly at wom.# grants 'xc', needed:", "w")
            with pytest.raises(ACLError) as err:  # "no matching ACL" means "no access"
                await c.set(P("other"), 1)
            assert err.value.args == ("ACL writeonly has no entry for other, needed:", "c")

    run(writes)
    assert cli(srv, "data", "wom.foo.bar", auth=JOE) == (
        1, "", "ACLError: ACL writeonly at wom.# grants 'xc', needed: r\n")
    assert cli(srv, "data", "wom.foo", auth=JOE) == (
        1, "", "ACLError: ACL writeonly at wom.# grants 'xc', needed: r\n")
    # the system tree is closed to joe
    code, out, err = cli(srv, "acl", "set", "writeonly", "-a", "rwxc", "wom.#", auth=JOE)
    assert code == 1 and "ACLError" in err
    assert cli(srv, "data", "wom.foo.bar", auth=ROOT) == (0, "42\n", "")


def test_integer_and_percent_types(srv: ServerProc):
    setup_test_users(srv, "joe")
    assert cli(srv, "type", "set", "-g", "0", "-g", "-2", "-g", "123", "-b", "1.2", "-b",
               '"Hello"', "int", auth=JOE,
               input='if int(value) != value: raise ValueError("not an integer")\n'
               ) == (0, "", "")
    assert cli(srv, "type", "set", "-g", "0", "-g", "99", "-g", "100", "-b", "-1", "-b", "101",
               "int.percent", auth=JOE,
               input='if not (0 <= value <= 100): raise ValueError("not a percentage")\n'
               ) == (0, "", "")
    code, out, err = cli(srv, "type", "set", "-g", "0", "-g", "1", "-b", "-1", "-b", "1.5",
                         "int.odd", auth=JOE, input="assert value >= 0\n")
    assert (code, err) == (1, "ServerError: ValueError('not an integer')\n")  # the parent's
    assert cli(srv, "type", "match", "-t", "int.percent", "stats.#.quota", auth=JOE) == (
        0, "", "")
    assert cli(srv, "data", "stats.foo.bar.quota", "set", "-v", ":", "123", auth=JOE) == (
        1, "", "ClientError: ValueError('not an integer')\n")
    assert cli(srv, "data", "stats.foo.bar.quota", "set", "-e", ":", "123", auth=JOE) == (
        1, "", "ClientError: ValueError('not a percentage')\n")
    assert cli(srv, "data", "stats.foo.bar.quota", "set", "-e", ":", "12", auth=JOE) == (
        0, "", "")
    assert cli(srv, "data", "stats.foo.bar.quota", auth=JOE) == (0, "12\n", "")
    assert cli(srv, "data", "stats.foo.bar.other", "set", "-v", ":", "x", auth=JOE) == (
        0, "", "")
    # deleting never fails on the type (15 #6)
    assert cli(srv, "data", "stats.foo.bar.quota", "delete", auth=JOE)[0] == 0
    assert cli(srv, "data", "stats.foo.bar.quota", auth=JOE)[1] == ""


def test_floatval_codec(srv: ServerProc):
    setup_test_users(srv, "joe")
    assert cli(srv, "codec", "set", "-i", '"12.5"', "12.5", "-o", "13.25", '"13.25"',
               "float.str", auth=ROOT,
               input="return str(value)\n\nreturn float(value)\n") == (0, "", "")
    assert cli(srv, "codec", "convert", "-c", "float.str", "floatval", "monitor.#.value",
               auth=ROOT)[0] == 0
    assert cli(srv, "auth", "user", "param", "joe", "conv", "floatval", auth=ROOT) == (
        0, "joe conv floatval\n", "")
    assert cli(srv, "data", "monitor.a.b.c.value", "set", "-v", ":", "99.5", auth=JOE) == (
        0, "", "")
    assert cli(srv, "data", "monitor.a.b.c.thing", "set", "-v", ":", "12.3", auth=JOE) == (
        0, "", "")
    assert cli(srv, "data", "monitor", "get", "-rd_", auth=ROOT) == (
        0, "a:\n  b:\n    c:\n      value:\n        _: 99.5\n      thing:\n        _: '12.3'\n",
        "")
    assert cli(srv, "data", "monitor", "get", "-rd_", auth=JOE) == (
        0, "a:\n  b:\n    c:\n      value:\n        _: '99.5'\n      thing:\n        _: '12.3'\n",
        "")
    assert cli(srv, "data", "monitor.a.b.c.value", auth=JOE) == (0, "'99.5'\n", "")
    code, out, err = cli(srv, "data", "monitor.a.b.c.value", "set", "-v", ":", "nope",
                         auth=JOE)
    assert (code, err) == (1, "ServerError: ValueError(\"could not convert string to float: "
                              "'nope'\")\n")

    async def watch_and_list() -> None:
        async with connect(srv, JOE) as joe, connect(srv, ROOT) as root:
            assert await joe.list(P("monitor.a.b.c"), with_data=True) == {
                "value": "99.5", "thing": "12.3"}
            res = await joe.set(P("monitor.a.b.c.value"), "1.5")
            assert res.prev == "99.5"  # the previous value, in joe's view
            async with joe.watch(P("monitor.a"), fetch=True) as w:
                it = aiter(w)
                first = await anext(it)
                assert (first.path, first.value) == (P("b.c.value"), "1.5")
                assert (await anext(it)).value == "12.3"
                assert (await anext(it)).state == "uptodate"
                await root.set(P("monitor.a.b.c.value"), 2.25)
                rec = await anext(it)
                assert (rec.path, rec.value) == (P("b.c.value"), "2.25")
            assert (await root.get(P("monitor.a.b.c.value"))).value == 2.25

    run(watch_and_list)


# --- the ACL matrix -----------------------------------------------------------------------


MATRIX_USERS = [f"{kind}_{letter}" for letter in MODES for kind in ("has", "lacks")]


async def setup_matrix(srv: ServerProc) -> None:
    """Users has_X (all letters) and lacks_X (all but X) with ACLs on ``m`` and ``:n.mx``."""
    async with connect(srv, ROOT) as c:
        for user in MATRIX_USERS:
            kind, letter = user.split("_")
            modes = MODES if kind == "has" else MODES.replace(letter, "")
            # (exact entries at 'sub': a '#' entry with 'c' would imply 'n' below it)
            for where in (("m",), ("m", "#"), ("m", "sub"),
                          (None, "mx"), (None, "mx", "#"), (None, "mx", "sub")):
                await c._request("set_internal", path=("acl", user, *where), value=modes)
            await c._request("set_internal", path=("auth", "_test", "user", user, "acl"),
                             value={"key": user})


async def reset_data(c: Any) -> None:
    await c.delete_tree(P("m"))
    for path, value in (("m", 0), ("m.v", 1), ("m.sub.v2", 2)):
        await c.set(P(path), value)
    for path, value in (("mx", 0), ("mx.v", 1), ("mx.sub.v2", 2)):
        await c._request("set_internal", path=P(path), value=value)


async def outcome(fn: Any) -> Any:
    try:
        return await fn()
    except ACLError as exc:
        return exc.args[-1]  # the letter that was missing


async def quiet_watch(c: Any, path: Any, writes: Any, **kw: Any) -> list:
    """The records a watch on ``path`` reports while ``writes()`` runs."""
    got: list = []
    async with c.watch(path, **kw) as w:
        with anyio.move_on_after(0.5):
            async for rec in w:
                got.append(rec)
                if rec.get("state") == "uptodate":
                    break
        await writes()
        with anyio.move_on_after(0.5):
            async for rec in w:
                got.append(rec)
    return got


def test_acl_matrix(srv: ServerProc):
    setup_test_users(srv, *MATRIX_USERS)

    async def main() -> None:
        await setup_matrix(srv)
        async with connect(srv, ROOT) as root:
            for letter in MODES:
                for kind in ("has", "lacks"):
                    await reset_data(root)
                    async with connect(srv, f"_test name={kind}_{letter}") as c:
                        res = await check_letter(c, root, letter)
                    ok = kind == "has"
                    for what, got in res.items():
                        assert (got is True) == ok, (kind, letter, what, got)
                        if not ok:
                            assert got in (letter, False), (kind, letter, what, got)

    run(main)


async def check_letter(c: Any, root: Any, letter: str) -> dict:
    """Exercise ``letter`` on data, listings, watches and the meta tree; True = allowed."""

    async def get() -> bool:
        return (await c.get(P("m.v"))).value == 1

    async def internal(action: str, **kw: Any) -> Any:
        return await c._request(action, **kw)

    res: dict[str, Any] = {}
    if letter == "r":
        res["get"] = await outcome(get)
        res["get_internal"] = await outcome(
            lambda: _true(internal("get_internal", path=P("mx.v")), lambda r: r.value == 1))
        res["enum with data"] = await outcome(
            lambda: _true(c.list(P("m"), with_data=True), lambda r: r == {"v": 1} or False))
        res["get_tree"] = await outcome(lambda: _tree(c, P("m")))

        async def watched() -> bool:
            async def writes() -> None:
                await root.set(P("m.v"), 5)
            recs = await quiet_watch(c, P("m"), writes, fetch=True)
            values = [r.get("value") for r in recs if "path" in r]
            return values == [0, 1, 2, 5] or (False if values == [] else values)

        res["watch"] = await outcome(watched)
    elif letter in "wc":
        path, ipath = ("m.v", "mx.v") if letter == "w" else ("m.new", "mx.new")
        res["set"] = await outcome(lambda: _true(c.set(P(path), 7), lambda r: r.changed))
        res["set_internal"] = await outcome(lambda: _true(
            internal("set_internal", path=P(ipath), value=7), lambda r: r.changed))
        if letter == "w":
            res["delete"] = await outcome(lambda: _true(c.delete(P("m.sub.v2")), bool))
    elif letter == "d":
        res["delete_tree"] = await outcome(lambda: _true(
            c.delete_tree(P("m.sub")), lambda r: r.changed == 1 or False))
    elif letter == "x":
        res["through"] = await outcome(
            lambda: _true(c.get(P("m.sub.v2")), lambda r: r.value == 2))

        async def watched() -> bool:
            async def writes() -> None:
                await root.set(P("m.sub.v2"), 9)
            recs = await quiet_watch(c, P("m.sub"), writes)
            return [r.get("value") for r in recs] == [9]

        res["watch"] = await outcome(watched)
    elif letter == "e":
        res["enum"] = await outcome(
            lambda: _true(c.list(P("m")), lambda r: {"v", "sub"} <= set(r)))
        res["get_tree"] = await outcome(lambda: _tree(c, P("m")))
        res["enum_internal"] = await outcome(lambda: _true(
            internal("enum_internal", path=P("mx"), empty=True),
            lambda r: {"v", "sub"} <= set(r.result)))
    elif letter == "n":
        fresh = f"n{next(_FRESH)}"  # (entries, once made, stay: a new name each time)
        res["create below"] = await outcome(
            lambda: _true(c.set(("m", "sub", fresh, "er"), 1), lambda r: r.changed))
        res["create below internal"] = await outcome(lambda: _true(
            internal("set_internal", path=("mx", "sub", fresh), value=1), lambda r: r.changed))
    elif letter == "a":
        res["test_acl"] = await outcome(lambda: _true(
            internal("test_acl", path=P("m.v")), lambda r: r.access == MODES or False))
    return res


_FRESH = itertools.count()


async def _true(coro: Any, check: Any) -> Any:
    return check(await coro)


async def _tree(c: Any, path: Any) -> Any:
    values = [r.get("value") async for r in c.get_tree(path)]
    return values == [0, 1, 2] or (False if not values else values)


# --- nothing leaks ------------------------------------------------------------------------


def test_nothing_leaks(srv: ServerProc):
    setup_test_users(srv, "peek")

    async def main() -> None:
        async with connect(srv, ROOT) as root:
            await root._request("set_internal", path=P("acl.peek.pub"), value="rex")
            await root._request("set_internal", path=P("acl.peek.pub.#"), value="rex")
            await root._request("set_internal", path=P("auth._test.user.peek.acl"),
                                value={"key": "peek"})
            await root.set(P("pub.a"), 1)
            await root.set(P("pub.sec.hidden"), "x")  # 'pub.#' covers it …
            await root._request("set_internal", path=P("acl.peek.pub.sec"), value="e")
            await root.set(P("sec.key"), "secret")  # … but nothing covers this
            tick = (await root.get(P("sec.key"), nchain=1)).chain.tick
            async with connect(srv, "_test name=peek") as c:
                recs = [(r.path, r.get("value")) async for r in c.get_tree(P("pub"), empty=True)]
                assert recs == [(P(":"), None), (P("a"), 1)]  # pub.sec: no 'r'
                assert list(await c.list(P("pub"))) == ["a", "sec"]  # names need 'e'
                assert await c.list(P("pub"), with_data=True) == {"a": 1}
                for fn in (lambda: c.list(()), lambda: c.get(P("sec.key")),
                           lambda: _all(c.get_tree(())), lambda: c.list(P("sec"))):
                    with pytest.raises(ACLError):
                        await fn()
                with pytest.raises(ServerError, match=f"KeyError\\({tick}\\)"):
                    await c._request("get_value", node="test1", tick=tick)
                for action, kw in (("get_internal", {"path": P("auth")}),
                                   ("enum_internal", {"path": ()}),
                                   ("get_tree_internal", {"path": ()}),
                                   ("set_internal", {"path": P("acl.peek.sec"), "value": "r"}),
                                   ("root", {"path": P("sec")})):
                    with pytest.raises(ACLError):
                        await _all(await c._request(action, iter=True, **kw))
                for action, kw in (("update", {"path": P("sec.key"), "value": 1}),
                                   ("msg_send", {"topic": ("x",), "data": 1}),
                                   ("save", {"path": "/tmp/x"}), ("log", {"path": "/tmp/x"})):
                    with pytest.raises(ClientError, match="not allowed for users with an ACL"):
                        await c._request(action, **kw)
                with pytest.raises(ServerError, match="Null path element"):
                    await c.get((None, "auth"))

                async def writes() -> None:
                    await root.set(P("pub.sec.hidden"), "y")
                    await root.delete(P("pub.sec.hidden"))
                    await root.set(P("pub.a"), 2)
                got = await quiet_watch(c, P("pub"), writes, fetch=True)
                assert [(r.get("path"), r.get("value")) for r in got] == [
                    (P("a"), 1), (None, None), (P("a"), 2)]  # (None: 'uptodate')

    run(main)


async def _all(it: Any) -> list:
    if hasattr(it, "__aiter__"):
        return [x async for x in it]
    return [await it]


# --- login failures -----------------------------------------------------------------------


def test_login_failures_and_garbage(srv: ServerProc):
    assert cli(srv, "auth", "-m", "password", "user", "add", "name=joe",
               "password=test123")[0] == 0
    assert cli(srv, "auth", "-m", "_test", "user", "add", "name=std")[0] == 0
    assert cli(srv, "auth", "-m", "password", "init")[0] == 0
    failed = "ServerError: AuthFailedError('Password hashes do not match', {!r})\n"
    assert cli(srv, "data", ":", auth="password name=joe password=wrong123") == (
        1, "", failed.format("joe"))
    assert cli(srv, "data", ":", auth="password name=ghost password=wrong456") == (
        1, "", failed.format("ghost"))  # an unknown user looks like a wrong password
    assert cli(srv, "data", ":", auth="_test name=std") == (
        1, "", "ClientAuthMethodError: You cannot use '_test' auth ('password', '_test')\n")

    with WireClient(srv.port) as w:
        assert w.greeting["auth"] == ("password", "_test")
        seq = iter(range(1, 1000))

        def err(msg: dict) -> str:
            msg["seq"] = next(seq)
            if msg.get("action") == "auth":
                reply = [m for m in w.stream(msg) if "error" in m]
                return reply[0]["error"] if reply else "no error"
            return w.request(msg).get("error", "no error")

        assert err({"action": "get_value", "path": P("x")}) == \
            "NoAuthError(\"You need to log in before 'get_value'\")"
        assert err({"action": "auth", "typ": "_test", "ident": "std"}) == \
            "RuntimeError('Wrong auth type', 'password')"
        assert err({"action": "diffie_hellman", "pubkey": 12345}) == \
            "ClientError(\"diffie_hellman: 'pubkey' must be bytes\")"
        assert err({"action": "diffie_hellman", "pubkey": b"x", "length": -1}) == \
            "ClientError(\"diffie_hellman: 'length' must be between 1 and 4096\")"
        assert "public key is not valid" in err(
            {"action": "diffie_hellman", "pubkey": b"\x01" * 256})
        assert err({"action": "auth", "typ": "password", "ident": "joe",
                    "password": b"\x00" * 72}) == failed[13:-1].format("joe")
        assert err({"action": "auth", "typ": "password", "ident": "joe",
                    "password": {"not": "bytes"}}) == failed[13:-1].format("joe")
        assert "must be a string" in err({"action": "auth", "typ": 5, "ident": "joe"})
        assert err({"action": "auth", "typ": "../x", "ident": "joe"}) == \
            "RuntimeError('Wrong auth type', 'password')"
        w.send_raw(b"\xc1\xc1\xc1")  # not msgpack: this connection ends
        assert w.is_closed_by_server()

    async def still_fine() -> None:
        async with connect(srv, "password name=joe password=test123") as c:
            assert (await c.get(())).value == "Root"

    run(still_fine)
    assert_no_secret(srv, "test123", "wrong123", "wrong456")
    assert "DEBUG:distkv.server.session" in srv.output  # the failures were logged, in detail


# --- misbehaving user code ------------------------------------------------------------------


LOOPY = """\
if value == 7:
    while True:
        pass
if value == 8:
    raise KeyError("eight")
"""


def test_bad_type_and_codec_code(srv: ServerProc):
    async def main() -> None:
        async with connect(srv) as c, connect(srv) as other:
            await c._request("set_internal", path=P("type.loopy"), value={
                "code": LOOPY, "good": [1, 2], "bad": [8]})
            await c._request("set_internal", path=P("match.t.#"), value={"type": P("loopy")})
            start = time.monotonic()
            with anyio.fail_after(5):
                async with anyio.create_task_group() as tg:
                    async def slow() -> None:
                        with pytest.raises(ClientError, match="did not finish within 0.5 seconds"):
                            await c.set(P("t.x"), 7)
                    tg.start_soon(slow)
                    await anyio.sleep(0.05)
                    assert (await other.get(())).value == "Root"
            assert time.monotonic() - start < 3
            with pytest.raises(ClientError, match=r"KeyError\('eight'\)"):
                await c.set(P("t.x"), 8)
            await c.set(P("t.x"), 3)

            await c._request("set_internal", path=P("codec.odd"), value={
                "encode": "return value if value != 'junk' else object()",
                "decode": "if value == 'boom': raise RuntimeError('boom')\nreturn value",
                "in": [["a", "a"]], "out": [["b", "b"]]})
            await c._request("set_internal", path=P("conv.weird.w.#"), value={"codec": P("odd")})
            await c._request("set_internal", path=P("auth._test.user.odd"), value={})
            await c._request("set_internal", path=P("auth._test.user.odd.conv"),
                             value={"key": "weird"})
            await c.set(P("w.junk"), "junk")
            await c._request("set_auth_typ", typ="_test")
        async with connect(srv, "_test name=odd") as odd:
            with pytest.raises(ServerError, match="RuntimeError\\('boom'\\)"):
                await odd.set(P("w.x"), "boom")
            with pytest.raises(ServerError, match="returned a object, which can't be stored"):
                await odd.get(P("w.junk"))
            assert (await odd.set(P("w.x"), "fine")).changed is True
        with pytest.raises(DistKVError, match="You need to log in"):
            async with connect(srv):
                pass

    run(main)


# --- dynamic configuration ------------------------------------------------------------------


def test_dynamic_config_honours_acls(srv: ServerProc):
    setup_test_users(srv, "cfg", "none")

    async def main() -> None:
        async with connect(srv, ROOT) as root:
            await root.set(P(":.distkv.config.runner"), {"start_delay": 7})
            await root.set(P(":.distkv.config.errors"), {"prefix": P("x.y")})
            for path, modes in (("acl.cfg.:.distkv.config", "xe"),
                                ("acl.cfg.:.distkv.config.runner", "r"),
                                ("acl.none.x", "r")):
                await root._request("set_internal", path=P(path), value=modes)
            for user in ("cfg", "none"):
                await root._request("set_internal", path=P(f"auth._test.user.{user}.acl"),
                                    value={"key": user})
            assert root.config.runner.start_delay == 7
            assert root.config.errors.prefix == P("x.y")
        start = time.monotonic()
        async with connect(srv, "_test name=cfg") as c:
            assert c.config.runner.start_delay == 7
            assert c.config.errors.prefix == P(":.distkv.error")  # not readable: ignored
        async with connect(srv, "_test name=none") as c:
            assert c.config.runner.start_delay == 1  # the static default
        assert time.monotonic() - start < 3  # nobody waited for a config that never came

    run(main)


# --- servers authenticate to their peers ----------------------------------------------------


def test_server_syncs_from_a_peer_with_connect_auth(srv: ServerProc):
    setup_test_users(srv, "peer")
    assert cli(srv, "data", "some.key", "set", "-e", ":", "42", auth=ROOT) == (0, "", "")
    peer = ["-C", f"hostmap.test1='127.0.0.1:{srv.port}'"]
    with ServerProc(["test2", "test1"], global_args=[
            *peer, "-C", "connect.auth='_test name=peer'"]) as other:
        # the state came over, auth records included: the same users log in there
        assert cli(other, "data", "some.key", auth=ROOT) == (0, "42\n", "")
    with ServerProc(["test3", "test1"], global_args=peer) as other:
        assert cli(other, "data", "some.key") == (0, "", "No data at some.key\n")  # no state
        other.stop()
        assert "log in using:', '_test')" in other.output  # it could not log in
