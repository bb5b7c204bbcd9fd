"""The MQTT backend (``server.backend: mqtt``): MQTT v5 through moat-lib-mqtt.

Mapping (05 §1): topic elements are joined with ``/``; messages are published
with QoS 0 and retain false; filters are subscribed with QoS 0; received
topics are split at ``/``. We receive our own publications, as upstream does,
except on subscriptions made with ``echo=False``: those set MQTT v5's
"no local" option, so the broker does not send them back to us at all.

The protocol work is done by moat-lib-mqtt's sans-IO client state machine;
this module is the thin async shell around it (its own ``AsyncMQTTClient``
neither reconnects nor notices a stalled broker, which is what upstream's
known issues 48/49 are about). Connection keeping, resubscribing, the offline
queue and the state report come from :class:`~.link.LinkBackend`.

QoS 0 PUBLISH packets, nearly all the traffic, bypass the state machine (it
has nothing to track for them): :func:`encode_publish` writes them and
:func:`split_packets` cuts them out of the received bytes, handing every
other packet to the state machine.

When ``host_broker`` is set and nothing answers at a *local* address
(``localhost``, ``127.0.0.1``, ``::1``), the backend starts an embedded
broker there (:mod:`.broker`) for as long as it runs, and connects to it.
If several servers on one host race for that, one binds the port and the
others connect to it; if the hosting server goes away, another one takes
over at its next reconnect.

Configuration (``server.mqtt``, see :meth:`MQTTBackend.from_config`): ``uri``
(``mqtt://[user:password@]host[:port]`` or ``mqtts://…``), ``username``,
``password``, ``client_id``, ``cafile``, ``keep_alive``, ``connect_timeout``,
``retry_min``, ``retry_max``, ``queue_len``, ``host_broker``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import unquote, urlsplit

import anyio
from anyio.abc import ByteStream
from moat.lib.mqtt import (
    InvalidPattern,
    MQTTClientState,
    MQTTConnAckPacket,
    MQTTDisconnectPacket,
    MQTTPublishPacket,
    MQTTPublishReleasePacket,
    MQTTSubscribeAckPacket,
    Pattern,
    PropertyType,
    QoS,
    ReasonCode,
    Subscription,
)
from moat.lib.mqtt.client_state_machine import MQTTClientStateMachine

from .link import (
    BackendError,
    Link,
    LinkBackend,
    LinkDown,
    Reply,
)
from .topic import Fanout, Message

if TYPE_CHECKING:
    from .broker import EmbeddedBroker

__all__ = [
    "LOCAL_HOSTS", "MQTTBackend", "MQTTLink", "Published", "encode_publish", "split_packets",
    "topic_field",
]

logger = logging.getLogger(__name__)

LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_CONNECTED = MQTTClientState.CONNECTED
_SUB_ID = PropertyType.SUBSCRIPTION_IDENTIFIER
_OK_SUBACK = (ReasonCode.GRANTED_QOS_0, ReasonCode.GRANTED_QOS_1, ReasonCode.GRANTED_QOS_2)
_CONFIG_KEYS = frozenset({
    "uri", "username", "password", "client_id", "cafile", "keep_alive", "connect_timeout",
    "retry_min", "retry_max", "queue_len", "host_broker",
})


# --- QoS 0 PUBLISH packets without the state machine (MQTT v5 §3.3) ---------------------

_PUBLISH_QOS0 = 0x30
_PROP_SUB_ID = 0x0B
_PROP_FIXED = {0x01: 1, 0x02: 4}  # payload format indicator, message expiry interval
_PROP_STRING = frozenset({0x03, 0x08, 0x09})  # content type, response topic, correlation data
_PROP_PAIR = 0x26  # user property
_TOPIC_CACHE = 1024


class Published(NamedTuple):
    """A received QoS 0 PUBLISH: raw topic, subscription ids (maybe empty), payload."""

    topic: bytes
    sub_ids: list[int]
    payload: bytes


def _new_published(fields: tuple, _new: Any = tuple.__new__) -> Published:
    return _new(Published, fields)


def encode_publish(out: bytearray, topic_field: bytes, payload: bytes) -> None:
    """Append a QoS 0 PUBLISH without properties; ``topic_field`` is length + UTF-8."""
    n = len(topic_field) + 1 + len(payload)
    out.append(_PUBLISH_QOS0)
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    out += topic_field
    out.append(0)  # no properties
    out += payload


def topic_field(topic: str) -> bytes:
    """A topic as PUBLISH carries it: two length bytes, then UTF-8."""
    raw = topic.encode()
    return len(raw).to_bytes(2, "big") + raw


def split_packets(data: bytes) -> tuple[int, list[Published | bytes]]:
    """The complete packets at the start of ``data`` and how many bytes they took.

    QoS 0 PUBLISH packets come as :class:`Published`, any other packet (or a
    PUBLISH with properties we don't read, such as a topic alias) as its bytes.
    """
    items: list[Published | bytes] = []
    n = len(data)
    pos = 0
    while pos + 1 < n:
        i = pos + 1
        size = data[i]
        i += 1
        if size > 0x7F:
            size &= 0x7F
            shift = 7
            while True:
                if i >= n:
                    return pos, items
                b = data[i]
                i += 1
                size |= (b & 0x7F) << shift
                if b < 0x80:
                    break
                shift += 7
                if shift > 21:
                    raise LinkDown("malformed packet from the broker (length)")
        end = i + size
        if end > n:
            break
        item = None
        if data[pos] & 0xF6 == _PUBLISH_QOS0 and size > 2:
            t_end = i + 2 + (data[i] << 8 | data[i + 1])
            # the usual shapes: no properties, or one small subscription id
            if t_end < end and data[t_end] == 0:
                item = _new_published((data[i + 2 : t_end], [], data[t_end + 1 : end]))
            elif (t_end + 3 <= end and data[t_end] == 2 and data[t_end + 1] == _PROP_SUB_ID
                  and data[t_end + 2] < 0x80):
                item = _new_published(
                    (data[i + 2 : t_end], [data[t_end + 2]], data[t_end + 3 : end])
                )
            else:
                item = _publish(data, i, end)
        items.append(item if item is not None else data[pos:end])
        pos = end
    return pos, items


def _publish(data: bytes, i: int, end: int) -> Published | None:
    """The QoS 0 PUBLISH in ``data[i:end]``; None: let the state machine read it."""
    if end - i < 3:
        return None
    t_end = i + 2 + (data[i] << 8 | data[i + 1])
    if t_end >= end:
        return None
    j = t_end
    size = shift = 0
    while True:  # property length
        b = data[j]
        j += 1
        size |= (b & 0x7F) << shift
        if b < 0x80 or j >= end:
            break
        shift += 7
    p_end = j + size
    if p_end > end:
        return None
    ids: list[int] = []
    try:
        while j < p_end:
            prop = data[j]
            j += 1
            if prop == _PROP_SUB_ID:
                sid = shift = 0
                while j < p_end:
                    b = data[j]
                    j += 1
                    sid |= (b & 0x7F) << shift
                    if b < 0x80:
                        break
                    shift += 7
                ids.append(sid)
            elif prop in _PROP_FIXED:
                j += _PROP_FIXED[prop]
            elif prop in _PROP_STRING:
                j += 2 + (data[j] << 8 | data[j + 1])
            elif prop == _PROP_PAIR:
                j += 2 + (data[j] << 8 | data[j + 1])
                j += 2 + (data[j] << 8 | data[j + 1])
            else:
                return None
    except IndexError:
        return None
    if j != p_end:
        return None
    return _new_published((data[i + 2 : t_end], ids, data[p_end:end]))


class MQTTLink(Link):
    """One MQTT v5 connection: the state machine, its stream, subscription ids.

    QoS 0 publications are written to :attr:`out` directly; what the state
    machine produces is moved there right after each call, to keep the order.
    """

    def __init__(
        self, stream: ByteStream, sm: MQTTClientStateMachine, fanout: Fanout, keep_alive: float
    ):
        super().__init__(fanout, keep_alive)
        self.stream = stream
        self.sm = sm
        # a plain TCP stream on asyncio: anyio's stream object holds the transport
        tr = getattr(stream, "_transport", None)
        if isinstance(tr, asyncio.Transport):
            self.transport = tr
        self.out = bytearray()
        self._use_ids = sm.cap_subscription_ids
        self._next_id = 0
        self._key_of: dict[int, str] = {}  # subscription id -> filter
        self._id_of: dict[str, int] = {}
        self._fields: dict[str, bytes] = {}  # topic -> its PUBLISH field
        self._topics: dict[bytes, tuple[str, ...]] = {}  # received raw topic -> tuple

    @classmethod
    async def open(
        cls,
        stream: ByteStream,
        fanout: Fanout,
        *,
        client_id: str,
        username: str | None,
        password: str | None,
        keep_alive: float,
    ) -> MQTTLink:
        """Do the CONNECT handshake on ``stream`` (closed on failure)."""
        sm = MQTTClientStateMachine(client_id=client_id)
        try:
            sm.connect(
                username=username,
                password=password,
                keep_alive=max(1, round(keep_alive)) if keep_alive else 0,
                clean_start=True,
            )
            await stream.send(bytes(sm.get_outbound_data()))
            while True:
                try:
                    chunk = await stream.receive()
                except anyio.EndOfStream:
                    raise LinkDown("the broker closed the connection in the handshake") from None
                for packet in sm.feed_bytes(chunk):
                    if isinstance(packet, MQTTConnAckPacket):
                        if packet.reason_code is not ReasonCode.SUCCESS:
                            raise BackendError(
                                f"the broker refused the connection: {packet.reason_code.name}"
                            )
                        return cls(stream, sm, fanout, keep_alive)
        except BaseException:
            await anyio.aclose_forcefully(stream)
            raise

    # --- Link ------------------------------------------------------------------------

    def send(self, wire_topic: str, payload: bytes) -> None:
        if self.sm.state is not _CONNECTED:
            raise LinkDown("the broker disconnected")
        field = self._fields.get(wire_topic)
        if field is None:
            field = topic_field(wire_topic)
            if len(self._fields) < _TOPIC_CACHE:
                self._fields[wire_topic] = field
        encode_publish(self.out, field, payload)
        self.backlog += len(payload) + len(field) + 6

    def _pull(self) -> None:
        """Move what the state machine wants to send to :attr:`out`."""
        data = self.sm.get_outbound_data()
        if data:
            self.out += data

    async def subscribe(self, key: str) -> None:
        sid = 0
        if self._use_ids:
            self._next_id = sid = self._next_id + 1
            self._key_of[sid] = key
            old = self._id_of.pop(key, None)
            if old is not None:
                del self._key_of[old]
            self._id_of[key] = sid
        no_local = not self.fanout.wants_echo(key)
        pid = self.sm.subscribe(
            [Subscription(key, max_qos=QoS.AT_MOST_ONCE, no_local=no_local, subscription_id=sid)]
        )
        self._pull()
        self.replies[pid] = reply = Reply()
        self.kick()
        codes = await reply.wait()
        bad = [c for c in codes if c not in _OK_SUBACK]  # type: ignore[attr-defined]
        if bad:
            self._forget(key)
            raise BackendError(f"the broker refused the subscription to {key!r}: {bad[0].name}")

    def unsubscribe(self, key: str) -> None:
        self._forget(key)
        if self.sm.state is _CONNECTED:
            self.sm.unsubscribe([Pattern(key)])
            self._pull()

    def _forget(self, key: str) -> None:
        sid = self._id_of.pop(key, None)
        if sid is not None:
            del self._key_of[sid]

    def take_outbound(self) -> bytearray:
        self._pull()
        out = self.out
        self.out = bytearray()
        return out

    async def _write(self, data: bytes | bytearray) -> None:
        await self.stream.send(data)

    def _probe(self) -> None:
        self.sm.ping()
        self._pull()

    async def _read(self) -> None:
        rest = b""
        topics = self._topics
        key_of = self._key_of
        deliver_key = self.fanout.deliver_key
        new_tuple = tuple.__new__
        async for chunk in self.stream:
            self._rx += 1
            data = rest + chunk if rest else chunk
            used, items = split_packets(data)
            rest = data[used:] if used < len(data) else b""
            for item in items:
                if item.__class__ is not Published:
                    if not await self._handle(item):  # type: ignore[arg-type]
                        return
                    continue
                raw, ids, payload = item
                if len(ids) == 1 and (topic := topics.get(raw)) is not None:
                    # the usual case: a known topic, one subscription
                    key = key_of.get(ids[0])
                    if key is not None:
                        msg = new_tuple(Message, (topic, payload))
                        if late := deliver_key(key, msg):
                            for sub in late:
                                await sub.put_slow(msg)
                    continue
                await self._deliver(item)  # type: ignore[arg-type]

    async def _deliver(self, pub: Published) -> None:
        topic = self._topics.get(pub.topic)
        if topic is None:
            topic = tuple(pub.topic.decode(errors="surrogateescape").split("/"))
            if len(self._topics) < _TOPIC_CACHE:
                self._topics[pub.topic] = topic
        msg = Message(topic, pub.payload)
        fanout = self.fanout
        if pub.sub_ids:
            key_of = self._key_of
            for sid in pub.sub_ids:
                key = key_of.get(sid)
                if key is not None and (late := fanout.deliver_key(key, msg)):
                    for sub in late:
                        await sub.put_slow(msg)
        elif late := fanout.deliver_matching(msg):
            for sub in late:
                await sub.put_slow(msg)

    async def _handle(self, packet_data: bytes) -> bool:
        """Feed one packet to the state machine and act on it; False: the broker left."""
        for packet in self.sm.feed_bytes(packet_data):
            if isinstance(packet, MQTTPublishPacket):  # one the fast path did not read
                payload = packet.payload
                if payload.__class__ is not bytes:
                    payload = payload.encode() if isinstance(payload, str) else bytes(payload)
                raw = packet.topic.encode(errors="surrogateescape")
                await self._deliver(
                    Published(raw, list(packet.properties.get(_SUB_ID) or ()), payload)
                )
                if packet.qos:
                    self._pull()  # the state machine queued the acknowledgement
                    self.kick()
            elif isinstance(packet, MQTTSubscribeAckPacket):
                reply = self.replies.pop(packet.packet_id, None)
                if reply is not None:
                    reply.set(packet.reason_codes)
            elif isinstance(packet, MQTTPublishReleasePacket):
                self._pull()
                self.kick()
            elif isinstance(packet, MQTTDisconnectPacket):
                self.error = LinkDown(f"the broker disconnected: {packet.reason_code.name}")
                return False
        return True

    async def aclose(self) -> None:
        with anyio.move_on_after(1, shield=True):
            try:
                if self.sm.state is _CONNECTED:
                    self.sm.disconnect()
                    await self.stream.send(bytes(self.take_outbound()))
            except Exception:
                pass
            await self.stream.aclose()


class MQTTBackend(LinkBackend):
    """Publish/subscribe through an MQTT v5 broker, reconnecting as needed."""

    name = "mqtt"

    def __init__(
        self,
        uri: str = "mqtt://localhost:1883",
        *,
        node: str = "",
        username: str | None = None,
        password: str | None = None,
        client_id: str | None = None,
        cafile: str | None = None,
        host_broker: bool = False,
        **link: Any,
    ):
        """``link``: the connection options of :class:`LinkBackend`."""
        super().__init__(**link)
        parts = urlsplit(uri)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ValueError(f"unsupported MQTT URI (need mqtt:// or mqtts://): {uri!r}")
        self.uri = uri
        self.host = parts.hostname or "localhost"
        self.tls = parts.scheme == "mqtts"
        self.port = parts.port or (8883 if self.tls else 1883)
        self.username = username if username is not None else _unquote(parts.username)
        self.password = password if password is not None else _unquote(parts.password)
        self.client_id = client_id or f"distkv-{node or 'x'}-{uuid.uuid4().hex[:12]}"
        self.cafile = cafile
        self.host_broker = host_broker and self.host in LOCAL_HOSTS
        self.hosting: EmbeddedBroker | None = None  # the embedded broker this backend runs

    @classmethod
    def from_config(cls, opts: Mapping[str, Any], node: str = "") -> MQTTBackend:
        """Build from ``server.mqtt``; keys we do not know are ignored (and logged)."""
        unknown = sorted(set(opts) - _CONFIG_KEYS)
        if unknown:
            logger.info("server.mqtt: ignoring %s", ", ".join(map(str, unknown)))
        return cls(node=node, **{k: v for k, v in opts.items() if k in _CONFIG_KEYS})

    @property
    def where(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    def wire_topic(self, topic: tuple[str, ...]) -> str:
        t = "/".join(topic)
        if not t or "+" in t or "#" in t or "\0" in t:
            raise ValueError(f"not a topic one can publish to: {t!r}")
        return t

    def wire_filter(self, pattern: tuple[str, ...]) -> str:
        key = "/".join(pattern)
        if not key:
            raise ValueError("empty topic filter")
        try:
            Pattern(key)
        except InvalidPattern as exc:
            raise ValueError(f"bad topic filter {key!r}: {exc}") from None
        return key

    async def _connect(self) -> MQTTLink:
        stream = await self._open_stream()
        return await MQTTLink.open(
            stream,
            self._fanout,
            client_id=self.client_id,
            username=self.username,
            password=self.password,
            keep_alive=self.keep_alive,
        )

    async def _open_stream(self) -> ByteStream:
        kw: dict[str, Any] = {}
        if self.tls:
            kw["ssl_context"] = ssl.create_default_context(cafile=self.cafile)
            kw["tls_hostname"] = self.host
        try:
            return await anyio.connect_tcp(self.host, self.port, **kw)
        except OSError:
            if not self.host_broker or self.hosting or self._tg is None:
                raise
        from .broker import EmbeddedBroker  # only needed by the hosting server

        broker = EmbeddedBroker(bind_address=(self.host, self.port))
        try:
            await self._tg.start(broker.serve)
        except OSError as exc:  # somebody else was quicker
            logger.info("not hosting a broker at %s: %s", self.where, exc)
        else:
            self.hosting = broker
            logger.warning("no broker at %s: hosting an embedded one there", self.where)
        return await anyio.connect_tcp(self.host, self.port, **kw)

    async def _closing(self, link: Link) -> None:
        broker = self.hosting
        if not broker:
            return
        # Our broker dies with us: let it pass on what we sent. It handles a
        # connection's packets in order, so once it has dropped our session
        # after our DISCONNECT, everything before it has been forwarded.
        await link.aclose()
        while self.client_id in broker._client_sessions:  # noqa: ASYNC110  (no event for it)
            await anyio.sleep(0.01)


def _unquote(s: str | None) -> str | None:
    return None if s is None else unquote(s)
