"""Runner benchmarks: how late jobs start, and how long failover takes.

    .venv/bin/python benchmarks/runner.py [--quick] [--jobs N] [--json FILE] [--no-upstream]

Real processes on 127.0.0.1: one mosquitto, one ``distkv server``, three
any-runners and two all-runners (``distkv client run [-n -] all``), all with
short actor cycles (stated in the output):

* ``due→start`` — N one-shot jobs are given targets at known future times
  (a few per 50 ms); each job's state records when it ``started``; the
  figure is ``started - target``, p50/p99, for the any-runner and the
  all-runner group (every all-runner starts every job);
* ``failover`` — an any-runner job that runs forever; the runner running it
  is kill -9'd; measured from the kill until another runner of the group
  has started the job (its state's ``started``). The bound follows from the
  actor timing: about (cycle + 2.5·gap)·(members + 2.5) of silence, plus up
  to two cycles and the job's retry delay.

Upstream (``.upstream-venv``) is reported as n/a with the reason: see
:data:`UPSTREAM_NA`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cluster as cl  # noqa: E402

from distkv.client import open_client  # noqa: E402
from distkv.code import CodeRoot  # noqa: E402
from distkv.util.path import P  # noqa: E402

CYCLE, GAP, START_DELAY = 1.0, 0.3, 0.1
ACTOR = ["-C", f"runner.actor.cycle={CYCLE}", "-C", f"runner.actor.gap={GAP}",
         "-C", f"runner.start_delay={START_DELAY}"]
JOBS = P(":.distkv.run")
STATES = P(":.distkv.state")
FOREVER = ("await _client.set(_P('where'), _client.client_name)\n"
           "import anyio\nawait anyio.sleep(1e6)\n")
UPSTREAM_NA = ("n/a: not measured — driving upstream's runner (`distkv-ref client job run` "
               "with the hidden `root` key) is not scripted here yet")


def runner_argv(port: int, name: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "distkv", "-c", "/dev/null",
            "-C", "connect.host=127.0.0.1", "-C", f"connect.port={port}",
            "-C", f"connect.name={name}", *ACTOR, "client", "run", *args, "all"]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def wait_state(client, path, pred, within: float = 60.0) -> dict:
    with anyio.fail_after(within):
        while True:
            value = (await client.get(path)).get("value")
            if value is not None and pred(value):
                return value
            await anyio.sleep(0.02)


async def states_below(client, path) -> dict[str, dict]:
    """Every state below ``path``: ``'runner/job' or 'job' -> state``."""
    res = {}
    async for rec in client.get_tree(path):
        if isinstance(rec.get("value"), dict) and "started" in rec["value"]:
            res["/".join(str(p) for p in rec["path"])] = rec["value"]
    return res


async def due_to_start(client, kind: str, n: int, copies: int) -> list[float]:
    """Schedule ``n`` jobs of group ``kind`` (any|all) at future times; how late each started."""
    base = time.time() + 2.0
    targets = {}
    for i in range(n):
        name = f"j{i}"
        targets[name] = round(base + (i // 4) * 0.05, 3)
        await client.set(JOBS + (kind, "default", "lat", name),
                         {"code": P("noop"), "target": targets[name]})
    spath = STATES + (kind, "default")
    with anyio.fail_after(60 + n * 0.05):
        while True:
            found = await states_below(client, spath)
            late = [st["started"] - targets[k.rsplit("/", 1)[-1]]
                    for k, st in found.items() if k.rsplit("/", 1)[-1] in targets
                    and "lat" in k.split("/") and st.get("started")]
            if len(late) >= n * copies:
                return late
            await anyio.sleep(0.2)


async def failover(client, procs: dict[str, cl.Proc], port: int, rounds: int) -> list[float]:
    spath = STATES + ("any", "default", "forever")
    await client.set(JOBS + ("any", "default", "forever"),
                     {"code": P("forever"), "target": time.time(), "delay": 0.5, "backoff": 1})
    times = []
    for _ in range(rounds):
        first = (await wait_state(client, spath, lambda v: v.get("node") in procs))["node"]
        await wait_state(client, P("where"), lambda v, first=first: v == first)
        killed = time.time()
        os.killpg(procs[first].proc.pid, signal.SIGKILL)
        procs[first].proc.wait(10)
        state = await wait_state(client, spath,
                                 lambda v, first=first: v.get("node") not in (None, first),
                                 within=60)
        times.append(state["started"] - killed)
        procs[first] = cl.Proc(f"runner {first}", runner_argv(port, first),
                               procs[first].logfile).start()  # back, for the next round
    return times


async def measure(workdir: Path, jobs: int, rounds: int) -> dict:
    with cl.Net("ours", workdir, ["s1"]) as net:
        srv = net.start("s1", "-I", "x")
        port = net.ports["s1"]
        cl.wait_port(port, srv, 30)
        any_r = {f"a{i}": cl.Proc(f"runner a{i}", runner_argv(port, f"a{i}"),
                                  workdir / f"runner-a{i}.log").start() for i in range(3)}
        all_r = [cl.Proc(f"runner b{i}", runner_argv(port, f"b{i}", "-n", "-"),
                         workdir / f"runner-b{i}.log").start() for i in range(2)]
        net.procs.extend([*any_r.values(), *all_r])
        async with open_client(connect={"host": "127.0.0.1", "port": port}) as client:
            code = await CodeRoot.as_handler(client)
            await code.add("noop", "return 1")
            await code.add("forever", FOREVER, is_async=True)
            # warm up: every group in charge and running before the clock starts
            for kind in ("any", "all"):
                await client.set(JOBS + (kind, "default", "warm"),
                                 {"code": P("noop"), "target": time.time()})
            await wait_state(client, STATES + ("any", "default", "warm"),
                             lambda v: v.get("result") == 1)
            with anyio.fail_after(60):
                while len(await states_below(client, STATES + ("all", "default"))) < 2:  # noqa: ASYNC110
                    await anyio.sleep(0.1)
            res = {"any": await due_to_start(client, "any", jobs, 1),
                   "all": await due_to_start(client, "all", jobs, len(all_r)),
                   "failover": await failover(client, any_r, port, rounds)}
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer jobs, one failover")
    ap.add_argument("--jobs", type=int, default=None, help="jobs per group (default 200)")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    ap.add_argument("--no-upstream", action="store_true", help="don't mention upstream")
    args = ap.parse_args()
    jobs = args.jobs or (40 if args.quick else 200)
    rounds = 1 if args.quick else 3
    with tempfile.TemporaryDirectory(prefix="distkv-bench-runner-") as d:
        res = anyio.run(measure, Path(d), jobs, rounds)
    ms = lambda v: f"{v * 1000:.1f} ms"  # noqa: E731
    bound = (CYCLE + 2.5 * GAP) * (3 + 2.5) + 2 * CYCLE + 0.5
    print(f"runner benchmark: {jobs} jobs per group, 3 any-runners, 2 all-runners, one server; "
          f"actor cycle={CYCLE} s gap={GAP} s, start_delay={START_DELAY} s; "
          f"failover bound ≈ {bound:.1f} s")
    upstream = None if args.no_upstream else UPSTREAM_NA
    rows = [
        ("due→start any p50", ms(statistics.median(res["any"]))),
        ("due→start any p99", ms(pct(res["any"], 0.99))),
        ("due→start all p50", ms(statistics.median(res["all"]))),
        ("due→start all p99", ms(pct(res["all"], 0.99))),
        ("failover (kill -9) " + ("max" if len(res["failover"]) > 1 else ""),
         f"{max(res['failover']):.2f} s (runs: "
         + ", ".join(f"{t:.2f}" for t in res["failover"]) + ")"),
    ]
    print(f"{'measure':<24} {'ours':<34}" + ("" if upstream is None else " upstream"))
    for label, ours in rows:
        print(f"{label:<24} {ours:<34}" + ("" if upstream is None else " n/a"))
    if upstream:
        print(f"upstream: {upstream}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "config": {"cycle": CYCLE, "gap": GAP, "start_delay": START_DELAY, "jobs": jobs},
            "ours": {k: v for k, v in res.items()}, "upstream": upstream}, indent=1))


if __name__ == "__main__":
    main()
