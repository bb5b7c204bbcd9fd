"""The ``ping`` actor of a server (05 §7) and split recovery (05 §6.4).

asyncactor's :class:`~asyncactor.Actor` runs on ``R/ping`` under the node's
name with the ``server.ping`` parameters. Its value is the server's current
``[tock, tick]`` while ready, else ``None`` — read at the moment a ping is
sent, so it is always current. Every message on the topic (seen through the
transport's guard, :mod:`.transport`) tells us the sender's tock and tick;
an ``init`` from a new node makes a ready server announce all ticks (so a
joining server finds peers at once); a ready sender is a peer a server
without data can fetch from. Actor events:

* ``GoodNodeEvent`` — peers to fetch from;
* ``TagEvent`` (we're "it") — periodic repair (§6.5): ask for what is
  missing here, and send the conflict log's digest;
* ``RecoverEvent`` — a healed split: :meth:`PingKeeper.recover`.

If the actor fails (asyncactor gives up when its own ``init`` does not come
back in time, e.g. during a broker outage) it is logged and started again.

Compatibility: asyncactor 0.28 sends the same ``init``/``ping``/``hist``
maps as 0.24 (upstream's version); its ``vers`` maps carry one more key,
``override``, which 0.24 accepts (it sets unknown keys as attributes). 0.28
checks ``vers`` parameters strictly (``cycle`` >= 1, ``gap`` >= 0.1, ``cycle``
>= 3·``gap``) and would stop on a message it cannot read; the transport drops
such messages instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
from asyncactor import Actor, GoodNodeEvent, RecoverEvent, TagEvent

from .transport import ActorTransport

if TYPE_CHECKING:
    from .replicator import Replicator

__all__ = ["PingKeeper"]

logger = logging.getLogger(__name__)


class _PingActor(Actor):
    """An Actor whose value is computed when it is read."""

    def __init__(self, *args: Any, value: Callable[[], Any], **kw: Any):
        self._value_of = value
        super().__init__(*args, **kw)

    @property  # type: ignore[override]
    def _value(self) -> Any:
        return self._value_of()

    @_value.setter
    def _value(self, value: Any) -> None:
        pass  # set_value(): the value is always computed


class _Recovery:
    """One split recovery in progress: which steps peers of our side did already."""

    __slots__ = ("local", "remote", "steps")

    def __init__(self, local: set[str], remote: set[str]):
        self.local = local
        self.remote = remote
        self.steps = {1: anyio.Event(), 2: anyio.Event()}


class PingKeeper:
    """Runs the ping actor and reacts to what it reports."""

    def __init__(self, repl: Replicator):
        self.repl = repl
        self.store = repl.store
        self.name = repl.name
        self.actor: Actor | None = None
        self.recoveries: dict[str, _Recovery] = {}  # local-side node -> its recovery
        self.recovered = 0

    def value(self) -> tuple[int, int] | None:
        """``(tock, tick)`` while ready, else None."""
        tick = self.store.node.tick
        if tick is None or not self.repl.ready.is_set():
            return None
        return (self.store.tock, tick)

    async def run(self) -> None:
        while True:
            try:
                await self.repl.wait_connected()
                await self._run_actor()
            except Exception as exc:
                logger.warning("The ping actor stopped (%r); starting it again", exc)
                await anyio.sleep(self.repl.gap)

    async def _run_actor(self) -> None:
        repl = self.repl
        transport = ActorTransport(
            repl.backend, repl.topic("ping"), self.name, on_message=self._seen
        )
        cfg = dict(repl.cfg.get("ping") or {})
        async with _PingActor(transport, self.name, cfg=cfg, value=self.value) as actor:
            self.actor = actor
            try:
                async for evt in actor:
                    if isinstance(evt, GoodNodeEvent):
                        if not repl.ready.is_set():
                            for n in evt.nodes:
                                repl.add_candidate(n)
                    elif isinstance(evt, TagEvent):
                        repl.spawn(self.repair)
                    elif isinstance(evt, RecoverEvent):
                        repl.spawn(
                            self.recover, evt.prio, list(evt.local_nodes), list(evt.remote_nodes)
                        )
            finally:
                self.actor = None

    def _seen(self, msg: dict) -> None:
        """Every accepted message on the ping topic (see the module docstring)."""
        sender = msg.get("node")
        if sender is None:
            sender = msg["history"][0]
        if sender == self.name:
            return
        repl = self.repl
        value = msg.get("value")
        if value is not None:
            tock, tick = value
            self.store.process_info({"ticks": {sender: tick}, "tock": tock})
            if not repl.ready.is_set():
                repl.add_candidate(sender)
        if msg.get("t") == "init" and repl.ready.is_set():
            repl.announce()

    async def repair(self) -> None:
        """We're "it": ask for what is missing, offer the conflict log's digest (05 §6.5)."""
        repl = self.repl
        await repl.request_missing(repl.missing_now())
        await repl.send_conflict_digest()

    async def recover(self, prio: int, local: list[str], remote: list[str]) -> None:
        """A healed split (05 §6.4): exchange ticks, then missing lists, then re-send."""
        lo, rem = set(local), set(remote)
        lo, rem = lo - rem, rem - lo
        if any(r.remote == rem for r in self.recoveries.values()):
            return  # this merge is being handled already
        rec = _Recovery(lo, rem)
        for n in lo:
            self.recoveries[n] = rec
        repl = self.repl
        cycle = repl.cycle
        f = 1 - 1 / (1 << prio)
        logger.info("Split recovery (priority %d): ours %s, theirs %s", prio, sorted(lo),
                    sorted(rem))
        try:
            with anyio.move_on_after(cycle * f):
                await rec.steps[1].wait()
            if not rec.steps[1].is_set():
                await repl.publish_info(repl.ticks_info())
            with anyio.move_on_after(cycle * (1 + f) / 2):
                await rec.steps[2].wait()
            if not rec.steps[2].is_set():
                await repl.request_missing(repl.missing_now(), force=True)
            await anyio.sleep(cycle * f)
            repl.wake_answers()
            self.recovered += 1
        finally:
            for n in lo:
                if self.recoveries.get(n) is rec:
                    del self.recoveries[n]

    def recovery_step(self, sender: Any, step: int) -> None:
        """A peer of our side did step ``step`` (1: ticks, 2: missing)."""
        rec = self.recoveries.get(sender) if isinstance(sender, str) else None
        if rec is not None:
            rec.steps[step].set()
