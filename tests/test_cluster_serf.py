"""Two ``distkv server`` processes replicating through two real ``serf agent`` processes.

Each server talks to its own agent (``server.backend: serf``); the agents
gossip with each other on 127.0.0.1. What one server is told through the
command line, the other one shows: writes, deletions, and — for a server
started after the data was written — the whole tree, fetched when it joins.
"""

from __future__ import annotations

import time
from pathlib import Path as FSPath

import anyio
import pytest
import yaml
from brokers import SerfAgent, serf_pair_fixture  # noqa: F401
from cluster import Cluster, same_trees
from procs import run_cli

from distkv.client import open_client
from distkv.util.path import P

pytestmark = pytest.mark.timeout(120)


def serf_cluster(agents: tuple[SerfAgent, SerfAgent], directory: FSPath) -> Cluster:
    """Servers ``n1`` and ``n2``, each on its own agent (no MQTT anywhere)."""
    cl = Cluster("mqtt://127.0.0.1:1", directory, ["n1", "n2"])
    for node, agent in zip(cl.nodes.values(), agents, strict=True):
        node.extra = ["-C", "server.backend=serf", "-C", "server.serf.host=127.0.0.1",
                      "-C", f"server.serf.port={agent.rpc_port}"]
    return cl


def data(port: int, *args: str) -> tuple[str, str]:
    """``distkv client data ARGS…`` against the server on ``port``: (stdout, stderr)."""
    res = run_cli(port, "client", "data", *args)
    assert res.returncode == 0, res.stderr
    return res.stdout, res.stderr


def data_paths(t: dict) -> list[str]:
    """The paths of a :func:`cluster.tree` outside the meta tree, as text."""
    return sorted(str(p) for p in t if not p or p[0] is not None)


def wait_shows(port: int, path: str, out: str, err: str = "", within: float = 20) -> None:
    """Wait until ``data PATH`` on ``port`` prints ``out`` (and ``err`` on stderr)."""
    deadline = time.monotonic() + within
    while (got := data(port, path)) != (out, err):
        assert time.monotonic() < deadline, f"{path}: {got!r} after {within}s"
        time.sleep(0.2)


def test_writes_and_deletions_replicate_both_ways(
    serf_pair: tuple[SerfAgent, SerfAgent], tmp_path: FSPath
) -> None:
    with serf_cluster(serf_pair, tmp_path) as cl:
        n1, n2 = cl["n1"].start("-I", "Testing"), cl["n2"].start()
        assert data(n2.port, ":") == ("'Testing'\n", "")

        data(n1.port, "one", "set", "-v", ":", "eins")
        wait_shows(n2.port, "one", "'eins'\n")
        data(n2.port, "two", "set", "-e", ":", "{'zwei': 2}")
        wait_shows(n1.port, "two", "zwei: 2\n")
        data(n2.port, "one", "set", "-v", ":", "uno")
        wait_shows(n1.port, "one", "'uno'\n")

        data(n1.port, "one", "delete")
        wait_shows(n2.port, "one", "", "No data at one\n")
        data(n2.port, "two", "delete")
        wait_shows(n1.port, "two", "", "No data at two\n")

        assert data_paths(anyio.run(same_trees, cl.ports())) == [":"]
        assert "Traceback" not in cl.outputs()


async def fill(port: int, n: int) -> None:
    async with open_client(connect={"host": "127.0.0.1", "port": port}) as c:
        for i in range(n):
            await c.set(P(f"many.k{i}"), {"i": i, "text": "x" * (i % 50)})
        await c.delete(P("many.k7"))


def test_a_server_started_later_fetches_the_data(
    serf_pair: tuple[SerfAgent, SerfAgent], tmp_path: FSPath
) -> None:
    with serf_cluster(serf_pair, tmp_path) as cl:
        n1 = cl["n1"].start("-I", "Testing")
        anyio.run(fill, n1.port, 300)
        data(n1.port, "one", "set", "-v", ":", "eins")

        n2 = cl["n2"].start()  # it listens once it has fetched the state
        assert data(n2.port, "one") == ("'eins'\n", "")
        assert data(n2.port, "many.k299") == ("i: 299\ntext: " + "x" * 49 + "\n", "")
        assert data(n2.port, "many.k7") == ("", "No data at many.k7\n")
        whole = [yaml.safe_load(data(n.port, ":", "get", "-rd_")[0]) for n in (n1, n2)]
        assert whole[0] == whole[1] and len(whole[1]["many"]) == 299  # (in any order)

        data(n2.port, "late", "set", "-v", ":", "after the join")
        wait_shows(n1.port, "late", "'after the join'\n")
        paths = data_paths(anyio.run(same_trees, cl.ports()))
        assert len(paths) == 1 + 299 + 2  # root, the keys left, one, late
        assert "Traceback" not in cl.outputs()
