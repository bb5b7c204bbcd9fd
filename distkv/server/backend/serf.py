"""The Serf backend (``server.backend: serf``): user events through a local serf agent.

Mapping (05 §1): topic elements are joined with ``.`` into a user event name;
``publish`` sends ``event(name, payload, coalesce=False)``; a subscription is
an RPC ``stream`` of ``user:<name>`` events (a filter with ``+``/``#`` streams
all user events and keeps the matching ones); received names are split at
``.``. The agent delivers our own events to us too.

The agent's RPC protocol is msgpack over TCP: every request is a header map
``{Command, Seq}`` plus, for most commands, a body map; every answer is a
header ``{Seq, Error}`` plus a body for some commands, and a stream sends a
header + event body per event. :class:`SerfLink` speaks it (handshake, auth,
event, stream, stop, stats as keep-alive probe); events are pipelined — an
error the agent reports for one is logged, not raised. Serf refuses events
that exceed ``max_event`` bytes once encoded (its
``user_event_size_limit``, default 512; the encoding adds up to
:data:`EVENT_OVERHEAD` bytes to name plus payload), so
:meth:`SerfBackend.publish` refuses those itself, at once. Connection keeping comes from
:class:`~.link.LinkBackend`.

Configuration (``server.serf``): ``host``, ``port``, ``auth`` (the RPC auth
key), ``max_event``, ``keep_alive``, ``connect_timeout``, ``retry_min``,
``retry_max``, ``queue_len``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import anyio
import msgpack
from anyio.abc import ByteStream

from .base import Topic
from .link import (
    BackendError,
    Link,
    LinkBackend,
    LinkDown,
    Reply,
)
from .topic import Fanout, Message, has_wildcard, make_topic, topic_matches

__all__ = ["EVENT_OVERHEAD", "MAX_EVENT", "SerfBackend", "SerfLink"]

logger = logging.getLogger(__name__)

MAX_EVENT = 512
EVENT_OVERHEAD = 40  # serf's encoding of a user event: type, map, LTime (<= 9 bytes), headers
_CONFIG_KEYS = frozenset({
    "host", "port", "auth", "max_event", "keep_alive", "connect_timeout", "retry_min",
    "retry_max", "queue_len",
})
_IGNORE = object()  # the body that follows belongs to nobody (a probe answer, a stopped stream)


def _is_header(obj: object) -> bool:
    return obj.__class__ is dict and len(obj) == 2 and "Seq" in obj and "Error" in obj


class SerfLink(Link):
    """One RPC connection to a serf agent."""

    def __init__(self, stream: ByteStream, unpacker: msgpack.Unpacker, fanout: Fanout,
                 keep_alive: float, seq: int):
        super().__init__(fanout, keep_alive)
        self.stream = stream
        self._unpacker = unpacker
        self._pack = msgpack.Packer(use_bin_type=True).pack
        self._out = bytearray()
        self._seq = seq
        self._probes: set[int] = set()
        self._streams: dict[int, tuple[str, tuple[str, ...] | None]] = {}  # seq -> key, filter
        self._seq_of: dict[str, int] = {}
        self._body_for: object = None
        self.errors = 0  # events the agent refused

    @classmethod
    async def open(cls, stream: ByteStream, fanout: Fanout, *, auth: str | None,
                   keep_alive: float) -> SerfLink:
        """Handshake (and authenticate) on ``stream`` (closed on failure)."""
        unpacker = msgpack.Unpacker(raw=False)
        pack = msgpack.Packer(use_bin_type=True).pack
        try:
            await stream.send(pack({"Command": "handshake", "Seq": 0}) + pack({"Version": 1}))
            await _expect_ok(stream, unpacker, 0, "handshake")
            seq = 1
            if auth:
                await stream.send(pack({"Command": "auth", "Seq": 1}) + pack({"AuthKey": auth}))
                await _expect_ok(stream, unpacker, 1, "auth")
                seq = 2
            return cls(stream, unpacker, fanout, keep_alive, seq)
        except BaseException:
            await anyio.aclose_forcefully(stream)
            raise

    def _request(self, command: str, body: dict | None = None) -> int:
        self._seq = seq = self._seq + 1
        out = self._out
        out += self._pack({"Command": command, "Seq": seq})
        if body is not None:
            out += self._pack(body)
        return seq

    # --- Link ------------------------------------------------------------------------

    def send(self, wire_topic: str, payload: bytes) -> None:
        self._seq = seq = self._seq + 1
        out = self._out
        out += self._pack({"Command": "event", "Seq": seq})
        out += self._pack({"Name": wire_topic, "Payload": payload, "Coalesce": False})
        self.backlog += len(payload) + len(wire_topic) + 60

    async def subscribe(self, key: str) -> None:
        pattern = None
        if key.startswith("user:"):
            kind = key
        else:  # "match:<filter>": all user events, filtered here
            kind = "user"
            pattern = tuple(key[6:].split("."))
        seq = self._request("stream", {"Type": kind})
        self._streams[seq] = (key, pattern)
        self._seq_of[key] = seq
        self.replies[seq] = reply = Reply()
        self.kick()
        try:
            await reply.wait()
        except BackendError:
            self._forget(key)
            raise

    def unsubscribe(self, key: str) -> None:
        seq = self._forget(key)
        if seq is not None:
            self._request("stop", {"Stop": seq})

    def _forget(self, key: str) -> int | None:
        seq = self._seq_of.pop(key, None)
        if seq is not None:
            self._streams.pop(seq, None)
        return seq

    def take_outbound(self) -> bytearray:
        out, self._out = self._out, bytearray()
        return out

    async def _write(self, data: bytes | bytearray) -> None:
        await self.stream.send(data)

    def _probe(self) -> None:
        self._probes.add(self._request("stats"))

    async def _read(self) -> None:
        unpacker = self._unpacker
        async for chunk in self.stream:
            self._rx += 1
            unpacker.feed(chunk)
            for obj in unpacker:
                if _is_header(obj):
                    await self._header(obj)
                else:
                    await self._body(obj)

    async def _header(self, hdr: dict) -> None:
        seq = hdr["Seq"]
        error = hdr["Error"]
        self._body_for = None
        reply = self.replies.pop(seq, None)
        if reply is not None:  # a stream was (or was not) started
            if error:
                reply.fail(BackendError(f"serf: {error}"))
            else:
                reply.set(None)
        elif seq in self._streams:
            self._body_for = seq
        elif seq in self._probes:
            self._probes.discard(seq)
            self._body_for = _IGNORE
        elif error:  # an event (or a stop) the agent refused
            self.errors += 1
            logger.warning("serf agent refused a request: %s", error)

    async def _body(self, body: Any) -> None:
        seq = self._body_for
        self._body_for = None
        stream = self._streams.get(seq)  # type: ignore[arg-type]
        if stream is None or not isinstance(body, dict):
            return
        key, pattern = stream
        name = body.get("Name", "")
        payload = body.get("Payload", b"")
        if payload.__class__ is not bytes:
            payload = payload.encode() if isinstance(payload, str) else bytes(payload or b"")
        topic = tuple(name.split("."))
        if pattern is not None and not topic_matches(pattern, topic):
            return
        msg = Message(topic, payload)
        if late := self.fanout.deliver_key(key, msg):
            for sub in late:
                await sub.put_slow(msg)

    async def aclose(self) -> None:
        with anyio.move_on_after(1, shield=True):
            await self.stream.aclose()


async def _expect_ok(stream: ByteStream, unpacker: msgpack.Unpacker, seq: int, what: str) -> None:
    while True:
        for obj in unpacker:
            if not _is_header(obj) or obj["Seq"] != seq:
                raise LinkDown(f"unexpected answer to serf {what}: {obj!r:.100}")
            if obj["Error"]:
                raise BackendError(f"serf {what} failed: {obj['Error']}")
            return
        try:
            unpacker.feed(await stream.receive())
        except anyio.EndOfStream:
            raise LinkDown(f"the serf agent closed the connection during {what}") from None


class SerfBackend(LinkBackend):
    """Publish/subscribe through a serf agent's user events, reconnecting as needed."""

    name = "serf"

    def __init__(
        self,
        host: str = "localhost",
        port: int = 7373,
        *,
        auth: str | None = None,
        max_event: int = MAX_EVENT,
        **link: Any,
    ):
        """``link``: the connection options of :class:`LinkBackend`."""
        super().__init__(**link)
        self.host = host
        self.port = int(port)
        self.auth = auth
        self.max_event = max_event

    @classmethod
    def from_config(cls, opts: Mapping[str, Any]) -> SerfBackend:
        """Build from ``server.serf``; keys we do not know are ignored (and logged)."""
        unknown = sorted(set(opts) - _CONFIG_KEYS)
        if unknown:
            logger.info("server.serf: ignoring %s", ", ".join(map(str, unknown)))
        return cls(**{k: v for k, v in opts.items() if k in _CONFIG_KEYS})

    @property
    def where(self) -> str:
        return f"serf://{self.host}:{self.port}"

    @property
    def refused(self) -> int:
        """Events the agent refused on the current connection."""
        link = self._link
        return link.errors if isinstance(link, SerfLink) else 0

    def wire_topic(self, topic: tuple[str, ...]) -> str:
        name = ".".join(topic)
        if not name or "+" in topic or "#" in topic:
            raise ValueError(f"not an event name one can send: {name!r}")
        return name

    def wire_filter(self, pattern: tuple[str, ...]) -> str:
        if not pattern:
            raise ValueError("empty topic filter")
        if "#" in pattern[:-1]:
            raise ValueError(f"bad topic filter {'.'.join(pattern)!r}: '#' must come last")
        name = ".".join(pattern)
        return ("match:" if has_wildcard(pattern) else "user:") + name

    async def publish(self, topic: Topic, payload: bytes) -> None:
        """Send a user event; refuses one that the agent would refuse for its size."""
        topic = make_topic(topic)
        self._check_size(topic, payload)
        await super().publish(topic, payload)

    def publish_nowait(self, topic: Topic, payload: bytes) -> bool:
        topic = make_topic(topic)
        self._check_size(topic, payload)
        return super().publish_nowait(topic, payload)

    def _check_size(self, topic: tuple[str, ...], payload: bytes) -> None:
        size = sum(len(x.encode()) for x in topic) + len(topic) - 1 + len(payload)
        if size > self.max_event - EVENT_OVERHEAD:
            raise BackendError(
                f"serf user event too big: {size} bytes (name + payload), "
                f"at most {self.max_event - EVENT_OVERHEAD} fit"
            )

    async def _connect(self) -> SerfLink:
        stream = await anyio.connect_tcp(self.host, self.port)
        return await SerfLink.open(stream, self._fanout, auth=self.auth,
                                   keep_alive=self.keep_alive)
