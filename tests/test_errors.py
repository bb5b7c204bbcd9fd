"""Error records (``distkv.errors``) and ``distkv client error …``: a real server, the real CLI.

Errors are recorded through the Python API (as runners and code loaders do)
and inspected and resolved with the CLI (as users do).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import pytest
from procs import ServerProc

from distkv.client import Client, open_client
from distkv.errors import TRACE_LINES, ErrorRoot, format_trace
from distkv.obj import handler_scope
from distkv.util.path import P
from distkv.util.yaml import yload

TIMEOUT = 10
ERRORS = P(":.distkv.error")

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def server() -> Iterator[ServerProc]:
    """A fresh server per test: error records are global."""
    with ServerProc(["-e", "-I", "123", "test_0"]) as srv:
        yield srv


@contextlib.asynccontextmanager
async def errors_of(server: ServerProc, name: str | None = None
                    ) -> AsyncIterator[tuple[Client, ErrorRoot]]:
    async with open_client(connect={"host": "127.0.0.1", "port": server.port}) as client:
        async with handler_scope(client):
            yield client, await ErrorRoot.as_handler(client, name=name or "here")


def cli(server: ServerProc, *args: str, rc: int = 0) -> str:
    res = server.client(*args)
    assert res.returncode == rc, (res.stdout, res.stderr)
    return res.stdout if rc == 0 else res.stderr


def docs(text: str) -> list[Any]:
    """The YAML documents of ``error dump`` output (each followed by ``---``)."""
    assert text == "" or text.endswith("---\n"), text
    return [yload(part) for part in text.split("---\n")[:-1]]


async def wait_until(cond: Callable[[], bool]) -> None:
    with anyio.fail_after(TIMEOUT):
        while not cond():  # noqa: ASYNC110  (changed by the mirror's task)
            await anyio.sleep(0.02)


def owch() -> RuntimeError:
    try:
        raise RuntimeError("Owch")
    except RuntimeError as exc:
        return exc


async def test_record_and_dump(server: ServerProc) -> None:
    async with errors_of(server) as (_, errors):
        rec = await errors.record_error("run", P("a.question"), exc=owch())
        await errors.record_error("compile", P("b"), comment="bad code", severity=2,
                                  message="line {line}", data={"line": 3})
    assert rec._path[:-1] == ERRORS + ("here",)

    out = docs(cli(server, "error", "dump"))
    assert [(d["subsystem"], d["path"]) for d in out] == [
        ("compile", P("b")), ("run", P("a.question")),
    ]
    run = out[1]
    assert run["_path"] == rec._path
    assert (run["resolved"], run["count"], run["severity"]) == (False, 1, 0)
    assert run["first_seen"] <= run["last_seen"] <= time.time()
    assert "details" not in run
    assert out[0]["message"] == "line {line}"
    # the tutorials' name for it
    assert docs(cli(server, "error", "list")) == out

    (run,) = docs(cli(server, "error", "dump", "-s", "run", "-v"))
    detail = run["details"]["here"]
    assert detail["comment"] == "RuntimeError('Owch')"
    assert "trace" not in detail
    (run,) = docs(cli(server, "error", "dump", "-s", "run", "-vv"))
    trace = run["details"]["here"]["trace"]
    assert trace.startswith("Traceback (most recent call last):")
    assert trace.endswith("RuntimeError: Owch")

    (comp,) = docs(cli(server, "error", "dump", "-s", "compile", "-v"))
    assert comp["details"]["here"] == {
        "seen": comp["details"]["here"]["seen"], "tock": comp["details"]["here"]["tock"],
        "comment": "bad code", "message": "line {line}", "data": {"line": 3},
    }
    assert comp["severity"] == 2

    # below a path: paths relative to it (argument or -p)
    assert [d["path"] for d in docs(cli(server, "error", "dump", "a"))] == [P("question")]
    assert docs(cli(server, "error", "dump", "-p", "a")) == docs(cli(server, "error", "dump", "a"))
    assert docs(cli(server, "error", "dump", "nothing.here")) == []

    # as one mapping: subsystem, then path
    folded = yload(cli(server, "error", "dump", "-d", "_"))
    assert set(folded) == {"run", "compile"}
    assert folded["run"]["a"]["question"]["_"]["_path"] == rec._path
    assert folded["compile"]["b"]["_"]["count"] == 1
    assert yload(cli(server, "error", "list", "-d_", "a"))["run"]["question"]["_"]["count"] == 1

    # by node
    assert len(docs(cli(server, "error", "dump", "-n", "here"))) == 2
    assert docs(cli(server, "error", "dump", "-n", "elsewhere")) == []
    err = cli(server, "error", "dump", "-p", "a", "b", rc=2)
    assert "either as argument or with -p" in err


async def test_resolve_with_the_cli(server: ServerProc) -> None:
    async with errors_of(server) as (_, errors):
        one = await errors.record_error("run", P("job.one"), exc=owch())
        two = await errors.record_error("run", P("job.two"), exc=owch())

        assert cli(server, "error", "resolve", "-s", "run", "job.one") == ""
        await wait_until(lambda: one.resolved)
        assert isinstance(one.resolved_at, float)
        assert [d["path"] for d in docs(cli(server, "error", "dump"))] == [P("job.two")]
        (res,) = docs(cli(server, "error", "dump", "-r"))
        assert (res["path"], res["resolved"]) == (P("job.one"), True)
        assert len(docs(cli(server, "error", "dump", "-a"))) == 2

        # by where the record is stored: absolute, or below errors.prefix
        cli(server, "error", "resolve", str(two._path))
        await wait_until(lambda: two.resolved)
        assert docs(cli(server, "error", "dump")) == []
        cli(server, "error", "resolve", str(two._path[len(ERRORS):]))  # again: no harm

        assert "No error record for run job.three" in cli(
            server, "error", "resolve", "-s", "run", "job.three", rc=1)
        assert "No error record for here:1" in cli(server, "error", "resolve", "here:1", rc=1)


async def test_working_clears_and_reopens(server: ServerProc) -> None:
    async with errors_of(server) as (client, errors):
        assert await errors.record_working("poll", P("s.hall")) is None
        rec = await errors.record_error("poll", P("s.hall"), exc=owch())
        assert rec.resolved is False
        assert await errors.record_working("poll", P("s.hall"), comment="back") is rec
        assert rec.resolved is True
        assert rec.details["here"].comment == "back"
        stored = await client.get(rec._path)
        assert stored.value["resolved"] is True
        assert isinstance(stored.value["resolved_at"], float)

        again = await errors.record_error("poll", P("s.hall"), exc=owch())
        assert again is rec
        assert (rec.resolved, rec.count) == (False, 2)
        assert "resolved_at" not in (await client.get(rec._path)).value
        assert [e.path for e in errors.all_errors()] == [P("s.hall")]
        assert list(errors.all_errors("other")) == []
        assert await errors.get_error_record("poll", P("s.hall"), create=False) is rec


async def test_severity(server: ServerProc) -> None:
    async with errors_of(server) as (_, errors):
        rec = await errors.record_error("io", P("dev"), severity=1, message="disk gone")
        await errors.record_error("io", P("dev"), severity=5, message="slow")
        assert (rec.severity, rec.message, rec.count) == (1, "disk gone", 2)
        await errors.record_error("io", P("dev"), severity=5, message="slow", force=True)
        assert (rec.severity, rec.message, rec.count) == (5, "slow", 3)
        await errors.record_error("io", P("dev"), severity=0, message="dead")
        assert (rec.severity, rec.message) == (0, "dead")


async def test_capture(server: ServerProc) -> None:
    async with errors_of(server) as (_, errors):
        with pytest.raises(RuntimeError, match="Owch"):
            async with errors.capture("job", P("a")):
                raise RuntimeError("Owch")
        rec = await errors.get_error_record("job", P("a"), create=False)
        assert rec is not None and rec.resolved is False
        assert rec.details["here"].comment == "RuntimeError('Owch')"
        assert "in test_capture" in rec.details["here"].trace

        async with errors.capture("job", P("a"), reraise=False, message="try {n}",
                                  data={"n": 2}):
            raise ValueError("again")
        assert rec.count == 2
        assert rec.details["here"].text == "try 2"

        async with errors.capture("job", P("a")):
            pass  # a clean run resolves it
        assert rec.resolved is True

        async with errors.capture("job", P("b")):
            pass  # nothing to resolve: no record
        assert await errors.get_error_record("job", P("b"), create=False) is None

        with pytest.raises(TimeoutError):
            with anyio.fail_after(0.05):
                async with errors.capture("job", P("c")):
                    await anyio.sleep(1)  # cancellation is not an error of the job
        assert await errors.get_error_record("job", P("c"), create=False) is None


async def test_upstream_records(server: ServerProc) -> None:
    async with errors_of(server) as (client, errors):
        # upstream stored the time of "working" in 'resolved'
        await client.set(ERRORS + P("old:42"), {
            "subsystem": "run", "path": P("x"), "severity": 0, "resolved": 1234.5,
            "count": 3, "first_seen": 1000.0, "last_seen": 1200.0, "extra": "kept",
        })
        await wait_until(lambda: any(True for _ in errors.all_errors()))
        (rec,) = errors.all_errors()
        assert (rec.resolved, rec.resolved_at, rec.node) == (True, 1234.5, "old")
        await errors.record_error("run", P("x"), comment="back again")
        value = (await client.get(rec._path)).value
        assert (value["resolved"], value["count"], value["extra"]) == (False, 4, "kept")


async def test_concurrent_records_are_merged(server: ServerProc) -> None:
    async with errors_of(server, "n1") as (client, one), \
            errors_of(server, "n2") as (_, two):
        # both nodes created a record for the same problem before seeing the other's
        base = {"subsystem": "run", "path": P("dup"), "severity": 0, "resolved": False,
                "count": 1}
        await client.set(ERRORS + P("n2:7.n2"), {"seen": 2000.0, "comment": "seen by n2"})
        await client.set(ERRORS + P("n2:7"), {**base, "first_seen": 2000.0})
        await client.set(ERRORS + P("n1:5.n1"), {"seen": 1000.0, "comment": "seen by n1"})
        await client.set(ERRORS + P("n1:5"), {**base, "first_seen": 1000.0})

        # n1's record is older and wins; n2 moves its detail there and deletes its own
        async def merged() -> bool:
            left = [r async for r in client.get_tree(ERRORS, max_depth=2)
                    if len(r.path) == 2 and "value" in r]
            return [r.path for r in left] == [P("n1:5")]

        with anyio.fail_after(TIMEOUT):
            while not await merged():  # noqa: ASYNC110  (polls the server)
                await anyio.sleep(0.05)
        detail = await client.get(ERRORS + P("n1:5.n2"))
        assert detail.value["comment"] == "seen by n2"
        assert (await client.get(ERRORS + P("n1:5"))).value["count"] == 2
        await wait_until(lambda: len(list(two.all_errors())) == 1)
        (rec,) = one.all_errors()
        assert rec._path == ERRORS + P("n1:5")
        assert (await one.get_error_record("run", P("dup"))) is rec


def test_format_trace() -> None:
    # two functions in turn: Python does not fold these frames
    def ping(n: int) -> None:
        if n:
            pong(n - 1)
        raise KeyError("bottom")

    def pong(n: int) -> None:
        ping(n)

    try:
        ping(50)
    except KeyError as exc:
        text = format_trace(exc)
    lines = text.splitlines()
    assert len(lines) == TRACE_LINES
    assert lines[0].startswith("[… ") and lines[0].endswith(" lines left out …]")
    assert lines[-1] == "KeyError: 'bottom'"

    try:
        compile("x = (", "<code t>", "exec")
    except SyntaxError as exc:
        text = format_trace(exc)
    assert text.startswith('  File "<code t>", line 1')
    assert "Traceback" not in text
