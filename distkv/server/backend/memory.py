"""An in-process broadcast medium (``server.backend: memory``), with fault injection.

A :class:`MemoryBus` connects any number of :class:`MemoryBackend` objects of
one event loop; every backend receives what any of them (itself included, as
with MQTT) publishes on a topic it subscribed to, except that subscriptions
made with ``echo=False`` don't get their own backend's messages (messages
held and released later do reach them). Filters follow MQTT (``+``
one element, ``#`` the rest). Servers built from a config share the bus named
by ``server.memory.bus`` (:func:`get_bus`); tests may also hand a bus object
in directly.

For tests the bus misbehaves on request, deterministically:

* ``partition(["a", "b"], ["c"])`` — messages only reach backends (by node
  name) of the sender's group; nodes not named form one more group;
  ``heal()`` ends it. Reachability is checked when a message is delivered.
* ``drop_rate`` / ``duplicate_rate`` (drawn from ``bus.rng``, seedable) and
  ``drop_if(delivery)`` decide per message and receiver.
* ``hold()`` keeps messages in ``bus.held`` instead of delivering them;
  ``release(order=…)`` or ``release(shuffle=True)`` delivers them later,
  delayed and reordered.

Subscriptions have bounded queues (see :mod:`.topic`): ``publish`` waits a
little for a full subscriber, then it loses messages, as with a QoS 0 broker;
messages delivered by ``release()`` are dropped at once if there is no room.
Delivery is immediate, so ``flush()`` has nothing to wait for.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import NamedTuple

from .base import Backend, Topic
from .topic import QUEUE_LEN, Fanout, Message, make_topic, topic_matches

__all__ = ["Delivery", "MemoryBackend", "MemoryBus", "get_bus", "topic_matches"]

_buses: dict[str, MemoryBus] = {}


def get_bus(name: str = "default") -> MemoryBus:
    """The process-wide bus of that name (created on first use)."""
    bus = _buses.get(name)
    if bus is None:
        bus = _buses[name] = MemoryBus(name)
    return bus


class Delivery(NamedTuple):
    """A message on its way from one backend to another."""

    sender: str
    receiver: str
    topic: tuple[str, ...]
    payload: bytes


class BusStats:
    """What happened on a bus so far."""

    __slots__ = ("sent", "delivered", "dropped", "duplicated", "cut")

    def __init__(self) -> None:
        self.sent = 0  # publish calls
        self.delivered = 0  # messages handed to a receiving backend
        self.dropped = 0  # by drop_rate / drop_if / discard_held
        self.duplicated = 0
        self.cut = 0  # not delivered because of a partition


class MemoryBus:
    """A set of in-process backends that hear each other (see the module docstring)."""

    def __init__(self, name: str = "", *, seed: int | None = None):
        self.name = name
        self.members: list[MemoryBackend] = []
        self.rng = random.Random(seed)
        self.drop_rate = 0.0
        self.duplicate_rate = 0.0
        self.drop_if: Callable[[Delivery], bool] | None = None
        self.held: list[Delivery] = []
        self.holding = False
        self.stats = BusStats()
        self._groups: dict[str, int] | None = None

    def __repr__(self) -> str:
        return f"<MemoryBus {self.name!r} members={[m.node for m in self.members]}>"

    # --- test controls ----------------------------------------------------------------

    def partition(self, *groups: Iterable[str]) -> None:
        """Split the bus: only nodes of one group hear each other."""
        self._groups = {node: i for i, group in enumerate(groups) for node in group}

    def heal(self) -> None:
        """End a partition."""
        self._groups = None

    def can_reach(self, sender: str, receiver: str) -> bool:
        groups = self._groups
        if groups is None:
            return True
        return groups.get(sender, -1) == groups.get(receiver, -1)

    def hold(self, on: bool = True) -> None:
        """Start (or stop) keeping new messages in :attr:`held`."""
        self.holding = on

    def release(self, order: Sequence[int] | None = None, *, shuffle: bool = False) -> int:
        """Deliver held messages: those at the indices in ``order`` (in that order), or all.

        ``shuffle`` delivers all of them in an order drawn from :attr:`rng`.
        Returns how many were delivered.
        """
        held = self.held
        if order is None:
            batch = held[:]
            if shuffle:
                self.rng.shuffle(batch)
            held.clear()
        else:
            batch = [held[i] for i in order]
            chosen = set(order)
            self.held = [d for i, d in enumerate(held) if i not in chosen]
        for d in batch:
            for sub, _ in self._deliver(d) or ():
                sub.dropped += 1  # no waiting here; tests call this synchronously
        return len(batch)

    def discard_held(self) -> int:
        """Lose every held message."""
        n = len(self.held)
        self.held.clear()
        self.stats.dropped += n
        return n

    # --- the medium -------------------------------------------------------------------

    def _publish(self, origin: MemoryBackend, topic: tuple[str, ...], payload: bytes
                 ) -> list | None:
        """Send to every member; returns what did not fit (see :meth:`Fanout.deliver_key`)."""
        late = None
        stats = self.stats
        stats.sent += 1
        faulty = self.drop_rate or self.duplicate_rate or self.drop_if is not None
        sender = origin.node
        for member in self.members:
            d = Delivery(sender, member.node, topic, payload)
            copies = 1
            if faulty:
                if (self.drop_rate and self.rng.random() < self.drop_rate) or (
                    self.drop_if is not None and self.drop_if(d)
                ):
                    stats.dropped += 1
                    continue
                if self.duplicate_rate and self.rng.random() < self.duplicate_rate:
                    stats.duplicated += 1
                    copies = 2
            for _ in range(copies):
                if self.holding:
                    self.held.append(d)
                elif more := self._deliver(d, member, member is origin):
                    late = (late or []) + more
        return late

    def _deliver(self, d: Delivery, member: MemoryBackend | None = None, own: bool = False
                 ) -> list | None:
        if not self.can_reach(d.sender, d.receiver):
            self.stats.cut += 1
            return None
        targets = [member] if member is not None else [
            m for m in self.members if m.node == d.receiver
        ]
        late = None
        for m in targets:
            self.stats.delivered += 1
            msg = Message(d.topic, d.payload)
            if more := m._fanout.deliver_matching(msg, own):
                late = (late or []) + [(sub, msg) for sub in more]
        return late


class MemoryBackend(Backend):
    """One node's attachment to a :class:`MemoryBus`.

    ``bus`` is a bus object or the name of a process-wide one; ``node`` names
    this attachment for partitions and :class:`Delivery` records.
    """

    name = "memory"
    connected = True

    def __init__(self, bus: MemoryBus | str = "default", node: str = "", *,
                 queue_len: int = QUEUE_LEN):
        self.bus = get_bus(bus) if isinstance(bus, str) else bus
        self.node = node
        self._fanout = Fanout(queue_len)
        self._closed = False
        self.bus.members.append(self)

    def __repr__(self) -> str:
        return f"<MemoryBackend {self.node!r} on {self.bus.name!r}>"

    async def __aenter__(self) -> MemoryBackend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def publish(self, topic: Topic, payload: bytes) -> None:
        if not self._closed:
            late = self.bus._publish(self, make_topic(topic), payload)
            if late:
                for sub, msg in late:
                    await sub.put_slow(msg)

    def publish_nowait(self, topic: Topic, payload: bytes) -> bool:
        """Deliver at once; subscribers without room lose the message (counted)."""
        if not self._closed:
            for sub, _ in self.bus._publish(self, make_topic(topic), payload) or ():
                sub.dropped += 1
        return True

    @asynccontextmanager
    async def subscribe(
        self, topic: Topic, *, echo: bool = True
    ) -> AsyncIterator[AsyncIterator[Message]]:
        pattern = make_topic(topic)
        sub, _ = self._fanout.add(pattern, pattern, echo)
        try:
            yield sub.recv
        finally:
            self._fanout.remove(sub)

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self.bus.members.remove(self)
            self._fanout.close()
