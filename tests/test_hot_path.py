"""The request hot path's shortcuts give the same results as the long way.

Decoded paths are cached, message size limits are checked per burst when a
burst is small, field validation skips conversion when every typed field is
already fine, and a local write books its ticks in one call.

A connection is served in one of two ways (asyncio: through a transport
protocol; trio: through anyio's stream): both must answer pipelined
requests in order, keep serving after the client half-closes, stream with
flow control, and stop reading from a client that does not read its replies.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from anyio.from_thread import start_blocking_portal
from inproc import make_config
from wire import TOCK, WireClient

from distkv.codec import packb, unpackb
from distkv.core.store import Store
from distkv.exceptions import ClientError
from distkv.protocol import ProtocolError
from distkv.server import Server
from distkv.server.registry import REGISTRY
from distkv.server.session import _Reader
from distkv.util import attrdict
from distkv.util.path import Path


def test_repeated_paths_decode_equal() -> None:
    data = packb(Path("a", 1, None))
    first, second = unpackb(data), unpackb(data)
    assert first == second == Path("a", 1, None)
    assert type(first) is Path and type(second) is Path


def test_paths_with_mutable_elements_are_not_shared() -> None:
    data = packb(Path("a", {"k": 1}))
    first = unpackb(data)
    first[1]["k"] = 2
    assert unpackb(data) == Path("a", attrdict(k=1))


def test_many_distinct_paths_decode_correctly() -> None:
    for i in range(10_000):
        assert unpackb(packb(Path("fill", f"k{i}"))) == Path("fill", f"k{i}")


def test_small_burst_larger_than_the_limit_is_fine() -> None:
    reader = _Reader(64)
    msgs = [{"seq": i, "action": "get_tock"} for i in range(20)]
    data = b"".join(packb(m) for m in msgs)
    assert len(data) > 64
    got = reader.feed(data[:50]) + reader.feed(data[50:])
    assert got == msgs


def test_oversized_message_within_a_burst_is_refused() -> None:
    reader = _Reader(64)
    data = packb({"seq": 1}) + packb({"seq": 2, "value": "x" * 100}) + packb({"seq": 3})
    with pytest.raises(ProtocolError, match="message larger than 64 bytes"):
        reader.feed(data)


def test_non_map_in_a_small_burst_is_refused() -> None:
    reader = _Reader(1024)
    with pytest.raises(ProtocolError, match="expected a map, got int"):
        reader.feed(packb({"seq": 1}) + packb(5))


def test_validation_converts_and_refuses_as_before() -> None:
    cmd = REGISTRY.single["set_value"]
    ok = {"action": "set_value", "seq": 1, "path": Path("a"), "value": [1], "nchain": 2}
    cmd.validate(ok)
    assert ok["path"] == Path("a") and ok["nchain"] == 2
    conv = {"action": "set_value", "seq": 1, "path": ("a", "b"), "value": 1, "nchain": None}
    cmd.validate(conv)
    assert conv == {"action": "set_value", "seq": 1, "path": Path("a", "b"), "value": 1}
    assert type(conv["path"]) is Path
    with pytest.raises(ClientError, match="the field 'nchain' must be an integer, not 'x'"):
        cmd.validate({"action": "set_value", "seq": 1, "path": Path("a"), "nchain": "x"})
    with pytest.raises(ClientError, match="the field 'path' is required"):
        cmd.validate({"action": "set_value", "seq": 1, "value": 1})


def test_local_writes_keep_tick_bookkeeping() -> None:
    s = Store("a")
    entries = [s.follow(("k", i), create=True) for i in range(3)]
    for _ in range(3):
        for e in entries:
            s.local_change(e, 1)
    node = s.nodes["a"]
    assert node.present.to_wire() == [[7, 10]]
    assert node.superseded.to_wire() == [[1, 7]]
    assert not node.missing()


def test_validation_reports_a_missing_field_before_a_bad_one() -> None:
    cmd = REGISTRY.single["set_value"]
    with pytest.raises(ClientError, match="the field 'path' is required"):
        cmd.validate({"action": "set_value", "seq": 1, "nchain": "x", "value": 1})


def test_local_writes_after_an_init_keep_tick_bookkeeping() -> None:
    s = Store("a")
    s.local_change(s.root, "init")  # tick 1 stays: the root is never written again
    entries = [s.follow(("k", i), create=True) for i in range(3)]
    for _ in range(3):
        for e in entries:
            s.local_change(e, 1)
    node = s.nodes["a"]
    assert node.present.to_wire() == [1, [8, 11]]
    assert node.superseded.to_wire() == [[2, 8]]
    assert not node.missing()


# --- both ways of serving a connection ------------------------------------------------


@pytest.fixture(params=["asyncio", "trio"], scope="module")
def port(request: pytest.FixtureRequest) -> Iterator[int]:
    with _served(request.param) as server:
        yield server.ports[0]


@contextmanager
def _served(backend: str) -> Iterator[Server]:
    server = Server("hot", make_config(), init="Testing")
    with start_blocking_portal(backend) as portal:
        future, _ = portal.start_task(server.serve)
        try:
            yield server
        finally:
            future.cancel()


def test_requests_sent_with_the_hello_before_the_greeting_is_read(port: int) -> None:
    with WireClient(port, read_greeting=False) as c:
        c.send_raw(
            packb({"seq": 0, "qlen": 4})
            + b"".join(
                packb(
                    {
                        "seq": i,
                        "action": "set_value",
                        "path": Path("early", i),
                        "value": i,
                        "nchain": 0,
                    }
                )
                for i in range(1, 51)
            )
            + packb({"seq": 51, "action": "get_value", "path": Path("early", 50), "nchain": 0})
        )
        assert c.recv()["seq"] == 0  # the greeting comes first
        seqs = [c.recv()["seq"] for _ in range(51)]
        assert seqs == list(range(1, 52))
        assert c.request({"seq": 52, "action": "get_value", "path": Path("early", 7)}) == {
            "value": 7,
            "tock": TOCK,
            "seq": 52,
        }


def test_replies_still_go_out_after_the_client_half_closes(port: int) -> None:
    with WireClient(port) as c:
        c.send_raw(
            b"".join(
                packb({"seq": i, "action": "set_value", "path": Path("half", i), "value": i})
                for i in range(1, 4)
            )
        )
        c.sock.shutdown(socket.SHUT_WR)
        replies = [c.recv() for _ in range(3)]
        assert [r["seq"] for r in replies] == [1, 2, 3]
        assert all(r["changed"] is True for r in replies)
        assert c.is_closed_by_server()


def test_a_stream_with_flow_control(port: int) -> None:
    with WireClient(port, qlen=6) as c:
        for i in range(40):
            c.request({"seq": i + 1, "action": "set_value", "path": Path("flow", i), "value": i})
        msgs = c.stream({"seq": 99, "action": "get_tree", "path": Path("flow")}, ack=True)
    assert msgs[0]["state"] == "start" and msgs[-1]["state"] == "end"
    assert sorted(m["value"] for m in msgs if "value" in m) == list(range(40))
    assert [m["wseq"] for m in msgs] == list(range(1, 43))


def test_a_client_that_does_not_read_is_not_read_from(port: int) -> None:
    """Replies pile up in the socket buffers, then the server stops reading: a write
    queued behind the unread replies is not done until the client reads."""
    big = "x" * 100_000
    with WireClient(port) as writer, WireClient(port) as lazy, WireClient(port) as other:
        writer.request({"seq": 1, "action": "set_value", "path": Path("lazy", "big"), "value": big})
        lazy.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        n = 500  # 50 MB of replies: far more than any socket buffer
        lazy.send_raw(
            b"".join(
                packb({"seq": i, "action": "get_value", "path": Path("lazy", "big"), "nchain": 0})
                for i in range(1, n + 1)
            )
            + packb(
                {"seq": n + 1, "action": "set_value", "path": Path("lazy", "marker"), "value": 1}
            )
        )
        time.sleep(1.0)
        get_marker = {"action": "get_value", "path": Path("lazy", "marker"), "nchain": 0}
        assert other.request({"seq": 1, **get_marker}) == {"seq": 1, "tock": TOCK}
        for i in range(1, n + 1):
            reply = lazy.recv_for(i, timeout=30)
            assert reply["value"] == big
        assert lazy.recv_for(n + 1, timeout=30)["changed"] is True
        assert other.request({"seq": 2, **get_marker})["value"] == 1


def test_the_pinned_anyio_lets_plain_tcp_take_the_fast_path() -> None:
    """With the anyio of constraints.txt, a plain TCP connection on asyncio is
    served by the session's own protocol (else the server silently falls back
    to the slower stream path)."""
    import anyio

    from distkv.server.session import _asyncio_transport

    async def main() -> tuple[bool, bool]:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        found: list[bool] = []
        handled = anyio.Event()

        async def handle(stream: anyio.abc.ByteStream) -> None:
            found.append(_asyncio_transport(stream) is not None)
            handled.set()
            await stream.aclose()

        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, handle)
            client = await anyio.connect_tcp("127.0.0.1", port)
            with anyio.fail_after(5):
                await handled.wait()
            on_client = _asyncio_transport(client) is not None
            await client.aclose()
            tg.cancel_scope.cancel()
        return found[0], on_client

    assert anyio.run(main, backend="asyncio") == (True, True)
    assert _asyncio_transport(object()) is None
