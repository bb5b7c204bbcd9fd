"""The deleter: when may deletion records (tombstones) be purged everywhere (05 §8).

``:n.actor.del`` = ``{"nodes": [names…]}`` lists the servers that run the
``del`` actor actively; every other server listens passively. Without that
entry nothing is purged. Deletions applied here are collected and, every
:data:`HANDOFF` seconds, stamped with the current tock. The listed servers
take turns being "it"; each turn the tock is remembered (the last
:data:`TAGS`), and the actor value ``[oldest, newest]`` tells the others up
to which tock every listed server has been around, so deletions stamped
before it may go. A server that sees that value jump past everything it saw
(it may have missed deletions meanwhile) re-checks its chain heads with a
listed peer (``check_deleted``), which announces the ticks it lacks as deleted.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING, Any

import anyio
from asyncactor import Actor, PingEvent, TagEvent

from distkv.core import RangeSet
from distkv.util import NotGiven

from .transport import ActorTransport

if TYPE_CHECKING:
    from distkv.core import Entry, Event

    from .replicator import Replicator

__all__ = ["Deleter", "HANDOFF", "TAGS"]

logger = logging.getLogger(__name__)

HANDOFF = 10.0
TAGS = 4
CHECK_BATCH = 100


def is_deleter_entry(entry: Entry) -> bool:
    """Is this ``:n.actor.del``?"""
    p = entry.parent
    if entry.name != "del" or p is None or p.name != "actor":
        return False
    meta = p.parent
    return meta is not None and meta.name is None and meta.parent is not None \
        and meta.parent.parent is None


class Deleter:
    """The ``del`` actor of one server and the deletions waiting for it."""

    def __init__(self, repl: Replicator):
        self.repl = repl
        self.store = repl.store
        self.n_nodes = 0  # listed deleter servers; 0 = purging is off
        self.active = False  # are we listed?
        self.pending: dict[str, RangeSet] = {}
        self.stamped: deque[tuple[int, dict[str, RangeSet]]] = deque()
        self.tags: list[int] = []
        self.max_seen = 0
        self.n_tags = 0
        self.n_pings = 0
        self.actor: Actor | None = None
        self.handoff = float((repl.cfg.get("delete") or {}).get("handoff", HANDOFF))
        self._changed = anyio.Event()
        self.purged = 0

    # --- fed by the replicator --------------------------------------------------------

    def observe(self, entry: Entry, event: Event) -> None:
        """Store observer: note deletions; react to ``:n.actor.del`` changes."""
        if event.value is NotGiven and self.n_nodes:
            pending = self.pending
            for n, t in event.chain:
                r = pending.get(n)
                if r is None:
                    pending[n] = r = RangeSet()
                r.add(t)  # type: ignore[arg-type]
        if entry.name == "del" and is_deleter_entry(entry):
            self._changed.set()

    def configure(self) -> None:
        """Read ``:n.actor.del`` (after loading or fetching data)."""
        self._changed.set()

    def _read_config(self) -> tuple[int, bool]:
        entry = self.store.follow((None, "actor", "del"))
        value = NotGiven if entry is None else entry.value
        if not isinstance(value, dict):
            return 0, False
        nodes = value.get("nodes") or ()
        if not isinstance(nodes, (list, tuple)):
            return 0, False
        return len(nodes), self.store.name in nodes

    # --- the tasks -----------------------------------------------------------------------

    async def run(self) -> None:
        """Run the ``del`` actor (restarted if it fails) and the hand-off timer."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._handoff_loop)
            while True:
                try:
                    await self.repl.wait_connected()
                    await self._run_actor()
                except Exception:
                    logger.exception("The deleter actor failed; restarting it")
                    await anyio.sleep(self.repl.gap)

    async def _handoff_loop(self) -> None:
        while True:
            await anyio.sleep(self.handoff)
            if self.pending:
                self.stamped.append((self.store.next_tock(), self.pending))
                self.pending = {}

    async def _run_actor(self) -> None:
        repl = self.repl
        transport = ActorTransport(repl.backend, repl.topic("del"), self.store.name)
        cfg = dict(repl.cfg.get("delete") or {})
        cfg.pop("handoff", None)
        async with Actor(transport, self.store.name, cfg=cfg, enabled=False) as actor:
            self.actor = actor
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._config_loop, actor)
                    async for evt in actor:
                        if isinstance(evt, PingEvent):
                            await self._ping(evt)
                        elif isinstance(evt, TagEvent):
                            await self._tag(actor)
                    tg.cancel_scope.cancel()
            finally:
                self.actor = None

    async def _config_loop(self, actor: Actor) -> None:
        self._changed.set()
        while True:
            await self._changed.wait()
            self._changed = anyio.Event()
            n, active = self._read_config()
            if (n, active) == (self.n_nodes, self.active):
                continue
            logger.info("Deleter: %d node(s)%s", n, ", this one active" if active else "")
            self.n_nodes, self.active = n, active
            self.n_tags = self.n_pings = 0
            if not n:
                self.pending.clear()
                self.stamped.clear()
            if active:
                await actor.enable(n)
            else:
                await actor.disable(n)

    async def _tag(self, actor: Actor) -> None:
        if not self.n_nodes or actor.history_size != self.n_nodes:
            return
        self.n_tags += 1
        if self.n_tags > 2:
            self.purge_to(self.tags[0])
        self.tags.append(self.store.next_tock())
        self.tags = self.tags[-TAGS:]
        await actor.set_value((self.tags[0], self.tags[-1]))

    async def _ping(self, evt: PingEvent) -> None:
        val = evt.value
        if val is None or not self.n_nodes or len(evt.msg.history) < self.n_nodes:
            self.n_pings = self.n_tags = 0
            return
        self.n_pings += 1
        if self.n_pings <= self.n_nodes:
            return
        lo, hi = val
        seen, self.max_seen = self.max_seen, max(self.max_seen, hi)
        if lo > seen > 0:
            # everybody's tocks moved past all we saw: we may have missed deletions
            self.repl.spawn(self.resync, [n for n in evt.msg.history if n != self.store.name])
            return
        self.purge_to(lo)

    def purge_to(self, tock: int) -> None:
        """Purge the deletions stamped before ``tock``."""
        stamped = self.stamped
        while stamped and stamped[0][0] < tock:
            _, batch = stamped.popleft()
            for node, ticks in batch.items():
                self.purged += self.store.purge(node, ticks)

    async def resync(self, nodes: list[str]) -> None:
        """Send our chain heads to a listed peer, which announces what it lacks as deleted."""
        from distkv.client import open_client
        from distkv.util import combine_dict

        from .sync import peer_address

        store = self.store
        for node in nodes:
            host, port = peer_address(store, self.repl.server.cfg, node)
            connect = combine_dict({"host": host, "port": port, "name": store.name},
                                   self.repl.server.cfg.get("connect") or {})
            try:
                async with open_client(connect=connect) as client:
                    batch: dict[str, RangeSet] = {}
                    n = 0
                    for e, _ in list(store.root.walk(full=True)):
                        c = e.chain
                        if c is None:
                            continue
                        batch.setdefault(c.node, RangeSet()).add(c.tick)  # type: ignore[arg-type]
                        n += 1
                        if n >= CHECK_BATCH:
                            await _check(client, batch)
                            batch, n = {}, 0
                    if batch:
                        await _check(client, batch)
            except Exception as exc:
                logger.warning("Deleter resync with %s failed: %r", node, exc)
            else:
                return


async def _check(client: Any, batch: dict[str, RangeSet]) -> None:
    await client._request("check_deleted", nodes={n: r.to_wire() for n, r in batch.items()})
