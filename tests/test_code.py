"""Stored code (``distkv.code``) and ``distkv client code …``: a real server, the real CLI.

Code is stored the way a user does it (the CLI, code on stdin) and run
through :class:`CodeRoot` in this process.
"""

from __future__ import annotations

import contextlib
import sys
import textwrap
import traceback
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest
from procs import ServerProc

from distkv.client import Client, open_client
from distkv.code import (
    CodeCompileError,
    CodeNotFoundError,
    CodeRoot,
    ModuleRoot,
    line_info,
    make_proc,
)
from distkv.errors import ErrorRoot
from distkv.obj import handler_scope
from distkv.util.path import P
from distkv.util.yaml import yload

TIMEOUT = 10
PROC = P(":.distkv.code.proc")

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


both_backends = pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])


@pytest.fixture
def server() -> Iterator[ServerProc]:
    """A fresh server per test: code and error records are global."""
    with ServerProc(["-e", "-I", "123", "test_0"]) as srv:
        yield srv


@contextlib.asynccontextmanager
async def handlers(server: ServerProc) -> AsyncIterator[Client]:
    async with open_client(connect={"host": "127.0.0.1", "port": server.port}) as client:
        async with handler_scope(client):
            yield client


def cli(server: ServerProc, *args: str, input: str | None = "", rc: int = 0,
        global_args: tuple[str, ...] = ()) -> str:
    res = server.client(*args, input=input, global_args=global_args)
    assert res.returncode == rc, (res.stdout, res.stderr)
    return res.stdout if rc == 0 else res.stderr


async def changed(entry: Any) -> None:
    with anyio.fail_after(TIMEOUT):
        await entry.wait_changed()


# --- the tutorial ------------------------------------------------------------------------


@both_backends
async def test_the_answer(server: ServerProc, capsys: pytest.CaptureFixture) -> None:
    cli(server, "code", "set", "the.answer", input='print("Forty-Two!")\nreturn 42\n')
    # stored as given, async by default, and nothing else (no seq/tock/chain: row 38)
    assert cli(server, "code", "the.answer", "get") == (
        'code: |\n  print("Forty-Two!")\n  return 42\nis_async: true\nvars: []\n'
    )
    async with handlers(server) as client:
        code = await CodeRoot.as_handler(client)
        assert await code("the.answer") == 42
        assert capsys.readouterr().out == "Forty-Two!\n"
        assert await code.call(P("the.answer")) == 42
        assert code.get_code("the.answer").info == "<2 lines>"


@both_backends
async def test_sync_thread_and_parameters(server: ServerProc) -> None:
    cli(server, "code", "calc.add", "set", "-A", "-e", "a", "1", "-e", "b", "2",
        input="return (a, b, extra)\n")
    cli(server, "code", "calc.where", "set", "-t",
        input="import threading\nreturn threading.current_thread() is threading.main_thread()\n")
    rec = yload(cli(server, "code", "calc.add", "get"))
    assert rec["is_async"] is None
    assert rec["vars"] == ["a", "b"]
    assert rec["default"] == {"a": 1, "b": 2}

    async with handlers(server) as client:
        code = await CodeRoot.as_handler(client)
        # sync code returns its result directly; missing parameters are None,
        # other keywords are the code's globals
        assert code("calc.add", 5, extra=0) == (5, None, 0)
        assert code("calc.add", 5, 6, extra=client) == (5, 6, client)
        assert code("calc.add", b=3, extra="x") == (None, 3, "x")
        with pytest.raises(NameError, match="extra"):
            code("calc.add", 1, 2)
        with pytest.raises(TypeError, match="2 arguments expected, 3 given"):
            code("calc.add", 1, 2, 3)
        # thread code runs in a worker thread
        assert await code("calc.where") is False
        assert await code.call("calc.where") is False
        assert await code.call("calc.add", 1, extra=2) == (1, None, 2)

    # '-e NAME -' keeps the parameter without default, '-e NAME /' drops it
    cli(server, "code", "calc.add", "set", "-e", "a", "-", "-e", "b", "/", "-v", "c", "x",
        input="")
    rec = yload(cli(server, "code", "calc.add", "get"))
    assert rec["vars"] == ["a", "c"]
    assert rec["default"] == {"c": "x"}
    assert rec["code"] == "return (a, b, extra)\n"  # empty stdin keeps the code
    assert rec["is_async"] is None  # kept, too


async def test_changed_code_replaces_the_function(server: ServerProc) -> None:
    cli(server, "code", "ver", "set", input="return 1\n")
    async with handlers(server) as client:
        code = await CodeRoot.as_handler(client)
        seen: list[Any] = []
        code.add_listener(lambda entry: seen.append((entry.subpath, entry.generation)))
        entry = code.get_code("ver")
        assert await code("ver") == 1
        gen = entry.generation

        async with anyio.create_task_group() as tg:
            tg.start_soon(changed, entry)
            await anyio.sleep(0.05)
            cli(server, "code", "ver", "set", input="return 2\n")
        assert await code("ver") == 2
        assert entry.generation == gen + 1
        assert seen == [(P("ver"), gen + 1)]
        assert code.get_code("ver") is entry

        # switching to sync code
        async with anyio.create_task_group() as tg:
            tg.start_soon(changed, entry)
            await anyio.sleep(0.05)
            cli(server, "code", "ver", "set", "-A", input="return 3\n")
        assert code("ver") == 3

        # deleting: the listeners hear of it, the code is gone
        async with anyio.create_task_group() as tg:
            tg.start_soon(changed, entry)
            await anyio.sleep(0.05)
            assert cli(server, "code", "ver", "delete") == "Deleted.\n"
        assert seen[-1] == (P("ver"), gen + 3)
        with pytest.raises(CodeNotFoundError, match="No code at ver"):
            code("ver")
    assert cli(server, "code", "ver", "delete") == "Does not exist.\n"
    assert cli(server, "code", "ver", "delete", global_args=("-q",)) == ""  # quiet: nothing
    assert "No code at ver" in cli(server, "code", "ver", "get", rc=1)


async def test_add_and_remove(server: ServerProc) -> None:
    async with handlers(server) as client:
        code = await CodeRoot.as_handler(client)
        entry = await code.add("x.double", "return 2 * n", variables=["n"],
                               default={"n": 21}, info="doubles n")
        assert entry.value == {"code": "return 2 * n", "is_async": None, "vars": ["n"],
                               "default": {"n": 21}, "info": "doubles n"}
        assert code("x.double", 4) == 8
        stored = await client.get(PROC + P("x.double"))
        assert stored.value == {**entry.value, "vars": ("n",)}  # arrays come back as tuples
        await code.add("x.double", "return 3 * n", variables=["n"], is_async=True)
        assert await code("x.double", n=2) == 6

        with pytest.raises(ValueError, match="cannot compile the code: '\\(' was never closed"):
            await code.add("x.bad", "return (")
        with pytest.raises(ValueError, match="not a valid parameter name"):
            await code.add("x.bad", "return 1", variables=["no such"])
        assert "value" not in await client.get(PROC + P("x.bad"))

        assert await code.remove("x.double") is True
        assert await code.remove("x.double") is False
        with pytest.raises(CodeNotFoundError):
            await code.call("x.double")
        assert "value" not in await client.get(PROC + P("x.double"))


async def test_listing(server: ServerProc) -> None:
    cli(server, "code", "set", "lst.one", "-i", "the first", input="return 1\n")
    cli(server, "code", "lst.two.deep", "set", input="a = 1\nb = 2\nreturn a + b\n")
    cli(server, "code", "other", "set", input="return 0\n")

    assert cli(server, "code", "lst") == "lst.one the first\nlst.two.deep <3 lines>\n"
    assert cli(server, "code", ":", "list", "-s") == (
        "lst.one :: the first\nlst.two.deep :: <3 lines>\nother :: <1 line>\n"
    )
    assert yload(cli(server, "code", "lst", "list")) == [
        {P("lst.one"): {"is_async": True, "vars": [], "info": "the first"}},
        {P("lst.two.deep"): {"is_async": True, "vars": [], "info": "<3 lines>"}},
    ]
    assert yload(cli(server, "code", "lst", "list", "-m", "1")) == [
        {P("lst.one"): {"is_async": True, "vars": [], "info": "the first"}},
    ]
    full = yload(cli(server, "code", "lst", "list", "-f", "-M", "2"))
    assert full == [{P("lst.two.deep"): {"code": "a = 1\nb = 2\nreturn a + b\n",
                                         "is_async": True, "vars": []}}]
    assert yload(cli(server, "code", "lst", "list", "-d", "_")) == {
        "lst": {
            "one": {"_": {"is_async": True, "vars": [], "info": "the first"}},
            "two": {"deep": {"_": {"is_async": True, "vars": [], "info": "<3 lines>"}}},
        }
    }
    assert line_info("x\ny") == "<2 lines>"

    # a record written by someone else, without info: the line count instead (row 38)
    async with open_client(connect={"host": "127.0.0.1", "port": server.port}) as client:
        await client.set(PROC + P("lst.raw"), {"code": "pass"})
    assert "lst.raw <1 line>\n" in cli(server, "code", "lst")


async def test_files_and_data(server: ServerProc, tmp_path: Any) -> None:
    script = tmp_path / "proc.py"
    script.write_text("return greeting + ', ' + name\n")
    data = tmp_path / "rec.yaml"
    data.write_text("info: greets\nvars: [greeting]\ndefault: {greeting: Hello}\n")
    cli(server, "code", "greet", "set", "-s", str(script), "-d", str(data), "-A",
        "-v", "name", "you")
    out = tmp_path / "out.py"
    rec = yload(cli(server, "code", "greet", "get", "-s", str(out)))
    assert out.read_text() == "return greeting + ', ' + name\n"
    assert rec == {"info": "greets", "vars": ["greeting", "name"], "is_async": None,
                   "default": {"greeting": "Hello", "name": "you"}}
    meta = yload(cli(server, "-m", "code", "greet", "get"))
    assert meta["value"]["info"] == "greets"
    assert meta["chain"]["node"] == "test_0"
    async with handlers(server) as client:
        code = await CodeRoot.as_handler(client)
        assert code("greet", "Hi", "there") == "Hi, there"


async def test_compile_errors(server: ServerProc) -> None:
    # the CLI refuses code that doesn't compile
    err = cli(server, "code", "bad", "set", input="x = 1\nreturn (\n", rc=1)
    assert err == ("Error: :.distkv.code.proc.bad: cannot compile the code: "
                   "'(' was never closed (line 2)\n")
    err = cli(server, "code", "bad", "set", "-A", input="await foo()\n", rc=1)
    assert "SyntaxError: 'await' outside async function" in err
    assert "No code at bad" in cli(server, "code", "bad", "get", rc=1)

    async with handlers(server) as client:
        code = await CodeRoot.as_handler(client)
        errors = await ErrorRoot.as_handler(client)
        entry = code.allocate("bad")
        async with anyio.create_task_group() as tg:
            tg.start_soon(changed, entry)
            await anyio.sleep(0.05)
            await client.set(PROC + P("bad"), {"code": "x = 1\nreturn (\n", "is_async": True})
        with pytest.raises(CodeCompileError, match="can't be used.*was never closed"):
            code("bad")
        rec = await errors.get_error_record("compile", P("bad"), create=False)
        assert rec is not None
        assert (rec.resolved, rec.message, rec.count) == (False, "compiler error", 1)
        detail = rec.details[client.client_name]
        assert "was never closed (line 2)" in detail.comment
        assert not hasattr(detail, "trace")

        # fixed: callable again, the error is resolved
        async with anyio.create_task_group() as tg:
            tg.start_soon(changed, entry)
            await anyio.sleep(0.05)
            cli(server, "code", "bad", "set", input="return 'fixed'\n")
        assert await code("bad") == "fixed"
        assert rec.resolved is True


async def test_mirror_without_handler_scope(server: ServerProc) -> None:
    """A CodeRoot from client.mirror() runs its own error root."""
    async with open_client(connect={"host": "127.0.0.1", "port": server.port}) as client:
        await client.set(PROC + P("broken"), {"code": "return (", "is_async": None})
        async with client.mirror(PROC, root_type=CodeRoot) as code:
            with pytest.raises(CodeCompileError):
                code("broken")
            assert code.err is not None
            (rec,) = code.err.all_errors("compile")
            assert rec.path == P("broken")
    assert "compiler error" in cli(server, "error", "dump")


async def test_tracebacks_show_stored_lines(server: ServerProc) -> None:
    cli(server, "code", "boom", "set", input="x = 1\ny = 0\nreturn x / y\n")
    async with handlers(server) as client:
        code = await CodeRoot.as_handler(client)
        with pytest.raises(ZeroDivisionError) as info:
            await code("boom")
    text = "".join(traceback.format_exception(info.value))
    assert 'File ":.distkv.code.proc.boom", line 3, in _proc\n    return x / y' in text


def test_make_proc() -> None:
    fn = make_proc("  y = a\n  return y, b, _client", ["a", "b"], P("t"))  # indented as a whole
    assert fn(1, _client="c") == (1, None, "c")
    with pytest.raises(ValueError, match="Duplicate"):
        make_proc("pass", ["a", "a"])
    with pytest.raises(ValueError, match=r"^t: cannot compile the code: .* \(line 2\)"):
        make_proc("x = 1\nreturn )", (), P("t"))


# --- modules -------------------------------------------------------------------------------


@pytest.fixture
def clean_modules() -> Iterator[None]:
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        del sys.modules[name]


async def test_modules(server: ServerProc, clean_modules: None) -> None:
    source = textwrap.dedent("""\
        GREETING = "hi"

        def hello(name):
            return f"{GREETING} {name}"
        """)
    # a module that imports one stored after it: loads once the other one is there
    cli(server, "code", "dkvtest.user", "module", "set",
        input="from dkvtest.greet import hello\nWHO = hello('user')\n")
    cli(server, "code", "dkvtest.greet", "module", "set", input=source)
    assert yload(cli(server, "code", "dkvtest.greet", "module", "get")) == {"code": source}
    cli(server, "code", "use.it", "set", "-A", "-e", "who", "-",
        input="import dkvtest.greet\nreturn dkvtest.greet.hello(who)\n")

    async with handlers(server) as client:
        modules = await ModuleRoot.as_handler(client)
        code = await CodeRoot.as_handler(client)
        assert code("use.it", "you") == "hi you"
        assert sys.modules["dkvtest.user"].WHO == "hi user"
        errors = await ErrorRoot.as_handler(client)
        assert list(errors.all_errors("module")) == []
        # a module that fails while loading is an error record, and not importable
        await client.set(P(":.distkv.code.module.dkvtest.broken"),
                         {"code": "raise RuntimeError('nope')"})
        await _until(lambda: any(True for _ in errors.all_errors("module")))
        (rec,) = errors.all_errors("module")
        assert rec.path == P("dkvtest.broken")
        assert rec.details[client.client_name].comment == "RuntimeError('nope')"
        assert "dkvtest.broken" not in sys.modules
        assert modules.get_module("dkvtest.greet") is sys.modules["dkvtest.greet"]

        entry = modules.follow(P("dkvtest.greet"))
        assert entry is not None
        cli(server, "code", "dkvtest.greet", "module", "set",
            input=source.replace('"hi"', '"hello"'))
        await _until(lambda: sys.modules["dkvtest.greet"].GREETING == "hello")
        assert code("use.it", who="you") == "hello you"

        await modules.add("dkvtest.extra", "VALUE = 7\n")
        import dkvtest.extra  # type: ignore[import-not-found]

        assert dkvtest.extra.VALUE == 7
        assert await modules.remove("dkvtest.extra") is True
        assert "dkvtest.extra" not in sys.modules
        with pytest.raises(SyntaxError):
            await modules.add("dkvtest.bad", "def (")

        cli(server, "code", "dkvtest.greet", "module", "delete")
        await _until(lambda: "dkvtest.greet" not in sys.modules)
        with pytest.raises(ImportError):
            code("use.it")
        with pytest.raises(LookupError):
            modules.get_module("dkvtest.greet")


async def _until(cond: Any) -> None:
    with anyio.fail_after(TIMEOUT):
        while not cond():  # noqa: ASYNC110
            await anyio.sleep(0.02)
