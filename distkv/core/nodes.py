"""Node: what one server knows about the ticks of one node (02 §2).

Every tick ``1..tick`` of a node should end up in exactly one of two states:

* ``present``: the event ``(node, tick)`` is a link of some entry's chain;
* ``superseded`` (reported as ``known``): it existed once and no chain holds
  it any more.

``deleted`` marks ticks of deletion tombstones not yet purged (they are also
present) and ticks peers announced as deleted (also superseded).
``remote_missing`` holds ticks a peer asked for. Anything else below
``tick`` is :meth:`Node.missing`.

A Node has no tick → entry index (that costs memory per entry); the Store
finds the entry of a tick by walking the tree when it has to.
"""

from __future__ import annotations

from .ranges import RangeSet

__all__ = ["Node"]


class Node:
    """Tick bookkeeping for one node name."""

    __slots__ = ("name", "tick", "present", "superseded", "deleted", "remote_missing")

    def __init__(self, name: str, tick: int | None = None):
        self.name = name
        self.tick = tick
        self.present = RangeSet()
        self.superseded = RangeSet()
        self.deleted = RangeSet()
        self.remote_missing = RangeSet()

    def __repr__(self) -> str:
        return f"<Node {self.name} @{self.tick}>"

    def seen(self, tick: int | None) -> None:
        """Raise the known tick to at least ``tick``."""
        if tick is not None and (self.tick is None or self.tick < tick):
            self.tick = tick

    # The next three run for every applied change: they read the RangeSets'
    # boundary lists (``_b``, see :mod:`.ranges`) directly, which saves a
    # Python-level call per emptiness test or end-of-run edit.

    def mark_present(self, tick: int) -> None:
        """``tick`` is now a link of some entry's chain."""
        self.present.add(tick)
        rs = self.superseded
        if rs._b and rs._b[-1] > tick:  # (nothing to remove above its last run)
            rs.discard(tick)
        rs = self.remote_missing
        if rs._b:
            rs.discard(tick)

    def advance(self, tick: int, dropped: int | None) -> None:
        """Our new event ``tick`` is present; our older one, ``dropped``, superseded.

        ``supersede`` + ``mark_present`` in one call: this runs for every local
        write. The usual case edits the end of one run of each set directly
        (the oldest tick of the newest run moves on — or of the oldest run,
        if that is where ``dropped`` is — and the newest is appended).
        """
        if dropped is not None:
            b = self.present._b
            if b and b[-2] == dropped and b[-1] > dropped + 1:
                b[-2] = dropped + 1
            elif b and b[0] == dropped and b[1] > dropped + 1:
                b[0] = dropped + 1
            else:
                self.present.discard(dropped)
            if self.deleted._b:
                self.deleted.discard(dropped)
            b = self.superseded._b
            if b and b[-1] == dropped:
                b[-1] = dropped + 1
            else:
                self.superseded.add(dropped)
        b = self.present._b
        if b and b[-1] == tick:
            b[-1] = tick + 1
        else:
            self.present.add(tick)
        b = self.superseded._b
        if b and b[-1] > tick:  # (nothing to remove above its last run)
            self.superseded.discard(tick)
        if self.remote_missing._b:
            self.remote_missing.discard(tick)

    def supersede(self, tick: int) -> None:
        """``tick`` was dropped from the chain that held it."""
        self.present.discard(tick)
        rs = self.deleted
        if rs._b:
            rs.discard(tick)
        self.superseded.add(tick)

    def drop_unheld(self, tick: int) -> None:
        """An event that lost (stale or conflict): superseded unless some chain holds it."""
        if tick not in self.present:
            self.superseded.add(tick)

    def mark_failed(self, tick: int) -> None:
        """A local event whose change was rejected: deleted and superseded."""
        self.present.discard(tick)
        self.deleted.add(tick)
        self.superseded.add(tick)

    def purge(self, ticks: RangeSet) -> None:
        """These ticks are gone for good: only ``superseded`` keeps them."""
        self.present -= ticks
        self.deleted -= ticks
        self.remote_missing -= ticks
        self.superseded |= ticks

    def report_superseded(self, ticks: RangeSet, local: bool = False) -> None:
        """A peer says these ticks are resolved; those we hold stay present.

        Unless ``local`` (our own state download), peers no longer need them
        from us either.
        """
        ticks = ticks - self.present
        self.superseded |= ticks
        if not local:
            self.remote_missing -= ticks

    def report_missing(self, ticks: RangeSet) -> None:
        """A peer lacks these ticks: we should resend or declare them."""
        self.remote_missing |= ticks

    def missing(self) -> RangeSet:
        """Ticks ``1..tick`` that are neither present nor superseded."""
        if not self.tick:
            return RangeSet()
        res = RangeSet.span(1, self.tick + 1)
        res -= self.present
        res -= self.superseded
        return res
