"""Entry: one node of the data tree (02 §1).

An entry holds a value (``NotGiven`` = none), the chain of its last change,
that change's tock and its children (a dict in creation order, ``None`` until
the first child arrives). ``watchers`` belongs to the server's watch code; the
core only calls the callables in it, as ``watcher(changed_entry, event)``, for
every change of the entry or of anything below it. Entries are kept small on purpose: a
server holds millions of them.

The child named ``None`` of an entry is a meta root; walks skip it unless
asked for the full tree. Rules about *changing* entries live in
:mod:`distkv.core.store`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from distkv.util import NotGiven

from .chain import ChainLink

__all__ = ["Entry"]


class Entry:
    """A tree node: name, parent, value, chain, tock, children, watchers."""

    __slots__ = ("name", "parent", "value", "chain", "tock", "children", "watchers")

    def __init__(self, name: Any, parent: Entry | None, tock: int = 0):
        self.name = name
        self.parent = parent
        self.value: Any = NotGiven
        self.chain: ChainLink | None = None
        self.tock = tock
        self.children: dict[Any, Entry] | None = None
        self.watchers: list[Callable[..., Any]] | None = None
        if parent is not None:
            if parent.children is None:
                parent.children = {name: self}
            else:
                parent.children[name] = self

    def __repr__(self) -> str:
        res = f"<Entry {self.path!r}"
        if self.chain is not None:
            res += f" @{self.chain.node}:{self.chain.tick}"
        if self.value is not NotGiven:
            res += f" ={self.value!r}"
        return res + ">"

    @property
    def has_value(self) -> bool:
        return self.value is not NotGiven

    @property
    def path(self) -> tuple[Any, ...]:
        """The names from the root down to this entry (the root's path is ``()``)."""
        names = []
        e = self
        while e.parent is not None:
            names.append(e.name)
            e = e.parent
        names.reverse()
        return tuple(names)

    @property
    def depth(self) -> int:
        n = 0
        e = self.parent
        while e is not None:
            n += 1
            e = e.parent
        return n

    def get(self, name: Any) -> Entry | None:
        """The child called ``name``, if any."""
        ch = self.children
        return None if ch is None else ch.get(name)

    def follow(self, path: Sequence[Any], create: bool = False) -> Entry | None:
        """The entry at ``path`` below this one.

        Missing entries are created (valueless, inheriting their parent's
        tock) if ``create``; otherwise a missing one gives ``None``.
        """
        e = self
        for name in path:
            try:
                e = e.children[name]  # (the usual case: one subscript)
            except (KeyError, TypeError):  # no such child, no children at all
                ch = e.children
                child = None if ch is None else ch.get(name)  # (unhashable: TypeError)
                if child is None:
                    if not create:
                        return None
                    child = Entry(name, e, e.tock)
                e = child
        return e

    def walk(
        self, full: bool = False, min_depth: int = 0, max_depth: int = -1
    ) -> Iterator[tuple[Entry, int]]:
        """Pre-order ``(entry, depth)`` pairs, depth relative to this entry.

        Children come in creation order; ``None`` children (meta roots) only
        if ``full``. ``max_depth`` < 0 means unlimited. Each child list is
        copied when reached, so the tree may change while the walk is paused.
        """
        if min_depth <= 0:
            yield self, 0
        if not self.children or max_depth == 0:
            return
        stack: list[tuple[Iterator[Entry], int]] = [(iter(list(self.children.values())), 1)]
        while stack:
            it, d = stack[-1]
            for e in it:
                if e.name is None and not full:
                    continue
                if d >= min_depth:
                    yield e, d
                if e.children and d != max_depth:
                    stack.append((iter(list(e.children.values())), d + 1))
                    break
            else:
                stack.pop()

    def is_prunable(self) -> bool:
        """Nothing here worth keeping: no value, chain, children or watchers."""
        return (
            self.value is NotGiven
            and self.chain is None
            and not self.children
            and not self.watchers
        )

    def detach(self) -> None:
        """Remove this entry from its parent."""
        p = self.parent
        if p is not None and p.children is not None:
            if p.children.get(self.name) is self:
                del p.children[self.name]
            if not p.children:
                p.children = None
