"""Bad input on the wire ends at most the connection that sent it.

Each test abuses one connection of a shared ``distkv server`` (malformed
msgpack, non-maps, unknown actions, wrong field types, broken Path payloads,
oversized messages, clients that vanish or never read), then checks what the
offender sees; afterwards a fresh client must still read and write normally
and every sentinel entry stored at the start must be intact.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path as FilePath
from typing import Any

import msgpack
import pytest
from upstream import broker_fixture, upstream_venv_fixture, wire_server  # noqa: F401
from wire import TOCK, ConnectionClosed, WireClient

from distkv.codec import packb
from distkv.util.path import Path

NODE = "test_0"
MAX_MESSAGE = 65536
WATCH_QUEUE = 100
SENTINELS = {("keep", "int"): 42, ("keep", "str"): "hello", ("keep", "deep", "x", "y"): (1, 2)}


def P(*elems: Any) -> Path:  # noqa: N802
    return Path(*elems)


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest) -> Iterator[Any]:
    limits = ["-C", f"server.max_message={MAX_MESSAGE}",
              "-C", f"server.watch_queue={WATCH_QUEUE}"]
    with wire_server(request, ["-e", "-I", "123", NODE], limits) as s:
        with WireClient(s.port) as c:
            for seq, (path, value) in enumerate(SENTINELS.items(), 1):
                assert c.request({"seq": seq, "action": "set_value", "path": P(*path),
                                  "value": value})["changed"] is True
        yield s


@pytest.fixture(autouse=True)
def still_healthy(server: Any) -> Iterator[None]:
    """After every test: a new client reads the sentinels and writes normally."""
    yield
    assert server.proc.poll() is None, "the server died"
    with WireClient(server.port) as c:
        for seq, (path, value) in enumerate(SENTINELS.items(), 1):
            assert c.request({"seq": seq, "action": "get_value", "path": P(*path)}) \
                == {"value": value, "tock": TOCK, "seq": seq}
        r = c.request({"seq": 10, "action": "set_value", "path": P("health"), "value": 1})
        assert "error" not in r
        assert c.request({"seq": 11, "action": "get_value", "path": P("health")})["value"] == 1


def assert_closed(c: WireClient) -> list[dict]:
    """The server must close this connection; returns what it said before."""
    assert c.is_closed_by_server(5.0), "the server kept a connection that sent garbage"
    return c.collect(0)


def assert_error_reply(c: WireClient, msg: dict) -> dict:
    """``msg`` gets an error reply with its seq, and the connection keeps working."""
    reply = c.request(msg)
    assert reply.get("seq") == msg["seq"] and isinstance(reply.get("error"), str), reply
    assert c.request({"seq": 99, "action": "get_tock"}) == {"tock": TOCK, "seq": 99}
    return reply


# ---------------------------------------------------------------------------
# Garbage that cannot be a message: the connection goes.


def test_malformed_msgpack(server: Any) -> None:
    with WireClient(server.port) as c:
        c.send_raw(b"\xc1" + packb({"seq": 1, "action": "get_tock"}))  # 0xc1 is never valid
        assert_closed(c)


def test_a_message_that_is_not_a_map(server: Any) -> None:
    with WireClient(server.port) as c:
        c.send_raw(packb([1, "get_tock"]))
        assert_closed(c)
    with WireClient(server.port) as c:
        c.send_raw(packb(12345))
        assert_closed(c)


def test_invalid_path_ext_payload(server: Any) -> None:
    with WireClient(server.port) as c:
        # ext 3 whose payload is a string header promising 5 bytes but holding 2
        bad_path = bytes.fromhex("c70303a56162")
        c.send_raw(bytes([0x83]) + packb("seq") + packb(1) + packb("action")
                   + packb("get_value") + packb("path") + bad_path)
        replies = assert_closed(c)
        assert all("value" not in r for r in replies)


def test_oversized_message_closes_the_connection(server: Any) -> None:
    with WireClient(server.port) as c:
        # just below the limit is fine
        r = c.request({"seq": 1, "action": "set_value", "path": P("big"),
                       "value": "x" * (MAX_MESSAGE - 200)})
        assert "error" not in r
        c.send({"seq": 2, "action": "set_value", "path": P("big"),
                "value": "y" * (MAX_MESSAGE * 2)})
        replies = assert_closed(c)
        assert all(r.get("seq") != 2 or "error" in r for r in replies)
    with WireClient(server.port) as c:
        value = c.request({"seq": 1, "action": "get_value", "path": P("big")})["value"]
        assert value == "x" * (MAX_MESSAGE - 200)


def test_oversized_message_header_alone_is_enough(server: Any) -> None:
    with WireClient(server.port) as c:
        # a map announcing a 100 MB string, of which only the start ever arrives
        c.send_raw(bytes([0x81]) + packb("value") + b"\xdb" + (100 << 20).to_bytes(4, "big")
                   + b"z" * (2 * MAX_MESSAGE))
        assert_closed(c)


# ---------------------------------------------------------------------------
# A well-formed map with bad content: an error reply, the connection stays.


def test_unknown_action(server: Any) -> None:
    with WireClient(server.port) as c:
        reply = assert_error_reply(c, {"seq": 1, "action": "nonexistent"})
        assert "nonexistent" in reply["error"]


def test_missing_action(server: Any) -> None:
    with WireClient(server.port) as c:
        assert_error_reply(c, {"seq": 1, "path": P("keep", "int")})


def test_path_of_the_wrong_type(server: Any) -> None:
    with WireClient(server.port) as c:
        assert_error_reply(c, {"seq": 1, "action": "get_value", "path": 5})
        assert_error_reply(c, {"seq": 2, "action": "set_value", "path": 5, "value": 1})
        assert_error_reply(c, {"seq": 3, "action": "delete_value", "path": {"a": 1}})


def test_nchain_of_the_wrong_type(server: Any) -> None:
    with WireClient(server.port) as c:
        assert_error_reply(c, {"seq": 1, "action": "get_value", "path": P("keep", "int"),
                               "nchain": "two"})
        assert_error_reply(c, {"seq": 2, "action": "set_value", "path": P("nchain"),
                               "value": 1, "nchain": "two"})


def test_set_value_without_value(server: Any) -> None:
    with WireClient(server.port) as c:
        reply = assert_error_reply(c, {"seq": 1, "action": "set_value",
                                       "path": P("keep", "int")})
        assert reply["error"] == "ClientError(\"Call 'delete_value' if you want to clear " \
                                 "the value\")"


def test_chain_of_the_wrong_shape(server: Any) -> None:
    with WireClient(server.port) as c:
        assert_error_reply(c, {"seq": 1, "action": "set_value", "path": P("keep", "int"),
                               "value": 0, "chain": "nonsense"})
        assert_error_reply(c, {"seq": 2, "action": "set_value", "path": P("keep", "int"),
                               "value": 0, "chain": {"node": NODE, "tick": "x"}})


def test_stream_request_with_bad_fields(server: Any) -> None:
    with WireClient(server.port) as c:
        c.send({"seq": 1, "action": "get_tree", "path": P("keep"), "max_depth": "deep"})
        # refused up front (one error reply) or inside the stream (then it must end)
        msgs = [c.recv_for(1)]
        if msgs[0].get("state") == "start":
            msgs += c.read_stream(1)
        assert any("error" in m for m in msgs), msgs
        assert not any("value" in m for m in msgs), msgs
        assert c.request({"seq": 2, "action": "get_tock"}) == {"tock": TOCK, "seq": 2}


# ---------------------------------------------------------------------------
# Clients that go away or stop reading.


def fill(c: WireClient, prefix: str, n: int, value: Any = None, batch: int = 200) -> None:
    """Write prefix.i (or one key, if value is given) n times, pipelined in batches."""
    done = 0
    while done < n:
        todo = range(done, min(n, done + batch))
        for i in todo:
            path = P(prefix, i) if value is None else P(prefix)
            c.send({"seq": 10_000 + i, "action": "set_value", "path": path,
                    "value": i if value is None else value + str(i)})
        for i in todo:
            assert "error" not in c.recv_for(10_000 + i, timeout=30)
        done += len(todo)


def test_client_vanishes_mid_stream(server: Any) -> None:
    with WireClient(server.port) as w:
        fill(w, "many", 3000)
    tree = WireClient(server.port, qlen=10)
    tree.send({"seq": 1, "action": "get_tree", "path": P("many")})
    assert tree.recv_for(1)["state"] == "start"
    watch = WireClient(server.port)
    watch.send({"seq": 1, "action": "watch", "path": P("many"), "fetch": True})
    assert watch.recv_for(1)["state"] == "start"
    tree.abort()
    watch.abort()
    with WireClient(server.port) as c:
        # changes inside the dead watch's subtree must not trip the server
        fill(c, "many", 50)
        msgs = c.stream({"seq": 1, "action": "get_tree", "path": P("many")}, timeout=30)
        assert len(msgs) == 3002


def rss_bytes(pid: int) -> int:
    for line in FilePath(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_watcher_that_never_reads(server: Any) -> None:
    writes, size = 3000, 10_000  # 30 MB of notifications if nothing were dropped
    slow = WireClient(server.port, qlen=10)
    slow.send({"seq": 1, "action": "watch", "path": P("flood")})
    assert slow.recv_for(1)["state"] == "start"
    before = rss_bytes(server.proc.pid)
    with WireClient(server.port) as writer, WireClient(server.port) as other:
        fill(writer, "flood", writes, value="v" * size)
        # everybody else is served promptly meanwhile
        t0 = time.monotonic()
        assert other.request({"seq": 1, "action": "get_value", "path": P("keep", "str")}) \
            == {"value": "hello", "tock": TOCK, "seq": 1}
        assert time.monotonic() - t0 < 2.0
    grown = rss_bytes(server.proc.pid) - before
    assert grown < 15_000_000, f"server grew by {grown} bytes for one stuck watcher"

    # The slow watcher finally reads (acking like a real client): its stream
    # ends with an error instead of delivering every change.
    try:
        msgs = slow.read_stream(1, timeout=10, ack=True)
    except ConnectionClosed:
        pytest.fail("the server dropped the whole connection instead of ending the watch")
    finally:
        slow.close()
    assert msgs[-1]["state"] == "end"
    assert any("error" in m for m in msgs)
    assert sum("value" in m for m in msgs) < writes


def test_pipelined_garbage_after_good_requests(server: Any) -> None:
    """Requests before the garbage are answered (or at least don't corrupt anything)."""
    with WireClient(server.port) as c:
        good = b"".join(packb({"seq": i, "action": "set_value", "path": P("pipe", i),
                               "value": i}) for i in range(1, 6))
        c.send_raw(good + b"\xc1\xc1\xc1")
        assert_closed(c)
    with WireClient(server.port) as c:
        for i in range(1, 6):
            r = c.request({"seq": i, "action": "get_value", "path": P("pipe", i)})
            assert r.get("value") in (i, None)


def test_ext_codes_we_do_not_know_are_stored_opaquely(server: Any) -> None:
    ext = msgpack.ExtType(42, b"opaque")
    with WireClient(server.port) as c:
        assert "error" not in c.request({"seq": 1, "action": "set_value", "path": P("ext"),
                                         "value": ext})
        assert c.request({"seq": 2, "action": "get_value", "path": P("ext")})["value"] == ext
