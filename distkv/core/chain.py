"""Change chains: ChainLink (node, tick, prev) and its wire form (02 §3).

An entry's chain is its most recent event ``(node, tick)`` followed, through
``prev``, by the older events that changed it on *other* nodes; every node
appears at most once. Links are immutable and may be shared between chains.
Chains compare by their head only; :meth:`ChainLink.supersedes` and
:meth:`ChainLink.precedes` give the causal order used by the apply rules.

Wire form: ``{"node": "b", "tick": 7, "prev": {...}}``; ``prev: None`` ends
the chain, a missing ``prev`` key means the sender truncated it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["ChainLink", "chain_from_wire", "chain_text"]


class ChainLink:
    """One event ``(node, tick)`` and the older chain ``prev``. Read-only."""

    __slots__ = ("node", "tick", "prev")

    node: str
    tick: int | None
    prev: ChainLink | None

    def __init__(self, node: str, tick: int | None, prev: ChainLink | None = None):
        _set_node(self, node)
        _set_tick(self, tick)
        _set_prev(self, prev)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"ChainLink is read-only ({name})")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"ChainLink is read-only ({name})")

    def __reduce__(self) -> tuple[Any, ...]:
        return (ChainLink, (self.node, self.tick, self.prev))

    # --- identity: the head --------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ChainLink):
            return self.node == other.node and self.tick == other.tick
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.node, self.tick))

    @property
    def head(self) -> tuple[str, int | None]:
        return (self.node, self.tick)

    # --- walking -------------------------------------------------------------

    def __iter__(self) -> Iterator[tuple[str, int | None]]:
        """The ``(node, tick)`` pairs, newest first."""
        c: ChainLink | None = self
        while c is not None:
            yield c.node, c.tick
            c = c.prev

    def __len__(self) -> int:
        n = 0
        c: ChainLink | None = self
        while c is not None:
            n += 1
            c = c.prev
        return n

    def tick_of(self, node: str) -> int | None:
        """The tick of ``node``'s link in this chain, or ``None``."""
        c: ChainLink | None = self
        while c is not None:
            if c.node == node:
                return c.tick
            c = c.prev
        return None

    def position(self, node: str, tick: int | None) -> int | None:
        """The 0-based depth of the link ``(node, tick)``, or ``None`` if absent."""
        c: ChainLink | None = self
        n = 0
        while c is not None:
            if c.node == node:
                return n if c.tick == tick else None
            c = c.prev
            n += 1
        return None

    def contains(self, node: str, tick: int | None) -> bool:
        """Is ``(node, tick)`` a link of this chain?"""
        c: ChainLink | None = self
        while c is not None:
            if c.node == node:
                return c.tick == tick
            c = c.prev
        return False

    # --- ordering (02 §3.1) ----------------------------------------------------

    def supersedes(self, other: ChainLink | None) -> bool:
        """``self > other``: ``other`` is already part of this chain's history.

        True if this chain holds a link of ``other``'s head node with a tick at
        least ``other``'s; also true when ``other`` is ``None``.
        """
        if other is None:
            return True
        node, tick = other.node, other.tick
        if self.node == node and self.tick == tick:
            return False
        c: ChainLink | None = self
        while c is not None:
            if c.node == node:
                return _ge(c.tick, tick)
            c = c.prev
        return False

    def precedes(self, other: ChainLink | None) -> bool:
        """``self < other``: ``other`` was made on top of this chain's head.

        True if ``other`` holds a link of this head's node with a tick at least
        this head's tick (and the heads differ).
        """
        if other is None:
            return False
        node, tick = self.node, self.tick
        if other.node == node and other.tick == tick:
            return False
        c: ChainLink | None = other
        while c is not None:
            if c.node == node:
                return _ge(c.tick, tick)
            c = c.prev
        return False

    # --- deriving chains -------------------------------------------------------

    def without(self, node: str) -> ChainLink | None:
        """This chain with ``node``'s link removed (``self`` itself if it has none)."""
        if self.node == node:
            return self.prev
        # Copy the links above the removed one; the rest is shared.
        above: list[ChainLink] = []
        c: ChainLink | None = self
        while c is not None and c.node != node:
            above.append(c)
            c = c.prev
        if c is None:
            return self
        rest = c.prev
        for link in reversed(above):
            rest = ChainLink(link.node, link.tick, rest)
        return rest

    def advance(self, node: str, tick: int) -> ChainLink:
        """The chain after ``node`` makes event ``tick`` on top of this one."""
        if self.node == node:
            return ChainLink(node, tick, self.prev)
        return ChainLink(node, tick, self.without(node))

    # --- wire ------------------------------------------------------------------

    def to_wire(self, nchain: int = -1) -> dict[str, Any] | None:
        """The nested map, at most ``nchain`` links (negative: all; 0: ``None``).

        A truncated chain's last map has no ``prev`` key.
        """
        if nchain == 0:
            return None
        res: dict[str, Any] = {"node": self.node}
        if self.tick is not None:
            res["tick"] = self.tick
        cur = res
        c = self.prev
        while True:
            if c is None:
                cur["prev"] = None
                return res
            nchain -= 1
            if nchain == 0:
                return res
            nxt: dict[str, Any] = {"node": c.node}
            if c.tick is not None:
                nxt["tick"] = c.tick
            cur["prev"] = nxt
            cur = nxt
            c = c.prev

    def __repr__(self) -> str:
        return f"<ChainLink {_links_text(self)}>"


_set_node = ChainLink.node.__set__  # type: ignore[attr-defined]
_set_tick = ChainLink.tick.__set__  # type: ignore[attr-defined]
_set_prev = ChainLink.prev.__set__  # type: ignore[attr-defined]


def _ge(a: int | None, b: int | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a >= b


def _links_text(chain: ChainLink) -> str:
    return " ".join(f"{n}:{'-' if t is None else t}" for n, t in chain)


def chain_text(chain: ChainLink | None) -> str:
    """Render a chain as upstream's error texts do: ``<NodeEvent a:5 b:2 (5,)>``."""
    if chain is None:
        return "None"
    tick = "-" if chain.tick is None else chain.tick
    return f"<NodeEvent {_links_text(chain)} ({tick!r},)>"


def chain_from_wire(obj: Any) -> ChainLink | None:
    """Parse a wire chain; ``None``, a non-map or a map without ``node`` give ``None``.

    ``obj`` may also be an ``update`` message: its ``chain`` value is used if
    present, else the chain fields inline (05 §3 shapes A and B). Malformed
    chains (non-int ticks, a node twice) raise ``ValueError``.
    """
    if not isinstance(obj, Mapping):
        return None
    if "chain" in obj:
        obj = obj["chain"]
        if not isinstance(obj, Mapping):
            return None
    if "node" not in obj:
        return None
    pairs: list[tuple[str, int | None]] = []
    seen: set[str] = set()
    m: Any = obj
    while isinstance(m, Mapping) and "node" in m:
        node = m["node"]
        tick = m.get("tick")
        if tick is not None and (not isinstance(tick, int) or isinstance(tick, bool)):
            raise ValueError(f"bad tick in chain: {tick!r}")
        try:
            if node in seen:
                raise ValueError(f"node {node!r} appears twice in a chain")
            seen.add(node)
        except TypeError:
            raise ValueError(f"bad node in chain: {node!r}") from None
        pairs.append((node, tick))
        m = m.get("prev")
    res: ChainLink | None = None
    for node, tick in reversed(pairs):
        res = ChainLink(node, tick, res)
    return res
