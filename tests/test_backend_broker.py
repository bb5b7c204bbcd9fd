"""The embedded MQTT broker: our backends and other v5 clients through it; v3 clients refused;
hosting it when no broker answers (``server.no_broker: host``), and taking it over."""

from __future__ import annotations

import logging

import anyio
import pytest
from brokers import Mosquitto, mosquitto_fixture, take  # noqa: F401
from moat.lib.mqtt import MQTTConnectPacket, QoS, ReasonCode
from moat.lib.mqtt.async_broker import MQTTAuthenticator
from moat.lib.mqtt.async_client import AsyncMQTTClient
from procs import free_port

from distkv.server.backend import connect_backend, probe_broker
from distkv.server.backend.broker import EmbeddedBroker, connect_protocol_level, embedded_broker
from distkv.server.backend.mqtt import MQTTBackend
from distkv.server.backend.serf import SerfBackend

pytestmark = pytest.mark.anyio
TIMEOUT = 10


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param


def backend(port: int, node: str, **kw: object) -> MQTTBackend:
    kw.setdefault("retry_max", 0.3)
    return MQTTBackend(f"mqtt://127.0.0.1:{port}", node=node, **kw)  # type: ignore[arg-type]


async def connected(*bs: MQTTBackend) -> None:
    with anyio.fail_after(TIMEOUT):
        for b in bs:
            await b.wait_connected()


async def read_all(stream: anyio.abc.ByteStream) -> bytes:
    """Everything the other side sends until it closes the connection."""
    data = b""
    with anyio.fail_after(TIMEOUT):
        while True:
            try:
                data += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return data


async def test_two_backends_talk_through_it() -> None:
    async with embedded_broker() as broker:
        async with backend(broker.port, "a") as a, backend(broker.port, "b") as b:
            await connected(a, b)
            async with a.subscribe((":distkv", "#")) as ra, \
                    b.subscribe((":distkv", "update")) as rb:
                await a.publish((":distkv", "update"), b"from a")
                assert await take(rb) == [((":distkv", "update"), b"from a")]
                await b.publish((":distkv", "info"), b"from b")
                assert await take(ra, 2) == [((":distkv", "update"), b"from a"),
                                             ((":distkv", "info"), b"from b")]


async def test_other_mqtt5_clients_work_with_it() -> None:
    async with embedded_broker() as broker, backend(broker.port, "a") as a, \
            AsyncMQTTClient("127.0.0.1", broker.port) as other:
        await connected(a)
        async with other.subscribe("x/+", qos=QoS.AT_LEAST_ONCE) as seen, a.subscribe(("y",)) as ra:
            await a.publish(("x", 1), b"to the other")
            with anyio.fail_after(TIMEOUT):
                packet = await seen.__anext__()
            assert (packet.topic, packet.payload, packet.retain) == ("x/1", b"to the other", False)
            await other.publish("y", b"qos 1", qos=QoS.AT_LEAST_ONCE)
            await other.publish("y", b"qos 2", qos=QoS.EXACTLY_ONCE)
            assert await take(ra, 2) == [(("y",), b"qos 1"), (("y",), b"qos 2")]


async def test_mqtt_311_clients_are_told_their_protocol_is_not_supported(
        caplog: pytest.LogCaptureFixture) -> None:
    # CONNECT, protocol "MQTT" level 4 (3.1.1), clean session, keep-alive 60, client id "old"
    connect = b"\x10\x0f\x00\x04MQTT\x04\x02\x00\x3c\x00\x03old"
    assert connect_protocol_level(connect) == 4
    async with embedded_broker() as broker:
        stream = await anyio.connect_tcp("127.0.0.1", broker.port)
        async with stream:
            await stream.send(connect)
            # 3.1.1 CONNACK with return code 1 (unacceptable protocol version), then closed
            assert await read_all(stream) == b"\x20\x02\x00\x01"
    assert "refused an MQTT 3.1.1 client: this broker speaks MQTT v5 only" in caplog.text


async def test_a_silent_client_is_dropped_after_its_keep_alive() -> None:
    buf = bytearray()
    MQTTConnectPacket(client_id="quiet", keep_alive=1, clean_start=True).encode(buf)
    assert connect_protocol_level(bytes(buf)) == 5
    async with embedded_broker() as broker:
        stream = await anyio.connect_tcp("127.0.0.1", broker.port)
        async with stream:
            await stream.send(bytes(buf))
            start = anyio.current_time()
            data = await read_all(stream)
            assert data[:1] == b"\x20"  # the CONNACK, then nothing until it gave up on us
            assert 1.2 < anyio.current_time() - start < 5


async def test_clients_that_vanish_lose_their_subscriptions() -> None:
    async with embedded_broker() as broker:
        async with backend(broker.port, "a") as a:
            await connected(a)
            async with a.subscribe(("t", "#")):
                async with AsyncMQTTClient("127.0.0.1", broker.port) as other, \
                        other.subscribe("t/x"):
                    pass
                await a.publish(("t", "x"), b"x")
                with anyio.fail_after(TIMEOUT):
                    while len(broker._state_machine.shared_subscriptions) != 1:  # noqa: ASYNC110
                        await anyio.sleep(0.02)
        with anyio.fail_after(TIMEOUT):
            while broker._client_sessions or broker._state_machine.shared_subscriptions:  # noqa: ASYNC110
                await anyio.sleep(0.02)


async def test_a_reconnect_with_the_same_client_id_replaces_the_old_connection() -> None:
    async with embedded_broker() as broker:
        async with backend(broker.port, "a", client_id="same") as a:
            await connected(a)
            async with a.subscribe(("old",)):
                async with backend(broker.port, "b", client_id="same") as b:
                    await connected(b)
                    async with b.subscribe(("new",)) as rb:
                        await b.publish(("old",), b"not for b")
                        await b.publish(("new",), b"for b")
                        assert await take(rb) == [(("new",), b"for b")]
                        assert list(broker._client_sessions) == ["same"]
                        assert [p.pattern for p in broker._state_machine.shared_subscriptions] \
                            == ["new"]


async def test_a_refused_connection_is_answered_and_reported() -> None:
    class NoEntry(MQTTAuthenticator):
        async def authenticate(self, client_id, username, password, stream):  # noqa: ANN001
            return None if username == "friend" else ReasonCode.NOT_AUTHORIZED

    async with embedded_broker(authenticators=[NoEntry()]) as broker:
        async with backend(broker.port, "a") as a:
            with anyio.fail_after(TIMEOUT):
                while a.last_error is None:  # noqa: ASYNC110
                    await anyio.sleep(0.02)
            assert a.last_error == (f"cannot connect to mqtt://127.0.0.1:{broker.port}: "
                                    "BackendError: the broker refused the connection: "
                                    "NOT_AUTHORIZED")
        async with MQTTBackend(f"mqtt://friend:pw@127.0.0.1:{broker.port}") as b:
            await connected(b)


async def test_a_server_hosts_the_broker_when_none_answers_locally() -> None:
    port = free_port()
    a_up, a_stop = anyio.Event(), anyio.Event()

    async def run_a() -> None:
        async with backend(port, "a", host_broker=True) as a:
            await connected(a)
            assert a.hosting
            a_up.set()
            await a_stop.wait()
            await a.publish(("t",), b"via a's broker")

    async with anyio.create_task_group() as tg:
        tg.start_soon(run_a)
        with anyio.fail_after(TIMEOUT):
            await a_up.wait()
        async with backend(port, "b", host_broker=True) as b:
            await connected(b)
            assert not b.hosting  # a was first
            async with b.subscribe(("t",)) as rb:
                a_stop.set()  # a publishes, then leaves; its broker goes with it
                assert await take(rb) == [(("t",), b"via a's broker")]
                with anyio.fail_after(TIMEOUT):
                    while not (b.hosting and b.connected):  # noqa: ASYNC110
                        await anyio.sleep(0.02)
                await b.publish(("t",), b"via b's broker")
                assert await take(rb) == [(("t",), b"via b's broker")]


async def test_no_hosting_for_remote_addresses_or_without_the_flag() -> None:
    assert not MQTTBackend("mqtt://192.0.2.1:1883", host_broker=True).host_broker
    assert MQTTBackend("mqtt://localhost:1883", host_broker=True).host_broker
    port = free_port()
    async with backend(port, "a", connect_timeout=0.5) as a:
        await anyio.sleep(0.5)
        assert not a.connected and not a.hosting
        assert "cannot connect to" in a.last_error


async def test_the_broker_binds_the_given_port() -> None:
    port = free_port()
    async with embedded_broker("127.0.0.1", port) as broker:
        assert isinstance(broker, EmbeddedBroker) and broker.port == port
        with pytest.raises(OSError):
            async with embedded_broker("127.0.0.1", port):
                pass


# --- server.no_broker: host ------------------------------------------------------------------


async def test_the_probe_tells_a_hosted_broker_from_other_listeners(mosquitto: Mosquitto) -> None:
    assert await probe_broker("127.0.0.1", free_port()) is None
    async with embedded_broker() as broker:
        assert await probe_broker("127.0.0.1", broker.port) == "distkv"
        with anyio.fail_after(TIMEOUT):  # the probe says goodbye
            while broker._client_sessions:  # noqa: ASYNC110
                await anyio.sleep(0.02)
    assert await probe_broker("127.0.0.1", mosquitto.port) == "other"
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as silent:
        port = silent.extra(anyio.abc.SocketAttribute.local_port)
        assert await probe_broker("127.0.0.1", port, wait=0.3) == "other"


def host_cfg(uri: str, **more: object) -> dict:
    return {"mqtt": {"uri": uri, "retry_max": 0.3}, "no_broker": "host", **more}


async def test_host_policy_hosts_a_broker_where_none_answers(
        caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    a = await connect_backend(host_cfg(f"mqtt://127.0.0.1:{port}"), "a")
    async with a:
        await connected(a)
        assert isinstance(a, MQTTBackend) and a.hosting and a.hosting.port == port
        assert await probe_broker("127.0.0.1", port) == "distkv"
    assert f"no broker at mqtt://127.0.0.1:{port}: hosting an embedded one there" in caplog.text


async def test_when_the_hosting_server_goes_another_one_hosts_the_broker(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "distkv")
    uri = f"mqtt://127.0.0.1:{free_port()}"
    a_up, a_stop = anyio.Event(), anyio.Event()

    async def run_a() -> None:
        async with await connect_backend(host_cfg(uri), "a") as a:
            await connected(a)
            a_up.set()
            await a_stop.wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run_a)
        with anyio.fail_after(TIMEOUT):
            await a_up.wait()
        b = await connect_backend(host_cfg(uri), "b")
        assert isinstance(b, MQTTBackend) and b.host_broker
        assert f"{uri} is hosted by a distkv server: one of us takes over if it goes" in caplog.text
        async with b:
            await connected(b)
            assert not b.hosting
            a_stop.set()  # a leaves, and its broker with it
            with anyio.fail_after(TIMEOUT):
                while not (b.hosting and b.connected):  # noqa: ASYNC110
                    await anyio.sleep(0.02)


async def test_a_broker_that_no_server_hosts_is_not_taken_over(mosquitto: Mosquitto) -> None:
    c = await connect_backend(host_cfg(mosquitto.uri), "c")
    assert isinstance(c, MQTTBackend) and not c.host_broker
    async with c:
        await connected(c)
        mosquitto.stop()
        with anyio.fail_after(TIMEOUT):
            while c.connected:  # noqa: ASYNC110
                await anyio.sleep(0.02)
        await anyio.sleep(1)  # several reconnection attempts
        assert not c.hosting and not c.connected
        assert await probe_broker("127.0.0.1", mosquitto.port) is None  # the port stays free
        mosquitto.start()
        await connected(c)


async def test_host_policy_waits_where_no_broker_can_be_hosted(
        caplog: pytest.LogCaptureFixture) -> None:
    remote = await connect_backend(host_cfg("mqtt://192.0.2.1:1883"), "r", probe_time=0.2)
    assert isinstance(remote, MQTTBackend) and not remote.host_broker
    port = free_port()
    serf = await connect_backend(
        {"backend": "serf", "serf": {"host": "127.0.0.1", "port": port}, "no_broker": "host"}, "s")
    assert isinstance(serf, SerfBackend)
    assert ("no broker at mqtt://192.0.2.1:1883, and this server cannot host one there "
            "(only mqtt:// on a local address): replication starts once it answers") in caplog.text
    assert f"no broker at serf://127.0.0.1:{port}, and this server cannot host one" in caplog.text
