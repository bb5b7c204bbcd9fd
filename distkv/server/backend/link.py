"""A backend that keeps its connection to an external broker or agent alive.

:class:`LinkBackend` is the shared shell of the MQTT and Serf backends; the
medium-specific part is a :class:`Link` (one connection). The rules, which
fix upstream's known issues 48 and 49 (a lost or stalled broker connection
silently ended replication):

* The backend runs as an async context manager. It connects in the
  background and, whenever the connection closes, fails or stalls (no answer
  to a keep-alive probe within ``keep_alive`` seconds), connects again with
  exponential back-off (``retry_min`` … ``retry_max`` seconds).
* After every (re)connection it subscribes all live subscriptions again
  before anything else is sent; subscribers' iterators simply go on.
* ``publish`` never blocks on a dead broker (``publish_nowait`` never
  blocks at all: it says when it would have to). While disconnected, messages go
  to a queue of ``queue_len`` messages that is sent, in order, after the next
  connection is up; when it is full the *oldest* queued message is dropped
  (newer updates supersede older ones) and counted in :attr:`lost`.
  While connected, ``publish`` only waits if the outgoing buffer holds more
  than :data:`HIGH_WATER` bytes (backpressure from a slow broker).
* Published messages are buffered and written by a writer task, many at a
  time. ``flush`` waits until what was published so far has been written;
  ``push`` writes it at once, without waiting, where the connection allows
  that (a plain TCP stream on asyncio whose transport is not backed up).
* Received messages go to bounded per-subscription queues (see :mod:`.topic`).
* The state is visible: :attr:`connected`, :attr:`state` (``new``,
  ``connecting``, ``connected``, ``disconnected``, ``closed``),
  :attr:`connects`, :attr:`lost`, :attr:`last_error`, :meth:`status`;
  :meth:`changed` gives an event that fires at the next change of state,
  :meth:`wait_connected` waits for a connection. Whatever others published
  while we were away is gone (QoS 0): a server should take a reconnect
  (``connects`` going up) as a reason to ask its peers what it missed.
"""

from __future__ import annotations

import asyncio
import logging
import random
from abc import abstractmethod
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from anyio.abc import TaskGroup

from distkv.exceptions import ServerError

from .base import Backend, Topic
from .topic import QUEUE_LEN, Fanout, Message, make_topic

__all__ = [
    "HIGH_WATER",
    "OFFLINE_QUEUE",
    "BackendError",
    "Link",
    "LinkBackend",
    "LinkDown",
    "Reply",
]

logger = logging.getLogger(__name__)

OFFLINE_QUEUE = 10000
HIGH_WATER = 1024 * 1024
RETRY_MIN = 0.2
RETRY_MAX = 10.0
KEEP_ALIVE = 10.0
CONNECT_TIMEOUT = 5.0
WIRE_CACHE = 256  # topics whose wire names are remembered


class BackendError(ServerError):
    """The broker or agent refused something (a subscription, an oversized event, …)."""


class LinkDown(Exception):
    """The current connection is unusable (lost, stalled, refused)."""


class Reply:
    """The awaited answer to one request on a link."""

    __slots__ = ("event", "value", "error")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.value: object = None
        self.error: BaseException | None = None

    def set(self, value: object) -> None:
        self.value = value
        self.event.set()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.event.set()

    async def wait(self) -> object:
        await self.event.wait()
        if self.error is not None:
            raise self.error
        return self.value


class Link:
    """One connection to the medium; subclasses fill in the protocol.

    ``send`` buffers a message without waiting (a writer task sends it);
    ``backlog`` is the number of buffered bytes. ``run`` serves the connection
    until it fails and then returns, with the reason in :attr:`error`.
    """

    #: The asyncio transport under the stream, if there is one: :meth:`push` writes to it.
    transport: asyncio.Transport | None = None

    def __init__(self, fanout: Fanout, keep_alive: float):
        self.fanout = fanout
        self.keep_alive = keep_alive
        self.error: BaseException | None = None
        self.backlog = 0
        self.dead = anyio.Event()
        self._wake = anyio.Event()
        self._drained: anyio.Event | None = None
        self._flushed: anyio.Event | None = None
        self._writing = False  # a write to the medium is under way
        self._rekick = False  # the writer was woken while flush() was writing
        self._rx = 0  # bumped by the reader for every chunk received
        self.replies: dict[int, Reply] = {}  # open requests, failed when the link dies

    # --- what subclasses provide ----------------------------------------------------------

    @abstractmethod
    def send(self, wire_topic: str, payload: bytes) -> None:
        """Buffer one message (the caller wakes the writer via :meth:`kick`)."""

    @abstractmethod
    async def subscribe(self, key: str) -> None:
        """Subscribe ``key`` on the wire and wait until the medium confirmed it."""

    @abstractmethod
    def unsubscribe(self, key: str) -> None:
        """Drop the wire subscription ``key`` (no need to wait)."""

    @abstractmethod
    def take_outbound(self) -> bytes | bytearray:
        """Everything buffered for sending."""

    @abstractmethod
    async def _read(self) -> None:
        """Read and dispatch incoming data until the stream ends."""

    @abstractmethod
    async def _write(self, data: bytes | bytearray) -> None:
        """Send bytes to the medium."""

    @abstractmethod
    def _probe(self) -> None:
        """Buffer a keep-alive probe that the medium answers."""

    @abstractmethod
    async def aclose(self) -> None:
        """Close the stream (politely if possible)."""

    # --- the shell --------------------------------------------------------------------------

    def kick(self) -> None:
        """Tell the writer there is something to send."""
        self._wake.set()

    async def drained(self) -> None:
        """Wait until the backlog is below the high-water mark or the link died."""
        while self.backlog > HIGH_WATER and not self.dead.is_set():
            if self._drained is None:
                self._drained = anyio.Event()
            await self._drained.wait()

    async def flush(self) -> None:
        """Wait until everything buffered so far has been written (or the link died).

        If the writer is idle, the caller writes it itself (no task switch to
        the writer and back).
        """
        if self.dead.is_set():
            return
        if not self._writing:
            await self._write_out()
            return
        if self._flushed is None:
            self._flushed = anyio.Event()
        flushed = self._flushed
        self.kick()
        await flushed.wait()

    def push(self) -> bool:
        """Write what is buffered now, without waiting; False if that can't be done.

        It can't while the writer is busy (it may not have written its part
        yet), when there is no :attr:`transport`, or when the transport holds
        more than :data:`HIGH_WATER` unsent bytes (then the writer's waiting
        is the backpressure).
        """
        tr = self.transport
        if tr is None or self._writing or self.dead.is_set() or tr.is_closing():
            return False
        if tr.get_write_buffer_size() > HIGH_WATER:
            return False
        data = self.take_outbound()
        self.backlog = 0
        if data:
            tr.write(data)
        if self._drained is not None:
            self._drained.set()
            self._drained = None
        return True

    async def _write_out(self) -> None:
        """Write what is buffered; then wake those who waited for it."""
        flushed, self._flushed = self._flushed, None  # asked for before this batch
        data = self.take_outbound()
        self.backlog = 0
        if data:
            self._writing = True
            try:
                await self._write(data)
            finally:
                self._writing = False
                if self._rekick:
                    self._rekick = False
                    self.kick()
        if self._drained is not None:
            self._drained.set()
            self._drained = None
        if flushed is not None:
            flushed.set()

    async def run(self) -> None:
        """Serve the connection until it fails; never raises (see :attr:`error`)."""
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._reader, tg)
                tg.start_soon(self._writer)
                if self.keep_alive:
                    tg.start_soon(self._watchdog)
        except BaseException as exc:
            if self.error is None:
                self.error = _unwrap(exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            self.dead.set()
            for ev in (self._drained, self._flushed):
                if ev is not None:
                    ev.set()
            down = LinkDown(_describe(self.error))
            for reply in self.replies.values():
                reply.fail(down)
            self.replies.clear()

    async def _reader(self, tg: TaskGroup) -> None:
        await self._read()
        if self.error is None:
            self.error = LinkDown("the connection was closed by the other side")
        tg.cancel_scope.cancel()

    async def _writer(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            if self._writing:  # a flush() is writing: it wakes us again when done
                self._rekick = True
                continue
            await self._write_out()

    async def _watchdog(self) -> None:
        """Probe every ``keep_alive`` seconds; a probe unanswered by the next one is a stall."""
        probed = False
        seen = self._rx
        while True:
            await anyio.sleep(self.keep_alive)
            if probed and self._rx == seen:
                raise LinkDown(f"no answer from the other side for {self.keep_alive}s")
            seen = self._rx
            self._probe()
            probed = True
            self.kick()


def _unwrap(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


class LinkBackend(Backend):
    """Publish/subscribe over a connection that is kept alive (see the module docstring)."""

    def __init__(
        self,
        *,
        keep_alive: float = KEEP_ALIVE,
        connect_timeout: float = CONNECT_TIMEOUT,
        retry_min: float = RETRY_MIN,
        retry_max: float = RETRY_MAX,
        queue_len: int = OFFLINE_QUEUE,
        sub_queue_len: int = QUEUE_LEN,
    ):
        self.keep_alive = keep_alive
        self.connect_timeout = connect_timeout
        self.retry_min = retry_min
        self.retry_max = retry_max
        self.state = "new"
        self.connects = 0
        self.lost = 0
        self.last_error: str | None = None
        self._link: Link | None = None
        self._offline: deque[tuple[str, bytes]] = deque(maxlen=queue_len)
        self._fanout = Fanout(sub_queue_len)
        self._wires: dict[tuple, str] = {}
        self._changed: anyio.Event | None = None  # made on demand: __init__ may run outside a loop
        self._tg: TaskGroup | None = None

    # --- what subclasses provide ----------------------------------------------------------

    @abstractmethod
    async def _connect(self) -> Link:
        """Open a new connection (including the protocol handshake)."""

    @abstractmethod
    def wire_topic(self, topic: tuple[str, ...]) -> str:
        """The medium's name for a topic (validated for publishing)."""

    @abstractmethod
    def wire_filter(self, pattern: tuple[str, ...]) -> str:
        """The medium's subscription key for a filter (validated)."""

    async def _closing(self, link: Link) -> None:  # noqa: B027  (most media need nothing)
        """Called when the backend is left while connected, after flushing ``link``."""

    @property
    @abstractmethod
    def where(self) -> str:
        """The broker or agent address, for messages."""

    # --- state --------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether a connection is up and all subscriptions are active."""
        return self._link is not None

    def changed(self) -> anyio.Event:
        """An event that is set at the next change of :attr:`state` (connect, disconnect …)."""
        if self._changed is None:
            self._changed = anyio.Event()
        return self._changed

    async def wait_connected(self) -> None:
        """Wait until :attr:`connected`."""
        while self._link is None:
            await self.changed().wait()

    def status(self) -> dict:
        """The connection state, for logs and ``get_state``-style reports."""
        return {
            "backend": self.name,
            "address": self.where,
            "state": self.state,
            "connects": self.connects,
            "queued": len(self._offline),
            "lost": self.lost,
            "dropped": sum(s.dropped for subs in self._fanout.by_key.values() for s in subs),
            "error": self.last_error,
        }

    def _set_state(self, state: str) -> None:
        if state == self.state:
            return
        self.state = state
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    # --- lifetime -----------------------------------------------------------------------

    async def __aenter__(self) -> LinkBackend:
        self._tg = tg = anyio.create_task_group()
        await tg.__aenter__()
        tg.start_soon(self._keep_connected)
        return self

    async def __aexit__(self, *exc: object) -> bool | None:
        tg, self._tg = self._tg, None
        if tg is None:
            return None
        link = self._link
        if link is not None:  # what was published before leaving still goes out
            with anyio.move_on_after(1, shield=True):
                await link.flush()
                await self._closing(link)
        tg.cancel_scope.cancel()
        try:
            return await tg.__aexit__(*exc)
        finally:
            self._fanout.close()
            self._set_state("closed")

    async def aclose(self) -> None:
        """Leave the context early (only from the task that entered it, in nesting order)."""
        if self._tg is not None:
            await self.__aexit__(None, None, None)

    async def _keep_connected(self) -> None:
        delay = self.retry_min
        announced = False  # an outage is logged as a warning once, then quietly
        while True:
            self._set_state("connecting")
            try:
                with anyio.fail_after(self.connect_timeout):
                    link = await self._connect()
            except Exception as exc:
                self._note_failure(f"cannot connect to {self.where}: {_describe(exc)}", announced)
                announced = True
                await anyio.sleep(delay * random.uniform(0.8, 1.0))
                delay = min(delay * 2, self.retry_max)
                continue
            try:
                await self._serve(link)
            except Exception as exc:  # a bug: log it, but keep the backend alive
                logger.exception("%s: the connection handler failed", self.where)
                link.error = link.error or exc
            finally:
                with anyio.CancelScope(shield=True):
                    await link.aclose()
                if self._link is link:
                    self._link = None
            if self.state == "connected":
                delay = self.retry_min
                announced = False
            self._note_failure(
                f"lost the connection to {self.where}: {_describe(link.error)}", announced
            )
            announced = True
            self._set_state("disconnected")
            await anyio.sleep(delay * random.uniform(0.8, 1.0))
            delay = min(delay * 2, self.retry_max)

    def _note_failure(self, text: str, announced: bool) -> None:
        self.last_error = text
        (logger.debug if announced else logger.warning)("%s", text)

    async def _serve(self, link: Link) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(link.run)
            try:
                with anyio.fail_after(self.connect_timeout):
                    done: set[str] = set()
                    while todo := [k for k in self._fanout.by_key if k not in done]:
                        for key in todo:
                            done.add(key)
                            try:
                                await link.subscribe(key)
                            except BackendError as exc:
                                logger.error("%s refused to subscribe %r: %s", self.where, key, exc)
                # no await from here until _link is set: nobody can slip in between
                offline = self._offline
                while offline:
                    link.send(*offline.popleft())
                link.kick()
                self._link = link
                self.connects += 1
                self.last_error = None
                self._set_state("connected")
                logger.info("connected to %s", self.where)
                await link.dead.wait()
            except (LinkDown, TimeoutError) as exc:
                link.error = link.error or exc
            finally:
                self._link = None
                tg.cancel_scope.cancel()

    # --- publish / subscribe ------------------------------------------------------------

    async def publish(self, topic: Topic, payload: bytes) -> None:
        """Send ``payload`` on ``topic`` (see the module docstring for the policy)."""
        link = self._link
        if link is not None and link.backlog > HIGH_WATER:
            await link.drained()
        self._send_or_queue(self._wire(topic), payload)

    def publish_nowait(self, topic: Topic, payload: bytes) -> bool:
        """:meth:`publish` if that needs no waiting now; False if the caller must await it."""
        link = self._link
        if link is not None and link.backlog > HIGH_WATER:
            return False
        self._send_or_queue(self._wire(topic), payload)
        return True

    def _wire(self, topic: Topic) -> str:
        """The wire name of a topic; those given as tuples of str are remembered (a few)."""
        if not isinstance(topic, tuple):
            return self.wire_topic(make_topic(topic))
        wires = self._wires
        try:
            return wires[topic]
        except KeyError:
            wire = self.wire_topic(make_topic(topic))
            # only all-str topics: (1,) and (True,) are equal keys with different names
            if all(e.__class__ is str for e in topic):
                if len(wires) >= WIRE_CACHE:
                    wires.clear()
                wires[topic] = wire
            return wire
        except TypeError:  # unhashable elements
            return self.wire_topic(make_topic(topic))

    def _send_or_queue(self, wire: str, payload: bytes) -> None:
        link = self._link
        if link is not None:
            try:
                link.send(wire, payload)
            except LinkDown:
                pass  # dying: queue it for the next connection
            else:
                link.kick()
                return
        offline = self._offline
        if len(offline) == offline.maxlen:
            self.lost += 1
            if self.lost == 1 or self.lost % 1000 == 0:
                logger.warning(
                    "%s unreachable: %d queued message(s) dropped so far", self.where, self.lost
                )
        offline.append((wire, payload))

    def push(self) -> bool:
        """Write what was published so far now, if the connection takes it without waiting."""
        link = self._link
        return link is not None and link.push()

    async def flush(self) -> None:
        """Wait until what was published so far is written to the connection.

        Returns at once while disconnected (the offline queue waits for the
        next connection) and when the connection dies meanwhile.
        """
        link = self._link
        if link is not None:
            await link.flush()

    @asynccontextmanager
    async def subscribe(
        self, topic: Topic, *, echo: bool = True
    ) -> AsyncIterator[AsyncIterator[Message]]:
        """Receive what is published on ``topic`` (a filter) while the context is open.

        A wire subscription made without echoes is made again (unsubscribed and
        subscribed) with them when a subscriber that wants them joins it.
        """
        pattern = make_topic(topic)
        key = self.wire_filter(pattern)
        fanout = self._fanout
        renew = echo and key in fanout.by_key and not fanout.wants_echo(key)
        sub, new = fanout.add(pattern, key, echo)
        try:
            link = self._link
            if (new or renew) and link is not None:
                if renew:  # (mosquitto keeps "no local" when the filter is just renewed)
                    link.unsubscribe(key)
                try:
                    with anyio.fail_after(self.connect_timeout):
                        await link.subscribe(key)
                except (LinkDown, TimeoutError):
                    pass  # the next connection subscribes it
            yield sub.recv
        finally:
            if self._fanout.remove(sub) and self._link is not None:
                self._link.unsubscribe(key)
                self._link.kick()


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "closed"
    exc = _unwrap(exc)
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
