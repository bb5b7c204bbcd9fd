"""Replication between in-process servers on the in-memory bus: splits, losses, bad input.

The servers are real :class:`~distkv.server.Server` objects (the second and
third fetch their state from the first over TCP, as a new server does); the
bus between them drops, duplicates, delays, reorders and partitions messages
on request. After every scenario the faults stop and the servers must agree:
the same entries with the same chains and tocks (tombstones included), no
missing ticks, the same conflict log.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from procs import free_port

from distkv.codec import packb
from distkv.config import default_config
from distkv.server import Server
from distkv.server.backend.memory import MemoryBus
from distkv.util import NotGiven
from distkv.util.path import P

NAMES = ("n1", "n2", "n3")
CYCLE = 0.4
GAP = 0.05
QUIET = 20.0  # seconds the servers get to agree once the faults stop


def config(bus: MemoryBus, name: str, ports: dict[str, int]) -> Any:
    cfg = default_config()
    s = cfg.server
    s.backend = "memory"
    s.memory = {"bus": bus}
    s.bind_default.host = "127.0.0.1"
    s.bind_default.port = ports[name]
    s.ping = {"cycle": CYCLE, "gap": GAP, "override": True}
    s.delete = {"cycle": CYCLE, "gap": GAP, "override": True, "version": 1, "handoff": 0.05}
    cfg.connect.host = "127.0.0.1"
    cfg.hostmap = {n: f"127.0.0.1:{p}" for n, p in ports.items()}
    return cfg


@asynccontextmanager
async def cluster(bus: MemoryBus, names: Sequence[str] = NAMES) -> AsyncIterator[list[Server]]:
    """Servers on ``bus``: the first starts the network, the others join it."""
    ports = {n: free_port() for n in names}
    servers = [Server(n, config(bus, n, ports), init="Testing" if i == 0 else NotGiven)
               for i, n in enumerate(names)]
    async with anyio.create_task_group() as tg:
        with anyio.fail_after(20):
            await tg.start(servers[0].serve)
            for s in servers[1:]:
                await tg.start(s.serve)
        yield servers
        tg.cancel_scope.cancel()


def write(srv: Server, path: Any, value: Any) -> None:
    """A client's write on ``srv`` (NotGiven deletes)."""
    store = srv.store
    entry = store.follow(P(path) if isinstance(path, str) else path, create=True)
    if value is NotGiven and entry.value is NotGiven:
        return
    store.local_change(entry, value)


def state(srv: Server) -> tuple[dict, dict, list]:
    """Entries (value, tock, whole chain; tombstones too), missing ticks, conflict log."""
    tree = {}
    for e, _ in srv.store.root.walk(full=True):
        if e.chain is not None:
            tree[e.path] = (e.value, e.tock, tuple(e.chain))
    conflicts = [
        (c.path, c.winner.head, c.loser.head, c.winner_tock, c.loser_tock)
        for c in srv.store.conflicts
    ]
    return tree, srv.store.missing(), conflicts


async def agreed(servers: list[Server], within: float = QUIET) -> dict:
    """Wait until every server has the same entries and conflict log, nothing missing."""
    deadline = time.monotonic() + within
    while True:
        states = [state(s) for s in servers]
        if all(st_ == states[0] for st_ in states) and not states[0][1]:
            return states[0][0]
        if time.monotonic() > deadline:
            report = []
            for s, (tree, miss, conf) in zip(servers, states, strict=True):
                diff = {k: v for k, v in tree.items() if states[0][0].get(k) != v}
                report.append(f"{s.name}: missing {miss}, {len(conf)} conflicts, "
                              f"{len(tree)} entries, differing: {list(diff.items())[:3]}")
            raise AssertionError("no agreement:\n" + "\n".join(report))
        await anyio.sleep(0.05)


def heal(bus: MemoryBus) -> None:
    bus.heal()
    bus.drop_rate = bus.duplicate_rate = 0.0
    bus.drop_if = None
    bus.hold(False)
    bus.release(shuffle=True)


# --- scenarios ------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_concurrent_writes_get_the_same_winner_everywhere() -> None:
    bus = MemoryBus("conc", seed=1)
    async with cluster(bus) as servers:
        bus.hold()  # all three writes are made before anyone hears of another
        for i, s in enumerate(servers):
            write(s, "k", f"from {i}")
        heal(bus)
        tree = await agreed(servers)
        value, tock, chain = tree[P("k")]
        # the highest tock wins; equal tocks: the higher tick, then the lower name
        n1, n2, n3 = servers
        assert value in {"from 0", "from 1", "from 2"}
        conflicts = list(n1.store.conflicts)
        assert len(conflicts) == 2 and {c.winner.head for c in conflicts} == {chain[0]}


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_flush_covers_the_broadcasts_made_so_far() -> None:
    bus = MemoryBus("flush", seed=3)
    async with cluster(bus, NAMES[:2]) as (n1, n2):
        rep = n1.replication
        assert rep is not None
        sent = bus.stats.sent
        for i in range(50):
            write(n1, f"f.k{i}", i)
        assert rep.unflushed
        with anyio.fail_after(5):
            await rep.flush()
        assert not rep.unflushed
        assert bus.stats.sent - sent == 50  # one update each, on the bus already
        await rep.flush()  # nothing new: returns at once
        write(n1, "f.pushed", True)
        rep.push()  # the memory bus has delivered it already: nothing left to do
        assert not rep.unflushed
        tree = await agreed([n1, n2])
        assert [tree[P(f"f.k{i}")][0] for i in range(50)] == list(range(50))


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_split_and_heal() -> None:
    bus = MemoryBus("split", seed=2)
    async with cluster(bus) as (n1, n2, n3):
        write(n1, "before", 1)
        await agreed([n1, n2, n3])
        bus.partition(["n1", "n2"], ["n3"])
        for i in range(20):
            write(n1, f"a.{i}", i)
            write(n3, f"b.{i}", i)
            write(n2 if i % 2 else n3, "both", i)  # the same key on both sides
        write(n3, "before", NotGiven)  # a deletion on one side
        await anyio.sleep(3 * CYCLE)
        assert P("b.0") not in {e.path for e, _ in n1.store.root.walk()}
        heal(bus)
        tree = await agreed([n1, n2, n3])
        assert all(tree[P(f"a.{i}")][0] == i and tree[P(f"b.{i}")][0] == i for i in range(20))
        assert tree[P("before")][0] is NotGiven  # still deleted
        assert tree[P("both")][0] in {18, 19}
        assert list(n1.store.conflicts)  # the split made conflicts, and all know them


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_lost_and_duplicated_messages_are_made_good() -> None:
    bus = MemoryBus("lossy", seed=3)
    async with cluster(bus) as servers:
        bus.drop_if = lambda d: d.topic[-1] in ("update", "info") and bus.rng.random() < 0.5
        bus.duplicate_rate = 0.3
        for i in range(60):
            write(servers[i % 3], f"k.{i % 7}", i)
        await anyio.sleep(0.2)
        heal(bus)
        tree = await agreed(servers)
        assert {tree[P(f"k.{j}")][0] for j in range(7)} <= set(range(60))
        assert bus.stats.dropped > 0 and bus.stats.duplicated > 0


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_late_joiner_keeps_a_key_that_was_set_deleted_and_set_again() -> None:
    # upstream 15 #47: a joining server purged such keys
    bus = MemoryBus("rejoin", seed=4)
    async with cluster(bus, NAMES[:2]) as (n1, n2):
        write(n1, "k", 1)
        await agreed([n1, n2])
        write(n2, "k", NotGiven)
        await agreed([n1, n2])
        write(n1, "k", 2)
        await agreed([n1, n2])
        ports = {n: free_port() for n in NAMES}
        ports["n1"] = n1.ports[0]
        n3 = Server("n3", config(bus, "n3", ports))
        async with anyio.create_task_group() as tg:
            await tg.start(n3.serve)
            tree = await agreed([n1, n2, n3])
            assert tree[P("k")][0] == 2
            assert n3.store.follow(P("k")).value == 2
            tg.cancel_scope.cancel()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_bad_messages_are_logged_and_survived(caplog: pytest.LogCaptureFixture) -> None:
    from distkv.server.backend.memory import MemoryBackend

    bus = MemoryBus("bad", seed=5)
    async with cluster(bus, NAMES[:2]) as (n1, n2):
        evil = MemoryBackend(bus, "evil")
        junk = [
            b"\xc1",  # not msgpack
            packb([1, 2]),  # not a map
            packb({"path": P("x"), "tock": 1}),  # no chain
            packb({"node": "e", "tick": "one", "path": P("x"), "value": 1}),  # bad tick
            packb({"node": "e", "tick": 1, "prev": None, "path": 7, "value": 1}),  # bad path
            packb({"node": "e", "tick": 1, "prev": None, "path": P("x"), "tock": "t"}),
            packb({"_p0": ["e", 1, 0, b"xx"]}),  # bad part number
            packb({"_p0": ["e", 2, -1, b"\xc1"]}),  # parts that don't unpack
        ]
        for j in junk:
            await evil.publish((":distkv", "update"), j)
        for j in [*junk[:3], packb({"node": "e", "ticks": [1, 2]}),
                  packb({"node": "e", "missing": {"n1": "all"}}),
                  packb({"node": "e", "conflicts": 5})]:
            await evil.publish((":distkv", "info"), j)
        for m in [b"\xc1", msgpack.packb([1]), msgpack.packb({"t": "what"}),
                  msgpack.packb({"t": "ping", "node": "e", "value": "str", "history": ["e"]}),
                  msgpack.packb({"t": "vers", "node": "e", "cycle": 0.1, "gap": 5}),
                  msgpack.packb({"t": "hist", "history": []}),
                  msgpack.packb({"t": "init", "node": "n1"})]:  # n1's name, again
            await evil.publish((":distkv", "ping"), m)
        await anyio.sleep(3 * GAP)
        write(n1, "after", 1)
        write(n2, "after2", 2)
        tree = await agreed([n1, n2])
        assert tree[P("after")][0] == 1 and tree[P("after2")][0] == 2
        assert sum(n2.replication.failures.values()) >= len(junk)
        assert n1.replication.ping.actor is not None  # the actors live on
        assert "A update message was not usable" in caplog.text
        await evil.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_mistyped_value_from_a_peer_is_kept_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A peer that doesn't check a type (an old one, or one without the type)
    sends a value that fails it: every server keeps it, and says so."""
    bus = MemoryBus("typed", seed=6)
    async with cluster(bus, NAMES[:2]) as (n1, n2):
        write(n1, (None, "type", "int"), {
            "good": (0, 2), "bad": ("x",),  # (tuples: as a peer decodes them)
            "code": "if not isinstance(value, int): raise ValueError('not an int')"})
        write(n1, (None, "match", "num"), {"type": P("int")})
        write(n1, "num", 1)
        await agreed([n1, n2])
        assert "fails its type check" not in caplog.text
        write(n1, "num", "one")  # (a client's write would have been refused on n1)
        tree = await agreed([n1, n2])
        assert tree[P("num")][0] == "one"
        assert ("A peer's value at num fails its type check (ValueError('not an int')); "
                "kept, so that every server holds the same data") in caplog.text
        write(n2, "after", 2)
        assert (await agreed([n1, n2]))[P("after")][0] == 2


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_deleter_purges_tombstones_everywhere() -> None:
    bus = MemoryBus("del", seed=6)
    async with cluster(bus, NAMES[:2]) as (n1, n2):
        write(n1, ":n.actor.del", {"nodes": ("n1", "n2")})
        write(n1, "gone", 1)
        await agreed([n1, n2])
        write(n2, "gone", NotGiven)
        await agreed([n1, n2])
        assert n1.store.follow(P("gone")) is not None  # a tombstone, for now
        with anyio.fail_after(20):
            while n1.store.follow(P("gone")) or n2.store.follow(P("gone")):  # noqa: ASYNC110
                write(n1, "tick", time.monotonic())  # keep time (tocks) moving
                await anyio.sleep(0.1)
        await agreed([n1, n2])
        assert n1.replication.deleter.purged >= 1 and n2.replication.deleter.purged >= 1


# --- property: whatever the faults, heal and quiet bring agreement ---------------------------


step = st.one_of(
    st.tuples(st.just("write"), st.integers(0, 2), st.integers(0, 4),
              st.one_of(st.integers(0, 9), st.just(NotGiven))),
    st.tuples(st.just("drop"), st.sampled_from([0.0, 0.3, 1.0])),
    st.tuples(st.just("dup"), st.sampled_from([0.0, 0.5])),
    st.tuples(st.just("hold"), st.booleans()),
    st.tuples(st.just("release"), st.booleans()),
    st.tuples(st.just("partition"), st.sampled_from([
        (("n1",), ("n2", "n3")), (("n1", "n2"), ("n3",)), (("n1",), ("n2",), ("n3",)),
    ])),
    st.tuples(st.just("heal")),
    st.tuples(st.just("sleep")),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**16), steps=st.lists(step, min_size=5, max_size=40))
def test_after_heal_and_quiet_all_servers_agree(seed: int, steps: list[tuple]) -> None:
    async def scenario() -> None:
        bus = MemoryBus("prop", seed=seed)
        async with cluster(bus) as servers:
            for op, *args in steps:
                if op == "write":
                    who, key, value = args
                    write(servers[who], ("k", key), value)
                elif op == "drop":
                    bus.drop_rate = args[0]
                elif op == "dup":
                    bus.duplicate_rate = args[0]
                elif op == "hold":
                    bus.hold(args[0])
                elif op == "release":
                    bus.release(shuffle=args[0])
                elif op == "partition":
                    bus.partition(*args[0])
                elif op == "heal":
                    bus.heal()
                else:
                    await anyio.sleep(GAP)
            heal(bus)
            await agreed(servers)

    anyio.run(scenario)
