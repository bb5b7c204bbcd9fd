"""Replication between real server processes on a real mosquitto.

Every test ends by comparing what clients read from every server, entry by
entry with whole chains (:func:`cluster.same_trees`), and by checking that
every acknowledged write is there.
"""

from __future__ import annotations

from pathlib import Path as FSPath

import anyio
import pytest
from brokers import Mosquitto, SerfAgent, mosquitto_fixture, serf_pair_fixture  # noqa: F401
from cluster import Cluster, CutProxy, Writer, conflict_log, same_trees, tree
from procs import free_port

from distkv.client import open_client
from distkv.util.path import P

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def assert_acked(t: dict, *writers: Writer) -> None:
    """Every key's last acknowledged value is in the tree ``t``."""
    for w in writers:
        for path, value in w.acked.items():
            assert path in t, f"{path} (acked {value!r}) is missing"
            assert t[path][0] == value, f"{path}: {t[path][0]!r}, acked {value!r}"


def beats(rec: dict) -> bool:
    """Did the winner of a conflict record win by the rule: tock, tick, lower name?"""
    w, lo = rec["winner"], rec["loser"]
    if (rec["winner_tock"], w["tick"]) != (rec["loser_tock"], lo["tick"]):
        return (rec["winner_tock"], w["tick"]) > (rec["loser_tock"], lo["tick"])
    return w["node"] < lo["node"]


async def wait_for(port: int, path: str, value: object, within: float = 10) -> None:
    async with open_client(connect={"host": "127.0.0.1", "port": port}) as c:
        with anyio.fail_after(within):
            while (await c.get(P(path))).get("value") != value:  # noqa: ASYNC110
                await anyio.sleep(0.05)  # (polling another process)


async def state(port: int, **flags: bool) -> dict:
    async with open_client(connect={"host": "127.0.0.1", "port": port}) as c:
        return dict(await c._request("get_state", **flags))


async def set_on(port: int, path: str, value: object) -> None:
    async with open_client(connect={"host": "127.0.0.1", "port": port}) as c:
        await c.set(P(path), value)


async def test_three_servers_converge_after_concurrent_writes(
    mosquitto: Mosquitto, tmp_path: FSPath
) -> None:
    with Cluster(mosquitto.uri, tmp_path) as cl:
        cl["n1"].start("-I", "Testing")
        cl["n2"].start()
        cl["n3"].start()
        ports = cl.ports()
        own = [Writer(p, ("own", n)) for p, n in zip(ports, cl.nodes, strict=True)]
        # the same 10 keys written through all three servers at once: conflicts
        shared = [Writer(p, ("shared",)) for p in ports]
        async with anyio.create_task_group() as tg:
            for w in own:
                tg.start_soon(w.write, 200)
            for i, w in enumerate(shared):
                tg.start_soon(lambda w=w, i=i: w.write(60, keys=10, value=f"from {i}"))
        t = await same_trees(ports)
        assert_acked(t, *own)
        assert t[P(":")][0] == "Testing"
        values = {t[P(f"shared.k{i}")][0] for i in range(10)}
        assert values <= {"from 0", "from 1", "from 2"}
        # the conflicts are visible, and every server has the same record of them
        with anyio.fail_after(20):
            while True:
                logs = [await conflict_log(p) for p in ports]
                if logs[0] and logs[0] == logs[1] == logs[2]:
                    break
                await anyio.sleep(0.3)
        for rec in logs[0]:
            assert rec["path"][0] == "shared"
            assert beats(rec)
        assert "Conflict at shared.k" in cl.outputs()
        assert "Traceback" not in cl.outputs()


async def test_a_killed_server_catches_up_with_and_without_its_log(
    mosquitto: Mosquitto, tmp_path: FSPath
) -> None:
    with Cluster(mosquitto.uri, tmp_path) as cl:
        n1, n2, n3 = cl["n1"], cl["n2"], cl["n3"]
        n1.start("-I", "Testing")
        n2.start()
        n3.start("-s", str(n3.changes))
        w1, w2, w3 = (Writer(n.port, ("w", n.name)) for n in (n1, n2, n3))
        async with anyio.create_task_group() as tg:
            tg.start_soon(w1.write, 50)
            tg.start_soon(w2.write, 50)
            tg.start_soon(w3.write, 50)
        # kill -9 in the middle of writes through all three servers
        stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: w1.write(10000, start=100, pause=0.002, stop=stop))
            tg.start_soon(lambda: w2.write(10000, start=100, pause=0.002, stop=stop))
            tg.start_soon(lambda: w3.write(10000, start=100, pause=0.002, stop=stop))
            await anyio.sleep(0.5)
            n3.kill()
            await anyio.sleep(1.0)
            stop.set()
        assert w3.errors == 1 and w1.errors == w2.errors == 0
        await set_on(n1.port, "while.down", 1)

        # back with its change log: it has its own writes and fetches the rest
        n3.start("-l", str(n3.changes), "-s", str(tmp_path / "n3b.dkv"))
        t = await same_trees(cl.ports())
        assert_acked(t, w1, w2, w3)
        assert t[P("while.down")][0] == 1

        # kill -9 again, and back without any data: it joins like a new server.
        # (Without a change log, what it acknowledged in its last moments may
        # be lost: QoS 0 gives no receipt, and the broker drops what arrives
        # together with the reset of the killed connection. So wait for it.)
        await set_on(n3.port, "before.kill", 2)
        await wait_for(n1.port, "before.kill", 2)
        last_tick = (await state(n1.port, nodes=True))["nodes"]["n3"]
        n3.kill()
        await set_on(n1.port, "while.down", 3)
        n3.start()
        t = await same_trees(cl.ports())
        assert_acked(t, w1, w2, w3)
        assert t[P("while.down")][0] == 3 and t[P("before.kill")][0] == 2
        # its ticks go on where they were: nothing it published before is reused
        async with open_client(connect={"host": "127.0.0.1", "port": n3.port}) as c:
            assert (await c.set(P("after"), 4, nchain=1))["chain"]["tick"] == last_tick + 1
        await same_trees(cl.ports())
        assert "Traceback" not in cl.outputs()


async def test_split_and_heal(mosquitto: Mosquitto, tmp_path: FSPath) -> None:
    with CutProxy(mosquitto.port) as proxy, Cluster(mosquitto.uri, tmp_path) as cl:
        n1, n2, n3 = cl["n1"], cl["n2"], cl["n3"]
        n3.broker_uri = proxy.uri
        n1.start("-I", "Testing")
        n2.start()
        n3.start()
        await set_on(n1.port, "before", 1)
        await same_trees(cl.ports())

        proxy.cut()
        side_a = [Writer(n1.port, ("a", "n1")), Writer(n2.port, ("a", "n2"))]
        side_b = [Writer(n3.port, ("b", "n3"))]
        # the same keys on both sides of the split
        both = [Writer(n1.port, ("both",)), Writer(n3.port, ("both",))]
        async with anyio.create_task_group() as tg:
            for w in side_a + side_b:
                tg.start_soon(w.write, 100)
            tg.start_soon(lambda: both[0].write(20, keys=5, value="side a"))
            tg.start_soon(lambda: both[1].write(20, keys=5, value="side b"))
        # the split is real: n3 has not seen side a's writes
        assert P("a.n1.k0") not in await tree(n3.port)
        proxy.restore()

        t = await same_trees(cl.ports(), within=40)
        assert_acked(t, *side_a, *side_b)
        assert {t[P(f"both.k{i}")][0] for i in range(5)} <= {"side a", "side b"}
        with anyio.fail_after(20):
            while True:
                logs = [await conflict_log(p) for p in cl.ports()]
                if logs[0] and logs[0] == logs[1] == logs[2]:
                    break
                await anyio.sleep(0.3)
        assert {r["path"] for r in logs[0]} <= {P(f"both.k{i}") for i in range(5)}
        assert all(beats(r) for r in logs[0])
        assert "Traceback" not in cl.outputs()


async def test_broker_restart_during_a_write_load(mosquitto: Mosquitto, tmp_path: FSPath) -> None:
    with Cluster(mosquitto.uri, tmp_path) as cl:
        cl["n1"].start("-I", "Testing")
        cl["n2"].start()
        cl["n3"].start()
        writers = [Writer(p, ("w", i)) for i, p in enumerate(cl.ports())]
        stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            for w in writers:
                tg.start_soon(lambda w=w: w.write(100000, pause=0.002, stop=stop))
            await anyio.sleep(0.7)
            await anyio.to_thread.run_sync(mosquitto.restart)
            await anyio.sleep(1.0)
            stop.set()
        assert all(w.errors == 0 and len(w.acked) > 50 for w in writers)
        t = await same_trees(cl.ports(), within=40)
        assert_acked(t, *writers)
        assert "Traceback" not in cl.outputs()


async def test_a_server_joins_while_writes_go_on(mosquitto: Mosquitto, tmp_path: FSPath) -> None:
    with Cluster(mosquitto.uri, tmp_path) as cl:
        cl["n1"].start("-I", "Testing")
        cl["n2"].start()
        writers = [Writer(p, ("w", i)) for i, p in enumerate(cl.ports(["n1", "n2"]))]
        async with anyio.create_task_group() as tg:
            for w in writers:
                tg.start_soon(w.write, 500)
        stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            for w in writers:
                tg.start_soon(lambda w=w: w.write(100000, keys=700, pause=0.001, stop=stop))
            await anyio.sleep(0.3)
            await anyio.to_thread.run_sync(cl["n3"].start)
            await anyio.sleep(0.5)
            stop.set()
        t = await same_trees(cl.ports())
        assert_acked(t, *writers)
        assert "Traceback" not in cl.outputs()


async def test_named_peers_are_fetched_from_at_once(tmp_path: FSPath) -> None:
    # no broker at all: only the NODES argument can make n2 find n1
    with Cluster(f"mqtt://127.0.0.1:{free_port()}", tmp_path, ["n1", "n2"]) as cl:
        for node in cl.nodes.values():
            node.extra = ["-C", "server.no_broker=standalone"]
        cl["n1"].start("-I", "Testing")
        await set_on(cl["n1"].port, "x", 1)
        cl["n2"].start(peers=["n1"], timeout=10)
        t = await tree(cl["n2"].port)
        assert t[P("x")][0] == 1 and t[P(":")][0] == "Testing"
        assert "started a new, empty network" not in cl["n2"].output()


async def test_two_servers_replicate_over_serf(
    serf_pair: tuple[SerfAgent, SerfAgent], tmp_path: FSPath
) -> None:
    with Cluster("mqtt://127.0.0.1:1", tmp_path, ["n1", "n2"]) as cl:
        for node, agent in zip(cl.nodes.values(), serf_pair, strict=True):
            node.extra = ["-C", "server.backend=serf", "-C", f"server.serf.port={agent.rpc_port}",
                          "-C", "server.serf.host=127.0.0.1"]
        cl["n1"].start("-I", "Testing")
        cl["n2"].start()
        await set_on(cl["n1"].port, "from.n1", 1)
        await set_on(cl["n2"].port, "from.n2", "x" * 2000)  # split into _p0 parts
        t = await same_trees(cl.ports())
        assert t[P("from.n1")][0] == 1 and t[P("from.n2")][0] == "x" * 2000
        assert "Traceback" not in cl.outputs()


async def count_below(port: int, prefix: str) -> int:
    async with open_client(connect={"host": "127.0.0.1", "port": port}) as c:
        return len([rec async for rec in c.get_tree(P(prefix))])


async def test_writes_acked_just_before_kill_9_reach_the_peers(
    mosquitto: Mosquitto, tmp_path: FSPath
) -> None:
    """No change log: a server killed right after acknowledging a burst of
    writes has handed every one of them to the broker already."""
    burst = 400
    with Cluster(mosquitto.uri, tmp_path, ["n1", "n2"]) as cl:
        n1, n2 = cl["n1"].start("-I", "Testing"), cl["n2"].start()
        for rnd in range(3):
            async with open_client(connect={"host": "127.0.0.1", "port": n1.port}) as c:
                async with anyio.create_task_group() as tg:
                    for i in range(burst):
                        tg.start_soon(c.set, P(f"burst.r{rnd}.k{i}"), i)
                n1.kill()  # the moment the last reply is in
            with anyio.fail_after(15):
                while (have := await count_below(n2.port, f"burst.r{rnd}")) < burst:  # noqa: ASYNC110
                    await anyio.sleep(0.2)  # (polling another process)
            assert have == burst
            n1.start()  # without data: it joins from n2
        t = await same_trees(cl.ports())
        assert all(t[P(f"burst.r{r}.k{i}")][0] == i for r in range(3) for i in range(burst))
