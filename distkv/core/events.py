"""What the Store reports: applied changes, apply outcomes, conflicts.

* :class:`Event`: one change applied to an entry (local or replicated); it
  renders the ``update`` broadcast map (05 §3, shape A).
* :class:`Outcome`: what :meth:`Store.apply_update` did with an update.
* :class:`Conflict`: a concurrent update and how it was resolved.
* :class:`InfoResult`: what processing an ``info`` map changed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from distkv.util import NotGiven

from .chain import ChainLink

if TYPE_CHECKING:
    from .ranges import RangeSet
    from .tree import Entry

__all__ = ["Event", "Outcome", "Conflict", "InfoResult"]


class Event:
    """A change applied to ``entry``: its new ``chain``, ``value``, ``tock`` and ``old_value``.

    ``value`` / ``old_value`` are ``NotGiven`` for "no value" (a deletion, or
    an entry that had none).
    """

    __slots__ = ("entry", "chain", "value", "tock", "old_value")

    def __init__(self, entry: Entry, chain: ChainLink, value: Any, tock: int, old_value: Any):
        self.entry = entry
        self.chain = chain
        self.value = value
        self.tock = tock
        self.old_value = old_value

    @property
    def node(self) -> str:
        """The node that made this change."""
        return self.chain.node

    @property
    def tick(self) -> int | None:
        return self.chain.tick

    @property
    def is_delete(self) -> bool:
        return self.value is NotGiven

    def to_wire(self, nchain: int = -1) -> dict[str, Any]:
        """``{node, tick, prev, path, value?, tock}`` with at most ``nchain`` links.

        ``path`` is the entry's full path as a plain tuple; ``value`` is absent
        for a deletion. ``nchain == 0`` leaves out the chain fields.
        """
        res = self.chain.to_wire(nchain) if nchain else None
        if res is None:
            res = {}
        res["path"] = self.entry.path
        if self.value is not NotGiven:
            res["value"] = self.value
        res["tock"] = self.tock
        return res

    def __repr__(self) -> str:
        return (
            f"<Event {self.entry.path!r} {self.chain.node}:{self.chain.tick}"
            f" {self.old_value!r}→{self.value!r} @{self.tock}>"
        )


class Outcome(enum.Enum):
    """The result of applying a replicated or loaded update."""

    DUPLICATE = "duplicate"  # the entry's chain already has this head
    STALE = "stale"  # the entry's chain already contains this event
    APPLIED = "applied"  # the update extends the entry's chain (or the entry was empty)
    CONFLICT_KEPT = "conflict-kept"  # concurrent update, the stored change won
    CONFLICT_WON = "conflict-won"  # concurrent update, the incoming change won
    REJECTED = "rejected"  # a validator refused the value

    @property
    def applied(self) -> bool:
        return self in (Outcome.APPLIED, Outcome.CONFLICT_WON)


class Conflict:
    """Two concurrent changes of one entry and which one won."""

    __slots__ = ("path", "winner", "loser", "winner_tock", "loser_tock")

    def __init__(
        self,
        path: tuple[Any, ...],
        winner: ChainLink,
        loser: ChainLink,
        winner_tock: int,
        loser_tock: int,
    ):
        self.path = path
        self.winner = winner
        self.loser = loser
        self.winner_tock = winner_tock
        self.loser_tock = loser_tock

    def to_wire(self) -> dict[str, Any]:
        """``{path, winner: {node, tick}, loser: {node, tick}, winner_tock, loser_tock}``."""
        return {
            "path": self.path,
            "winner": self.winner.to_wire(1),
            "loser": self.loser.to_wire(1),
            "winner_tock": self.winner_tock,
            "loser_tock": self.loser_tock,
        }

    def __repr__(self) -> str:
        w, lo = self.winner, self.loser
        return (
            f"<Conflict {self.path!r} {w.node}:{w.tick}@{self.winner_tock}"
            f" beat {lo.node}:{lo.tick}@{self.loser_tock}>"
        )


@dataclass(slots=True)
class InfoResult:
    """What an ``info`` (or state) map did.

    ``missing``: the ticks peers asked for, by node (to resend); ``purged``:
    tombstones removed; ``dropped``: node records removed.
    """

    missing: dict[str, RangeSet] = field(default_factory=dict)
    purged: int = 0
    dropped: list[str] = field(default_factory=list)
