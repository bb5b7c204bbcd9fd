"""ConflictLog: the conflicts a server knows of, mergeable between servers.

A conflict is two concurrent changes of one entry; the deterministic rule of
:mod:`.store` picks the winner. Every change loses at most once, so a record
is keyed by its *losing* event ``(node, tick)``. Records reach a server in
two ways: the Store reports the conflicts it resolves itself
(:meth:`ConflictLog.append`, the ``Store.conflicts`` sink), and peers send the
ones they resolved (:meth:`ConflictLog.merge`). Merging is commutative: for
one losing event the record whose winner ranks highest (tock, then tick, then
the lower node name) stays, and when the log is full the lowest-ranking
records (oldest loser tock first) go. So servers that exchanged their records
hold identical logs, whatever the order — :meth:`ConflictLog.digest` tells
whether two logs are equal without sending them.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from .chain import ChainLink
from .events import Conflict

__all__ = ["ConflictLog", "conflict_from_wire"]

MAX_CONFLICTS = 200


def _rank(c: Conflict) -> tuple:
    """Eviction order: oldest losing change first (a total order on keys)."""
    return (c.loser_tock, c.loser.node, c.loser.tick)


def _winner_key(c: Conflict) -> tuple:
    # higher tock, then higher tick, then *lower* name ranks higher
    return (c.winner_tock, c.winner.tick or 0, _Desc(c.winner.node), c.loser_tock)


class _Desc:
    """Reverses the order of a string inside a sort key."""

    __slots__ = ("s",)

    def __init__(self, s: str):
        self.s = s

    def __lt__(self, other: _Desc) -> bool:
        return self.s > other.s

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Desc) and self.s == other.s


def conflict_from_wire(rec: Any) -> Conflict:
    """A :class:`Conflict` from its wire map (:meth:`Conflict.to_wire`); ``ValueError`` if bad."""
    if not isinstance(rec, Mapping):
        raise ValueError(f"a conflict record must be a map, not {rec!r:.60}")
    try:
        path = tuple(rec["path"])
        win, lose = rec["winner"], rec["loser"]
        winner = ChainLink(_str(win["node"]), _int(win["tick"]))
        loser = ChainLink(_str(lose["node"]), _int(lose["tick"]))
        return Conflict(path, winner, loser, _int(rec["winner_tock"]), _int(rec["loser_tock"]))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"bad conflict record {rec!r:.100}: {exc!r}") from None


def _str(v: Any) -> str:
    if not isinstance(v, str):
        raise TypeError(f"not a string: {v!r}")
    return v


def _int(v: Any) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise TypeError(f"not an int: {v!r}")
    return v


class ConflictLog:
    """Known conflicts by losing event (see the module docstring).

    ``fresh`` collects the records this server resolved itself since the last
    :meth:`take_fresh` (to be told to the peers).
    """

    __slots__ = ("maxlen", "_by_loser", "fresh")

    def __init__(self, maxlen: int = MAX_CONFLICTS):
        self.maxlen = maxlen
        self._by_loser: dict[tuple[str, int | None], Conflict] = {}
        self.fresh: list[Conflict] = []

    def __len__(self) -> int:
        return len(self._by_loser)

    def __iter__(self) -> Iterator[Conflict]:
        """The records, oldest losing change first."""
        return iter(sorted(self._by_loser.values(), key=_rank))

    def append(self, c: Conflict) -> None:
        """The Store resolved a conflict (the ``Store.conflicts`` sink)."""
        if self._put(c):
            self.fresh.append(c)

    def merge(self, records: Iterable[Conflict]) -> list[Conflict]:
        """Take peers' records; returns those that changed this log."""
        return [c for c in records if self._put(c)]

    def take_fresh(self) -> list[Conflict]:
        """The records resolved here since the last call."""
        res, self.fresh = self.fresh, []
        return res

    def _put(self, c: Conflict) -> bool:
        key = c.loser.head
        old = self._by_loser.get(key)
        if old is not None and not _winner_key(old) < _winner_key(c):
            return False
        self._by_loser[key] = c
        if len(self._by_loser) > self.maxlen:
            worst = min(self._by_loser.values(), key=_rank)
            del self._by_loser[worst.loser.head]
            return worst is not c
        return True

    def to_wire(self) -> list[dict[str, Any]]:
        return [c.to_wire() for c in self]

    def digest(self) -> str:
        """A short hash of the records' keys and winners (equal logs, equal digests)."""
        items = sorted(
            (c.loser.node, c.loser.tick or 0, c.winner.node, c.winner.tick or 0, c.winner_tock,
             c.loser_tock)
            for c in self._by_loser.values()
        )
        return hashlib.blake2b(repr(items).encode(), digest_size=8).hexdigest()
