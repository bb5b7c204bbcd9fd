"""Actors over a client connection: :class:`ClientActor` and the group states.

An `asyncactor <https://pypi.org/project/asyncactor/>`_ ``Actor`` needs a
transport that broadcasts small maps to every member of a group. Here that is
the client's ``msg_send`` / ``msg_monitor`` on one backend topic
(:class:`ClientTransport`), so runner processes coordinate through their
servers' broker without a connection of their own (05a, 09 §4)::

    async with ClientActor(client, "node1", topic=P("::distkv.run.any.default"),
                           cfg={"cycle": 5, "gap": 1}) as actor:
        await actor.set_value(0)
        async for event in actor:   # TagEvent, UntagEvent, PingEvent, …
            ...

Before the actor says hello, the transport makes sure that its subscription
is live: it sends a probe (an ``init`` message of a name no actor uses, which
every actor ignores) until the probe comes back. Otherwise the actor could
miss its own ``init`` and give up.

The transport also notes when each member was last heard of
(:attr:`ClientTransport.last_seen`), which runners use to tell dead members
from live ones.

The state classes (:class:`BrokenState` … :class:`CompleteState`) describe a
group's connectivity as :func:`group_state` derives it from the actor's
history; runners pass them to their jobs.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import anyio
from asyncactor import Actor
from asyncactor.abc import MonitorStream, Transport

from distkv.exceptions import ServerClosedError, ServerError
from distkv.util.path import P, Path

if TYPE_CHECKING:
    from distkv.client import Client

__all__ = [
    "ActorState",
    "BrokenState",
    "DetachedState",
    "PartialState",
    "CompleteState",
    "ClientActor",
    "ClientTransport",
    "NoMessageBackend",
    "group_state",
]

logger = logging.getLogger(__name__)

#: Seconds to wait for a probe to come back before sending the next one.
PROBE_INTERVAL = 0.5
#: Names of probe messages start with this (no actor is called like that).
PROBE_PREFIX = "?probe-"


class NoMessageBackend(ServerError):
    """The server has no broadcast backend, so ``msg_send`` cannot work."""


# --- group states ------------------------------------------------------------------------


class ActorState:
    """How well a runner group is connected (pushed to the jobs of a runner)."""

    __slots__ = ("msg",)

    def __init__(self, msg: Any = None):
        #: The actor event that led to this state (if any).
        self.msg = msg

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))


class BrokenState(ActorState):
    """Nothing is heard from the group, not even our own messages."""


class DetachedState(ActorState):
    """Only this runner is in the group."""


class PartialState(ActorState):
    """Other runners are there, but fewer than the expected group size."""


class CompleteState(ActorState):
    """At least the expected number of runners is there."""


def group_state(history: Sequence[Any], me: Any, nodes: int, msg: Any = None) -> ActorState:
    """The state of a group whose actor history is ``history``.

    No history: broken; only ``me``: detached; at least ``nodes`` members
    (``nodes`` > 0): complete; otherwise partial.
    """
    if not history:
        return BrokenState(msg)
    others = [n for n in history if n != me]
    if not others:
        return DetachedState(msg)
    if nodes > 0 and len(history) >= nodes:
        return CompleteState(msg)
    return PartialState(msg)


# --- the transport -------------------------------------------------------------------------


def _no_backend(exc: BaseException) -> bool:
    return isinstance(exc, ServerError) and str(exc).startswith("NoBackendError")


class ClientTransport(Transport):
    """An asyncactor transport on the backend topic ``topic``, through ``client``."""

    def __init__(self, client: Client, topic: Any):
        self.client = client
        self.topic: Path = P(topic)
        #: Member name -> ``time.monotonic()`` when a message of it arrived last.
        self.last_seen: dict[Any, float] = {}
        #: Called with every actor message (a map with ``t`` and ``node``) as it arrives.
        self.listeners: list[Callable[[dict], None]] = []

    def __repr__(self) -> str:
        return f"<ClientTransport {self.topic}>"

    def monitor(self) -> ClientMonitor:
        return ClientMonitor(self)

    async def send(self, payload: Any) -> None:
        try:
            await self.client.msg_send(self.topic, payload)
        except ServerError as exc:
            if _no_backend(exc):
                raise NoMessageBackend(str(exc)) from None
            raise


class ClientMonitor(MonitorStream):
    """The messages on a :class:`ClientTransport`'s topic (an async context manager)."""

    def __init__(self, transport: ClientTransport):
        super().__init__(transport)
        self._stack: AsyncExitStack | None = None
        self._it: AsyncIterator[Any] | None = None
        self._probe = f"{PROBE_PREFIX}{secrets.token_hex(6)}"

    async def __aenter__(self) -> ClientMonitor:
        tr: ClientTransport = self.transport  # type: ignore[assignment]
        self._stack = stack = AsyncExitStack()
        try:
            try:
                mon = await stack.enter_async_context(tr.client.msg_monitor(tr.topic))
            except ServerError as exc:
                if _no_backend(exc):
                    raise NoMessageBackend(str(exc)) from None
                raise
            self._it = aiter(mon)
            await self._wait_live(tr)
        except BaseException:
            self._stack = None
            await stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    async def _wait_live(self, tr: ClientTransport) -> None:
        """Send probes until one comes back: the subscription is live."""
        timeout = 2 * (tr.client.config.get("connect", {}).get("init_timeout") or 5)
        probe = {"t": "init", "node": self._probe}
        with anyio.move_on_after(timeout):
            while True:
                await tr.send(probe)
                with anyio.move_on_after(PROBE_INTERVAL):
                    while True:
                        rec = await self._next()
                        data = rec.get("data")
                        if isinstance(data, dict) and data.get("node") == self._probe:
                            return
        raise TimeoutError(f"Messages on {tr.topic} do not come back (waited {timeout} s)")

    async def _next(self) -> Any:
        assert self._it is not None
        try:
            return await anext(self._it)
        except StopAsyncIteration:
            tr: ClientTransport = self.transport  # type: ignore[assignment]
            raise ServerClosedError(f"The server ended the monitor of {tr.topic}") from None

    async def __anext__(self) -> dict:
        tr: ClientTransport = self.transport  # type: ignore[assignment]
        while True:
            rec = await self._next()
            data = rec.get("data")
            if not isinstance(data, dict) or "t" not in data:
                continue  # not an actor message (or undecodable)
            node = data.get("node")
            if node is None:
                hist = data.get("history")
                node = hist[0] if hist else None
            if isinstance(node, str) and node.startswith(PROBE_PREFIX):
                continue  # somebody's probe
            if node is not None:
                tr.last_seen[node] = time.monotonic()
            for fn in tr.listeners:
                fn(data)
            return dict(data)  # the actor pops from it


# --- the actor ---------------------------------------------------------------------------------


class ClientActor(Actor):
    """An asyncactor ``Actor`` that talks through ``client``'s ``msg_send``/``msg_monitor``.

    ``name`` must be unique in the group (a second actor of the same name
    makes both fail with ``ActorCollisionError``); ``topic`` is the backend
    topic of the group; ``cfg`` holds the actor parameters (``cycle``,
    ``gap``, ``nodes``, ``splits``, ``n_hosts``, ``version``, 05a §2).
    Use it as an async context manager; iterate over it for its events.
    """

    def __init__(
        self,
        client: Client,
        name: str,
        topic: Any,
        cfg: dict | None = None,
        *,
        enabled: bool = True,
        send_raw: bool = False,
    ):
        self.transport = ClientTransport(client, topic)
        super().__init__(self.transport, name, dict(cfg or {}), enabled=enabled,
                         send_raw=send_raw)

    @property
    def topic(self) -> Path:
        return self.transport.topic

    @property
    def last_seen(self) -> dict[Any, float]:
        """Member name -> when (``time.monotonic()``) it was last heard of."""
        return self.transport.last_seen

    @property
    def gap_time(self) -> float:
        """The actor's ``gap`` parameter (seconds)."""
        return self._gap
