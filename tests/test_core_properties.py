"""Property tests of the core: range sets, chains, and a simulated cluster of Stores.

The cluster test runs three Stores that make local changes and exchange their
``update`` maps (and ``info`` maps for refused changes) over an in-memory bus
that delays, reorders and duplicates messages. Once everything is delivered,
every Store must hold the same tree, have agreed on every conflict it saw, and
account for every tick of every node.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from distkv.core import ChainLink, RangeSet, Store, chain_from_wire
from distkv.util import NotGiven

# --- RangeSet against Python's set ---------------------------------------------------

small_ints = st.integers(min_value=0, max_value=60)
range_ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), small_ints),
        st.tuples(st.just("discard"), small_ints),
        st.tuples(st.just("add_range"), small_ints, small_ints),
        st.tuples(st.just("discard_range"), small_ints, small_ints),
    ),
    max_size=40,
)


def apply_range_ops(ops: list[tuple]) -> tuple[RangeSet, set[int]]:
    r, model = RangeSet(), set()
    for op, *args in ops:
        getattr(r, op)(*args)
        if op == "add":
            model.add(args[0])
        elif op == "discard":
            model.discard(args[0])
        elif op == "add_range":
            model |= set(range(*args))
        else:
            model -= set(range(*args))
    return r, model


def well_formed(r: RangeSet) -> bool:
    """Strictly increasing boundaries: no empty, overlapping or touching runs."""
    pairs = list(r.intervals())
    return all(a < b for a, b in pairs) and all(
        b1 < a2 for (_, b1), (a2, _) in zip(pairs, pairs[1:], strict=False)
    )


@given(range_ops, range_ops)
def test_rangeset_behaves_like_a_set(ops1, ops2):
    r1, m1 = apply_range_ops(ops1)
    r2, m2 = apply_range_ops(ops2)
    assert set(r1) == m1 and len(r1) == len(m1) and well_formed(r1)
    assert all((x in r1) == (x in m1) for x in range(-1, 62))
    for got, want in [(r1 | r2, m1 | m2), (r1 & r2, m1 & m2), (r1 - r2, m1 - m2)]:
        assert set(got) == want and well_formed(got)
    r3 = r1.copy()
    r3 -= r2
    assert set(r3) == m1 - m2 and well_formed(r3)
    r3 |= r2
    assert set(r3) == m1 | m2 and well_formed(r3)
    assert RangeSet.from_wire(r1.to_wire()) == r1


# --- chains -------------------------------------------------------------------------------

node_names = st.sampled_from(["a", "b", "c", "d", "e"])


@given(st.lists(node_names, min_size=1, max_size=30))
def test_advancing_keeps_nodes_unique_and_round_trips(writers):
    """Any sequence of writers: each node once, newest first, wire round trip for every nchain."""
    c: ChainLink | None = None
    last: dict[str, int] = {}
    for tick, node in enumerate(writers, start=1):
        c = ChainLink(node, tick) if c is None else c.advance(node, tick)
        last[node] = tick
        assert c.head == (node, tick)
    assert c is not None
    links = list(c)
    assert len({n for n, _ in links}) == len(links)
    assert dict(links) == last
    assert [t for _, t in links] == sorted(last.values(), reverse=True)
    for nchain in range(-1, len(links) + 2):
        wire = c.to_wire(nchain)
        if nchain == 0:
            assert wire is None
            continue
        back = chain_from_wire(wire)
        keep = len(links) if nchain < 0 else nchain
        assert list(back) == links[:keep]
        assert back == c


# --- the simulated cluster -------------------------------------------------------------------

NAMES = ("a", "b", "c")
KEYS = [("k", 0), ("k", 1), ("k", 1, "sub"), (None, "meta")]


def refuse_bad(entry: Any, value: Any, local: bool) -> None:
    if local and value == "bad":
        raise ValueError("refused")


class Cluster:
    """Stores joined by a bus on which every message waits until the test delivers it."""

    def __init__(self, nchain: int):
        self.nchain = nchain
        self.stores = {n: Store(n) for n in NAMES}
        for s in self.stores.values():
            s.validators.append(refuse_bad)
        self.pending: list[tuple[str, str, dict]] = []  # (receiver, kind, message)
        # path -> the (tock, tick, node, value) of every change made to it
        self.events: dict[tuple, list[tuple[int, int, str, Any]]] = {}

    def broadcast(self, sender: str, kind: str, msg: dict) -> None:
        for name in NAMES:
            # like MQTT, the sender receives its own updates as well
            self.pending.append((name, kind, msg))

    def write(self, who: str, key: tuple, value: Any) -> None:
        s = self.stores[who]
        entry = s.follow(key, create=True)
        try:
            ev = s.local_change(entry, value)
        except ValueError:
            self.broadcast(who, "info", {"node": "", "tick": 0, "deleted": {who: [s.node.tick]}})
            return
        self.events.setdefault(key, []).append((ev.tock, ev.tick, who, value))
        self.broadcast(who, "update", ev.to_wire(self.nchain))

    def deliver(self, i: int, again: bool) -> None:
        to, kind, msg = self.pending[i] if again else self.pending.pop(i)
        s = self.stores[to]
        if kind == "update":
            s.apply_update(
                msg["path"], chain_from_wire(msg), msg.get("value", NotGiven), msg["tock"]
            )
        else:
            s.process_info(msg)


def dump(s: Store, full_chains: bool) -> dict:
    res = {}
    for e, _ in s.root.walk(full=True):
        if e.chain is not None:
            res[e.path] = (e.value, e.tock, list(e.chain) if full_chains else e.chain.head)
    return res


def expected_winner(events: list[tuple[int, int, str, Any]]) -> tuple[int, int, str, Any]:
    """Highest tock, then highest tick, then lowest node name."""
    best = events[0]
    for ev in events[1:]:
        if (ev[0], ev[1]) > (best[0], best[1]) or (
            (ev[0], ev[1]) == (best[0], best[1]) and ev[2] < best[2]
        ):
            best = ev
    return best


step = st.one_of(
    st.tuples(
        st.just("write"),
        st.sampled_from(NAMES),
        st.sampled_from(range(len(KEYS))),
        st.one_of(st.integers(0, 3), st.just("bad"), st.just(NotGiven)),
    ),
    st.tuples(st.just("deliver"), st.integers(0, 10_000), st.booleans()),
)


@settings(max_examples=300, deadline=None)
@given(
    nchain=st.sampled_from([1, 2, 5, -1]),
    steps=st.lists(step, max_size=60),
    data=st.data(),
)
def test_cluster_converges_whatever_the_delivery_order(nchain, steps, data):
    cl = Cluster(nchain)
    for op in steps:
        if op[0] == "write":
            _, who, k, value = op
            cl.write(who, KEYS[k], value)
        elif cl.pending:
            _, i, again = op
            cl.deliver(i % len(cl.pending), again)
    # flush: random order, some messages twice
    while cl.pending:
        i = data.draw(st.integers(0, len(cl.pending) - 1), label="deliver")
        cl.deliver(i, again=data.draw(st.integers(0, 4), label="dup") == 0)

    stores = list(cl.stores.values())

    # (2) identical trees: values, tocks and chains (whole chains unless the bus truncated them)
    full = nchain < 0 or nchain >= len(NAMES)
    trees = [dump(s, full) for s in stores]
    assert trees[0] == trees[1] == trees[2]
    # ... and the value of every key is the deterministic winner of all its events
    for key, events in cl.events.items():
        tock, tick, node, value = expected_winner(events)
        e = stores[0].follow(key)
        assert (e.tock, e.chain.head) == (tock, (node, tick))
        assert e.value == value if value is not NotGiven else e.value is NotGiven

    # every conflict seen by more than one store had the same winner everywhere
    verdicts: dict[frozenset, tuple] = {}
    for s in stores:
        for c in s.conflicts:
            pair = frozenset([c.winner.head, c.loser.head])
            assert verdicts.setdefault(pair, c.winner.head) == c.winner.head

    # (3) every tick of every node is accounted for, and "present" is exactly what chains hold
    for s in stores:
        assert s.missing() == {}
        held: dict[str, set[int]] = {n: set() for n in NAMES}
        for e, _ in s.root.walk(full=True):
            if e.chain is not None:
                for n, t in e.chain:
                    held[n].add(t)
        for name in NAMES:
            rec = s.nodes.get(name)
            if rec is None:  # never heard of: it made no event
                assert cl.stores[name].node.tick is None
                continue
            assert set(rec.present) == held[name]
            assert not (rec.present & rec.superseded)
            assert rec.tick == cl.stores[name].node.tick
