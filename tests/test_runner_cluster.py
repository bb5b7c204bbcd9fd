"""The job runner across three real servers on one mosquitto.

One runner process attached to each server (``distkv client run all``,
short actor cycles). An any-runner job moves to a runner on another server
when the server whose runner runs it is kill -9'd together with that
runner; a single-node job runs on its node only.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path as FSPath
from typing import Any

import anyio
import pytest
from brokers import Mosquitto, mosquitto_fixture  # noqa: F401
from cluster import Cluster, ClusterNode
from procs import base_config, distkv_cmd, run_cli

from distkv.client import open_client
from distkv.util.path import P

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

# Short actor cycles (as in test_runner.py): a dead runner is noticed after
# (cycle + 2.5·gap)·(members + 2.5) = 1.75·5.5 ≈ 9.6 s of silence.
ACTOR = ["-C", "runner.actor.cycle=1", "-C", "runner.actor.gap=0.3",
         "-C", "runner.start_delay=0.1"]
STATES = P(":.distkv.state")
RUNNERS = {"n1": "r1", "n2": "r2", "n3": "r3"}  # server -> the runner attached to it

# Records which runner runs it, then runs until it is killed.
FOREVER = (
    "await _client.set(_P('where'), _client.client_name)\n"
    "import anyio\n"
    "await anyio.sleep(1000)\n"
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Runner:
    """``distkv client -C connect.name=NAME run ARGS… all`` attached to one cluster node."""

    def __init__(self, node: ClusterNode, name: str, *args: str):
        self.name = name
        self.log = node.cluster.directory / f"runner-{name}.log"
        cmd = distkv_cmd(*base_config(node.port, [*node.cluster.global_args(node),
                                                  "-C", f"connect.name={name}"]),
                         "client", "run", *args, "all")
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                         env=dict(os.environ, PYTHONUNBUFFERED="1"))

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def cluster(mosquitto: Mosquitto, tmp_path: FSPath) -> Iterator[Cluster]:
    """Three serving servers n1 (``-I``), n2, n3 with short actor cycles."""
    with Cluster(mosquitto.uri, tmp_path, extra=ACTOR) as cl:
        cl["n1"].start("-I", "x")
        cl["n2"].start()
        cl["n3"].start()
        yield cl


@pytest.fixture
def runners(cluster: Cluster) -> Iterator[Callable[..., dict[str, Runner]]]:
    """``runners(*args)`` attaches one runner to each server; all are killed afterwards."""
    started: list[Runner] = []

    def start(*args: str, per_node: bool = False) -> dict[str, Runner]:
        res = {}
        for srv, name in RUNNERS.items():
            extra = ("-n", name) if per_node else ()
            res[name] = Runner(cluster[srv], name, *args, *extra)
        started.extend(res.values())
        return res

    yield start
    for r in started:
        r.kill()


def cli(node: ClusterNode, *args: str, input: str | None = None) -> str:
    res = run_cli(node.port, "client", *args, input=input,
                  global_args=node.cluster.global_args(node))
    assert res.returncode == 0, (res.stdout, res.stderr)
    return res.stdout


async def wait_value(port: int, path: Any, pred: Callable[[Any], bool],
                     within: float = 15) -> Any:
    """Poll ``path`` on the server at ``port`` until its value satisfies ``pred``."""
    value = None
    async with open_client(connect={"host": "127.0.0.1", "port": port}) as client:
        with anyio.move_on_after(within):
            while True:
                value = (await client.get(P(path))).get("value")
                if value is not None and pred(value):
                    return value
                await anyio.sleep(0.05)
    raise AssertionError(f"{path}: still {value!r} after {within} s")


async def test_any_runner_fails_over_to_another_server(
        cluster: Cluster, runners: Callable[..., dict[str, Runner]]) -> None:
    n1 = cluster["n1"]
    cli(n1, "code", "set", "forever", input=FOREVER)
    cli(n1, "run", "set", "-c", "forever", "-t", "0", "-r", "1", "-d", "0.5", "-b", "1",
        "job")
    procs = runners()
    spath = STATES + ("any", "default", "job")
    first = (await wait_value(n1.port, spath, lambda v: v.get("node") is not None,
                              within=20))["node"]
    assert first in procs
    await wait_value(n1.port, P("where"), lambda v: v == first)

    # kill -9 the server the running runner is attached to, and that runner
    doomed = next(s for s, r in RUNNERS.items() if r == first)
    cluster[doomed].kill()
    procs[first].kill()
    killed = time.monotonic()
    alive = [s for s in RUNNERS if s != doomed]
    port = cluster[alive[0]].port
    # documented bound: ≈ 9.6 s of silence, up to 2 cycles until another
    # runner is in charge, then delay·backoff² = 0.5 s: about 13.5 s; the
    # dead runner's last ping may have been up to ~3 cycles before the kill.
    state = await wait_value(port, spath, lambda v: v.get("node") not in (None, first),
                             within=20)
    took = time.monotonic() - killed
    second = state["node"]
    assert second in procs and second != first
    assert 3 < took < 18, took
    # the job really runs there, and both surviving servers see it
    for s in alive:
        await wait_value(cluster[s].port, P("where"), lambda v: v == second)
        await wait_value(cluster[s].port, spath, lambda v: v.get("node") == second)
    assert "Traceback" not in procs[second].output


SINGLE = (
    "n = (await _client.get(_P('ran.' + _client.client_name))).get('value', 0)\n"
    "await _client.set(_P('ran.' + _client.client_name), n + 1)\n"
    "return _client.client_name\n"
)


async def test_single_node_job_runs_only_on_its_node(
        cluster: Cluster, runners: Callable[..., dict[str, Runner]]) -> None:
    n1, n3 = cluster["n1"], cluster["n3"]
    cli(n1, "code", "set", "single", input=SINGLE)
    cli(n1, "run", "-n", "r2", "set", "-c", "single", "-t", "0", "-r", "0.3", "job")
    runners(per_node=True)
    # set through n1, run by r2 (attached to n2), seen on n3
    await wait_value(n3.port, P("ran.r2"), lambda v: v >= 3, within=20)
    # (the next start is noted a moment after a run ended: up to start_delay)
    state = await wait_value(n3.port, STATES + ("at", "r2", "default", "job"),
                             lambda v: v.get("result") == "r2" and "reason" in v)
    assert state["reason"] == "repeat"
    async with open_client(connect={"host": "127.0.0.1", "port": n3.port}) as client:
        ran = {tuple(r["path"]) async for r in client.get_tree(P("ran"))}
        # no other single-node state appeared
        others = [await client.get(STATES + ("at", r, "default", "job")) for r in ("r1", "r3")]
    assert ran == {("r2",)}
    assert [o.get("value") for o in others] == [None, None]
