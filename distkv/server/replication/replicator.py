"""Replicator: one server's part in the network (spec 05).

It hangs off the server's Store and backend and runs these tasks:

* **broadcast** — every event this server creates goes out on ``R/update``
  (shape A, ``server.change.length`` chain links, split into ``_p0`` parts
  when large), handed to the backend (``publish_nowait``) before the
  change's client gets its reply; the backend writes it to the medium when
  its writer task runs next. :meth:`Replicator.flush` waits until that
  happened, :meth:`Replicator.push` makes it happen at once where it can.
  What the backend can't take at once waits in an outbox of
  :data:`OUTBOX_LEN` payloads; if it overflows the oldest are dropped — peers
  notice the gap and ask (see below);
* **receive** — ``R/update`` messages are applied (02 §6); ``R/info`` maps
  update the tick bookkeeping. A message that can't be used is logged and
  skipped; nothing a peer sends stops the server (15 #22);
* **ping actor** — asyncactor on ``R/ping`` (05 §7, :mod:`.ping`): peers'
  ``[tock, tick]`` values, split recovery, periodic repair;
* **ticks** — every ``cycle`` a server announces its tick if it moved, so
  that peers notice lost updates even when it falls silent;
* **ask** — ticks that stay missing for ``gap/2`` are requested with
  ``info {missing}``, again every ``2·gap`` while they are missing, unless a
  peer just asked for them;
* **answer** — peers' ``missing`` requests are answered at once for our own
  ticks, within ``gap/2`` for others' (unless someone answered first):
  entries are re-sent with their whole chain, resolved ticks are announced
  as ``known``/``deleted`` (:func:`distkv.core.recovery.plan_resend`);
* **conflicts** — conflicts resolved here are logged (one WARNING line each)
  and told to the peers (``info {conflicts}``); the ping actor's "it" also
  sends a digest of the conflict log, and a peer whose log differs answers
  with its records, so every server ends up with the same log
  (:class:`distkv.core.ConflictLog`, readable with ``get_state conflicts``);
* **join** — a server without data learns of ready peers (``NODES`` given on
  the command line, any ready peer's ping, or the ``info {ticks}`` that ready
  servers send when they see a new actor ``init``) and fetches the state from
  one of them over the client protocol (:mod:`.sync`) before it serves;
* **deleter** — the ``del`` actor (:mod:`.deleter`).

The ``info`` maps we send carry two keys upstream servers don't know and
ignore: ``conflicts`` (records) and ``conflict_digest``.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from distkv.core import ChainLink, Conflict, Entry, Event, Outcome, RangeSet
from distkv.core.conflicts import ConflictLog, conflict_from_wire
from distkv.core.recovery import (
    ResendPlan,
    missing_request,
    plan_resend,
    resend_message,
    settle_chain,
    ticks_map,
)
from distkv.exceptions import ServerConnectionError
from distkv.server.backend import Backend
from distkv.server.backend.split import Splitter
from distkv.util.path import Path

from .deleter import Deleter
from .ping import PingKeeper
from .sync import fetch_state
from .wire import BadMessage, Inbox, as_path, own_payload_test, parse_update, update_message

if TYPE_CHECKING:
    from distkv.server.server import Server

__all__ = ["OUTBOX_LEN", "Replicator"]

logger = logging.getLogger(__name__)

OUTBOX_LEN = 100_000
CONFLICTS_PER_MESSAGE = 20
LOG_EVERY = 100  # repeated failures of one kind: log the first, then every n-th
BATCH = 500  # received messages handled between two task switches


class Replicator:
    """Replication for one :class:`~distkv.server.server.Server` (see the module docstring)."""

    def __init__(self, server: Server, backend: Backend):
        self.server = server
        self.backend = backend
        self.store = store = server.store
        self.name = server.name
        self.cfg = cfg = server.cfg.server
        self.root = Path.build(server.topic_root)
        self.nchain = int((cfg.get("change") or {}).get("length", 5))
        ping = cfg.get("ping") or {}
        self.cycle = float(ping.get("cycle", 10))
        self.gap = float(ping.get("gap", 2))
        #: Set once this server may serve (it has data: loaded, initialised or fetched).
        self.ready = anyio.Event()

        self._splitter = Splitter(self.name)
        self._t_update = self.topic("update")
        self._outbox: deque[bytes] = deque()  # payloads the medium could not take at once
        self._out_wake = anyio.Event()
        self.lost = 0  # broadcasts dropped from a full outbox
        self.unflushed = False  # broadcasts made since the last flush()
        self._outbox_empty: anyio.Event | None = None
        self._applying = False

        self.conflicts = ConflictLog()
        store.conflicts = self.conflicts  # type: ignore[assignment]  (the Store's sink)
        self._conflict_wake = anyio.Event()

        # ticks asked for (by us or by peers) lately: not asked for again yet
        self._requested: dict[str, RangeSet] = {}
        self._resend_wake = anyio.Event()
        self._announcing = False

        self._candidates: list[str] = []
        self._candidate_wake = anyio.Event()
        self.fetched_from: str | None = None
        self._progress: anyio.Event | None = None  # set by the next message processed
        self._fetching = False

        self.failures: dict[str, int] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self.ping = PingKeeper(self)
        self.deleter = Deleter(self)
        store.observers.append(self._observe)

    def __repr__(self) -> str:
        return f"<Replicator {self.name} via {self.backend.name}>"

    def topic(self, name: str) -> tuple:
        return (*self.root, name)

    def spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run ``fn(*args)`` as a task of the replicator (dropped if it is not running)."""
        if self._tg is not None:
            self._tg.start_soon(fn, *args)

    async def wait_connected(self) -> None:
        """Wait until the backend is connected (for media that can be disconnected)."""
        wait = getattr(self.backend, "wait_connected", None)
        if wait is not None:
            await wait()

    # --- running --------------------------------------------------------------------------

    async def run(self, *, task_status: anyio.abc.TaskStatus = anyio.TASK_STATUS_IGNORED) -> None:
        """Run every replication task; ``started`` once the subscriptions are in place."""
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                await tg.start(self._listen, "update", self._on_update)
                await tg.start(self._listen, "info", self._on_info)
                tg.start_soon(self._broadcaster)
                tg.start_soon(self.ping.run)
                tg.start_soon(self._ask_loop)
                tg.start_soon(self._answer_loop)
                tg.start_soon(self._conflict_loop)
                tg.start_soon(self._tick_loop)
                tg.start_soon(self.deleter.run)
                if hasattr(self.backend, "changed"):
                    tg.start_soon(self._watch_connection)
                task_status.started()
        finally:
            self._tg = None

    async def _listen(
        self, what: str, handle: Callable[[dict], Any], *, task_status: anyio.abc.TaskStatus
    ) -> None:
        inbox = Inbox()
        own = own_payload_test(self.name)
        raise_tock = self.store.raise_tock
        checkpoint = anyio.lowlevel.checkpoint

        def take(payload: bytes) -> None:
            if own(payload):
                return  # our own broadcast, echoed by the medium
            try:
                msg = inbox.feed(payload)
                if msg is None:
                    return
                raise_tock(msg.get("tock"))
                handle(msg)
            except Exception as exc:
                self._failed(what, exc, payload)
            if self._progress is not None:
                self._progress.set()
                self._progress = None

        async with self.backend.subscribe(self.topic(what), echo=False) as msgs:
            task_status.started()
            more = getattr(msgs, "receive_nowait", None)
            async for _topic, payload in msgs:
                take(payload)
                if more is None:
                    continue
                # work through what is queued in one go (one task switch per batch)
                n = 0
                while True:
                    try:
                        _topic, payload = more()
                    except anyio.WouldBlock:
                        break
                    take(payload)
                    n += 1
                    if n >= BATCH:
                        await checkpoint()
                        n = 0

    def _failed(self, what: str, exc: Exception, payload: bytes) -> None:
        key = f"{what}:{type(exc).__name__}"
        n = self.failures[key] = self.failures.get(key, 0) + 1
        if n == 1 or n % LOG_EVERY == 0:
            logger.warning(
                "A %s message was not usable (%d so far): %r; payload %s",
                what, n, exc, payload[:80].hex(),
            )

    async def _watch_connection(self) -> None:
        """After every reconnection: tell the peers our ticks (QoS 0 lost what we missed)."""
        backend: Any = self.backend
        connects = backend.connects
        while True:
            await backend.changed().wait()
            if backend.connects != connects:
                connects = backend.connects
                if connects > 1:
                    logger.info("Reconnected to %s: announcing our ticks", backend.where)
                    self.announce()

    # --- broadcasting our own events ------------------------------------------------------

    def _observe(self, entry: Entry, event: Event) -> None:
        self.deleter.observe(entry, event)
        if self._applying or event.chain.node != self.name:
            return
        try:
            parts = self._splitter.pack(update_message(event, self.nchain))
        except (TypeError, ValueError) as exc:
            logger.error("Cannot send an update for %r: %r", entry.path, exc)
            return
        self.unflushed = True
        out = self._outbox
        if not out:
            # the usual case: handed to the medium before the client hears of the change
            nowait = self.backend.publish_nowait
            topic = self._t_update
            try:
                while parts and nowait(topic, parts[0]):
                    del parts[0]
            except Exception as exc:  # the medium refuses it (e.g. too large for serf)
                logger.error("Cannot send the update for %r: %r", entry.path, exc)
                return
            if not parts:
                return
        if len(out) >= OUTBOX_LEN:
            out.popleft()
            self.lost += 1
            if self.lost == 1 or self.lost % 10000 == 0:
                logger.warning("The broadcast queue is full: %d update(s) dropped", self.lost)
        out.extend(parts)
        self._out_wake.set()

    async def _broadcaster(self) -> None:
        """Send what the medium could not take at once, in order."""
        out = self._outbox
        publish = self.backend.publish
        topic = self._t_update
        while True:
            while out:
                try:
                    await publish(topic, out[0])
                except Exception as exc:
                    logger.error("Cannot send an update: %r", exc)
                out.popleft()
            self._out_wake = anyio.Event()
            if self._outbox_empty is not None:
                self._outbox_empty.set()
                self._outbox_empty = None
            if not out:
                await self._out_wake.wait()

    def push(self) -> None:
        """Hand this server's broadcasts so far to the medium now, if that needs no waiting.

        Best effort (see :meth:`Backend.push`); meant for the moment before
        replies go out, so that a server killed right after acknowledging a
        change has handed the change to the medium already.
        """
        if self.unflushed and not self._outbox and self.backend.push():
            self.unflushed = False

    async def flush(self) -> None:
        """Wait until this server's broadcasts so far have been handed to the medium.

        Cheap when there is nothing to wait for. Once it returns, the
        broadcasts are in the medium's socket: dying does not lose them.
        """
        if not self.unflushed:
            return
        self.unflushed = False
        while self._outbox:
            if self._outbox_empty is None:
                self._outbox_empty = anyio.Event()
            await self._outbox_empty.wait()
        await self.backend.flush()

    async def publish(self, what: str, msg: dict) -> None:
        """Send a message on ``R/<what>`` (split if large); failures are logged."""
        try:
            for p in self._splitter.pack(msg):
                await self.backend.publish(self.topic(what), p)
        except Exception as exc:
            logger.error("Cannot send a %s message: %r", what, exc)

    async def publish_info(self, msg: dict) -> None:
        """Send an ``info`` map (``node``, ``tick`` and ``tock`` are added)."""
        msg.setdefault("node", self.name)
        msg.setdefault("tick", self.store.node.tick)
        msg.setdefault("tock", self.store.next_tock())
        await self.publish("info", msg)

    def ticks_info(self) -> dict[str, Any]:
        """``info {ticks, node_drop?}``: every node's tick as known here."""
        msg: dict[str, Any] = {"ticks": ticks_map(self.store)}
        if self.store.node_drop:
            msg["node_drop"] = sorted(self.store.node_drop, key=str)
        return msg

    def announce(self) -> None:
        """Tell the peers every node's tick, soon (requests coalesce while one is pending)."""
        if self.ready.is_set() and not self._announcing:
            self._announcing = True
            self.spawn(self._announce)

    async def _announce(self) -> None:
        try:
            await self.publish_info(self.ticks_info())
        finally:
            self._announcing = False

    async def _tick_loop(self) -> None:
        """Every ``cycle``: tell the peers our tick if it moved (or every few cycles anyway).

        Peers learn of updates they lost from the ticks; the ping actor
        carries ours too, but only when it is our turn to ping.
        """
        sent: int | None = None
        quiet = 0
        while True:
            await anyio.sleep(self.cycle)
            tick = self.store.node.tick
            if not self.ready.is_set() or tick is None:
                continue
            quiet += 1
            if tick != sent or quiet >= 5:
                sent, quiet = tick, 0
                await self.publish_info({"ticks": {self.name: tick}})

    # --- applying peers' messages -----------------------------------------------------------

    @contextmanager
    def applying(self) -> Iterator[None]:
        """Changes made inside are not broadcast (replicated, loaded or fetched data)."""
        was, self._applying = self._applying, True
        try:
            yield
        finally:
            self._applying = was

    def apply(self, path: tuple, chain: ChainLink, value: Any, tock: int | None) -> Outcome:
        """Apply a peer's change (from an update or a state download)."""
        was, self._applying = self._applying, True
        try:
            outcome = self.store.apply_update(path, chain, value, tock)
        finally:
            self._applying = was
        if outcome is Outcome.DUPLICATE or chain.prev is not None:
            settle_chain(self.store, chain)
        elif self.store.nodes[chain.node].remote_missing:
            self.store.nodes[chain.node].remote_missing.discard(chain.tick)
        if outcome is Outcome.CONFLICT_KEPT or outcome is Outcome.CONFLICT_WON:
            self._conflict_wake.set()
        return outcome

    def _on_update(self, msg: dict) -> None:
        path, chain, value, tock = parse_update(msg)
        self.apply(path, chain, value, tock)

    def _on_info(self, msg: dict) -> None:
        sender = msg.get("node")
        if sender == self.name:
            return
        store = self.store
        res = store.process_info(msg)
        if not self.ready.is_set() and isinstance(sender, str) and sender:
            tick = msg.get("tick")
            if isinstance(tick, int) and tick > 0:  # a server with data
                self.add_candidate(sender)
        if "ticks" in msg:
            self.ping.recovery_step(sender, 1)
        if "missing" in msg:
            self.ping.recovery_step(sender, 2)
        if res.missing:
            for name, ticks in res.missing.items():
                req = self._requested.get(name)
                self._requested[name] = ticks.copy() if req is None else req | ticks
            self._resend_wake.set()
        recs = msg.get("conflicts")
        if recs:
            self._merge_conflicts(recs)
        digest = msg.get("conflict_digest")
        if digest is not None and digest != self.conflicts.digest() and len(self.conflicts):
            self.spawn(self._send_conflict_log)
        if res.purged:
            logger.debug("%s announced deletions: %d tombstone(s) purged", sender, res.purged)

    # --- asking for missing ticks, answering requests ----------------------------------------

    def missing_now(self) -> dict[str, RangeSet]:
        """What is missing here and was not asked for lately."""
        return missing_request(self.store, self._requested)

    async def request_missing(self, missing: dict[str, RangeSet], force: bool = False) -> None:
        """Broadcast ``info {missing}`` and remember that we asked."""
        if not missing and not force:
            return
        for name, ticks in missing.items():
            req = self._requested.get(name)
            self._requested[name] = ticks.copy() if req is None else req | ticks
        msg: dict[str, Any] = {"missing": {n: r.to_wire() for n, r in missing.items()}}
        if self.store.node_drop:
            msg["node_drop"] = sorted(self.store.node_drop, key=str)
        if missing:
            logger.debug("Asking for missing ticks: %r", msg["missing"])
        await self.publish_info(msg)

    async def _ask_loop(self) -> None:
        """Ask for ticks that stay missing (see the module docstring)."""
        step = max(self.gap / 2, 0.05)
        forget_after = max(2 * self.gap, 0.2)
        forgot = time.monotonic()
        prev: dict[str, RangeSet] = {}
        while True:
            await anyio.sleep(step)
            now = time.monotonic()
            if now - forgot >= forget_after:
                self._requested.clear()
                forgot = now
            if self._fetching:
                prev = {}  # the download brings them
                continue
            cur = self.missing_now()
            stable = {}
            for name, ticks in cur.items():
                old = prev.get(name)
                if old:
                    both = ticks & old
                    if both:
                        stable[name] = both
            prev = cur
            if stable:
                await self.request_missing(stable)

    def wake_answers(self) -> None:
        """Answer outstanding ``missing`` requests soon."""
        self._resend_wake.set()

    async def _answer_loop(self) -> None:
        """Answer peers' ``missing`` requests (see the module docstring).

        Every node answers for its own ticks at once; ticks of other nodes
        are answered ``gap/2`` later, if nobody did meanwhile — their re-sends
        and ``known`` maps clear our list — so that a request does not bring
        one copy from every server.
        """
        own = (self.name,)
        while True:
            await self._resend_wake.wait()
            self._resend_wake = anyio.Event()
            await self._answer(plan_resend(self.store, own))
            await anyio.sleep(self.gap / 4 + random.uniform(0, self.gap / 4))
            await self._answer(plan_resend(self.store))

    async def _answer(self, plan: ResendPlan) -> None:
        if not plan:
            return
        logger.debug("Re-sending %d entries; %r", len(plan.entries), plan.info())
        for entry in plan.entries:
            if entry.chain is None:  # purged meanwhile
                continue
            msg = resend_message(entry)
            msg["path"] = as_path(msg["path"])
            await self.publish("update", msg)
        info = plan.info()
        if info:
            await self.publish_info(info)

    # --- conflicts --------------------------------------------------------------------------

    async def _conflict_loop(self) -> None:
        while True:
            await self._conflict_wake.wait()
            await anyio.sleep(0.05)  # collect a burst
            self._conflict_wake = anyio.Event()
            fresh = self.conflicts.take_fresh()
            for c in fresh:
                logger.warning("Conflict at %s: %s", _path_text(c.path), _conflict_text(c))
            for i in range(0, len(fresh), CONFLICTS_PER_MESSAGE):
                batch = fresh[i : i + CONFLICTS_PER_MESSAGE]
                await self.publish_info({"conflicts": [_conflict_wire(c) for c in batch]})

    def _merge_conflicts(self, recs: Any) -> None:
        if not isinstance(recs, (list, tuple)):
            raise BadMessage(f"'conflicts' must be a list, not {recs!r:.60}")
        good = []
        for r in recs:
            try:
                good.append(conflict_from_wire(r))
            except ValueError as exc:
                logger.debug("Conflict record skipped: %s", exc)
        self.conflicts.merge(good)

    async def send_conflict_digest(self) -> None:
        if len(self.conflicts):
            await self.publish_info({"conflict_digest": self.conflicts.digest()})

    async def _send_conflict_log(self) -> None:
        recs = [_conflict_wire(c) for c in self.conflicts]
        for i in range(0, len(recs), CONFLICTS_PER_MESSAGE):
            await self.publish_info({"conflicts": recs[i : i + CONFLICTS_PER_MESSAGE]})

    # --- joining ----------------------------------------------------------------------------

    def add_candidate(self, node: str) -> None:
        """``node`` is a ready peer we could fetch the state from."""
        if node != self.name and node not in self._candidates:
            self._candidates.append(node)
            self._candidate_wake.set()

    async def fetch_from(self, nodes: Sequence[str]) -> bool:
        """Fetch the state from the first of ``nodes`` that answers; False if none did."""
        for node in nodes:
            if node == self.name:
                continue
            self._fetching = True
            try:
                with anyio.fail_after(max(30.0, 4 * self.cycle)):
                    await fetch_state(self.store, self.server.cfg, node, apply=self.apply)
            except (OSError, TimeoutError, ServerConnectionError) as exc:
                logger.warning("Cannot fetch the state from %s: %s", node, exc)
                continue
            except Exception as exc:
                logger.exception("Fetching the state from %s failed: %r", node, exc)
                continue
            finally:
                self._fetching = False
            self.fetched_from = node
            self.deleter.configure()
            return True
        return False

    async def join(self, nodes: Sequence[str] = (), *, authoritative: bool = False,
                   force: bool = False) -> None:
        """Get the data of a server that has none from the peers (05 §6.2).

        Returns once this server may serve. (Peers may tell us our node's
        tick meanwhile — of an earlier life of this server — so that we
        don't reuse ticks; that does not make us ready.)
        """
        for n in nodes:
            self.add_candidate(n)
        store = self.store
        while True:
            if not self._candidates:
                self._candidate_wake = anyio.Event()
                await self._candidate_wake.wait()
                continue
            batch, self._candidates = self._candidates, []
            if await self.fetch_from(batch):
                break
            await anyio.sleep(self.gap)
        if authoritative:
            for name, ticks in store.missing().items():
                store.nodes[name].report_superseded(ticks, local=True)
        missing = store.missing()
        if missing and not force:
            logger.warning(
                "Waiting for missing ticks: %s",
                ", ".join(f"{n}: {r.to_wire()}" for n, r in missing.items()),
            )
            await self.request_missing(missing)
            while store.missing():
                self._progress = ev = anyio.Event()
                await ev.wait()
        self.become_ready()

    def become_ready(self) -> None:
        node = self.store.node
        if node.tick is None:
            node.tick = 0
        if not self.ready.is_set():
            self.ready.set()
            self.announce()


def _path_text(path: tuple) -> str:
    return str(Path.build(path))


def _conflict_text(c: Conflict) -> str:
    w, lo = c.winner, c.loser
    return (
        f"{w.node}:{w.tick} (tock {c.winner_tock}) beat {lo.node}:{lo.tick} (tock {c.loser_tock})"
    )


def _conflict_wire(c: Conflict) -> dict:
    rec = c.to_wire()
    rec["path"] = as_path(rec["path"])
    return rec
