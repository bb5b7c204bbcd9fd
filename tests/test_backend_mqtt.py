"""The MQTT backend against a real mosquitto: mapping, wildcards, reconnects, stalls."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest
from brokers import Mosquitto, mosquitto_fixture, nothing_more, take  # noqa: F401  (fixture)
from moat.lib.mqtt import MQTTPublishPacket, PropertyType, QoS
from moat.lib.mqtt.async_client import AsyncMQTTClient

from distkv.server.backend.mqtt import (
    MQTTBackend,
    Published,
    encode_publish,
    split_packets,
    topic_field,
)

pytestmark = pytest.mark.anyio
TIMEOUT = 10


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param


def backend(broker: Mosquitto, node: str, **kw: object) -> MQTTBackend:
    kw.setdefault("retry_max", 0.5)
    return MQTTBackend(broker.uri, node=node, **kw)  # type: ignore[arg-type]


async def connected(b: MQTTBackend) -> None:
    with anyio.fail_after(TIMEOUT):
        await b.wait_connected()


async def test_round_trip_between_two_backends(mosquitto: Mosquitto) -> None:
    async with backend(mosquitto, "a") as a, backend(mosquitto, "b") as b:
        await connected(a)
        await connected(b)
        async with a.subscribe((":distkv", "update")) as ra, \
                b.subscribe([":distkv", "update"]) as rb:
            await a.publish((":distkv", "update"), b"\x81\xa1x\x01")
            await b.publish((":distkv", "info"), b"elsewhere")
            await b.publish((":distkv", "update"), b"second")
            # two senders: no order between them
            expected = sorted([((":distkv", "update"), b"\x81\xa1x\x01"),
                               ((":distkv", "update"), b"second")])
            assert sorted(await take(rb, 2)) == expected
            assert sorted(await take(ra, 2)) == expected  # one's own messages come back too
            assert await nothing_more(rb)
        assert a.status() == {
            "backend": "mqtt", "address": f"mqtt://127.0.0.1:{mosquitto.port}",
            "state": "connected", "connects": 1, "queued": 0, "lost": 0, "dropped": 0,
            "error": None,
        }


async def test_topic_elements_are_strings_joined_with_slashes(mosquitto: Mosquitto) -> None:
    async with backend(mosquitto, "a") as a, \
            AsyncMQTTClient("127.0.0.1", mosquitto.port) as other:
        await connected(a)
        async with other.subscribe("#", qos=QoS.AT_MOST_ONCE) as seen, \
                a.subscribe(("from", "+")) as ra:
            await a.publish(("x", 12, "y"), b"one")
            with anyio.fail_after(TIMEOUT):
                packet = await seen.__anext__()
            assert (packet.topic, packet.payload, packet.qos, packet.retain) == \
                ("x/12/y", b"one", QoS.AT_MOST_ONCE, False)
            await other.publish("from/other", b"two", qos=QoS.AT_LEAST_ONCE)
            assert await take(ra) == [(("from", "other"), b"two")]


async def test_wildcard_subscriptions(mosquitto: Mosquitto) -> None:
    async with backend(mosquitto, "a") as a:
        await connected(a)
        async with a.subscribe(("r", "+", "x")) as plus, a.subscribe(("r", "#")) as rest, \
                a.subscribe(("r", "1", "x")) as exact:
            for t in (("r", "1", "x"), ("r", "2", "x"), ("r", "2", "y"), ("q", "1", "x")):
                await a.publish(t, "/".join(t).encode())
            # overlapping filters: each subscription gets its matches exactly once
            assert await take(plus, 2) == [(("r", "1", "x"), b"r/1/x"), (("r", "2", "x"),
                                                                        b"r/2/x")]
            assert [t for t, _ in await take(rest, 3)] == [("r", "1", "x"), ("r", "2", "x"),
                                                          ("r", "2", "y")]
            assert await take(exact) == [(("r", "1", "x"), b"r/1/x")]
            assert await nothing_more(plus) and await nothing_more(exact)


async def test_two_subscriptions_to_one_filter_and_leaving_one(mosquitto: Mosquitto) -> None:
    async with backend(mosquitto, "a") as a:
        await connected(a)
        async with a.subscribe(("t",)) as first:
            async with a.subscribe(("t",)) as second:
                await a.publish(("t",), b"1")
                assert await take(first) == await take(second) == [(("t",), b"1")]
            await a.publish(("t",), b"2")
            assert await take(first) == [(("t",), b"2")]  # still subscribed on the wire


async def test_bad_topics_are_refused(mosquitto: Mosquitto) -> None:
    async with backend(mosquitto, "a") as a:
        with pytest.raises(ValueError, match="not a topic one can publish to: 'a/\\+'"):
            await a.publish(("a", "+"), b"x")
        with pytest.raises(ValueError, match="not a topic one can publish to: ''"):
            await a.publish((), b"x")
        with pytest.raises(ValueError, match="bad topic filter 'a/b#'"):
            async with a.subscribe(("a", "b#")):
                pass


async def test_broker_restart_reconnects_and_resubscribes(mosquitto: Mosquitto) -> None:
    async with backend(mosquitto, "a") as a, backend(mosquitto, "b") as b:
        await connected(a)
        await connected(b)
        async with b.subscribe(("t", "#")) as rb:
            await a.publish(("t", "1"), b"before")
            assert await take(rb) == [(("t", "1"), b"before")]
            lost = b.changed()
            mosquitto.restart()
            with anyio.fail_after(TIMEOUT):
                await lost.wait()
            await connected(a)
            await connected(b)
            assert (a.connects, b.connects) == (2, 2)
            await a.publish(("t", "2"), b"after")
            assert await take(rb) == [(("t", "2"), b"after")]


async def test_messages_sent_while_disconnected_are_queued_then_sent(mosquitto: Mosquitto) -> None:
    async with backend(mosquitto, "a", queue_len=3) as a:
        await connected(a)
        async with a.subscribe(("q",)) as ra:
            mosquitto.stop()
            with anyio.fail_after(TIMEOUT):
                while a.connected:  # noqa: ASYNC110  (the reader notices the close)
                    await anyio.sleep(0.02)
            for i in range(5):
                await a.publish(("q",), b"%d" % i)  # returns at once
            st = a.status()
            assert (st["state"] != "connected", st["queued"], st["lost"]) == (True, 3, 2)
            assert st["error"].startswith(f"lost the connection to mqtt://127.0.0.1:{mosquitto.port}")
            mosquitto.start()
            # the subscription is renewed before the queue is sent, so a sees its own messages:
            # the three newest, in order
            assert await take(ra, 3) == [(("q",), b"2"), (("q",), b"3"), (("q",), b"4")]
            assert a.status()["queued"] == 0


async def test_a_backend_started_before_the_broker_connects_later() -> None:
    broker = Mosquitto()
    async with backend(broker, "a") as a:
        async with a.subscribe(("t",)) as ra:
            await a.publish(("t",), b"early")
            await anyio.sleep(0.3)
            assert not a.connected and a.state in ("connecting", "disconnected")
            with broker:
                await connected(a)
                assert await take(ra) == [(("t",), b"early")]


async def test_a_stalled_broker_is_noticed_and_left(mosquitto: Mosquitto) -> None:
    async with backend(mosquitto, "a", keep_alive=0.5, connect_timeout=1) as a:
        await connected(a)
        down = a.changed()
        mosquitto.pause()
        try:
            with anyio.fail_after(TIMEOUT):
                await down.wait()
            assert not a.connected
            assert "no answer from the other side" in a.status()["error"]
            await a.publish(("t",), b"queued while stalled")
        finally:
            mosquitto.resume()
        async with a.subscribe(("t",)) as ra:
            await connected(a)
            await a.publish(("t",), b"after")
            assert await take(ra, 2) == [(("t",), b"queued while stalled"), (("t",), b"after")]


async def test_many_messages_arrive_complete_and_in_order(mosquitto: Mosquitto) -> None:
    n = 5000
    async with backend(mosquitto, "a") as a, backend(mosquitto, "b") as b:
        await connected(a)
        await connected(b)
        async with b.subscribe((":distkv", "update")) as rb:
            got: list[bytes] = []

            async def receive() -> None:
                got.extend(p for _, p in await take(rb, n))

            async with anyio.create_task_group() as tg:
                tg.start_soon(receive)
                for i in range(n):
                    await a.publish((":distkv", "update"), i.to_bytes(4) * 50)
                    if i % 500 == 0:
                        await anyio.lowlevel.checkpoint()
            assert got == [i.to_bytes(4) * 50 for i in range(n)]


async def test_echo_false_subscriptions_get_only_the_others_messages(mosquitto: Mosquitto) -> None:
    async with backend(mosquitto, "a") as a, backend(mosquitto, "b") as b:
        await connected(a)
        await connected(b)
        async with a.subscribe(("t",), echo=False) as ra:
            await a.publish(("t",), b"mine")
            await b.publish(("t",), b"theirs")
            assert await take(ra) == [(("t",), b"theirs")]  # the broker left ours out
            assert await nothing_more(ra)
            # somebody here wants the echoes: the wire subscription takes them again
            async with a.subscribe(("t",)) as echoed:
                await a.publish(("t",), b"mine again")
                assert await take(echoed) == [(("t",), b"mine again")]
                assert await take(ra) == [(("t",), b"mine again")]


async def test_flush_hands_everything_to_the_broker(mosquitto: Mosquitto) -> None:
    n = 2000
    async with backend(mosquitto, "a") as a, backend(mosquitto, "b") as b:
        await connected(a)
        await connected(b)
        async with b.subscribe(("f",)) as rb:
            for i in range(n):
                assert a.publish_nowait(("f",), b"%d" % i)
            await a.flush()
            # the connection dies right away: what was flushed has reached the broker
            await anyio.aclose_forcefully(a._link.stream)  # type: ignore[union-attr]
            got = [p for _, p in await take(rb, n)]
            assert got == [b"%d" % i for i in range(n)]
        await a.flush()  # disconnected: returns at once (the offline queue waits)


async def test_push_writes_at_once_where_it_can(mosquitto: Mosquitto, anyio_backend: str) -> None:
    n = 2000
    async with backend(mosquitto, "a") as a, backend(mosquitto, "b") as b:
        assert not a.push()  # not connected yet: the offline queue waits
        await connected(a)
        await connected(b)
        async with b.subscribe(("p",)) as rb:
            for i in range(n):
                assert a.publish_nowait(("p",), b"%d" % i)
            # no waiting: on asyncio the bytes go to the socket's transport right here
            pushed = a.push()
            assert pushed is (anyio_backend == "asyncio")
            if pushed:
                await anyio.aclose_forcefully(a._link.stream)  # type: ignore[union-attr]
                got = [p for _, p in await take(rb, n)]
                assert got == [b"%d" % i for i in range(n)]


# --- the QoS 0 PUBLISH codec ------------------------------------------------------------


def _moat_publish(topic: str, payload: bytes, props: dict | None = None) -> bytes:
    buf = bytearray()
    MQTTPublishPacket(topic=topic, payload=payload, properties=props or {}).encode(buf)
    return bytes(buf)


def test_our_publish_packets_read_back_as_mqtt_publishes() -> None:
    out = bytearray()
    big = bytes(range(256)) * 100  # a remaining length of three bytes
    encode_publish(out, topic_field(":distkv/update"), b"small")
    encode_publish(out, topic_field("t/ü"), big)
    used, items = split_packets(bytes(out))
    assert used == len(out)
    assert items == [Published(b":distkv/update", [], b"small"),
                     Published("t/ü".encode(), [], big)]
    assert out.startswith(_moat_publish(":distkv/update", b"small"))


def test_split_packets_keeps_incomplete_packets_for_later() -> None:
    first = _moat_publish("a/b", b"x" * 300)
    data = first + _moat_publish("c", b"y")
    for cut in (1, 2, 3, 10, len(data) - 1):
        used, items = split_packets(data[:cut])
        assert used == (len(first) if cut == len(data) - 1 else 0)
        used2, rest = split_packets(data[used:])
        assert items + rest == [Published(b"a/b", [], b"x" * 300), Published(b"c", [], b"y")]


def test_split_packets_reads_properties_and_passes_on_the_rest() -> None:
    sid = PropertyType.SUBSCRIPTION_IDENTIFIER
    with_ids = bytearray()
    MQTTPublishPacket(
        topic="t", payload=b"p", properties={sid: [3, 300]},
        user_properties={"k": "v"},
    ).encode(with_ids)
    alias = _moat_publish("t", b"p", {PropertyType.TOPIC_ALIAS: 1})
    ping = b"\xd0\x00"  # PINGRESP
    qos1 = bytearray()
    MQTTPublishPacket(topic="t", payload=b"q", qos=QoS.AT_LEAST_ONCE, packet_id=7).encode(qos1)
    data = bytes(with_ids) + alias + ping + bytes(qos1)
    used, items = split_packets(data)
    assert used == len(data)
    assert items == [Published(b"t", [3, 300], b"p"), alias, ping, bytes(qos1)]
