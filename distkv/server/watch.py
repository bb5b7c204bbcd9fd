"""Watchers: the server side of the ``watch`` action.

A :class:`Watcher` hangs its callback on the watched entry's ``watchers``
list; the store calls it for every change of that entry or of an entry below
it. Changes inside meta subtrees (below a ``None`` element relative to the
watched entry) are not reported. A watched entry is never pruned from the
tree.

Queue policy: each watcher has a bounded queue of ``server.watch_queue``
notifications (default 1000). A watcher whose client does not keep up — its
queue is full when the next change arrives — is ended: it is unregistered at
once, the notifications still queued are discarded (the client has to
re-read the subtree anyway), and its stream ends with an error
``RuntimeError('Aborted: the watcher fell behind; N notifications dropped …')``
followed by ``end``. The connection and every other client carry on.

:func:`run_watch` is the stream handler's body: an optional initial dump
(``fetch``) of entries older than the watch, ``{state: uptodate}``, then the
changes, each serialized like a ``get_tree`` record.

For a user with an ACL the watched path needs ``x``; the dump follows
``get_tree``'s rules, and a change is reported only if the ACL grants ``r``
at the changed entry and a dump would have descended to it — a watch never
shows an entry (not even its deletion) that the user may not read. Values
sent to a user with a converter are encoded.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

import anyio

from distkv.acl import UNRESTRICTED
from distkv.util import NotGiven

from .records import RelShortener, entry_record, walk, walk_acl

if TYPE_CHECKING:
    from .session import Session, Stream

__all__ = ["Watcher", "WatcherOverflow", "run_watch"]


class WatcherOverflow(RuntimeError):
    """The watcher's queue overflowed; its stream is ended."""


class Watcher:
    """One ``watch`` request: depth window, bounded queue, overflow state."""

    __slots__ = (
        "entry", "depth", "min_depth", "max_depth", "limit", "queue", "dropped",
        "overflowed", "_wake", "scope",
    )

    def __init__(self, entry: Any, *, min_depth: int = 0, max_depth: int = -1, limit: int = 1000):
        self.entry = entry
        self.depth = entry.depth
        self.min_depth = min_depth
        self.max_depth = max_depth
        self.limit = max(1, limit)
        self.queue: deque[tuple[tuple, Any]] = deque()
        self.dropped = 0
        self.overflowed = False
        self._wake: anyio.Event | None = None
        self.scope = anyio.CancelScope()

    def attach(self) -> None:
        e = self.entry
        if e.watchers is None:
            e.watchers = [self.notify]
        else:
            e.watchers.append(self.notify)

    def detach(self) -> None:
        e = self.entry
        ws = e.watchers
        if ws is not None:
            try:
                ws.remove(self.notify)
            except ValueError:
                return
            if not ws:
                e.watchers = None

    def notify(self, entry: Any, event: Any) -> None:
        """Store callback: ``entry`` (this watcher's entry or one below) changed."""
        rel = entry.path[self.depth :]
        d = len(rel)
        if d < self.min_depth or (self.max_depth >= 0 and d > self.max_depth) or None in rel:
            return
        if self.overflowed:
            self.dropped += 1
            return
        q = self.queue
        if len(q) >= self.limit:
            self.overflowed = True
            self.dropped = len(q) + 1
            q.clear()
            self.detach()
            self.scope.cancel()
            return
        q.append((rel, event))
        ev = self._wake
        if ev is not None:
            self._wake = None
            ev.set()

    async def wait(self) -> None:
        """Wait until something is queued."""
        while not self.queue:
            self._wake = ev = anyio.Event()
            await ev.wait()

    def overflow_error(self) -> WatcherOverflow:
        return WatcherOverflow(
            f"Aborted: the watcher fell behind; {self.dropped} notifications dropped "
            f"(server.watch_queue is {self.limit})"
        )


#: where :func:`prepare_watch` leaves its result in the request map (not a
#: string, so no client can send it)
PREPARED = object()


def prepare_watch(session: Session, path: tuple, *, min_depth: int = 0,
                  max_depth: int = -1) -> tuple[Watcher, int]:
    """Attach a watcher at ``path`` right away (synchronously).

    Called while the request is dispatched, so a change made by the very next
    request on the same connection is already seen.
    """
    server = session.server
    entry = server.store.follow(path, create=True)
    watcher = Watcher(
        entry, min_depth=min_depth, max_depth=max_depth,
        limit=int(server.cfg.server.get("watch_queue", 1000)),
    )
    start_tock = server.next_tock()
    watcher.attach()
    return watcher, start_tock


async def run_watch(
    session: Session,
    stream: Stream,
    path: tuple,
    *,
    top: bool,
    nchain: int = 0,
    fetch: bool = False,
    min_depth: int = 0,
    max_depth: int = -1,
    empty: bool = False,
    prepared: tuple[Watcher, int] | None = None,
) -> None:
    """Serve one watch on the (absolute) ``path`` until cancelled or overflowed.

    ``top`` tells whether ``path`` is the client's root (path shortening).
    """
    acl = session.acl
    conv = session.conv
    if prepared is None:
        prepared = prepare_watch(session, path, min_depth=min_depth, max_depth=max_depth)
    watcher, start_tock = prepared
    entry = watcher.entry
    try:
        cursor = None if acl is None else acl.cursor(path, "x")
    except BaseException:
        watcher.detach()
        raise
    short = RelShortener(top)
    send = stream.send
    queue = watcher.queue
    try:
        with watcher.scope:

            async def send_changes() -> None:
                while queue:
                    rel, event = queue.popleft()
                    if cursor is not None:
                        cur = cursor.at(rel)
                        if cur is None or not cur.grants("r"):
                            continue
                    rec = entry_record(event, nchain)  # (an event has value, chain, tock too)
                    if conv is not None and "value" in rec:
                        rec["value"] = conv.encode((*path, *rel), rec["value"], event.entry)
                    await send(short(rec, rel))

            if fetch:
                if cursor is None and conv is None:
                    found = ((e, rel, None) for e, rel in walk(entry, max_depth=max_depth))
                else:
                    found = walk_acl(
                        entry, cursor or UNRESTRICTED.cursor(path, "x"), max_depth=max_depth
                    )
                for e, rel, cur in found:
                    if len(rel) < min_depth or e.tock >= start_tock:
                        continue
                    if e.value is NotGiven and not empty:
                        continue
                    if cur is not None and not cur.grants("r"):
                        continue
                    rec = entry_record(e, nchain)
                    if conv is not None and "value" in rec:
                        rec["value"] = conv.encode((*path, *rel), rec["value"], e)
                    await send(short(rec, rel))
                    if queue:
                        await send_changes()
                await send({"state": "uptodate"})
            while True:
                await watcher.wait()
                await send_changes()
    finally:
        watcher.detach()
    if watcher.overflowed:
        raise watcher.overflow_error()
