"""The client library against a real ``distkv server`` process on 127.0.0.1.

One server serves the whole module; every test works below its own path
(the ``base`` fixture), so tests do not see each other's data.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import pytest
from procs import ServerProc

from distkv.client import Client, StreamedRequest, open_client
from distkv.exceptions import ClientChainError, ClientError, ServerClosedError
from distkv.util import NotGiven
from distkv.util.path import P, Path

TIMEOUT = 10


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProc]:
    with ServerProc(["-e", "-I", "123", "test_0"]) as srv:
        yield srv


@pytest.fixture
def base(request: pytest.FixtureRequest) -> Path:
    """A path of this test's own."""
    return P("t") + (request.node.name,)


def connect(server: ServerProc, **kw: Any) -> contextlib.AbstractAsyncContextManager[Client]:
    return open_client(connect={"host": "127.0.0.1", "port": server.port, **kw})


async def wait_until(cond: Callable[[], bool]) -> None:
    with anyio.fail_after(TIMEOUT):
        while not cond():  # noqa: ASYNC110  (state changed by the client's tasks)
            await anyio.sleep(0.02)


pytestmark = pytest.mark.anyio


async def test_greeting(server: ServerProc) -> None:
    async with connect(server) as client:
        assert client.node == "test_0"
        assert client.qlen == 10
        assert isinstance(client.greeting.tock, int)
        root = await client.get(P(":"))
        assert root.value == 123


async def test_set_get_list_delete(server: ServerProc, base: Path) -> None:
    async with connect(server) as client:
        res = await client.set(base + ("one",), ("Test", 42, False))
        assert res.changed is True
        assert "prev" not in res
        await client.set(base + ("two",), {"a": 1})

        got = await client.get(base + ("one",))
        assert got.value == ("Test", 42, False)
        assert got.tock > 0
        assert "chain" not in got

        assert await client.list(base) == ("one", "two")
        assert await client.list(base, with_data=True) == {
            "one": ("Test", 42, False),
            "two": {"a": 1},
        }

        res = await client.set(base + ("one",), 5)
        assert res.prev == ("Test", 42, False)

        res = await client.delete(base + ("one",))
        assert res.changed is True
        got = await client.get(base + ("one",))
        assert "value" not in got
        # by default, children without a value are listed too
        assert await client.list(base) == ("one", "two")
        assert await client.list(base, empty=False) == ("two",)

        missing = await client.get(base + ("never", "was"), nchain=2)
        assert "value" not in missing
        assert missing.chain is None


async def test_tutorial_chain_example(server: ServerProc, base: Path) -> None:
    path = base + ("one", "two", "three")
    async with connect(server) as client:
        await client.set(path, value=("Test", 42, False), chain=None)
        with pytest.raises(ClientChainError, match="Entry already exists"):
            await client.set(path, value=("Test", 43, False), chain=None)

        res = await client.get(path, nchain=2)
        v = res.value
        ret = await client.set(path, value=("Test", v[1] + 1, False), chain=res.chain, nchain=2)
        assert res.chain != ret.chain
        assert (await client.get(path)).value == ("Test", 43, False)

        # somebody changed it meanwhile: the stale chain is refused
        with pytest.raises(ClientChainError) as info:
            await client.set(path, value=("Test", 99, False), chain=res.chain)
        assert str(info.value).startswith("Chain is ")
        assert (await client.get(path)).value == ("Test", 43, False)

        # the fresh chain works
        again = await client.set(path, value=("Test", 44, False), chain=ret.chain, nchain=1)
        assert again.changed is True


async def test_prev_and_idem(server: ServerProc, base: Path) -> None:
    path = base + ("x",)
    async with connect(server) as client:
        await client.set(path, 1234)
        with pytest.raises(ClientError) as info:
            await client.set(path, 5, prev=999)
        assert type(info.value) is ClientError
        assert str(info.value) == f"Data is 1234 not 999 at {path}"

        first = await client.set(path, 1, idem=True, nchain=1)
        second = await client.set(path, 1, idem=True, nchain=1)
        assert first.changed is True
        assert second.changed is False
        assert second.chain == first.chain


async def test_get_tree(server: ServerProc, base: Path) -> None:
    async with connect(server) as client:
        await client.set(base, 1234)
        await client.set(base + ("foo",), 123)
        await client.set(base + ("foo", "bap"), 12)
        await client.set(base + ("foo", "bar", "baz"), 1)

        got = [(r.path, r.value) async for r in client.get_tree(base)]
        assert got == [
            (P(":"), 1234),
            (P("foo"), 123),
            (P("foo.bap"), 12),
            (P("foo.bar.baz"), 1),
        ]
        shallow = [r.path async for r in client.get_tree(base, min_depth=1, max_depth=2)]
        assert shallow == [P("foo"), P("foo.bap")]
        with_chain = [r async for r in client.get_tree(base + ("foo",), nchain=1, max_depth=0)]
        assert with_chain[0].chain.node == "test_0"
        assert await client.get_tock() > 0  # the connection is fine after the streams


async def test_watch(server: ServerProc, base: Path) -> None:
    async with connect(server) as client, connect(server) as writer:
        await client.set(base + ("a",), 1)
        seen: list[dict] = []
        async with client.watch(base, fetch=True, nchain=1) as watcher:
            async for rec in watcher:
                seen.append(rec)
                if rec.get("state") == "uptodate":
                    await writer.set(base + ("b", "c"), 2)
                    await writer.delete(base + ("a",))
                elif len(seen) == 4:
                    break
        assert await client.get_tock() > 0
    assert [(r.get("path"), r.get("value", NotGiven)) for r in seen] == [
        (P("a"), 1),
        (None, NotGiven),
        (P("b.c"), 2),
        (P("a"), NotGiven),
    ]
    assert seen[1].state == "uptodate"
    assert seen[2].chain.node == "test_0"


async def test_many_requests_in_flight(server: ServerProc, base: Path) -> None:
    n = 200
    async with connect(server) as client:
        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(client.set, base + (i,), i * 2)
        results: dict[int, Any] = {}

        async def get(i: int) -> None:
            results[i] = (await client.get(base + (i,))).value

        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(get, i)
    assert results == {i: i * 2 for i in range(n)}


async def test_delete_recursive_and_delete_tree(server: ServerProc, base: Path) -> None:
    async with connect(server) as client:
        for name in ("a", "b", "c"):
            await client.set(base + ("x", name), name)
        res = await client.delete(base + ("x",), recursive=True)
        assert res.changed >= 3  # upstream also counts the valueless "x" itself
        assert [r async for r in client.get_tree(base + ("x",))] == []

        await client.set(base + ("y", "d"), 3)
        stream = await client.delete_tree(base + ("y",), nchain=2)
        assert isinstance(stream, StreamedRequest)
        deleted = {r.path: r.get("old_value") async for r in stream}
        assert deleted[P("d")] == 3


async def test_dynamic_config(server: ServerProc) -> None:
    prefix = P(":.distkv.config.myext")
    async with connect(server) as first:
        assert "myext" not in first.config
        await first.set(prefix, {"level": 2})
        await wait_until(lambda: first.config.get("myext") == {"level": 2})
        async with connect(server) as second:
            assert second.config.myext.level == 2
        await first.set(P(":.distkv.config.runner"), {"start_delay": 7})
        await wait_until(lambda: first.config.runner.start_delay == 7)
        assert first.config.runner.name == "run"  # static keys remain
        await first.delete(P(":.distkv.config.runner"))
        await wait_until(lambda: first.config.runner.start_delay == 1)
        await first.delete(prefix)


async def test_config_changes(server: ServerProc, base: Path) -> None:
    name = base[-1]  # a config section of this test's own
    other = f"{name}-other"
    prefix = P(":.distkv.config")
    async with connect(server) as client:
        async with client.config_changes() as every, client.config_changes(name) as mine:
            await client.set(prefix + (other,), {"x": 1})
            await client.set(prefix + (name,), {"level": 1})
            with anyio.fail_after(TIMEOUT):
                assert await anext(every) == (other, {"x": 1})
                assert await anext(every) == (name, {"level": 1})
                assert await anext(mine) == (name, {"level": 1})  # 'other' is not reported

            # changes that arrive before they are read coalesce, the latest value winning
            await client.set(prefix + (name,), {"level": 2})
            await client.set(prefix + (name,), {"level": 3})
            await wait_until(lambda: client.config[name].level == 3)
            await client.delete(prefix + (other,))
            with anyio.fail_after(TIMEOUT):
                assert await anext(every) == (name, {"level": 3})
                assert await anext(every) == (other, None)  # gone from the config
                assert await anext(mine) == (name, {"level": 3})

                # a static section: merged while in the tree, the static one when deleted
                await client.set(prefix + ("runner",), {"start_delay": 7})
                section, value = await anext(every)
                assert (section, value.start_delay, value.name) == ("runner", 7, "run")
                await client.delete(prefix + ("runner",))
                section, value = await anext(every)
                assert (section, value.start_delay, value.name) == ("runner", 1, "run")
                assert client.config.runner is value

                await client.set(prefix + (name,), {"level": 4})
                assert await anext(mine) == (name, {"level": 4})  # nothing else came between
            await client.delete(prefix + (name,))
        assert [change async for change in mine] == []  # leaving the block ends it at once


async def test_server_going_away(base: Path) -> None:
    with ServerProc(["-I", "1", "gone"]) as srv:
        async with connect(srv) as client:
            await client.set(base, 1)
            async with client.watch(base) as watcher, client.config_changes() as changes:
                await anyio.to_thread.run_sync(srv.stop)
                with pytest.raises(ServerClosedError):
                    async for _ in watcher:
                        pass
                with anyio.fail_after(TIMEOUT):
                    assert [change async for change in changes] == []
            with pytest.raises(ServerClosedError):
                await client.get(base)


@contextlib.asynccontextmanager
async def _plain(port: int) -> AsyncIterator[Client]:
    async with open_client(connect={"host": "127.0.0.1", "port": port}) as client:
        yield client


def test_plain_asyncio(server: ServerProc) -> None:
    path = P("t.plain_asyncio")

    async def main() -> Any:
        async with _plain(server.port) as client:
            await client.set(path, value={"hello": "world"})
            return (await client.get(path)).value

    assert asyncio.run(main()) == {"hello": "world"}
