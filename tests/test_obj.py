"""Active objects (``distkv.obj``): mirrors of a real ``distkv server`` process.

One server serves the module; every test mirrors its own path (``base``).
Writes come from a second client, as they would from another program.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest
from procs import ROOT, ServerProc

from distkv.client import Client, open_client
from distkv.codec import make_unpacker, packb
from distkv.exceptions import ClientChainError, ServerClosedError
from distkv.obj import AttrClientEntry, ClientEntry, ClientRoot, handler_scope
from distkv.obj.root import NEWER, OLDER, SAME, UNRELATED, chain_relation
from distkv.util import NotGiven
from distkv.util.path import P, Path

TIMEOUT = 10

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProc]:
    with ServerProc(["-e", "-I", "123", "test_0"]) as srv:
        yield srv


@pytest.fixture
def base(request: pytest.FixtureRequest) -> Path:
    return P("obj") + (request.node.name,)


def connect(server: ServerProc) -> contextlib.AbstractAsyncContextManager[Client]:
    return open_client(connect={"host": "127.0.0.1", "port": server.port})


async def wait_until(cond: Callable[[], bool]) -> None:
    with anyio.fail_after(TIMEOUT):
        while not cond():  # noqa: ASYNC110  (changed by the mirror's task)
            await anyio.sleep(0.02)


class Recorder(ClientEntry):
    """Logs every hook call into the root's ``log``."""

    async def set_value(self, value: Any) -> None:
        await super().set_value(value)
        self.root.log.append(("set", str(self.subpath), value))

    async def seen_value(self) -> None:
        self.root.log.append(("seen", str(self.subpath)))

    def mark_inconsistent(self, record: dict) -> None:
        self.root.log.append(("inconsistent", str(self.subpath), record.get("value")))


class RecRoot(ClientRoot):
    def __init__(self, *a: Any, **kw: Any):
        super().__init__(*a, **kw)
        self.log: list[tuple] = []

    @classmethod
    def child_type(cls, name: Any) -> type[ClientEntry] | None:
        return None if name == "ignored" else Recorder

    async def run_starting(self) -> None:
        self.log.append(("run_starting", self.loaded))

    async def running(self) -> None:
        self.log.append(("running", self.loaded, len(self)))


# --- the tutorial's example ---------------------------------------------------------------


async def test_mirror_follows_other_clients(server: ServerProc, base: Path) -> None:
    async with connect(server) as writer, connect(server) as client:
        await writer.set(base + P("two.three"), ("Test", 42, False))
        async with client.mirror(base, root_type=RecRoot) as root:
            # loaded before the body starts
            assert root["two"]["three"].value[1] >= 42
            assert root["two"].value is NotGiven
            assert root.log == [
                ("run_starting", False),
                ("set", "two.three", ("Test", 42, False)),
                ("running", True, 1),
            ]

            await writer.set(base + P("two.four"), {"x": 1})
            await wait_until(lambda: "four" in root["two"])
            assert root["two"]["four"].value == {"x": 1}
            assert root.log[-1] == ("set", "two.four", {"x": 1})

            await writer.set(base + P("two.three"), "changed")
            await wait_until(lambda: root["two"]["three"].value == "changed")

            # a deleted entry without children goes away, after a last set_value
            await writer.delete(base + P("two.four"))
            await wait_until(lambda: "four" not in root["two"])
            assert ("set", "two.four", NotGiven) in root.log

            # with children, it stays (without value) until they are gone too
            await writer.set(base + P("two"), "parent")
            await wait_until(lambda: root["two"].value == "parent")
            await writer.delete(base + P("two"))
            await wait_until(lambda: root["two"].value is NotGiven)
            assert "three" in root["two"]
            await writer.delete(base + P("two.three"))
            await wait_until(lambda: "two" not in root)
            assert list(root) == []


async def test_mirror_accepts_path_text(server: ServerProc, base: Path) -> None:
    async with connect(server) as client:
        await client.set(base + ("a",), 1)
        async with client.mirror(str(base)) as root:
            assert type(root) is ClientRoot
            assert root["a"].value == 1
            assert type(root["a"]) is ClientEntry


async def test_untracked_children(server: ServerProc, base: Path) -> None:
    async with connect(server) as client:
        await client.set(base + P("ignored.x"), 1)
        await client.set(base + P("kept"), 2)
        async with client.mirror(base, root_type=RecRoot) as root:
            assert root.get("ignored") is None
            assert root["kept"].value == 2
            await client.set(base + P("ignored.y"), 3)
            await client.set(base + P("kept"), 4)
            await wait_until(lambda: root["kept"].value == 4)
            assert "ignored" not in root
            assert all("ignored" not in rec[1] for rec in root.log if rec[0] == "set")


# --- writing through entries ---------------------------------------------------------------


async def test_update_echo_and_wait(server: ServerProc, base: Path) -> None:
    async with connect(server) as client:
        await client.set(base + ("a",), 1)
        async with client.mirror(base, root_type=RecRoot) as root:
            entry = root["a"]
            res = await entry.update(2, wait=True)
            assert res.changed is True
            assert entry.value == 2
            assert entry.chain == res.chain
            # our own change came back as an echo, not as a new value
            assert root.log[-1] == ("seen", "a")
            assert ("set", "a", 2) not in root.log
            assert (await client.get(base + ("a",))).value == 2

            # an unchanged value makes no change (idem)
            res = await entry.update(2, wait=True)
            assert res.changed is False

            # a new entry: allocate locally, then update
            new = root.allocate("b")
            await new.update({"n": 1}, wait=True)
            assert (await client.get(base + ("b",))).value == {"n": 1}


async def test_update_fails_on_unseen_change(server: ServerProc, base: Path) -> None:
    async with connect(server) as writer, connect(server) as client:
        await writer.set(base + ("a",), 1)
        async with client.mirror(base) as root:
            entry = root["a"]
            old = entry.chain
            res = await writer.set(base + ("a",), 2, nchain=3)
            await root.wait_chain(res.chain)
            entry.chain = old  # as if the change had not arrived yet
            with pytest.raises(ClientChainError):
                await entry.update(3)
            assert (await writer.get(base + ("a",))).value == 2


async def test_wait_chain(server: ServerProc, base: Path) -> None:
    async with connect(server) as writer, connect(server) as client:
        async with client.mirror(base) as root:
            for i in range(5):
                res = await writer.set(base + ("x", i), i * 10, nchain=3)
                await root.wait_chain(res.chain)
                # no polling: the value is there when wait_chain returns
                assert root["x"][i].value == i * 10
            await root.wait_chain(None)
            with pytest.raises(TimeoutError):
                with anyio.fail_after(0.3):
                    await root.wait_chain({"node": "test_0", "tick": 10**9, "prev": None})


async def test_delete_through_entries(server: ServerProc, base: Path) -> None:
    async with connect(server) as client:
        await client.set(base + ("a",), 1)
        await client.set(base + P("t.x"), 1)
        await client.set(base + P("t.y"), 2)
        async with client.mirror(base, root_type=RecRoot) as root:
            await root["a"].delete(wait=True)
            assert "a" not in root
            assert ("set", "a", NotGiven) in root.log
            assert "value" not in await client.get(base + ("a",))

            await root["t"].delete(recursive=True)
            await wait_until(lambda: "t" not in root)
            assert await client.list(base, with_data=True) == {}


async def test_mark_inconsistent(server: ServerProc, base: Path) -> None:
    async with connect(server) as writer, connect(server) as client:
        await writer.set(base + ("a",), 1)
        async with client.mirror(base, root_type=RecRoot) as root:
            # a chain from a node the server's change does not descend from
            root["a"].chain = {"node": "elsewhere", "tick": 5, "prev": None}
            await writer.set(base + ("a",), 2)
            await wait_until(lambda: root["a"].value == 2)
            assert ("inconsistent", "a", 2) in root.log
            assert root["a"].chain["node"] == "test_0"


def test_chain_relation() -> None:
    a1 = {"node": "a", "tick": 1, "prev": None}
    a2 = {"node": "a", "tick": 2, "prev": None}
    b1a1 = {"node": "b", "tick": 1, "prev": a1}
    c1 = {"node": "c", "tick": 1, "prev": None}
    assert chain_relation(a1, a1) == SAME
    assert chain_relation(a1, a2) == NEWER
    assert chain_relation(a2, a1) == OLDER
    assert chain_relation(a1, b1a1) == NEWER
    assert chain_relation(b1a1, a1) == OLDER
    assert chain_relation(a1, c1) == UNRELATED
    assert chain_relation(None, a1) == NEWER
    assert chain_relation(a1, None) == NEWER


# --- shared handlers ---------------------------------------------------------------------


class Shared(ClientRoot):
    CFG = "shared_test"


async def test_as_handler_is_shared(server: ServerProc, base: Path) -> None:
    async with connect(server) as client:
        await client.set(base + P("sub.a"), 1)
        cfg = {"prefix": base}
        # open_client hosts shared handlers itself: no explicit scope needed
        plain = await Shared.as_handler(client, cfg=cfg)
        async with handler_scope(client):
            assert await Shared.as_handler(client, cfg=cfg) is plain
            first, second = [], []
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: _append(first, Shared.as_handler(client, cfg=cfg)))
                tg.start_soon(lambda: _append(second, Shared.as_handler(client, cfg=cfg)))
            assert first[0] is second[0]
            assert first[0]["sub"]["a"].value == 1
            assert first[0].cfg.prefix == base

            sub = await Shared.as_handler(client, cfg=cfg, subpath=("sub",))
            assert sub is not first[0]
            assert sub["a"].value == 1
            assert await Shared.as_handler(client, cfg=cfg, subpath=("sub",)) is sub

            # the shared mirrors stay current
            await client.set(base + P("sub.a"), 2)
            await wait_until(lambda: sub["a"].value == 2 and first[0]["sub"]["a"].value == 2)
        with pytest.raises(KeyError, match="no 'prefix'"):
            async with handler_scope(client):
                await Shared.as_handler(client)


async def _append(lst: list, aw: Any) -> None:
    lst.append(await aw)


# --- robustness ----------------------------------------------------------------------------


async def _silent_server(*, task_status: Any) -> None:
    """Greets, answers requests, starts watches but never says 'uptodate'."""

    async def handle(stream: Any) -> None:
        async with stream:
            await stream.send(packb({"seq": 0, "node": "fake", "tick": 1, "tock": 1,
                                     "version": (0, 65, 0)}))
            unpacker = make_unpacker()
            while True:
                try:
                    data = await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    return
                unpacker.feed(data)
                for msg in unpacker:
                    if msg.get("action") == "watch":
                        await stream.send(packb({"seq": msg["seq"], "state": "start"}))
                    elif "action" in msg:
                        await stream.send(packb({"seq": msg["seq"], "tock": 2}))

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    async with listener:
        task_status.started(listener.extra(anyio.abc.SocketAttribute.local_port))
        await listener.serve(handle)


async def test_load_never_completes(base: Path) -> None:
    async with anyio.create_task_group() as tg:
        port = await tg.start(_silent_server)
        async with open_client(connect={"host": "127.0.0.1", "port": port,
                                        "init_timeout": 0.3}) as client:
            with anyio.fail_after(TIMEOUT):
                with pytest.raises(TimeoutError, match=r"Mirror of obj\..*sent nothing for 0.6"):
                    async with client.mirror(base):
                        pytest.fail("the body must not run")
        tg.cancel_scope.cancel()


async def test_connection_loss_ends_the_mirror(base: Path) -> None:
    srv = ServerProc(["-e", "-I", "1", "lost_0"]).start()
    try:
        with pytest.raises(ServerClosedError):
            async with connect(srv) as client:
                async with client.mirror(base) as root:
                    assert root.loaded
                    await anyio.to_thread.run_sync(srv.stop)
                    await anyio.sleep(TIMEOUT)
                    pytest.fail("the body was not cancelled")
    finally:
        srv.stop()


class Slow(ClientEntry):
    async def set_value(self, value: Any) -> None:
        await anyio.sleep(0.01)
        await super().set_value(value)
        if value is NotGiven:
            self.root.deleted.append(str(self.subpath))


class SlowRoot(ClientRoot):
    def __init__(self, *a: Any, **kw: Any):
        super().__init__(*a, **kw)
        self.deleted: list[str] = []

    @classmethod
    def child_type(cls, name: Any) -> type[ClientEntry]:
        return Slow


async def test_mirror_that_falls_behind_recovers(
    base: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with ServerProc(["-e", "-I", "1", "slow_0"],
                    global_args=["-C", "server.watch_queue=5"]) as srv:
        async with connect(srv) as writer, connect(srv) as client:
            for i in range(10):
                await writer.set(base + ("old", i), i)
            with caplog.at_level(logging.WARNING, logger="distkv.obj.root"):
                async with client.mirror(base, root_type=SlowRoot) as root:
                    for i in range(10):  # deleted while the mirror lags
                        await writer.delete(base + ("old", i))
                    for i in range(150):
                        await writer.set(base + ("new", i), i)

                    def in_sync() -> bool:
                        new = root.get("new")
                        return "old" not in root and new is not None and len(new) == 150 \
                            and new[149].value == 149
                    await wait_until(in_sync)
                    assert [e.value for e in root["new"]] == list(range(150))
                    assert sorted(root.deleted) == sorted(f"old:{i}" for i in range(10))
            assert any("fell behind" in r.getMessage() for r in caplog.records)


# --- local trees and helpers ------------------------------------------------------------


async def test_local_tree_helpers() -> None:
    root = ClientRoot(None, P("x"), require_client=False, cfg={"a": {"b": 1}, "c": 5})
    async with root.run():
        assert root.loaded
        with pytest.raises(ValueError, match="needs a client"):
            ClientRoot(None, P("x"))
        one = root.allocate("one")
        assert root.allocate("one", exists=True) is one
        with pytest.raises(RuntimeError, match="exists already"):
            root.allocate("one")
        leaf = root.follow(P("one.two"), create=True)
        assert leaf is not None and leaf.subpath == P("one.two")
        assert leaf.parent is one and leaf.root is root and leaf.name == "two"
        assert root.follow(P("one.two")) is None  # no value
        assert root.follow(P("one.two"), empty_ok=True) is leaf
        assert root.follow(P("nope")) is None
        await leaf.set_value({"k": [10, 20]})
        assert root.follow(P("one.two")) is leaf
        assert [e.subpath for e in root.all_children] == [P("one.two")]
        assert len(one) == 1 and "two" in one and list(one) == [leaf]

        assert leaf.value_or(7) == {"k": [10, 20]}
        assert leaf.value_or(7, int) == 7
        assert one.value_or(7) == 7
        assert leaf.val("k", 1) == 20
        with pytest.raises(ValueError, match="has no item"):
            leaf.val("x")
        with pytest.raises(ValueError, match="has no value"):
            one.val()
        assert leaf.val_d("d", "k", 5) == "d"
        assert one.val_d("d") == "d"

        assert leaf.find_cfg("a", "b") == 1
        await root.set_value({"c": 6})
        assert leaf.find_cfg("c") == 6  # the root's value wins
        assert root.find_cfg("nope", default=None) is None
        with pytest.raises(KeyError):
            root.find_cfg("nope")


class Job(AttrClientEntry):
    ATTRS = ("code", "target")


class JobRoot(ClientRoot):
    @classmethod
    def child_type(cls, name: Any) -> type[ClientEntry]:
        return Job


async def test_attr_entries(server: ServerProc, base: Path) -> None:
    async with connect(server) as client:
        await client.set(base + ("j",), {"code": "a.b", "target": 5, "info": "keep me"})
        async with client.mirror(base, root_type=JobRoot) as root:
            job = root["j"]
            assert (job.code, job.target) == ("a.b", 5)
            job.target = 10
            await job.save(wait=True)
            assert (await client.get(base + ("j",))).value == {
                "code": "a.b", "target": 10, "info": "keep me",
            }
            with pytest.raises(RuntimeError, match="call save"):
                await job.update({})
            await client.set(base + ("j",), {"code": "x"})
            await wait_until(lambda: job.value == {"code": "x"})
            assert job.code == "x"
            assert not hasattr(job, "target")
            assert job.get_value() == {"code": "x"}


# --- the example script ------------------------------------------------------------------


def test_example_script(server: ServerProc, base: Path) -> None:
    def cli(*args: str) -> None:
        res = server.client(*args)
        assert res.returncode == 0, res.stderr

    cli("data", str(base + P("two.three")), "set", "-e", ":", "42")
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "mirror.py"), "--host", "127.0.0.1",
         "--port", str(server.port), str(base)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    out: queue.Queue[str] = queue.Queue()
    threading.Thread(
        target=lambda: [out.put(line.rstrip("\n")) for line in proc.stdout], daemon=True
    ).start()
    lines: list[str] = []

    def read_until(text: str) -> None:
        while True:
            try:
                line = out.get(timeout=TIMEOUT)
            except queue.Empty:
                raise AssertionError(f"no {text!r} in {lines!r}") from None
            lines.append(line)
            if line.startswith(text):
                return

    try:
        read_until("(loaded")
        assert lines == ["two.three = 42", "(loaded 1 entry)"]
        cli("data", str(base + P("two.four")), "set", "-v", ":", "hello")
        read_until("two.four")
        cli("data", str(base + P("two.three")), "delete")
        read_until("two.three")
        assert lines[2:] == ["two.four = 'hello'", "two.three: deleted"]
    finally:
        proc.terminate()
        proc.wait(TIMEOUT)
        if proc.stdout:
            proc.stdout.close()
