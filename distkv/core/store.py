"""Store: the tree, the node records and the tock counter, and the rules that change them.

* :meth:`Store.local_change`: a client write on this server (02 §6.1);
* :meth:`Store.apply_update`: a replicated or loaded update (02 §6);
* :meth:`Store.process_info` / :meth:`Store.process_state`: tick bookkeeping
  from peers' ``info`` maps and from state downloads (05 §5, §6.2);
* :meth:`Store.purge`, :meth:`Store.kill_node`: deletion records and nodes (02 §7, §8);
* :meth:`Store.get_state`, :meth:`Store.enum_node`, :meth:`Store.find_event`: reading it.

Concurrent changes are resolved deterministically: the change with the higher
tock wins, then the higher tick, then the lower node name — every server ends
with the same winner whatever order updates arrive in. A tombstone (deleted
entry) takes part in that contest like a value. Purging only ever removes
tombstones whose chain head is the purged tick, never a live value.

No I/O, no clock: time (tock) comes in with the updates.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from distkv.exceptions import ClientChainError, ClientError, ServerError
from distkv.util import NotGiven

from .chain import ChainLink, chain_from_wire, chain_text
from .events import Conflict, Event, InfoResult, Outcome
from .nodes import Node
from .ranges import RangeSet
from .tree import Entry

__all__ = ["Store", "Observer", "Validator"]

Observer = Callable[[Entry, Event], Any]
"""Called as ``observer(entry, event)`` after every applied change."""

Validator = Callable[[Entry, Any, bool], Any]
"""Called as ``validator(entry, value, local)`` before a change is applied; raising refuses it."""


class Store:
    """One server's copy of the data and of what it knows about every node."""

    def __init__(self, node_name: str, *, max_conflicts: int = 100):
        self.name = node_name
        self.root = Entry(None, None)
        Entry(None, self.root)  # the meta root
        self.nodes: dict[str, Node] = {}
        self.node_drop: set[str] = set()
        self.node = self._node(node_name)
        self.tock = 0
        self.observers: list[Observer] = []
        self.validators: list[Validator] = []
        self.conflicts: deque[Conflict] = deque(maxlen=max_conflicts)
        # (node, tick) of a tombstone's chain head -> the tombstone; only
        # deleted entries are indexed, so purging needs no tree walk.
        self._tombstones: dict[tuple[str, int | None], Entry] = {}

    def __repr__(self) -> str:
        return f"<Store {self.name} tick={self.node.tick} tock={self.tock}>"

    # --- basics ---------------------------------------------------------------

    @property
    def meta_root(self) -> Entry:
        """The ``None`` child of the root (auth, ACLs, types, codecs, actors)."""
        root = self.root
        meta = root.get(None)
        if meta is None:
            meta = Entry(None, root, root.tock)
        return meta

    def next_tock(self) -> int:
        """A fresh tock (reading the counter advances it)."""
        self.tock += 1
        return self.tock

    def raise_tock(self, tock: Any) -> bool:
        """Make the counter at least ``tock``; true if it moved."""
        if isinstance(tock, int) and tock > self.tock:
            self.tock = tock
            return True
        return False

    def follow(self, path: Sequence[Any], create: bool = False) -> Entry | None:
        """The entry at ``path`` (``None`` allowed anywhere); see :meth:`Entry.follow`."""
        return self.root.follow(path, create)

    def _node(self, name: str) -> Node:
        node = self.nodes.get(name)
        if node is None:
            node = self.nodes[name] = Node(name)
            self.node_drop.discard(name)
        return node

    def missing(self) -> dict[str, RangeSet]:
        """The ticks this server lacks, by node (nodes with tick 0/unknown skipped)."""
        res = {}
        for node in self.nodes.values():
            if node.tick:
                m = node.missing()
                if m:
                    res[node.name] = m
        return res

    # --- client preconditions ---------------------------------------------------

    def check_write(
        self,
        entry: Entry | None,
        chain: Any = NotGiven,
        prev: Any = NotGiven,
        *,
        path: Any = None,
    ) -> None:
        """Check ``set_value``/``delete_value`` preconditions (04 §6.4 items 5-6).

        ``prev``: the value the client expects; ``chain``: the chain it
        expects (a wire map, ``None``/``{}`` for "must be new", or a
        ChainLink). ``path`` is what the error texts show (default: the
        entry's path). A client's chain never creates node records.
        """
        value = NotGiven if entry is None else entry.value
        if prev is not NotGiven and value != prev:
            raise ClientError(f"Data is {value!r} not {prev!r} at {_where(entry, path)}")
        if chain is NotGiven:
            return
        want = chain if isinstance(chain, ChainLink) else chain_from_wire(chain)
        if want is None:
            if value is not NotGiven:
                raise ClientChainError(f"Entry already exists at {_where(entry, path)}")
        elif value is NotGiven:
            raise ClientChainError(f"Entry is new at {_where(entry, path)}")
        else:
            have = entry.chain if entry is not None else None
            if have != want:
                raise ClientChainError(
                    f"Chain is {chain_text(have)} not {chain_text(want)} for {_where(entry, path)}"
                )

    # --- changes -------------------------------------------------------------------

    def local_change(self, entry: Entry, value: Any) -> Event:
        """Change ``entry`` on this server (``value`` NotGiven deletes it).

        Allocates the next tick and a fresh tock, runs the validators, applies
        and notifies. If a validator raises, the tick is recorded as deleted
        (and superseded), nothing else changes, and the exception propagates:
        the caller should announce ``info {deleted: {self: [store.node.tick]}}``.
        """
        node = self.node
        name = node.name
        tick = (node.tick or 0) + 1
        node.tick = tick
        tock = self.tock + 2
        self.tock = tock + 1

        old = entry.chain
        if old is None:
            dropped = None
            chain = ChainLink(name, tick, None)
        elif old.node == name:
            dropped = old.tick
            chain = ChainLink(name, tick, old.prev)
        else:
            dropped = old.tick_of(name)
            chain = ChainLink(name, tick, old if dropped is None else old.without(name))

        if self.validators:
            try:
                for check in self.validators:
                    check(entry, value, True)
            except BaseException:
                node.mark_failed(tick)
                raise

        old_value = entry.value
        entry.value = value
        entry.tock = tock
        entry.chain = chain
        # Only now is our own older event of this entry gone (15 #7).
        node.advance(tick, dropped)
        if old is not None and old_value is NotGiven:
            self._untomb(old, entry)
            if value is not NotGiven:
                self._revive(chain)
        if value is NotGiven:
            self._entomb(chain, entry)

        event = Event(entry, chain, value, tock, old_value)
        # (what _notify does, inline: this runs for every client write)
        for obs in self.observers:
            obs(entry, event)
        e: Entry | None = entry
        while e is not None:
            w = e.watchers
            if w:
                for cb in tuple(w):
                    cb(entry, event)
            e = e.parent
        return event

    def apply_update(
        self,
        path: Sequence[Any],
        chain: ChainLink | None,
        value: Any,
        tock: int | None,
        *,
        loading: bool = False,
    ) -> Outcome:
        """Apply a replicated (or loaded) update to the entry at ``path`` (02 §6).

        ``value`` NotGiven is a deletion. The entry is created if needed. The
        tock counter is raised to ``tock``; the chain's nodes get records and
        their ticks are raised. Validators run with ``local=False``; if one
        raises, the update's events count as superseded and the exception
        propagates. ``loading``: conflicts are resolved but not recorded.
        """
        if chain is None:
            raise ValueError("An update needs a chain")
        if tock is None:
            tock = 0
        elif not isinstance(tock, int) or isinstance(tock, bool):
            raise ValueError(f"bad tock: {tock!r}")
        self.raise_tock(tock)
        for n, t in chain:
            if t is None:
                raise ValueError(f"chain link without tick: {n!r}")
            self._node(n).seen(t)

        entry = self.root.follow(path, True)
        assert entry is not None
        cur = entry.chain
        outcome = Outcome.APPLIED
        if cur is not None:
            if cur == chain:
                return Outcome.DUPLICATE
            if cur.supersedes(chain):
                self._drop_events(chain, cur)
                return Outcome.STALE
            if not cur.precedes(chain):
                # Concurrent changes. Unlike upstream, a tombstone competes too:
                # otherwise the result would depend on arrival order (15 #10).
                if not _beats(chain, tock, cur, entry.tock):
                    self._drop_events(chain, cur)
                    if not loading:
                        self._record_conflict(entry, cur, entry.tock, chain, tock)
                    return Outcome.CONFLICT_KEPT
                outcome = Outcome.CONFLICT_WON

        if self.validators:
            try:
                for check in self.validators:
                    check(entry, value, False)
            except BaseException:
                self._drop_events(chain, cur)
                raise

        if outcome is Outcome.CONFLICT_WON and not loading:
            assert cur is not None
            self._record_conflict(entry, chain, tock, cur, entry.tock)
        event = self._commit(entry, chain, value, tock)
        self._notify(entry, event)
        return outcome

    def _commit(self, entry: Entry, chain: ChainLink, value: Any, tock: int) -> Event:
        """Install a change that won (02 §6 rules 5-9)."""
        old = entry.chain
        old_value = entry.value
        entry.value = value
        entry.tock = tock
        entry.chain = chain
        nodes = self.nodes
        if old is not None:
            if old_value is NotGiven:
                self._untomb(old, entry)
            for n, t in old:
                if not chain.contains(n, t):
                    node = nodes.get(n)
                    if node is not None:
                        node.supersede(t)
        for n, t in chain:
            node = nodes[n]
            node.mark_present(t)
            if value is not NotGiven and node.deleted:
                node.deleted.discard(t)
        if value is NotGiven:
            self._entomb(chain, entry)
        return Event(entry, chain, value, tock, old_value)

    def _drop_events(self, chain: ChainLink, cur: ChainLink | None) -> None:
        """An update lost: its events that ``cur`` lacks are superseded."""
        nodes = self.nodes
        for n, t in chain:
            if cur is None or not cur.contains(n, t):
                nodes[n].drop_unheld(t)

    def _record_conflict(
        self, entry: Entry, win: ChainLink, win_tock: int, lose: ChainLink, lose_tock: int
    ) -> None:
        self.conflicts.append(
            Conflict(
                entry.path,
                ChainLink(win.node, win.tick),
                ChainLink(lose.node, lose.tick),
                win_tock,
                lose_tock,
            )
        )

    def _entomb(self, chain: ChainLink, entry: Entry) -> None:
        """``entry`` became a tombstone: its events are deletion records (rule 8)."""
        nodes = self.nodes
        for n, t in chain:
            nodes[n].deleted.add(t)
        self._tombstones[(chain.node, chain.tick)] = entry

    def _untomb(self, chain: ChainLink, entry: Entry) -> None:
        key = (chain.node, chain.tick)
        if self._tombstones.get(key) is entry:
            del self._tombstones[key]

    def _revive(self, chain: ChainLink) -> None:
        """A tombstone got a value again: the events kept in its chain are no deletions."""
        nodes = self.nodes
        for n, t in chain:
            node = nodes.get(n)
            if node is not None and node.deleted:
                node.deleted.discard(t)

    def _notify(self, entry: Entry, event: Event) -> None:
        """Observers, then the watchers of the entry and of all its ancestors (rule 10)."""
        for obs in self.observers:
            obs(entry, event)
        e: Entry | None = entry
        while e is not None:
            w = e.watchers
            if w:
                for cb in tuple(w):
                    cb(entry, event)
            e = e.parent

    # --- finding events ---------------------------------------------------------------

    def find_event(self, node: str, tick: int) -> Entry | None:
        """The entry whose chain holds ``(node, tick)``, or ``None``.

        Unknown node: ``KeyError(node)``. Walks the tree unless the tick is
        not present or heads a tombstone.
        """
        rec = self.nodes.get(node)
        if rec is None:
            raise KeyError(node)
        if tick not in rec.present:
            return None
        e = self._tombstones.get((node, tick))
        if e is not None:
            return e
        for e, _ in self.root.walk(full=True):
            c = e.chain
            if c is not None and c.contains(node, tick):
                return e
        return None

    def find_events(self, wanted: Mapping[str, RangeSet]) -> dict[tuple[str, int], Entry]:
        """The entries holding the present ones among ``wanted`` ticks, in one walk."""
        look: dict[str, RangeSet] = {}
        todo = 0
        for name, ticks in wanted.items():
            rec = self.nodes.get(name)
            if rec is not None:
                held = ticks & rec.present
                if held:
                    look[name] = held
                    todo += len(held)
        res: dict[tuple[str, int], Entry] = {}
        if not todo:
            return res
        for e, _ in self.root.walk(full=True):
            c = e.chain
            while c is not None:
                r = look.get(c.node)
                if r is not None and c.tick in r:
                    res[(c.node, c.tick)] = e
                    todo -= 1
                c = c.prev
            if todo <= 0:
                break
        return res

    def _heads_of(self, name: str) -> list[Entry]:
        return [
            e for e, _ in self.root.walk(full=True) if e.chain is not None and e.chain.node == name
        ]

    def enum_node(self, node: str, max: int = 0, current: bool = False) -> list[int]:  # noqa: A002
        """Ticks of ``node`` held by some chain (``current``: only chain heads).

        Ascending; at most ``max`` (0 = all). Unknown node: ``KeyError(node)``.
        """
        rec = self.nodes.get(node)
        if rec is None:
            raise KeyError(node)
        if current:
            ticks: Iterable[int] = sorted(e.chain.tick for e in self._heads_of(node))  # type: ignore[union-attr]
        else:
            ticks = rec.present
        res = []
        for t in ticks:
            res.append(t)
            if len(res) == max:
                break
        return res

    # --- deletion records, dropping nodes ------------------------------------------------

    def purge(self, node: str, ticks: RangeSet | Any) -> int:
        """The deleter says these deletion records may go (02 §7).

        Tombstones whose chain head is one of ``ticks`` are removed from the
        tree (with their now-empty ancestors) and all their events become
        superseded; ticks no chain holds become superseded too. Ticks in a
        live entry's chain stay untouched (15 #47). Returns the number of
        tombstones removed.
        """
        ticks = RangeSet.from_wire(ticks)
        rec = self._node(node)
        held = ticks & rec.present
        rec.purge(ticks - held)
        return self._purge_tombstones(node, held)

    def _report_deleted(self, node: str, ticks: RangeSet) -> int:
        """A peer announced these ticks as deleted (``info.deleted``); the node reached them."""
        rec = self._node(node)
        rec.seen(ticks.last())
        held = ticks & rec.present
        gone = ticks - held
        if gone:
            rec.deleted |= gone
            rec.superseded |= gone
            rec.remote_missing -= gone
        return self._purge_tombstones(node, held)

    def _purge_tombstones(self, node: str, ticks: RangeSet) -> int:
        tomb = self._tombstones
        victims = [e for t in ticks if (e := tomb.get((node, t))) is not None]
        for e in victims:
            self._purge_entry(e)
        return len(victims)

    def _purge_entry(self, entry: Entry) -> None:
        chain = entry.chain
        if chain is None or entry.value is not NotGiven:
            return
        self._untomb(chain, entry)
        entry.chain = None
        for n, t in chain:
            rec = self.nodes.get(n)
            if rec is not None:
                rec.present.discard(t)
                rec.deleted.discard(t)
                rec.remote_missing.discard(t)
                rec.superseded.add(t)
        meta = self.root.get(None)
        e = entry
        while e.parent is not None and e is not meta and e.is_prunable():
            parent = e.parent
            e.detach()
            e = parent

    def kill_node(self, name: str) -> None:
        """Remove node ``name`` (02 §8) unless it heads some entry's chain.

        ``ServerError("Node <n> has entry <tick>")`` if it does; ``KeyError``
        if unknown. The caller broadcasts ``info {node_drop: [name]}``.
        """
        if name not in self.nodes:
            raise KeyError(name)
        if name == self.name:
            raise ServerError(f"Node {name} is this server")
        heads = self._heads_of(name)
        if heads:
            raise ServerError(f"Node {name} has entry {heads[0].chain.tick}")  # type: ignore[union-attr]
        self._remove_node(name)

    def _drop_node(self, name: str) -> bool:
        """``info.node_drop``: drop the node unless it is us or heads an entry."""
        if name not in self.nodes or name == self.name or self._heads_of(name):
            return False
        self._remove_node(name)
        return True

    def _remove_node(self, name: str) -> None:
        if self.nodes[name].present:
            for e, _ in self.root.walk(full=True):
                c = e.chain
                if c is not None and c.tick_of(name) is not None:
                    e.chain = c.without(name)
        del self.nodes[name]
        self.node_drop.add(name)

    # --- info and state maps ---------------------------------------------------------------

    def process_info(self, msg: Mapping[str, Any]) -> InfoResult:
        """Apply the bookkeeping of a peer's ``info`` map (05 §5).

        Keys, in this order: ``ticks``, ``missing``, ``superseded`` (or
        ``known``), ``deleted``, ``node_drop``. Messages from ourselves are
        ignored. Recovery steps and resending are the caller's business; the
        result lists what peers asked for.
        """
        res = InfoResult()
        if msg.get("node") == self.name:
            return res
        self.raise_tock(msg.get("tock"))
        for name, tick in _items(msg, "ticks"):
            if tick is None or isinstance(tick, int):
                self._node(name).seen(tick)
        for name, ticks in _sets(msg, "missing"):
            self._node(name).report_missing(ticks)
            if ticks:
                res.missing[name] = ticks
        key = "superseded" if msg.get("superseded") is not None else "known"
        for name, ticks in _sets(msg, key):
            self._node(name).report_superseded(ticks)
        for name, ticks in _sets(msg, "deleted"):
            res.purged += self._report_deleted(name, ticks)
        for name in msg.get("node_drop") or ():
            if self._drop_node(name):
                res.dropped.append(name)
        return res

    def process_state(self, msg: Mapping[str, Any]) -> InfoResult:
        """Take over a peer's ``get_state`` reply or a save file's header (05 §6.2).

        ``nodes`` raise ticks, ``known`` marks superseded (without touching
        remote-missing), ``deleted``, ``remote_missing`` and ``node_drop`` as
        in an ``info``.
        """
        res = InfoResult()
        self.raise_tock(msg.get("tock"))
        for name, tick in _items(msg, "nodes"):
            if tick is None or isinstance(tick, int):
                self._node(name).seen(tick)
        for name, ticks in _sets(msg, "known"):
            self._node(name).report_superseded(ticks, local=True)
        for name, ticks in _sets(msg, "deleted"):
            res.purged += self._report_deleted(name, ticks)
        for name, ticks in _sets(msg, "remote_missing"):
            self._node(name).report_missing(ticks)
            if ticks:
                res.missing[name] = ticks
        for name in msg.get("node_drop") or ():
            if self._drop_node(name):
                res.dropped.append(name)
        return res

    def get_state(
        self,
        nodes: bool = False,
        known: bool = False,
        superseded: bool = False,
        present: bool = False,
        deleted: bool = False,
        missing: bool = False,
        remote_missing: bool = False,
        node_drop: bool = False,
        debug: bool = False,
        **_ignored: Any,
    ) -> dict[str, Any]:
        """The ``get_state`` reply (04 §6.14); range sets in wire form.

        Nodes whose set is empty are left out; ``node`` and a fresh ``tock``
        are always there. ``known`` and ``superseded`` both ask for the
        superseded ticks (sent as ``known``).
        """
        res: dict[str, Any] = {}
        recs = self.nodes.values()
        if nodes:
            res["nodes"] = {n.name: n.tick for n in recs}
        if known or superseded:
            res["known"] = {n.name: n.superseded.to_wire() for n in recs if n.superseded}
        if present:
            res["present"] = {n.name: n.present.to_wire() for n in recs if n.present}
        if deleted:
            res["deleted"] = {n.name: n.deleted.to_wire() for n in recs if n.deleted}
        if missing:
            res["missing"] = {k: v.to_wire() for k, v in self.missing().items()}
        if remote_missing:
            res["remote_missing"] = {
                n.name: n.remote_missing.to_wire() for n in recs if n.remote_missing
            }
        if node_drop:
            res["node_drop"] = sorted(self.node_drop, key=str)
        if debug:
            res["debug"] = {}
        res["node"] = self.name
        res["tock"] = self.next_tock()
        return res


def _beats(new: ChainLink, new_tock: int, cur: ChainLink, cur_tock: int) -> bool:
    """Does the concurrent change ``new`` win over ``cur``? Tock, then tick, then lower name."""
    if new_tock != cur_tock:
        return new_tock > cur_tock
    if new.tick != cur.tick:
        return new.tick > cur.tick  # type: ignore[operator]
    return new.node < cur.node


def _where(entry: Entry | None, path: Any) -> str:
    if path is not None:
        return str(path)
    if entry is None:
        return "?"
    try:
        from distkv.util.path import Path
    except ImportError:  # pragma: no cover - the path module is part of the package
        return str(entry.path)
    return str(Path.build(entry.path))


def _items(msg: Mapping[str, Any], key: str) -> Iterable[tuple[str, Any]]:
    val = msg.get(key)
    if val is None:
        return ()
    if not isinstance(val, Mapping):
        raise ValueError(f"{key}: expected a map, got {val!r}")
    return val.items()


def _sets(msg: Mapping[str, Any], key: str) -> Iterable[tuple[str, RangeSet]]:
    return [(name, RangeSet.from_wire(v)) for name, v in _items(msg, key)]
