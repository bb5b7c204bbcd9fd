"""Topics, filters and the subscriber table shared by the broadcast backends.

A topic is a tuple of strings; a filter may contain the MQTT wildcards ``+``
(exactly one element) and ``#`` (the rest, as last element). :class:`Fanout`
hands each received message to the matching subscriptions, each of which has
a bounded queue of :data:`QUEUE_LEN` messages. When a queue is full the
receiving side waits up to :data:`SLOW_GRACE` seconds for room (a burst is
absorbed without loss, the medium feels backpressure); a subscriber that is
still stuck after that loses messages (counted in
:attr:`Subscription.dropped`, logged once) without further waiting, until it
has emptied its queue — so one stalled subscriber costs the others at most
one grace period, and nothing grows without bound.

The wire form of topics (``/``-joined for MQTT, ``.``-joined for Serf) is the
backends' business, not this module's.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

__all__ = [
    "QUEUE_LEN",
    "SLOW_GRACE",
    "Fanout",
    "Message",
    "Subscription",
    "has_wildcard",
    "make_topic",
    "topic_matches",
]

logger = logging.getLogger(__name__)

QUEUE_LEN = 1000
SLOW_GRACE = 1.0


class Message(NamedTuple):
    """One received message: the topic it was published on and its payload."""

    topic: tuple[str, ...]
    payload: bytes


def make_topic(topic: Iterable[object]) -> tuple[str, ...]:
    """A topic as a tuple of strings (elements are ``str()``-ed)."""
    return tuple(x if x.__class__ is str else str(x) for x in topic)


def has_wildcard(pattern: Sequence[str]) -> bool:
    """Whether a filter contains ``+`` or ``#``."""
    return "+" in pattern or "#" in pattern


def topic_matches(pattern: Sequence[str], topic: Sequence[str]) -> bool:
    """MQTT-style filter match (``+`` one element, ``#`` all the rest)."""
    for i, p in enumerate(pattern):
        if p == "#":
            return True
        if i >= len(topic) or (p != "+" and p != topic[i]):
            return False
    return len(pattern) == len(topic)


class Subscription:
    """One ``subscribe()`` context: a filter and the bounded queue behind it."""

    __slots__ = ("pattern", "key", "echo", "dropped", "_send", "recv", "_overflowing")

    pattern: tuple[str, ...]

    def __init__(self, pattern: tuple[str, ...], key: object, queue_len: int, echo: bool = True):
        self.pattern = pattern
        self.key = key  # what the backend subscribed on the wire for this filter
        self.echo = echo  # False: the subscriber has no use for its own backend's messages
        self.dropped = 0
        self._overflowing = False
        self._send: MemoryObjectSendStream[Message]
        self.recv: MemoryObjectReceiveStream[Message]
        self._send, self.recv = anyio.create_memory_object_stream[Message](queue_len)

    def put(self, msg: Message) -> bool:
        """Queue a message without waiting; False if the caller should :meth:`put_slow` it."""
        try:
            self._send.send_nowait(msg)
        except anyio.WouldBlock:
            if not self._overflowing:
                return False
            self.dropped += 1
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass
        else:
            if self._overflowing and self._send.statistics().current_buffer_used <= 1:
                self._overflowing = False  # caught up completely: it gets grace again
        return True

    async def put_slow(self, msg: Message, grace: float = SLOW_GRACE) -> None:
        """Wait up to ``grace`` seconds for room; then drop, and keep dropping for a while."""
        with anyio.move_on_after(grace):
            try:
                await self._send.send(msg)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                pass
            return
        self.dropped += 1
        self._overflowing = True
        logger.warning(
            "subscriber to %s is stuck: dropping messages until it catches up",
            "/".join(self.pattern),
        )

    def close(self) -> None:
        self._send.close()
        self.recv.close()


class Fanout:
    """The subscriptions of one backend, grouped by wire key.

    ``add`` returns True when the key is new (the backend must subscribe on
    the wire), ``remove`` returns True when its last user left.
    :meth:`wants_echo` says whether the medium must return our own messages
    on a key (False only if every subscriber there declined them).
    """

    __slots__ = ("by_key", "queue_len")

    def __init__(self, queue_len: int = QUEUE_LEN):
        self.by_key: dict[object, list[Subscription]] = {}
        self.queue_len = queue_len

    def add(
        self, pattern: tuple[str, ...], key: object, echo: bool = True
    ) -> tuple[Subscription, bool]:
        sub = Subscription(pattern, key, self.queue_len, echo)
        subs = self.by_key.get(key)
        if subs is None:
            self.by_key[key] = [sub]
            return sub, True
        subs.append(sub)
        return sub, False

    def remove(self, sub: Subscription) -> bool:
        sub.close()
        subs = self.by_key.get(sub.key)
        if subs is None:
            return False
        subs.remove(sub)
        if subs:
            return False
        del self.by_key[sub.key]
        return True

    def wants_echo(self, key: object) -> bool:
        """Whether some subscriber under ``key`` wants our own messages too."""
        return any(sub.echo for sub in self.by_key.get(key, ()))

    def deliver_key(self, key: object, msg: Message) -> list[Subscription] | None:
        """Hand ``msg`` to everyone subscribed under ``key``.

        Returns the subscriptions that are full (to :meth:`Subscription.put_slow`
        the message to), or None.
        """
        late = None
        for sub in self.by_key.get(key, ()):
            if not sub.put(msg):
                if late is None:
                    late = [sub]
                else:
                    late.append(sub)
        return late

    def deliver_matching(self, msg: Message, own: bool = False) -> list[Subscription] | None:
        """Like :meth:`deliver_key`, for every subscription whose filter matches.

        ``own``: the message is our own, skipped by subscribers that declined echoes.
        """
        late = None
        topic = msg.topic
        for subs in self.by_key.values():
            if topic_matches(subs[0].pattern, topic):
                for sub in subs:
                    if own and not sub.echo:
                        continue
                    if not sub.put(msg):
                        if late is None:
                            late = [sub]
                        else:
                            late.append(sub)
        return late

    def close(self) -> None:
        for subs in self.by_key.values():
            for sub in subs:
                sub.close()
        self.by_key.clear()
