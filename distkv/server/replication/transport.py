"""asyncactor's transport over a distkv backend, with a guard against bad messages.

Actor messages are plain msgpack maps (no ext types, no ``_p0`` splitting;
05a §1) on one backend topic. asyncactor turns a malformed message into an
exception that ends the actor, so :class:`ActorTransport` checks every
received message first and drops (and logs) what the actor could not digest:
non-maps, unknown types, a missing sender, parameters that fail asyncactor's
own checks, values the actor could not compare with ours, and a second
``init`` under our own name (another server with the same name, or a
duplicated message) — asyncactor would stop with a collision error.

``on_message(msg)`` (optional) sees every accepted message before the actor
does; the server uses it to learn peers' ticks and tocks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import msgpack
from asyncactor.abc import MonitorStream, Transport
from asyncactor.messages import Message

from distkv.server.backend import Backend

__all__ = ["ActorTransport", "check_actor_message", "pair_or_none"]

logger = logging.getLogger(__name__)

_TYPES = frozenset({"init", "vers", "ping", "hist"})


def pair_or_none(value: Any) -> bool:
    """Is ``value`` None or a pair of ints (what the server actors use as values)?"""
    if value is None:
        return True
    return (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    )


def check_actor_message(msg: Any, value_ok: Callable[[Any], bool] = pair_or_none) -> str | None:
    """Why asyncactor can't take ``msg`` (None: it can)."""
    if not isinstance(msg, dict):
        return "not a map"
    t = msg.get("t")
    if t not in _TYPES:
        return f"unknown type {t!r:.20}"
    if t == "hist":
        hist = msg.get("history")
        if not hist or not isinstance(hist, (tuple, list)):
            return "hist without history"
    elif not isinstance(msg.get("node"), str) or not msg["node"]:
        return "no sender"
    if "history" in msg:
        hist = msg["history"]
        if not isinstance(hist, (tuple, list)) or not all(isinstance(h, str) for h in hist):
            return "bad history"
    if "value" in msg and not value_ok(msg["value"]):
        return f"unusable value {msg['value']!r:.40}"
    try:
        Message.read(dict(msg))  # asyncactor's own checks (parameters, fields)
    except Exception as exc:
        return f"refused by asyncactor: {exc!r:.80}"
    return None


class ActorTransport(Transport):
    """One actor topic on a :class:`Backend`."""

    def __init__(
        self,
        backend: Backend,
        topic: tuple,
        node: str,
        *,
        on_message: Callable[[dict], Any] | None = None,
        value_ok: Callable[[Any], bool] = pair_or_none,
    ):
        self.backend = backend
        self.topic = tuple(topic)  # asyncactor names its logger after topic[-1]
        self.node = node
        self.on_message = on_message
        self.value_ok = value_ok
        self.dropped = 0

    def monitor(self) -> _Monitor:
        return _Monitor(self)

    async def send(self, payload: Any) -> None:
        await self.backend.publish(self.topic, msgpack.packb(payload, use_bin_type=True))

    def __repr__(self) -> str:
        return f"<ActorTransport {'/'.join(map(str, self.topic))}>"


class _Monitor(MonitorStream):
    """The accepted messages of one topic, for one actor instance."""

    def __init__(self, transport: ActorTransport):
        super().__init__(transport)
        self._cm: Any = None
        self._it: Any = None
        self._own_init = False

    async def __aenter__(self) -> _Monitor:
        t = self.transport
        self._cm = t.backend.subscribe(t.topic)
        self._it = (await self._cm.__aenter__()).__aiter__()
        return self

    async def __aexit__(self, *exc: object) -> bool | None:
        return await self._cm.__aexit__(*exc)

    async def __anext__(self) -> dict:
        t: ActorTransport = self.transport  # type: ignore[assignment]
        while True:
            _topic, payload = await self._it.__anext__()
            try:
                msg = msgpack.unpackb(payload, raw=False, use_list=False, strict_map_key=False)
            except Exception:
                msg = None
            why = check_actor_message(msg, t.value_ok)
            if why is None and msg["t"] == "init" and msg["node"] == t.node:
                if self._own_init:
                    why = "our own name in a second 'init': is another server using it?"
                self._own_init = True
            if why is not None:
                t.dropped += 1
                level = logging.WARNING if t.dropped == 1 or t.dropped % 100 == 0 else logging.DEBUG
                logger.log(level, "%s: message dropped (%s): %r", t, why, _short(payload))
                continue
            if t.on_message is not None:
                try:
                    t.on_message(msg)
                except Exception:
                    logger.exception("%s: handling %r failed", t, msg)
            return msg


def _short(payload: bytes) -> str:
    return payload[:60].hex() + ("…" if len(payload) > 60 else "")
