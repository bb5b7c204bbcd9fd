"""Entry records and tree walks: what ``get_tree``, ``watch`` and save files send.

* :func:`walk` — pre-order over a subtree, children in creation order, meta
  (``None``) children skipped unless asked for; :func:`walk_acl` the same for
  a user with an ACL, carrying each entry's :class:`~distkv.acl.AclCursor`
  and not descending where the ACL forbids it;
* :func:`entry_record` — ``{value?, chain?, tock}`` of one entry;
* :class:`RelShortener` — the ``depth``/``path`` shortening of 04 §5 for
  paths relative to the requested path.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from distkv.util import NotGiven
from distkv.util.path import Path

__all__ = ["walk", "walk_acl", "entry_record", "RelShortener"]


def walk(
    entry: Any,
    *,
    max_depth: int = -1,
    meta: bool = False,
    meta_top: bool = False,
) -> Iterator[tuple[Any, tuple]]:
    """Yield ``(entry, relative path)`` for ``entry`` and everything below it.

    ``max_depth`` < 0 means unlimited (depth 0 is ``entry`` itself). Children
    named ``None`` (meta roots) are skipped unless ``meta`` is set; with
    ``meta_top`` only the start entry's own ``None`` child is included
    (upstream's ``get_tree … empty=True`` quirk). Each entry's children are
    snapshotted when it is visited, so concurrent changes are safe.
    """
    stack: list[tuple[Any, tuple]] = [(entry, ())]
    pop = stack.pop
    extend = stack.extend
    while stack:
        e, rel = pop()
        yield e, rel
        children = e.children
        if not children:
            continue
        d = len(rel)
        if 0 <= max_depth <= d:
            continue
        if meta or (meta_top and d == 0):
            items = [(c, (*rel, name)) for name, c in children.items()]
        else:
            items = [(c, (*rel, name)) for name, c in children.items() if name is not None]
        items.reverse()
        extend(items)


def walk_acl(
    entry: Any,
    cursor: Any,
    *,
    max_depth: int = -1,
    meta_top: bool = False,
    through: str = "",
) -> Iterator[tuple[Any, tuple, Any]]:
    """Like :func:`walk`, yielding ``(entry, relative path, ACL cursor)``.

    Children are visited only if the cursor :meth:`~distkv.acl.AclCursor.descends`
    and (leniently) passes every letter of ``through``. What the user may do
    with each entry is for the caller to ask its cursor.
    """
    stack: list[tuple[Any, tuple, Any]] = [(entry, (), cursor)]
    pop = stack.pop
    extend = stack.extend
    while stack:
        e, rel, cur = pop()
        yield e, rel, cur
        children = e.children
        if not children:
            continue
        d = len(rel)
        if 0 <= max_depth <= d or not cur.descends():
            continue
        if through and not all(cur.passes(x) for x in through):
            continue
        top = meta_top and d == 0
        items = [
            (c, (*rel, name), cur.child(name))
            for name, c in children.items()
            if name is not None or top
        ]
        items.reverse()
        extend(items)


def entry_record(entry: Any, nchain: int) -> dict:
    """``{value?, chain?, tock}``: value if set, chain if ``nchain`` and the entry (or
    change event) has one."""
    res: dict = {}
    v = entry.value
    if v is not NotGiven:
        res["value"] = v
    if nchain and entry.chain is not None:
        res["chain"] = entry.chain.to_wire(nchain)
    res["tock"] = entry.tock
    return res


class RelShortener:
    """Shorten consecutive relative paths: ``(depth, suffix)`` as in 04 §5.

    ``top`` says that the requested path is the client's root: then a suffix
    with depth 0 is sent as a :class:`Path`, otherwise as a plain tuple (as
    upstream does; receivers accept both).
    """

    __slots__ = ("last", "_top")

    def __init__(self, top: bool):
        self._top = top
        self.last: tuple = ()  # the previous record's relative path

    def __call__(self, record: dict, rel: tuple) -> dict:
        """Set ``record["path"]`` and ``record["depth"]`` for ``rel``; returns ``record``."""
        last = self.last
        d = 0
        n = min(len(rel), len(last))
        while d < n and rel[d] == last[d]:
            d += 1
        self.last = rel
        if d == 0 and self._top:
            record["path"] = Path.build(rel)
        else:
            record["path"] = rel[d:]
        record["depth"] = d
        return record
