"""Runner benchmarks: how late jobs start, and how long failover takes.

    .venv/bin/python benchmarks/runner.py [--quick] [--jobs N] [--json FILE]
                                          [--no-upstream | --only-upstream] [--keep DIR]

Real processes on 127.0.0.1, for ours and then for upstream 0.65.0
(``.upstream-venv``, see ``scripts/upstream-venv``; skipped with
``--no-upstream`` or if it is not installed): one mosquitto, one server,
three any-runners, two all-runners and one single-node runner, all with
short actor cycles and a small ``runner.start_delay`` (stated in the
output). The server gets the top-level ``root`` key: upstream's runners
need it (spec 09 §4, 15 #8), ours use it the same way.

* ``due→start`` — N one-shot jobs per group get targets at known future
  times (one per 25 ms, more than ``start_delay`` apart); each job's state
  records when it ``started``; the figure is ``started - target``, p50/p99,
  for the any-runner, the all-runner (every all-runner starts every job)
  and the single-node group;
* ``failover`` — an any-runner job that runs forever; the runner running it
  is kill -9'd; measured from the kill until another runner of the group
  has started the job (its state's ``started``). The bound follows from the
  actor timing: about (cycle + 2.5·gap)·(members + 2.5) of silence, plus up
  to two cycles and the job's retry delay.

Job records and stored code are written with our client (the records are
the same for both implementations); the runners are each implementation's
own: ``distkv client run [-n NODE|-] all``, and upstream's runner roots
started from Python (its ``distkv client job run`` dies at start, see
:data:`UPSTREAM_RUNNER`). A part that fails for one implementation is
reported with its error in the table instead of a figure.
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
from distkv.exceptions import ServerError  # noqa: E402
from distkv.util.path import P  # noqa: E402

CYCLE, GAP, START_DELAY = 1.0, 0.3, 0.01
SPACING = 0.025  # seconds between two jobs' targets
ACTOR = ["-C", f"runner.actor.cycle={CYCLE}", "-C", f"runner.actor.gap={GAP}",
         "-C", f"runner.start_delay={START_DELAY}"]
ROOT = "bench"  # the top-level `root` config key of the server
JOBS = P(":.distkv.run")
STATES = P(":.distkv.state")
# Where each implementation's runners keep the job states. Upstream's runner
# roots (as its tests start them) insert the config key's name: StateRoot's
# as_handler(key="state") prepends "state" to the sub-path it mirrors.
STATE_ROOT = {"ours": STATES, "upstream": STATES + ("state",)}
SINGLE = "c0"  # the node of the single-node group (and its runner's name)
FOREVER = ("await _client.set(_P('where'), _client.client_name)\n"
           "import anyio\nawait anyio.sleep(1e6)\n")
UPSTREAM_ENV = {"PYTHONWARNINGS": "ignore"}

# group -> (job record prefix below runner.prefix, state prefix below runner.state, copies)
GROUPS = {
    "any": (("any", "default"), ("any", "default"), 1),
    "all": (("all", "default"), ("all", "default"), 2),
    "single": (("at", SINGLE, "default"), ("at", SINGLE, "default"), 1),
}


# Upstream's `distkv client job run` fails at once with moat-util 0.35 (its runner
# adds a tuple and a moat Path: "TypeError: can only concatenate tuple (not "Path")
# to tuple"), so upstream's runner roots are started the way its own tests do:
# from Python, with the group's sub-path as a tuple.
UPSTREAM_RUNNER = """\
import sys, warnings
warnings.filterwarnings("ignore")
import anyio
from asyncscope import main_scope
from moat.util import attrdict, combine_dict
from distkv.client import open_client
from distkv.code import CodeRoot
from distkv.default import CFG
from distkv.runner import AllRunnerRoot, AnyRunnerRoot, SingleRunnerRoot

async def main(port, name, node, cycle, gap, start_delay):
    cfg = combine_dict({"connect": {"host": "127.0.0.1", "port": port, "name": name},
                        "runner": {"actor": {"cycle": cycle, "gap": gap},
                                   "start_delay": start_delay}}, CFG, cls=attrdict)
    if not node:
        cls, sub = AnyRunnerRoot, ("any", "default")
    elif node == "-":
        cls, sub = AllRunnerRoot, ("all", "default")
    else:
        cls, sub = SingleRunnerRoot, ("at", node, "default")
    async with main_scope("bench-runner"), open_client(**cfg) as client:
        code = await CodeRoot.as_handler(client)
        await cls.as_handler(client, subpath=sub, code=code)
        await anyio.sleep_forever()

a = sys.argv[1:]
anyio.run(main, int(a[0]), a[1], a[2], *map(float, a[3:6]), backend="trio")
"""


def runner_argv(kind: str, port: int, name: str, node: str | None = None) -> list[str]:
    """A runner of implementation ``kind`` for node ``node`` (None: any, ``-``: all)."""
    if kind == "upstream":
        # -I: not our distkv from the current directory
        return [str(cl.UPSTREAM.parent / "python"), "-I", "-c", UPSTREAM_RUNNER, str(port), name,
                node or "", str(CYCLE), str(GAP), str(START_DELAY)]
    opt = [] if node is None else ["-n", node]
    return [sys.executable, "-m", "distkv", "-c", "/dev/null", "-C", "connect.host=127.0.0.1",
            "-C", f"connect.port={port}", "-C", f"connect.name={name}", *ACTOR,
            "client", "run", *opt, "all"]


def start_runner(kind: str, workdir: Path, port: int, name: str,
                 node: str | None = None) -> cl.Proc:
    env = UPSTREAM_ENV if kind == "upstream" else None
    return cl.Proc(f"{kind} runner {name}", runner_argv(kind, port, name, node),
                   workdir / f"{kind}-runner-{name}.log", env).start()


def start_server(net: cl.Net, name: str, *args: str) -> cl.Proc:
    """Like :meth:`cluster.Net.start`, plus the top-level ``root`` key."""
    cfg = ["-c", "/dev/null", "-C", f"root={ROOT}",
           "-C", f"server.mqtt.uri=mqtt://127.0.0.1:{net.mqtt}",
           "-C", "server.bind_default.host=127.0.0.1",
           "-C", f"server.bind_default.port={net.ports[name]}",
           "-C", "connect.host=127.0.0.1"]
    if net.kind == "ours":
        argv, env = [sys.executable, "-m", "distkv", *cfg, "server", *args, name], None
    else:
        argv, env = [str(cl.UPSTREAM), *cfg, "server", *args, name], UPSTREAM_ENV
    p = cl.Proc(f"{net.kind}:{name}", argv, net.dir / f"{net.kind}-{name}.log", env)
    net.procs.append(p.start())
    return p


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
    """Every state below ``path`` that has started: ``'runner/job' or 'job' -> state``."""
    res = {}
    try:
        async for rec in client.get_tree(path):
            if isinstance(rec.get("value"), dict) and rec["value"].get("started"):
                res["/".join(str(p) for p in rec["path"])] = rec["value"]
    except ServerError as exc:
        if not str(exc).startswith("KeyError"):  # (nothing there yet)
            raise
    return res


async def due_to_start(client, kind: str, group: str, n: int) -> list[float]:
    """Schedule ``n`` jobs of ``group`` at future times; how late each one started."""
    jobs, states, copies = GROUPS[group]
    base = time.time() + 2.0
    targets = {}
    for i in range(n):
        name = f"j{i}"
        targets[name] = round(base + i * SPACING, 3)
        await client.set(JOBS + jobs + ("lat", name),
                         {"code": P("noop"), "target": targets[name]})
    with anyio.fail_after(60 + n * SPACING * 4):
        while True:
            found = await states_below(client, STATE_ROOT[kind] + states)
            late = [st["started"] - targets[k.rsplit("/", 1)[-1]]
                    for k, st in found.items() if k.rsplit("/", 1)[-1] in targets
                    and "lat" in k.split("/")]
            if len(late) >= n * copies:
                return late
            await anyio.sleep(0.2)


async def failover(kind: str, workdir: Path, client, procs: dict[str, cl.Proc], port: int,
                   rounds: int) -> list[float]:
    spath = STATE_ROOT[kind] + ("any", "default", "forever")
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
                                 lambda v, first=first, killed=killed:
                                 v.get("node") not in (None, first)
                                 and v.get("started", 0) > killed,
                                 within=120)
        times.append(state["started"] - killed)
        procs[first] = start_runner(kind, workdir, port, first)  # back, for the next round
    return times


async def measure(kind: str, workdir: Path, jobs: int, rounds: int) -> dict:
    """Every figure for implementation ``kind``; a part that fails gives its error text."""
    res: dict = {}
    with cl.Net(kind, workdir, ["s1"]) as net:
        srv = start_server(net, "s1", "-I", "x")
        port = net.ports["s1"]
        cl.wait_port(port, srv, 60)
        any_r = {f"a{i}": start_runner(kind, workdir, port, f"a{i}") for i in range(3)}
        others = [start_runner(kind, workdir, port, f"b{i}", "-") for i in range(2)]
        others.append(start_runner(kind, workdir, port, SINGLE, SINGLE))
        try:
            async with open_client(connect={"host": "127.0.0.1", "port": port}) as client:
                code = await CodeRoot.as_handler(client)
                await code.add("noop", "return 1")
                await code.add("forever", FOREVER, is_async=True)
                # warm up: every group in charge and running before the clock starts
                for jpath, _, _ in GROUPS.values():
                    await client.set(JOBS + jpath + ("warm",),
                                     {"code": P("noop"), "target": time.time()})
                for group, (_, spath, copies) in GROUPS.items():
                    spath = STATE_ROOT[kind] + spath
                    try:
                        with anyio.fail_after(60):
                            while len(await states_below(client, spath)) < copies:  # noqa: ASYNC110
                                await anyio.sleep(0.1)
                    except TimeoutError:
                        res[group] = f"no {group} runner started a job within 60 s"
                for group in GROUPS:
                    if group not in res:
                        res[group] = await _part(due_to_start(client, kind, group, jobs))
                res["failover"] = await _part(failover(kind, workdir, client, any_r, port,
                                                       rounds))
        finally:
            net.procs.extend([*any_r.values(), *others])
    return res


async def _part(coro) -> list[float] | str:
    try:
        return await coro
    except TimeoutError:
        return "timed out"
    except Exception as exc:  # noqa: BLE001 - reported in the table
        return f"failed: {exc!r}"


def ms(v: float) -> str:
    return f"{v * 1000:.1f} ms"


def rows(res: dict) -> list[tuple[str, str]]:
    """(label, figure) for one implementation's results."""
    out = []
    for group in GROUPS:
        v = res.get(group)
        for q, name in ((0.5, "p50"), (0.99, "p99")):
            label = f"due→start {group} {name}"
            if isinstance(v, list) and v:
                out.append((label, ms(statistics.median(v) if q == 0.5 else pct(v, q))))
            else:
                out.append((label, f"n/a: {v}"))
    v = res.get("failover")
    if isinstance(v, list) and v:
        out.append(("failover (kill -9) max",
                    f"{max(v):.2f} s (runs: " + ", ".join(f"{t:.2f}" for t in v) + ")"))
    else:
        out.append(("failover (kill -9) max", f"n/a: {v}"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer jobs, one failover")
    ap.add_argument("--jobs", type=int, default=None, help="jobs per group (default 200)")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    which = ap.add_mutually_exclusive_group()
    which.add_argument("--no-upstream", action="store_true", help="measure ours only")
    which.add_argument("--only-upstream", action="store_true", help="measure upstream only")
    ap.add_argument("--keep", metavar="DIR", help="keep the processes' logs in DIR")
    args = ap.parse_args()
    jobs = args.jobs or (40 if args.quick else 200)
    rounds = 1 if args.quick else 3
    kinds = [] if args.only_upstream else ["ours"]
    upstream_na = None
    if args.no_upstream:
        upstream_na = "not measured (--no-upstream)"
    elif not cl.UPSTREAM.exists():
        upstream_na = f"not measured: {cl.UPSTREAM} is missing (run scripts/upstream-venv)"
    else:
        kinds.append("upstream")
    results = {}
    with tempfile.TemporaryDirectory(prefix="distkv-bench-runner-") as d:
        for kind in kinds:
            workdir = Path(args.keep or d) / kind
            workdir.mkdir(parents=True, exist_ok=True)
            cl.log(f"{kind}: measuring")
            results[kind] = anyio.run(measure, kind, workdir, jobs, rounds)
    bound = (CYCLE + 2.5 * GAP) * (3 + 2.5) + 2 * CYCLE + 0.5
    print(f"runner benchmark: {jobs} jobs per group (one per {SPACING * 1000:.0f} ms); "
          f"3 any-runners, 2 all-runners, 1 single-node runner, one server; actor "
          f"cycle={CYCLE} s gap={GAP} s, start_delay={START_DELAY} s; "
          f"failover bound ≈ {bound:.1f} s")
    ours = rows(results["ours"]) if "ours" in results else None
    theirs = rows(results["upstream"]) if "upstream" in results else None
    print(f"{'measure':<24} {'ours':<36} upstream 0.65.0")
    for i, (label, _) in enumerate(ours or theirs or ()):
        print(f"{label:<24} {ours[i][1] if ours else 'not measured':<36} "
              f"{theirs[i][1] if theirs else 'n/a'}")
    if upstream_na:
        print(f"upstream: {upstream_na}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "config": {"cycle": CYCLE, "gap": GAP, "start_delay": START_DELAY,
                       "spacing": SPACING, "jobs": jobs},
            **results, **({"upstream_na": upstream_na} if upstream_na else {})}, indent=1))


if __name__ == "__main__":
    main()
