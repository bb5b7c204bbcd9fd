"""What to ask peers for and what to send them: the decisions of recovery (05 §6).

* :func:`settle_chain` — after a peer's update: every event of its chain is
  now accounted for here, and nobody needs it resent any more;
* :func:`missing_request` — the ``info.missing`` map to send: ticks missing
  here, minus those peers asked for lately;
* :func:`plan_resend` — answering peers' ``missing``: the entries to send
  again (with their *whole* chain, so that a requested tick deep in a chain
  arrives too — spec 15 #11) and the ``known``/``deleted`` ticks to announce;
* :func:`resend_message` — one entry as an ``update`` (shape B);
* :func:`ticks_map` — ``info.ticks``: every node's highest known tick.

Pure: the server's replication code does the sending and the timing.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from typing import Any

from distkv.util import NotGiven

from .chain import ChainLink
from .ranges import RangeSet
from .store import Store
from .tree import Entry

__all__ = ["ResendPlan", "missing_request", "plan_resend", "resend_message", "settle_chain",
           "ticks_map"]


def settle_chain(store: Store, chain: ChainLink) -> None:
    """A peer's update with ``chain`` was processed (whatever the outcome).

    Its events that no local chain holds are history here: superseded, not
    missing (a truncated local chain may lack deep links of an entry whose
    head we have). And none of them needs to be resent by us any more.
    """
    nodes = store.nodes
    for n, t in chain:
        rec = nodes.get(n)
        if rec is None or t is None:
            continue
        if t not in rec.present:
            rec.superseded.add(t)
        if rec.remote_missing:
            rec.remote_missing.discard(t)


def missing_request(
    store: Store, exclude: Mapping[str, RangeSet] | None = None
) -> dict[str, RangeSet]:
    """Ticks missing here that are not in ``exclude`` (requested by others lately)."""
    res = {}
    for name, ticks in store.missing().items():
        if exclude:
            other = exclude.get(name)
            if other:
                ticks = ticks - other
        if ticks:
            res[name] = ticks
    return res


class ResendPlan:
    """What to send in answer to peers' ``missing`` requests."""

    __slots__ = ("entries", "known", "deleted")

    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self.known: dict[str, RangeSet] = {}
        self.deleted: dict[str, RangeSet] = {}

    def __bool__(self) -> bool:
        return bool(self.entries or self.known or self.deleted)

    def info(self) -> dict[str, Any]:
        """The ``info`` map announcing known/deleted ticks (empty if there are none)."""
        res: dict[str, Any] = {}
        if self.known:
            res["known"] = {n: r.to_wire() for n, r in self.known.items()}
        if self.deleted:
            res["deleted"] = {n: r.to_wire() for n, r in self.deleted.items()}
        return res


def plan_resend(store: Store, nodes: Container[str] | None = None) -> ResendPlan:
    """Answer what peers asked for (the remote-missing ticks of ``nodes``, default all).

    Ticks held here: their entries, each once. Ticks of deletion records that
    are gone here: ``deleted``. Other resolved ticks: ``known``. Answered
    ticks leave the remote-missing sets; ticks nobody here can answer stay.
    """
    plan = ResendPlan()
    held: dict[str, RangeSet] = {}
    for rec in store.nodes.values():
        rm = rec.remote_missing
        if not rm or (nodes is not None and rec.name not in nodes):
            continue
        h = rm & rec.present
        if h:
            held[rec.name] = h
        gone = rm - rec.present
        d = gone & rec.deleted
        k = (gone & rec.superseded) - d
        if d:
            plan.deleted[rec.name] = d
        if k:
            plan.known[rec.name] = k
        rec.remote_missing = rm - (h | d | k)
    if held:
        seen: set[int] = set()
        for entry in store.find_events(held).values():
            if id(entry) not in seen:
                seen.add(id(entry))
                plan.entries.append(entry)
    return plan


def resend_message(entry: Entry) -> dict[str, Any]:
    """``{value?, chain, tock, path}`` with the whole chain; no value for a tombstone."""
    res: dict[str, Any] = {}
    if entry.value is not NotGiven:
        res["value"] = entry.value
    assert entry.chain is not None
    res["chain"] = entry.chain.to_wire(-1)
    res["tock"] = entry.tock
    res["path"] = entry.path
    return res


def ticks_map(store: Store) -> dict[str, int | None]:
    """``{node: tick}`` for every known node."""
    return {n.name: n.tick for n in store.nodes.values()}
