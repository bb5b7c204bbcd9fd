"""An MQTT v5 broker that a server can host itself (moat-lib-mqtt's broker, hardened).

``async with embedded_broker(host, port) as broker:`` runs a broker until the
block ends (``broker.port`` is the bound port, useful with port 0);
:func:`serve_broker` is the same as a task (``tg.start``). The
MQTT backend starts one when ``host_broker`` is set and nobody answers at its
local broker address (see :mod:`.mqtt`).

What clients can expect:

* MQTT v5 clients (our backend, moat-lib-mqtt, ``mosquitto_pub -V 5`` …)
  connect, publish at QoS 0/1/2 and subscribe with ``+``/``#`` filters.
* MQTT 3.1/3.1.1 clients — upstream distkv servers use moat-mqtt, a 3.1.1
  client — are *not* served: they get the 3.1.1 answer "unacceptable protocol
  version" (CONNACK return code 1) and the connection is closed. A network
  with upstream servers needs a real broker such as mosquitto.

Compared with the library's broker, a client that goes away (cleanly or not)
loses its subscriptions, a reconnect with the same client id replaces the old
connection, a client silent for 1.5 × its keep-alive is disconnected, and a
refused CONNECT is answered before the connection closes.

Every CONNACK carries the user property ``hosted-by: distkv`` (:data:`HOSTED_BY`):
that is how a server tells a broker hosted by another distkv server (whose
place it may take when that server goes away) from a broker somebody runs
on purpose, such as mosquitto (whose port it must leave alone).
"""

from __future__ import annotations

import logging
import math
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from anyio.abc import ByteStream, Listener, SocketAttribute, TaskStatus
from attrs import define, field
from moat.lib.mqtt import MQTTClientState, MQTTConnAckPacket, MQTTConnectPacket, MQTTException
from moat.lib.mqtt._types import decode_packet
from moat.lib.mqtt.async_broker import AsyncMQTTBroker, AsyncMQTTClientSession

__all__ = ["HOSTED_BY", "EmbeddedBroker", "embedded_broker", "serve_broker"]

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
HOSTED_BY = ("hosted-by", "distkv")  # the CONNACK user property that marks our broker
# MQTT 3.1.1 CONNACK: no session present, return code 1 (unacceptable protocol version)
_CONNACK_OLD_PROTOCOL = b"\x20\x02\x00\x01"


def connect_protocol_level(data: bytes) -> int | None:
    """The protocol level of a CONNECT packet at the start of ``data`` (None: can't tell)."""
    if len(data) < 2 or data[0] != 0x10:
        return None
    i = 1
    while i < 5 and i < len(data) and data[i] & 0x80:
        i += 1
    i += 1
    if len(data) < i + 2:
        return None
    i += 2 + int.from_bytes(data[i : i + 2])
    return data[i] if i < len(data) else None


@define
class EmbeddedBroker(AsyncMQTTBroker):
    """moat-lib-mqtt's broker with the session handling described in the module docstring."""

    port: int = field(init=False, default=0)

    async def listen(self) -> Listener:
        """Bind the listening socket (raises :class:`OSError`, e.g. if the port is taken)."""
        host, port = self.bind_address  # type: ignore[misc]
        listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
        self.port = listener.extra(SocketAttribute.local_port)
        return listener

    async def serve(self, *, task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
        async with await self.listen() as listener:
            logger.info("MQTT broker listening on %s:%d", self.bind_address[0], self.port)
            task_status.started(self.port)
            await listener.serve(self.serve_client)

    async def _serve_client(self, stream: ByteStream) -> None:
        session = AsyncMQTTClientSession(stream=stream)
        sm = session.state_machine
        added = False
        timeout = CONNECT_TIMEOUT
        first = True
        try:
            async with stream:
                while True:
                    chunk = None
                    with anyio.move_on_after(timeout):
                        try:
                            chunk = await stream.receive()
                        except (anyio.EndOfStream, anyio.BrokenResourceError):
                            return
                    if chunk is None:
                        logger.info("MQTT client %s: silent for %.0fs, disconnected",
                                    sm.client_id if added else "?", timeout)
                        return
                    if first:
                        first = False
                        level = connect_protocol_level(chunk)
                        if level is not None and level < 5:
                            logger.warning(
                                "refused an MQTT %s client: this broker speaks MQTT v5 only",
                                "3.1.1" if level == 4 else "3.1",
                            )
                            await stream.send(_CONNACK_OLD_PROTOCOL)
                            return
                    try:
                        packets = sm.feed_bytes(chunk)
                        for packet in packets:
                            if isinstance(packet, MQTTConnectPacket):
                                await self._connect(packet, session, stream)
                                keep = packet.keep_alive
                                timeout = keep * 1.5 if keep else math.inf
                            else:
                                await self.handle_packet(packet, session, stream)
                    except MQTTException as exc:
                        logger.info("MQTT client %s: protocol error: %s", sm.client_id if added
                                    else "?", exc)
                        return
                    if not added and sm.state is MQTTClientState.CONNECTED:
                        added = True
                        self.add_client_session(session)
                    await session.flush_outbound_data()
                    if sm.state is MQTTClientState.DISCONNECTED:
                        return
        finally:
            if added:
                self.remove_client_session(session)

    async def _connect(
        self, packet: MQTTConnectPacket, session: AsyncMQTTClientSession, stream: ByteStream
    ) -> None:
        """Let the library answer a CONNECT, then add :data:`HOSTED_BY` to its CONNACK."""
        out = session.state_machine._out_buffer  # noqa: SLF001  (no API to add properties)
        mark = len(out)
        await self.handle_packet(packet, session, stream)
        ack = bytes(out[mark:])
        if not ack:
            return
        _, answer = decode_packet(memoryview(ack))
        if isinstance(answer, MQTTConnAckPacket):  # (nothing else answers a CONNECT)
            del out[mark:]
            answer.user_properties[HOSTED_BY[0]] = HOSTED_BY[1]
            answer.encode(out)

    def add_client_session(self, session: AsyncMQTTClientSession) -> None:
        cid = session.state_machine.client_id
        old = self._client_sessions.get(cid)
        if old is not None:  # the same client id again: the old connection goes
            self._drop_subscriptions(old)
            del self._client_sessions[cid]
            _shut_down(old.stream)  # its reader sees the end and finishes
        super().add_client_session(session)

    def remove_client_session(self, session: AsyncMQTTClientSession) -> None:
        sm = session.state_machine
        if self._client_sessions.get(sm.client_id) is not session:
            return  # replaced by a newer connection with this id
        self._drop_subscriptions(session)
        del self._client_sessions[sm.client_id]
        self._state_machine.client_state_machines.pop(sm.client_id, None)

    def _drop_subscriptions(self, session: AsyncMQTTClientSession) -> None:
        sm = session.state_machine
        # the library keeps a session's filters in this (private) set
        for pattern in list(sm._subscriptions):  # noqa: SLF001
            self._state_machine.unsubscribe_session_from(sm, pattern)


def _shut_down(stream: ByteStream) -> None:
    """Shut a socket stream down from synchronous code."""
    try:
        stream.extra(SocketAttribute.raw_socket).shutdown(socket.SHUT_RDWR)
    except (anyio.TypedAttributeLookupError, OSError):
        pass


async def serve_broker(
    host: str = "127.0.0.1",
    port: int = 1883,
    *,
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Run an embedded broker until cancelled; ``task_status`` gets the bound port.

    Raises :class:`OSError` if the address cannot be bound (e.g. in use).
    """
    await EmbeddedBroker(bind_address=(host, port)).serve(task_status=task_status)


@asynccontextmanager
async def embedded_broker(
    host: str = "127.0.0.1", port: int = 0, **kw: Any
) -> AsyncIterator[EmbeddedBroker]:
    """Run an embedded broker while the block runs (``kw``: authenticators, authorizers)."""
    broker = EmbeddedBroker(bind_address=(host, port), **kw)
    async with await broker.listen() as listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, broker.serve_client)
        try:
            yield broker
        finally:
            tg.cancel_scope.cancel()
