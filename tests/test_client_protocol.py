"""The client library against a scripted fake server (raw msgpack over 127.0.0.1).

Each test starts a listener that greets the client, answers its config
watch, and then runs a script that reads the client's requests and sends
hand-written replies. So these tests check exactly what the client puts on
the wire and what it makes of the server's answers, without a real server.
Everything runs on asyncio and on trio.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest
from anyio.abc import SocketAttribute
from procs import free_port

from distkv.client import Client, ManyData, NoData, StreamedRequest, open_client
from distkv.codec import packb
from distkv.exceptions import (
    ACLError,
    ClientAuthMethodError,
    ClientAuthRequiredError,
    ClientChainError,
    ClientConnectionError,
    ClientError,
    ServerClosedError,
    ServerConnectionError,
    ServerError,
)
from distkv.protocol import MessageReader
from distkv.util.path import P

TIMEOUT = 5

GREETING = {"seq": 0, "version": (0, 70, 0), "node": "fake", "tick": 1, "tock": 5, "qlen": 10}


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param


pytestmark = pytest.mark.anyio


class Peer:
    """The server side of one connection, driven by a test script.

    Acks from the client are kept apart (``ack_log``, :meth:`wait_ack`), so
    that :meth:`recv` returns the next request or stream message.
    """

    def __init__(self, stream: Any):
        self.stream = stream
        self.reader = MessageReader()
        self.buffer: list[dict] = []
        self.ack_log: dict[int, list[int]] = {}
        self._acks: dict[int, list[int]] = {}
        self.config_seq: int | None = None

    async def _pump(self) -> None:
        try:
            data = await self.stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            raise EOFError from None
        for msg in self.reader.feed(data):
            if msg.get("state") == "ack" and "action" not in msg:
                self.ack_log.setdefault(msg["seq"], []).append(msg["ack"])
                self._acks.setdefault(msg["seq"], []).append(msg["ack"])
            else:
                self.buffer.append(msg)

    async def recv(self) -> dict:
        """The next message from the client (EOFError if it closed)."""
        with anyio.fail_after(TIMEOUT):
            while not self.buffer:
                await self._pump()
        return self.buffer.pop(0)

    async def wait_ack(self, seq: int) -> int:
        """The next ack the client sent for stream ``seq``."""
        with anyio.fail_after(TIMEOUT):
            while not self._acks.get(seq):
                await self._pump()
        return self._acks[seq].pop(0)

    async def expect(self, **fields: Any) -> dict:
        """Receive a message and check that it has these fields."""
        msg = await self.recv()
        assert {k: msg.get(k) for k in fields} == fields, msg
        return msg

    async def send(self, **msg: Any) -> None:
        await self.stream.send(packb(msg))

    async def send_all(self, *msgs: dict) -> None:
        await self.stream.send(b"".join(packb(m) for m in msgs))

    async def close(self) -> None:
        await self.stream.aclose()

    async def wait_closed(self) -> list[dict]:
        """Read until the client closes the connection; returns what came."""
        got: list[dict] = []
        with contextlib.suppress(EOFError):
            while True:
                got.append(await self.recv())
        return got


Script = Callable[[Peer], Awaitable[None]]


async def _handshake(peer: Peer, greeting: dict, config: list[dict]) -> None:
    """Greet; take the qlen reply and the config watch; dump ``config``."""
    await peer.send(**greeting)
    if "qlen" in greeting:
        await peer.expect(seq=0, qlen=min(greeting["qlen"], 10))
    watch = await peer.expect(action="watch", path=P(":.distkv.config"), nchain=3, fetch=True)
    seq = peer.config_seq = watch["seq"]
    msgs = [{"seq": seq, "state": "start", "wseq": 1, "tock": 6}]
    msgs += [{"seq": seq, "wseq": i + 2, "depth": 0, "tock": 6, **m} for i, m in enumerate(config)]
    msgs.append({"seq": seq, "state": "uptodate", "wseq": len(msgs) + 1, "tock": 7})
    await peer.send_all(*msgs)


@contextlib.asynccontextmanager
async def fake_server(
    script: Script,
    *,
    greeting: dict | None = GREETING,
    config: list[dict] = (),  # type: ignore[assignment]
    handshake: bool = True,
) -> AsyncIterator[int]:
    """Serve connections on 127.0.0.1 with ``script``; yields the port.

    After the body, waits for every script to finish and re-raises its errors.
    """
    errors: list[BaseException] = []
    running: list[anyio.Event] = []

    async def handle(stream: Any) -> None:
        done = anyio.Event()
        running.append(done)
        peer = Peer(stream)
        try:
            if handshake:
                await _handshake(peer, greeting, list(config))
            await script(peer)
        except Exception as exc:
            errors.append(exc)
        finally:
            done.set()
            await anyio.aclose_forcefully(stream)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(SocketAttribute.local_port)
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        try:
            try:
                yield port
            except Exception as exc:
                if errors:  # the script's failure explains the client's
                    raise errors[0] from exc
                raise
            with anyio.fail_after(TIMEOUT):
                for done in running:
                    await done.wait()
        finally:
            tg.cancel_scope.cancel()
    await listener.aclose()
    if errors:
        raise errors[0]


def client_cfg(port: int, **connect: Any) -> dict:
    return {"connect": {"host": "127.0.0.1", "port": port, "init_timeout": TIMEOUT, **connect}}


async def wait_until(cond: Callable[[], bool]) -> None:
    with anyio.fail_after(TIMEOUT):
        while not cond():  # noqa: ASYNC110  (state changed by the client's tasks)
            await anyio.sleep(0.01)


# --- connecting ------------------------------------------------------------------------


async def test_greeting_qlen_and_config_watch() -> None:
    seen: list[dict] = []

    async def script(peer: Peer) -> None:
        seen.append(await peer.expect(action="get_tock"))
        await peer.send(seq=seen[0]["seq"], tock=99)
        await peer.wait_closed()

    async with fake_server(script) as port, open_client(**client_cfg(port)) as client:
        assert client.node == "fake"
        assert client.server_name == "fake"
        assert client.qlen == 10
        assert client.greeting.tock == 5
        assert len(client.name) == 9
        assert await client.get_tock() == 99
    # the config watch was seq 1 and numbered as a stream message
    assert seen[0]["seq"] == 2


@pytest.mark.parametrize(("offered", "reply"), [(20, 10), (10, 10), (6, 6), (2, 0), (0, 0)])
async def test_qlen_reply_is_min_of_greeting_and_buffer(offered: int, reply: int) -> None:
    got: list[dict] = []

    async def script(peer: Peer) -> None:
        await peer.send(**{**GREETING, "qlen": offered})
        got.append(await peer.recv())
        watch = await peer.expect(action="watch")
        got.append(watch)
        await peer.send_all(
            {"seq": watch["seq"], "state": "start"}, {"seq": watch["seq"], "state": "uptodate"}
        )
        await peer.wait_closed()

    async with fake_server(script, handshake=False) as port:
        async with open_client(**client_cfg(port)) as client:
            assert client.qlen == reply
    assert got[0] == {"seq": 0, "qlen": reply}
    # the watch is numbered only when there is flow control
    assert got[1].get("wseq") == (1 if reply else None)


async def test_greeting_without_qlen_gets_no_reply() -> None:
    first: list[dict] = []

    async def script(peer: Peer) -> None:
        await peer.send(seq=0, node="old", tick=1, tock=1, version=(0, 65, 0))
        first.append(await peer.recv())
        seq = first[0]["seq"]
        await peer.send_all({"seq": seq, "state": "start"}, {"seq": seq, "state": "uptodate"})
        await peer.wait_closed()

    async with fake_server(script, handshake=False) as port:
        async with open_client(**client_cfg(port)) as client:
            assert client.qlen == 0
    assert first[0]["action"] == "watch"
    assert "wseq" not in first[0]


async def test_connect_refused_is_one_clear_line() -> None:
    port = free_port()
    with pytest.raises(ServerConnectionError) as info:
        async with open_client(**client_cfg(port)):
            pass
    assert str(info.value) == f"Cannot connect to 127.0.0.1:{port}: Connection refused"


async def test_no_greeting_times_out() -> None:
    async def script(peer: Peer) -> None:
        await peer.wait_closed()

    async with fake_server(script, handshake=False) as port:
        start = time.monotonic()
        with pytest.raises(TimeoutError, match="took more than 0.3 seconds"):
            async with open_client(**client_cfg(port, init_timeout=0.3)):
                pass
        assert time.monotonic() - start < 2


async def test_missing_uptodate_does_not_block_startup(caplog: pytest.LogCaptureFixture) -> None:
    async def script(peer: Peer) -> None:
        await peer.send(**GREETING)
        await peer.expect(seq=0, qlen=10)
        watch = await peer.expect(action="watch")
        await peer.send(seq=watch["seq"], state="start", wseq=1)
        req = await peer.expect(action="get_tock")
        await peer.send(seq=req["seq"], tock=7)
        await peer.wait_closed()

    caplog.set_level(logging.WARNING, "distkv.client")
    async with fake_server(script, handshake=False) as port:
        start = time.monotonic()
        async with open_client(**client_cfg(port, init_timeout=0.3)) as client:
            assert time.monotonic() - start < 2
            assert await client.get_tock() == 7
    assert "did not send the configuration" in caplog.text


async def test_auth_required() -> None:
    async def script(peer: Peer) -> None:
        await peer.send(**{**GREETING, "auth": ("password", "_test")})
        rest = await peer.wait_closed()
        assert all(m == {"seq": 0, "qlen": 10} for m in rest), rest  # nothing but the qlen reply

    async with fake_server(script, handshake=False) as port:
        with pytest.raises(ClientAuthRequiredError) as info:
            async with open_client(**client_cfg(port)):
                pass
    assert info.value.args == ("You need to log in using:", "password")


async def test_auth_configured_but_inactive_is_not_required() -> None:
    async def script(peer: Peer) -> None:
        await peer.wait_closed()

    greeting = {**GREETING, "auth": (None, "password")}
    async with fake_server(script, greeting=greeting) as port:
        async with open_client(**client_cfg(port)) as client:
            assert client.node == "fake"


class _FakeLogin:
    """An auth object as the auth methods provide them."""

    def __init__(self, method: str):
        self._auth_method = method

    async def auth(self, client: Client) -> None:
        res = await client._request("auth", typ=self._auth_method, ident="joe", iter=True)
        async for _ in res:
            pass


async def test_auth_object_logs_in_before_the_config_watch() -> None:
    async def script(peer: Peer) -> None:
        await peer.send(**{**GREETING, "auth": ("_test",)})
        await peer.expect(seq=0, qlen=10)
        req = await peer.expect(action="auth", typ="_test", ident="joe")
        await peer.send_all(
            {"seq": req["seq"], "state": "start", "wseq": 1},
            {"seq": req["seq"], "state": "end", "wseq": 2},
        )
        watch = await peer.expect(action="watch")
        await peer.send_all(
            {"seq": watch["seq"], "state": "start"}, {"seq": watch["seq"], "state": "uptodate"}
        )
        await peer.wait_closed()

    async with fake_server(script, handshake=False) as port:
        async with open_client(**client_cfg(port, auth=_FakeLogin("_test"))) as client:
            assert client.node == "fake"


async def test_auth_method_mismatch() -> None:
    async def script(peer: Peer) -> None:
        await peer.send(**{**GREETING, "auth": ("password",)})
        rest = await peer.wait_closed()
        assert all(m == {"seq": 0, "qlen": 10} for m in rest), rest

    async with fake_server(script, handshake=False) as port:
        with pytest.raises(ClientAuthMethodError, match="You cannot use '_test' auth"):
            async with open_client(**client_cfg(port, auth=_FakeLogin("_test"))):
                pass


# --- single requests -----------------------------------------------------------------------


async def test_request_fields_and_reply() -> None:
    async def script(peer: Peer) -> None:
        req = await peer.expect(action="get_value", path=P("a.b"), nchain=2)
        await peer.send(
            seq=req["seq"], value=12, chain={"node": "n", "tick": 3, "prev": None}, tock=9
        )
        req = await peer.expect(action="set_value", path=P("a.b"), value=13, nchain=0)
        assert req["chain"] == {"node": "n", "tick": 3, "prev": None}
        assert "prev" not in req and "idem" not in req
        await peer.send(seq=req["seq"], changed=True, tock=10)
        req = await peer.expect(action="set_value", path=P("a"), value=None, chain=None, idem=True)
        await peer.send(seq=req["seq"], changed=False, tock=10)
        req = await peer.expect(action="delete_value", path=P("a"), prev=5, nchain=1)
        await peer.send(seq=req["seq"], changed=True, tock=11)
        req = await peer.expect(action="delete_tree", path=P("a"), nchain=0)
        await peer.send(seq=req["seq"], changed=3, tock=12)
        req = await peer.expect(action="enum", path=P(":"), with_data=False, empty=True)
        await peer.send(seq=req["seq"], result=("a", "b"), tock=13)
        req = await peer.expect(action="enum", path=P("a"), with_data=True, empty=False)
        await peer.send(seq=req["seq"], result={"x": 1}, tock=13)
        req = await peer.expect(action="msg_send", topic="hello", data={"x": 1})
        await peer.send(seq=req["seq"], tock=14)
        req = await peer.expect(action="msg_send", topic=("a", "b"), raw=b"\x01")
        await peer.send(seq=req["seq"], tock=14)
        req = await peer.expect(action="stop", task=42)
        await peer.send(seq=req["seq"], result=False, tock=15)
        await peer.wait_closed()

    async with fake_server(script) as port, open_client(**client_cfg(port)) as client:
        res = await client.get(P("a.b"), nchain=2)
        assert res.value == 12
        assert res.chain.tick == 3
        assert res.tock == 9
        assert res.seq > 0
        res2 = await client.set(("a", "b"), 13, chain=res.chain)
        assert res2.changed is True
        assert (await client.set(["a"], value=None, chain=None, idem=True)).changed is False
        assert (await client.delete(P("a"), prev=5, nchain=1)).changed is True
        assert (await client.delete(P("a"), recursive=True)).changed == 3
        assert await client.list(P(":")) == ("a", "b")
        assert await client.list(P("a"), with_data=True) == {"x": 1}
        await client.msg_send("hello", {"x": 1})
        await client.msg_send(("a", "b"), raw=b"\x01")
        assert (await client.stop(42)).result is False


async def test_string_path_is_refused() -> None:
    async def script(peer: Peer) -> None:
        await peer.wait_closed()

    async with fake_server(script) as port, open_client(**client_cfg(port)) as client:
        for call in (
            client.get("a.b"),
            client.set("a.b", 1),
            client.delete("a"),
            client.list("a"),
        ):
            with pytest.raises(RuntimeError, match="^You need a path, not a string$"):
                await call
        with pytest.raises(RuntimeError, match="You need a path, not a string"):
            async for _ in client.get_tree("a"):
                pass
        with pytest.raises(ValueError, match="'chain' and 'prev' cannot be used with 'recursive'"):
            await client.delete(P("a"), chain=None, recursive=True)


async def test_unpackable_value_leaves_connection_usable() -> None:
    async def script(peer: Peer) -> None:
        req = await peer.expect(action="get_tock")
        await peer.send(seq=req["seq"], tock=3)
        await peer.wait_closed()

    async with fake_server(script) as port, open_client(**client_cfg(port)) as client:
        with pytest.raises(ValueError, match="Unable to pack"):
            await client.set(P("a"), object())
        assert await client.get_tock() == 3


async def test_replies_out_of_order_reach_their_requests() -> None:
    n = 50

    async def script(peer: Peer) -> None:
        reqs = [await peer.expect(action="get_value") for _ in range(n)]
        for req in reversed(reqs):
            await peer.send(seq=req["seq"], value=req["path"][-1] * 10, tock=1)
        await peer.wait_closed()

    results: dict[int, int] = {}

    async def one(client: Client, i: int) -> None:
        results[i] = (await client.get(P("x") + (i,))).value

    async with fake_server(script) as port, open_client(**client_cfg(port)) as client:
        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(one, client, i)
    assert results == {i: i * 10 for i in range(n)}


@pytest.mark.parametrize(
    ("reply", "cls", "text"),
    [
        (
            {"error": "ClientChainError('Entry already exists at test')"},
            ClientChainError,
            "Entry already exists at test",
        ),
        (
            {"error": "ClientError('Data is 1234 not 999 at test')"},
            ClientError,
            "Data is 1234 not 999 at test",
        ),
        (
            {"error": "ClientError(\"ValueError('not a percentage')\")"},
            ClientError,
            "ValueError('not a percentage')",
        ),
        ({"error": "KeyError(5)"}, ServerError, "KeyError(5)"),
        (
            {"error": "ACLError(<AclEntry::n.acl.foo ='rc'>, 'n')"},
            ACLError,
            "ACLError(<AclEntry::n.acl.foo ='rc'>, 'n')",
        ),
        ({"error": "Chain is stale", "etype": "chain"}, ClientChainError, "Chain is stale"),
        ({"error": "bad state", "etype": "conn"}, ClientConnectionError, "bad state"),
    ],
)
async def test_error_replies_raise_matching_classes(reply: dict, cls: type, text: str) -> None:
    async def script(peer: Peer) -> None:
        req = await peer.expect(action="set_value")
        await peer.send(seq=req["seq"], tock=4, **reply)
        req = await peer.expect(action="get_tock")
        await peer.send(seq=req["seq"], tock=5)
        await peer.wait_closed()

    async with fake_server(script) as port, open_client(**client_cfg(port)) as client:
        with pytest.raises(cls) as info:
            await client.set(P("test"), 1234, chain=None)
        assert type(info.value) is cls
        assert str(info.value) == text
        assert await client.get_tock() == 5  # the connection carries on


async def test_error_escaping_open_client_is_not_wrapped() -> None:
    async def script(peer: Peer) -> None:
        req = await peer.expect(action="set_value")
        await peer.send(seq=req["seq"], error="ClientChainError('Entry is new at x')", tock=1)
        await peer.wait_closed()

    async with fake_server(script) as port:
        with pytest.raises(ClientChainError, match="Entry is new at x"):
            async with open_client(**client_cfg(port)) as client:
                await client.set(P("x"), 1, chain={"node": "a", "tick": 1})


async def test_cancelled_request_reply_is_discarded() -> None:
    async def script(peer: Peer) -> None:
        first = await peer.expect(action="get_value", path=P("slow"))
        second = await peer.expect(action="get_value", path=P("fast"))
        await peer.send(seq=first["seq"], value="late", tock=1)
        await peer.send(seq=second["seq"], value="fast", tock=1)
        await peer.wait_closed()

    async with fake_server(script) as port, open_client(**client_cfg(port)) as client:
        with anyio.move_on_after(0.2):
            await client.get(P("slow"))
        assert (await client.get(P("fast"))).value == "fast"
        # only the config watch is still registered
        assert list(client._conn.handlers) == [1]


# --- streams -------------------------------------------------------------------------------


async def _send_stream(peer: Peer, seq: int, items: list[dict], window: int = 10) -> None:
    """Send start, items, end with wseq, waiting for acks as the window demands."""
    msgs = [{"state": "start"}, *items, {"state": "end"}]
    acked = 0
    for wseq, msg in enumerate(msgs, 1):
        while wseq - acked >= window:
            acked = await peer.wait_ack(seq)
        await peer.send(seq=seq, wseq=wseq, tock=20, **msg)


async def test_get_tree_long_paths_and_acks() -> None:
    acks: list[int] = []
    tree = [
        {"value": 1234, "path": (), "depth": 0},
        {"value": 123, "path": ("foo",), "depth": 0},
        {"value": 12, "path": ("bap",), "depth": 1},
        {"value": 1, "path": ("bar", "baz"), "depth": 1},
    ] + [{"value": i, "path": (f"n{i}",), "depth": 0} for i in range(26)]

    async def script(peer: Peer) -> None:
        req = await peer.expect(action="get_tree", path=P("test"), nchain=1, max_depth=3)
        assert "wseq" not in req
        await _send_stream(peer, req["seq"], tree)
        get = await peer.recv()  # no stop after a finished stream
        assert get["action"] == "get_tock", get
        acks.extend(peer.ack_log[req["seq"]])
        await peer.send(seq=get["seq"], tock=1)
        await peer.wait_closed()

    async with fake_server(script) as port, open_client(**client_cfg(port)) as client:
        got = [r async for r in client.get_tree(P("test"), nchain=1, max_depth=3)]
        await client.get_tock()
    assert [(r.path, r.value) for r in got[:4]] == [
        (P(":"), 1234),
        (P("foo"), 123),
        (P("foo.bap"), 12),
        (P("foo.bar.baz"), 1),
    ]
    assert got[4].path == P("n0")
    assert all("depth" not in r for r in got)
    # an ack each time more than 10 // 3 messages were consumed (wseq 2..31 are items)
    assert acks == [4, 8, 12, 16, 20, 24, 28]


async def test_get_tree_short_paths_on_request() -> None:
    async def script(peer: Peer) -> None:
        req = await peer.expect(action="get_tree")
        await _send_stream(
            peer,
            req["seq"],
            [{"value": 1, "path": ("a",), "depth": 0}, {"value": 2, "path": ("b",), "depth": 1}],
        )
        await peer.wait_closed()

    async with fake_server(script) as port, open_client(**client_cfg(port)) as client:
        got = [r async for r in client.get_tree(P(":"), long_path=False)]
    assert [(r.path, r.depth) for r in got] == [(("a",), 0), (("b",), 1)]


async def test_leaving_get_tree_early_stops_it() -> None:
    async def script(peer: Peer) -> None:
        req = await peer.expect(action="get_tree")
        seq = req["seq"]
        await peer.send_all(
            {"seq": seq, "state": "start", "wseq": 1},
            *({"seq": seq, "wseq": i + 2, "value": i, "path": (i,), "depth": 0} for i in range(3)),
        )
        await peer.expect(action="stop", task=seq)
        await peer.wait_closed()

    async with fake_server(script) as port, open_client(**client_cfg(port)) as client:
        async with contextlib.aclosing(client.get_tree(P(":"))) as tree:
            async for rec in tree:
                assert rec.value == 0
                break


async def test_watch_stream_and_stop_on_leaving() -> None:
    got: list[dict] = []

    async def script(peer: Peer) -> None:
        req = await peer.expect(action="watch", path=P("test"), fetch=True, nchain=1, wseq=1)
        seq = req["seq"]
        await peer.send_all(
            {"seq": seq, "state": "start", "wseq": 1, "tock": 41},
            {"seq": seq, "wseq": 2, "value": 1234, "path": (), "depth": 0, "tock": 24},
            {"seq": seq, "wseq": 3, "value": 12, "path": ("foo", "bap"), "depth": 0, "tock": 18},
            {"seq": seq, "wseq": 4, "value": 1, "path": ("bar", "baz"), "depth": 1, "tock": 21},
            {"seq": seq, "wseq": 5, "state": "uptodate", "tock": 43},
            {"seq": seq, "wseq": 6, "path": ("zz",), "depth": 1, "tock": 45},
        )
        assert await peer.wait_ack(seq) == 4
        stop = await peer.expect(action="stop", task=seq)
        await peer.send_all(
            {"seq": stop["seq"], "result": True, "tock": 47},
            {"seq": seq, "state": "end", "wseq": 7, "tock": 48},
        )
        req = await peer.expect(action="get_tock")
        await peer.send(seq=req["seq"], tock=50)
        await peer.wait_closed()

    async with fake_server(script) as port, open_client(**client_cfg(port)) as client:
        async with client.watch(P("test"), fetch=True, nchain=1) as watcher:
            async for rec in watcher:
                got.append(rec)
                if len(got) == 5:
                    break
        assert await client.get_tock() == 50
    assert [(r.get("path"), r.get("value"), r.get("state")) for r in got] == [
        (P(":"), 1234, None),
        (P("foo.bap"), 12, None),
        (P("foo.bar.baz"), 1, None),
        (None, None, "uptodate"),
        (P("foo.zz"), None, None),
    ]


async def test_unread_watch_is_not_acked() -> None:
    """The client acks only what the application consumed; other requests carry on."""
    blocked = anyio.Event()

    async def script(peer: Peer) -> None:
        req = await peer.expect(action="watch")
        seq = req["seq"]
        await peer.send(seq=seq, state="start", wseq=1)
        for wseq in range(2, 10):  # the window allows up to wseq 9 unacked
            await peer.send(seq=seq, wseq=wseq, value=wseq, path=(), depth=0)
        blocked.set()
        req = await peer.expect(action="get_tock")
        assert seq not in peer.ack_log  # nothing was acked while nobody read
        await peer.send(seq=req["seq"], tock=1)
        assert await peer.wait_ack(seq) == 4
        await peer.expect(action="stop", task=seq)
        await peer.wait_closed()

    async with fake_server(script) as port, open_client(**client_cfg(port)) as client:
        async with client.watch(P("a")) as watcher:
            await blocked.wait()
            await anyio.sleep(0.05)
            assert await client.get_tock() == 1
            values = [(await watcher.recv()).value for _ in range(3)]
        assert values == [2, 3, 4]


async def test_stream_error_is_raised_by_iteration() -> None:
    async def script(peer: Peer) -> None:
        req = await peer.expect(action="get_tree")
        seq = req["seq"]
        await peer.send_all(
            {"seq": seq, "state": "start", "wseq": 1},
            {"seq": seq, "wseq": 2, "value": 1, "path": ("a",), "depth": 0},
            {"seq": seq, "wseq": 3, "error": "KeyError('b')", "tock": 5},
            {"seq": seq, "wseq": 4, "state": "end"},
        )
        req = await peer.expect(action="get_tock")
        await peer.send(seq=req["seq"], tock=6)
        await peer.wait_closed()

    async with fake_server(script) as port, open_client(**client_cfg(port)) as client:
        got = []
        with pytest.raises(ServerError, match=r"^KeyError\('b'\)$"):
            async for rec in client.get_tree(P(":")):
                got.append(rec.value)
        assert got == [1]
        assert await client.get_tock() == 6


async def test_request_answered_with_a_stream() -> None:
    async def script(peer: Peer) -> None:
        for n in (2, 0, 1, 2):
            req = await peer.expect(action="delete_tree")
            items = [{"node": "a", "tick": i, "path": (i,), "depth": 0} for i in range(n)]
            await _send_stream(peer, req["seq"], items)
        await peer.wait_closed()

    async with fake_server(script) as port, open_client(**client_cfg(port)) as client:
        res = await client.delete_tree(P("a"), nchain=2)
        assert isinstance(res, StreamedRequest)
        assert [r.tick async for r in res] == [0, 1]
        with pytest.raises(NoData):
            await client._request("delete_tree", path=P("a"), nchain=2, iter=False)
        one = await client._request("delete_tree", path=P("a"), nchain=2, iter=False)
        assert one.tick == 0
        with pytest.raises(ManyData):
            await client._request("delete_tree", path=P("a"), nchain=2, iter=False)


async def test_single_reply_as_iterator() -> None:
    async def script(peer: Peer) -> None:
        req = await peer.expect(action="get_tock")
        await peer.send(seq=req["seq"], tock=8)
        await peer.wait_closed()

    async with fake_server(script) as port, open_client(**client_cfg(port)) as client:
        got = [r async for r in await client._request("get_tock", iter=True)]
    assert [r.tock for r in got] == [8]


async def test_client_stream_numbering_window_and_end() -> None:
    window = 4
    got: list[dict] = []
    pauses: list[int] = []  # unacked messages whenever the client stopped sending

    async def script(peer: Peer) -> None:
        first = await peer.expect(action="auth_set", state="start", wseq=1, typ="_test")
        seq = first["seq"]
        await peer.send(seq=seq, state="start", wseq=1)
        acked = 0
        while not got or got[-1].get("state") != "end":
            with anyio.move_on_after(0.3) as idle:
                got.append(await peer.expect(seq=seq))
            if idle.cancelled_caught:
                last = got[-1]["wseq"] if got else 1
                pauses.append(last - acked)
                acked = last
                await peer.send(seq=seq, state="ack", ack=acked)
        await peer.expect(action="stop", task=seq)
        await peer.wait_closed()

    greeting = {**GREETING, "qlen": window}
    async with fake_server(script, greeting=greeting) as port:
        async with open_client(**client_cfg(port)) as client:
            async with client._stream("auth_set", stream=True, typ="_test") as req:
                for i in range(2 * window):
                    await req.send(step=i)
    # the window stopped the sender until acks came; nothing was lost or reordered
    assert pauses and all(0 < n <= window for n in pauses), pauses
    assert [m["step"] for m in got if "step" in m] == list(range(2 * window))
    assert [m["wseq"] for m in got] == list(range(2, 2 * window + 3))
    assert got[-1]["state"] == "end"


async def test_client_stream_refuses_messages_after_end() -> None:
    async def script(peer: Peer) -> None:
        req = await peer.expect(action="auth_set", state="start")
        await _send_stream(peer, req["seq"], [{"step": "GiveName"}])
        await peer.wait_closed()

    async with fake_server(script) as port, open_client(**client_cfg(port)) as client:
        async with client._stream("auth_set", stream=True) as req:
            assert (await req.recv()).step == "GiveName"
            with pytest.raises(StopAsyncIteration):
                await req.recv()
            with pytest.raises(ClientConnectionError, match="does not accept messages"):
                await req.send(step="HasName")


# --- the connection going away -------------------------------------------------------------


async def test_server_closing_mid_stream() -> None:
    async def script(peer: Peer) -> None:
        req = await peer.expect(action="watch")
        await peer.send_all(
            {"seq": req["seq"], "state": "start", "wseq": 1},
            {"seq": req["seq"], "wseq": 2, "value": 1, "path": (), "depth": 0},
        )
        await peer.expect(action="get_value")
        await peer.close()

    async with fake_server(script) as port, open_client(**client_cfg(port)) as client:
        pending: list[BaseException] = []

        async def get() -> None:
            try:
                await client.get(P("x"))
            except ServerClosedError as exc:
                pending.append(exc)

        async with anyio.create_task_group() as tg:
            async with client.watch(P("x")) as watcher:
                assert (await watcher.recv()).value == 1
                tg.start_soon(get)
                with pytest.raises(ServerClosedError, match="closed the connection"):
                    await watcher.recv()
        assert len(pending) == 1
        with pytest.raises(ServerClosedError):
            await client.get_tock()


async def test_error_without_seq_fails_everything() -> None:
    async def script(peer: Peer) -> None:
        await peer.expect(action="get_value")
        await peer.expect(action="nonexistent")
        await peer.send(error="'SCmd_nonexistent'", tock=41)
        await peer.wait_closed()

    async with fake_server(script) as port, open_client(**client_cfg(port)) as client:
        errors: list[BaseException] = []

        async def call(*args: Any, **kw: Any) -> None:
            try:
                await client._request(*args, **kw)
            except ServerClosedError as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(call, "get_value", None, None, False)
            await anyio.sleep(0.05)
            tg.start_soon(call, "nonexistent")
    assert sorted(str(e) for e in errors) == ["'SCmd_nonexistent'", "'SCmd_nonexistent'"]


# --- dynamic configuration -----------------------------------------------------------------


async def test_dynamic_config_sections() -> None:
    async def script(peer: Peer) -> None:
        seq = peer.config_seq
        req = await peer.expect(action="get_tock")
        await peer.send_all(
            {"seq": seq, "wseq": 5, "value": {"start_delay": 3}, "path": ("runner",), "depth": 0},
            {"seq": seq, "wseq": 6, "value": {"x": 1}, "path": ("runner", "sub"), "depth": 0},
            {"seq": seq, "wseq": 7, "value": "no map", "path": ("errors",), "depth": 0},
            {"seq": req["seq"], "tock": 1},
        )
        req = await peer.expect(action="get_tock")
        await peer.send_all(
            {"seq": seq, "wseq": 8, "path": ("runner",), "depth": 0},
            {"seq": req["seq"], "tock": 2},
        )
        await peer.wait_closed()

    config = [
        {"value": {"start_delay": 2, "extra": {"a": 1}}, "path": ("runner",)},
        {"value": {"x": 5}, "path": ("myext",)},
    ]
    async with (
        fake_server(script, config=config) as port,
        open_client(**client_cfg(port)) as client,
    ):
        # the tree's values win; the static rest of the section stays
        assert client.config.runner.start_delay == 2
        assert client.config.runner.extra.a == 1
        assert client.config.runner.name == "run"
        assert client.config.myext == {"x": 5}
        static_errors = dict(client.config.errors)

        await client.get_tock()
        await wait_until(lambda: client.config.runner.start_delay == 3)
        assert "extra" not in client.config.runner
        assert client.config.runner.sub.group == "any"  # the nested entry was ignored
        assert client.config.errors == static_errors

        await client.get_tock()
        await wait_until(lambda: client.config.runner.start_delay == 1)  # static again


# --- plain asyncio -------------------------------------------------------------------------


def test_plain_asyncio_usage() -> None:
    async def script(peer: Peer) -> None:
        req = await peer.expect(action="set_value", path=P("one.two"), value=42)
        await peer.send(seq=req["seq"], changed=True, tock=3)
        req = await peer.expect(action="get_value", path=P("one.two"))
        await peer.send(seq=req["seq"], value=42, tock=3)
        await peer.wait_closed()

    async def main() -> int:
        async with fake_server(script) as port:
            async with open_client(connect={"host": "127.0.0.1", "port": port}) as client:
                await client.set(P("one.two"), value=42)
                return (await client.get(P("one.two"))).value

    assert asyncio.run(main()) == 42
