"""Benchmark our server against upstream distkv 0.65.0 and a storage-less bound.

    .venv/bin/python benchmarks/run.py [--quick] [--only NAME…] [--no-upstream]
                                       [--entries-1m] [--json FILE]

Every run starts fresh processes on free 127.0.0.1 ports (our server
standalone; upstream with its own mosquitto broker; the bound server), drives
them with :mod:`loadgen`, stops everything it started and prints one table:
name | ours | upstream | bound | ratio | target | ok?. README.rst explains
each figure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import loadgen as lg  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
UPSTREAM_LAUNCHER = REPO / ".upstream-venv" / "bin" / "distkv-ref"
UPSTREAM_SETUP = REPO / "scripts" / "upstream-venv"
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"

BENCHES = ("set_seq", "set_pipe", "get_seq", "get_pipe", "watch", "fill", "rss", "get_tree",
           "save", "restart")
N_DEFAULT = 100_000
N_QUICK = 10_000
N_BIG = 1_000_000
PIPE_WINDOW = 64
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- processes


class Proc:
    """A child process in its own process group, output to a log file."""

    def __init__(self, label: str, argv: list[str], logfile: Path, env: dict | None = None,
                 cpus: set[int] | None = None):
        self.label = label
        self.argv = argv
        self.logfile = logfile
        self.env = env
        self.cpus = cpus  # None: inherit ours
        self.proc: subprocess.Popen | None = None

    def start(self) -> Proc:
        env = dict(os.environ)
        env.update(self.env or {})
        cpus = self.cpus
        with open(self.logfile, "ab") as out:
            self.proc = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, start_new_session=True,
                preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
        STARTED.append(self)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def server_pid(self) -> int:
        """The pid whose memory counts: follow a non-Python launcher to its only child."""
        pid = self.proc.pid
        for _ in range(5):
            try:
                exe = os.readlink(f"/proc/{pid}/exe")
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except OSError:
                break
            if "python" in Path(exe).name or len(children) != 1:
                break
            pid = int(children[0])
        return pid

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.server_pid()}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise lg.BenchError("no VmRSS")

    def stop(self) -> None:
        p = self.proc
        if p is None:
            return
        if p.poll() is None:
            for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, STOP_TIMEOUT)):
                try:
                    os.killpg(p.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    p.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        # Anything the launcher left behind in its group goes too.
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc = None
        if self in STARTED:
            STARTED.remove(self)

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


STARTED: list[Proc] = []
ALL_CPUS = os.sched_getaffinity(0)


def pin_to_one_cpu() -> int:
    """Run this process and every server it starts on one CPU (the least busy one).

    On this kind of (virtual) machine a request/reply ping-pong between two
    CPUs pays a cross-CPU wake-up per message, which makes sequential rates
    swing by 2-5x with the scheduler's placement; on one CPU they are steady,
    and faster for every server, the bound included.
    """
    def idle() -> dict[int, int]:
        out = {}
        for line in Path("/proc/stat").read_text().splitlines():
            name, *fields = line.split()
            if name.startswith("cpu") and name != "cpu" and int(name[3:]) in ALL_CPUS:
                out[int(name[3:])] = int(fields[3])
        return out

    before = idle()
    time.sleep(0.3)
    after = idle()
    cpu = max(after, key=lambda c: (after[c] - before.get(c, 0), c))
    os.sched_setaffinity(0, {cpu})
    return cpu


def wait_port(port: int, timeout: float, proc: Proc) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise lg.BenchError(f"{proc.label} exited:\n{proc.tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise lg.BenchError(f"{proc.label}: nothing listens on {port} after {timeout}s")


def wait_value(port: int, path: tuple, value: object, timeout: float, proc: Proc) -> float:
    """Poll until get_value(path) == value; return the monotonic time it succeeded."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if not proc.alive():
            raise lg.BenchError(f"{proc.label} exited:\n{proc.tail()}")
        try:
            with lg.Conn(port, timeout=5.0) as c:
                reply = c.request("get_value", path=lg.Path(path), nchain=0)
                if reply.get("value") == value:
                    return time.monotonic()
                last = reply
        except (OSError, lg.BenchError) as exc:
            last = exc
        time.sleep(0.02)
    raise lg.BenchError(f"{proc.label}: get_value {path} is not {value!r} after {timeout}s "
                        f"(last: {last!r})")


@dataclass
class Target:
    """How a server under test is started."""

    kind: str  # "ours" | "upstream"
    launcher: list[str]
    node: str
    broker_port: int | None


def server_config(workdir: Path, name: str, port: int, broker_port: int | None) -> Path:
    broker = broker_port or free_port()  # nobody listens there: standalone
    cfg = workdir / f"{name}-{port}.yaml"
    cfg.write_text(
        "server:\n"
        f"  mqtt: {{uri: 'mqtt://127.0.0.1:{broker}'}}\n"
        f"  bind_default: {{host: 127.0.0.1, port: {port}}}\n"
        "  no_broker: standalone\n"
        f"connect: {{host: 127.0.0.1, port: {port}}}\n"
    )
    return cfg


def start_server(t: Target, workdir: Path, server_args: list[str], label: str) -> tuple[Proc, int]:
    port = free_port()
    cfg = server_config(workdir, t.kind, port, t.broker_port)
    argv = [*t.launcher, "-c", str(cfg), "server", *server_args]
    proc = Proc(label, argv, workdir / f"{label}.log", env={"PYTHONWARNINGS": "ignore"}).start()
    return proc, port


def broker_trouble(workdir: Path) -> list[str]:
    """Broker log lines saying that a server stopped talking to it (upstream then hangs)."""
    try:
        text = (workdir / "mosquitto.log").read_text(errors="replace")
    except OSError:
        return []
    return [f"mosquitto: {line}" for line in text.splitlines() if "exceeded timeout" in line]


def start_mosquitto(workdir: Path) -> tuple[Proc, int]:
    port = free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    # The broker may run anywhere, even when the rest is pinned to one CPU.
    proc = Proc("mosquitto", [MOSQUITTO, "-c", str(conf)], workdir / "mosquitto.log",
                cpus=ALL_CPUS).start()
    wait_port(port, 10.0, proc)
    return proc, port


# ---------------------------------------------------------------- measuring


@dataclass
class Plan:
    only: set[str]
    n: int
    big: bool
    duration: float
    slices: int
    watch_samples: int

    def wants(self, *names: str) -> bool:
        return any(n in self.only for n in names)


@dataclass
class Results:
    values: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    extra: dict[str, object] = field(default_factory=dict)

    def attempt(self, key: str, fn: Callable[[], float | None]) -> bool:
        try:
            value = fn()
        except (lg.BenchError, OSError) as exc:
            self.errors[key] = f"{type(exc).__name__}: {exc}"
            log(f"    {key}: FAILED {self.errors[key]}")
            return False
        if value is not None:
            self.values[key] = value
            log(f"    {key}: {value:.6g}")
        return True


def median_rate(run: Callable[[float], lg.RateResult], duration: float, slices: int,
                res: Results, key: str) -> float:
    """Run ``slices`` equal slices of ``duration``; the median rate (spread kept as extra).

    Two processes ping-ponging on two shared cores run at very different
    speeds depending on where the scheduler puts them; the median of short
    slices is steadier than one long run.
    """
    rates = sorted(run(duration / slices).rate for _ in range(slices))
    res.extra[f"{key}_slices"] = rates
    return rates[len(rates) // 2]


def measure_rates(port: int, plan: Plan, res: Results) -> None:
    """set/get, sequential and pipelined, on one connection."""
    sets = lg.set_value_req(("bench", "s"), 1000)
    gets = lg.get_value_req(("bench", "s"), 1000)
    with lg.Conn(port) as c:
        # Warm up, and make sure every key that get_value reads exists.
        lg.pipelined(c, sets, count=2000, window=PIPE_WINDOW)
        runs: dict[str, Callable[[float], lg.RateResult]] = {
            "set_seq": lambda d: lg.sequential(c, sets, d),
            "set_pipe": lambda d: lg.pipelined(c, sets, duration=d, window=PIPE_WINDOW),
            "get_seq": lambda d: lg.sequential(c, gets, d),
            "get_pipe": lambda d: lg.pipelined(c, gets, duration=d, window=PIPE_WINDOW),
        }
        for key, run in runs.items():
            if plan.wants(key):
                res.attempt(key, lambda run=run, key=key: median_rate(
                    run, plan.duration, plan.slices, res, key))


def measure_watch(port: int, plan: Plan, res: Results) -> None:
    def run() -> None:
        with lg.Conn(port) as watcher, lg.Conn(port) as writer:
            lat = sorted(lg.watch_latency(watcher, writer, plan.watch_samples, timeout=60.0))
        res.values["watch_p50"] = lat[len(lat) // 2] * 1e3
        res.values["watch_p99"] = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3
        log(f"    watch: p50 {res.values['watch_p50']:.3f} ms, "
            f"p99 {res.values['watch_p99']:.3f} ms")

    if not res.attempt("watch", run):
        res.errors["watch_p50"] = res.errors["watch_p99"] = res.errors.pop("watch")


def bench_server(t: Target, plan: Plan, workdir: Path, res: Results) -> None:
    """All measurements against one kind of server, into ``res``."""
    log(f"== {t.kind}: starting")
    saves: dict[int, Path] = {}
    proc, port = start_server(t, workdir, ["-I", "Testing", t.node], f"{t.kind}-main")
    try:
        t0 = time.monotonic()
        wait_port(port, READY_TIMEOUT, proc)
        wait_value(port, (), "Testing", READY_TIMEOUT, proc)
        res.extra["startup_s"] = time.monotonic() - t0
        if plan.wants("fill", "rss", "get_tree", "save", "restart"):
            _entries(t, plan, workdir, res, proc, port, saves)
        if plan.wants("set_seq", "set_pipe", "get_seq", "get_pipe"):
            log("  request rates")
            measure_rates(port, plan, res)
        if plan.wants("watch"):
            log("  watch latency")
            measure_watch(port, plan, res)
        if plan.big and f"fill@{plan.n}" in res.values:
            _entries(t, plan, workdir, res, proc, port, saves, big=True)
    finally:
        proc.stop()
    if plan.wants("restart"):
        for count, path in saves.items():
            _restart(t, workdir, res, count, path)


def _entries(t: Target, plan: Plan, workdir: Path, res: Results, proc: Proc, port: int,
             saves: dict[int, Path], big: bool = False) -> None:
    """Fill up to N (or 1M) entries, then RSS, get_tree (N only), save."""
    start, n = (plan.n, N_BIG) if big else (0, plan.n)
    # Upstream pauses for minutes now and then when it holds many entries.
    with lg.Conn(port, timeout=600.0 if big else 120.0) as c:
        if not big:
            time.sleep(0.5)
            res.extra["rss_idle"] = proc.rss_bytes()
        log(f"  filling up to {n} entries")
        if not res.attempt(f"fill@{n}", lambda: _fill(c, start, n)):
            return
        time.sleep(0.5)
        rss = res.extra[f"rss@{n}_total"] = proc.rss_bytes()
        if plan.wants("rss"):
            res.attempt(f"rss@{n}", lambda: (rss - res.extra["rss_idle"]) / n)
        if plan.wants("get_tree") and not big:
            def tree() -> float:
                got, secs = lg.get_tree(c, ("fill",), timeout=120.0)
                if got != n:
                    raise lg.BenchError(f"get_tree returned {got} records, not {n}")
                res.extra[f"get_tree@{n}_s"] = secs
                return n / secs
            res.attempt(f"get_tree@{n}", tree)
        if plan.wants("save"):
            path = workdir / f"{t.kind}-{n}.msgpack"
            if _save(c, res, n, path):
                saves[n] = path


def _fill(c: lg.Conn, start: int, n: int, chunk: int = 100_000) -> float:
    """Fill entries start..n-1 in chunks (progress on stderr); the overall rate."""
    ops, secs = 0, 0.0
    for lo in range(start, n, chunk):
        r = lg.fill(c, min(lo + chunk, n), start=lo, window=PIPE_WINDOW)
        ops += r.ops
        secs += r.seconds
        if n - start > chunk:
            log(f"    {lo + r.ops} entries, {r.rate:.0f}/s")
    return ops / secs


def _save(c: lg.Conn, res: Results, count: int, path: Path) -> bool:
    def save() -> float:
        t0 = time.perf_counter()
        c.request("save", path=str(path))
        secs = time.perf_counter() - t0
        if not path.exists() or not path.stat().st_size:
            raise lg.BenchError(f"save reported success but {path} is missing or empty")
        res.extra[f"save@{count}_bytes"] = path.stat().st_size
        return secs

    return res.attempt(f"save@{count}", save)


def _restart(t: Target, workdir: Path, res: Results, count: int, path: Path) -> None:
    log(f"  restart from the {count}-entry save file")
    t0 = time.monotonic()
    proc, port = start_server(t, workdir, ["-l", str(path), t.node], f"{t.kind}-load{count}")
    try:
        timeout = 60.0 + count / 2000
        res.attempt(f"restart@{count}",
                    lambda: wait_value(port, lg.fill_key(count - 1), count - 1, timeout, proc) - t0)
    finally:
        proc.stop()


def guarded(kind: str, run: Callable[[Results], None]) -> Results:
    """Run one server's measurements; a failure outside a single figure ends only that."""
    res = Results()
    try:
        run(res)
    except (lg.BenchError, OSError) as exc:
        log(f"  {kind}: FAILED {type(exc).__name__}: {exc}")
        res.errors["run"] = f"{type(exc).__name__}: {exc}"
    return res


def bench_bound(plan: Plan, workdir: Path, res: Results) -> None:
    if not plan.wants("set_seq", "set_pipe", "get_seq", "get_pipe"):
        return
    log("== bound: starting")
    port = free_port()
    proc = Proc("bound", [sys.executable, str(Path(__file__).parent / "bound_server.py"),
                          "--port", str(port)], workdir / "bound.log").start()
    try:
        wait_port(port, 20.0, proc)
        measure_rates(port, plan, res)
    finally:
        proc.stop()


# ---------------------------------------------------------------- reporting


@dataclass
class Row:
    name: str
    key: str
    unit: str
    ref: str | None = None  # "upstream" | "bound": what the ratio divides by
    op: str | None = None  # ">=" | "<="
    goal: float | None = None
    note: str = ""


def rows_for(plan: Plan) -> list[Row]:
    n = plan.n
    rows = [
        Row("set_value sequential", "set_seq", "ops/s", "upstream", ">=", 5),
        Row("set_value pipelined(64)", "set_pipe", "ops/s", "upstream", ">=", 15),
        Row("  ... vs storage-less bound", "set_pipe", "ops/s", "bound", ">=", 0.5),
        Row("get_value sequential", "get_seq", "ops/s", "upstream"),
        Row("get_value pipelined(64)", "get_pipe", "ops/s", "upstream"),
        Row("watch latency p50", "watch_p50", "ms", "upstream"),
        Row("watch latency p99", "watch_p99", "ms", "upstream", "<=", 0.5),
        Row(f"fill {n} (pipelined set)", f"fill@{n}", "ops/s", "upstream"),
        Row(f"get_tree of {n}", f"get_tree@{n}", "ent/s", "upstream", ">=", 10,
            "" if n == N_DEFAULT else "target is for 100k"),
        Row(f"RSS per entry @{n}", f"rss@{n}", "B", "upstream", "<=", 0.4),
        Row(f"save @{n}", f"save@{n}", "s", "upstream", "<=", 0.2, "target is for 1M"),
        Row(f"restart from file @{n}", f"restart@{n}", "s", "upstream", "<=", 0.2,
            "target is for 1M"),
    ]
    if plan.big:
        rows += [
            Row(f"fill {N_BIG} (pipelined set)", f"fill@{N_BIG}", "ops/s", "upstream"),
            Row(f"RSS per entry @{N_BIG}", f"rss@{N_BIG}", "B", "upstream", "<=", 0.4),
            Row(f"save @{N_BIG}", f"save@{N_BIG}", "s", "upstream", "<=", 0.2),
            Row(f"restart from file @{N_BIG}", f"restart@{N_BIG}", "s", "upstream", "<=", 0.2),
        ]
    return rows


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit in ("ops/s", "ent/s"):
        return f"{value / 1000:.1f}k/s" if value >= 1000 else f"{value:.0f}/s"
    if unit == "ms":
        return f"{value:.3f} ms"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "B":
        return f"{value:.0f} B"
    return f"{value:.4g}"


def build_table(plan: Plan, results: dict[str, Results]) -> tuple[list[list[str]], list[dict]]:
    table = [["name", "ours", "upstream", "bound", "ratio", "target", "ok?"]]
    records = []
    for row in rows_for(plan):
        vals = {k: r.values.get(row.key) for k, r in results.items()}
        errs = {k: r.errors.get(row.key) for k, r in results.items()}
        if all(v is None for v in vals.values()) and not any(errs.values()):
            continue  # not measured in this run
        ours, ref = vals.get("ours"), vals.get(row.ref) if row.ref else None
        ratio = ours / ref if ours is not None and ref else None
        ok = "-"
        if row.op and ratio is not None:
            ok = "yes" if (ratio >= row.goal if row.op == ">=" else ratio <= row.goal) else "NO"
        target = f"{row.op} {row.goal:g}x {row.ref}" if row.op else ""
        if row.note and row.op:
            target += f" ({row.note})"

        def cell(kind: str, vals: dict = vals, errs: dict = errs, unit: str = row.unit) -> str:
            if vals.get(kind) is not None:
                return fmt(vals[kind], unit)
            return "ERROR" if errs.get(kind) else "-"

        show_bound = row.key in ("set_seq", "set_pipe", "get_seq", "get_pipe")
        table.append([row.name, cell("ours"), cell("upstream") if row.ref != "bound" else "",
                      cell("bound") if show_bound else "",
                      f"{ratio:.2f}x" if ratio is not None else "-", target, ok])
        records.append({"name": row.name, "key": row.key, "unit": row.unit,
                        "ours": vals.get("ours"), "upstream": vals.get("upstream"),
                        "bound": vals.get("bound") if show_bound else None,
                        "ratio_vs": row.ref, "ratio": ratio,
                        "target": f"{row.op} {row.goal:g}" if row.op else None,
                        "ok": None if ok == "-" else ok == "yes"})
    return table, records


def print_table(table: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for i, r in enumerate(table):
        print(" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        if i == 0:
            print("-+-".join("-" * w for w in widths))


# ---------------------------------------------------------------- main


def find_upstream(explicit: str | None) -> list[str] | None:
    if explicit:
        return [explicit]
    if not UPSTREAM_LAUNCHER.exists() and UPSTREAM_SETUP.exists():
        log(f"installing the upstream reference with {UPSTREAM_SETUP}")
        subprocess.run([str(UPSTREAM_SETUP)], cwd=REPO, check=False, timeout=600)
    if UPSTREAM_LAUNCHER.exists():
        return [str(UPSTREAM_LAUNCHER)]
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="distkv benchmarks (see benchmarks/README.rst)")
    ap.add_argument("--quick", action="store_true",
                    help=f"short runs, {N_QUICK} entries instead of {N_DEFAULT}")
    ap.add_argument("--only", nargs="+", choices=BENCHES, metavar="NAME",
                    help=f"run only these: {', '.join(BENCHES)}")
    ap.add_argument("--no-upstream", action="store_true", help="skip upstream distkv 0.65.0")
    ap.add_argument("--no-ours", action="store_true", help="skip our server")
    ap.add_argument("--entries-1m", action="store_true",
                    help=f"also fill to {N_BIG} entries (RSS, save, restart); slow for upstream")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    ap.add_argument("--upstream-cmd", metavar="PATH",
                    help=f"upstream launcher (default {UPSTREAM_LAUNCHER.relative_to(REPO)})")
    ap.add_argument("--ours-broker", action="store_true",
                    help="give our server the mosquitto broker too (default: standalone)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, files)")
    ap.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), metavar="PART",
                    help="which tables: core (this script's), security (benchmarks/security.py), "
                         "cluster (benchmarks/cluster.py), runner (benchmarks/runner.py); "
                         "default: all")
    ap.add_argument("--no-pin", action="store_true",
                    help="let the OS place the servers and the load generator on any CPU")
    args = ap.parse_args(argv)

    plan = Plan(
        only=set(args.only or BENCHES),
        n=N_QUICK if args.quick else N_DEFAULT,
        big=args.entries_1m,
        duration=0.6 if args.quick else 2.5,
        slices=3 if args.quick else 5,
        watch_samples=200 if args.quick else 1000,
    )
    if "core" not in args.parts:
        return run_parts(args)
    if plan.wants("restart"):
        plan.only.add("save")
    signal.signal(signal.SIGTERM, _interrupted)  # so that `finally` stops the servers
    t_start = time.monotonic()
    placement = "any CPU"
    if not args.no_pin and len(ALL_CPUS) > 1:
        placement = f"all on CPU {pin_to_one_cpu()}"
    workdir = Path(tempfile.mkdtemp(prefix="distkv-bench-"))
    results: dict[str, Results] = {}
    notes: list[str] = []
    try:
        upstream = None if args.no_upstream else find_upstream(args.upstream_cmd)
        if not args.no_upstream and upstream is None:
            notes.append("upstream skipped: no launcher (run scripts/upstream-venv)")
        broker = None
        if upstream or args.ours_broker:
            broker_proc, broker = start_mosquitto(workdir)
        if not args.no_ours:
            ours = Target("ours", [sys.executable, "-m", "distkv"], "bench1",
                          broker if args.ours_broker else None)
            results["ours"] = guarded("ours", lambda r: bench_server(ours, plan, workdir, r))
        if upstream:
            up = Target("upstream", upstream, "up1", broker)
            results["upstream"] = guarded("upstream", lambda r: bench_server(up, plan, workdir, r))
        results["bound"] = guarded("bound", lambda r: bench_bound(plan, workdir, r))
    except KeyboardInterrupt:
        notes.append("interrupted")
    finally:
        notes += broker_trouble(workdir)
        for proc in list(STARTED):
            proc.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    elapsed = time.monotonic() - t_start
    table, records = build_table(plan, results)
    print(f"distkv benchmarks: N={plan.n}{' and ' + str(N_BIG) if plan.big else ''}, "
          f"median of {plan.slices} slices of {plan.duration / plan.slices:g} s per rate, "
          f"{plan.watch_samples} watch samples, {placement}, "
          f"{elapsed:.0f} s total, load avg before/after: {LOAD0} / {_loadavg()}")
    print_table(table)
    for kind, r in results.items():
        for key, err in r.errors.items():
            notes.append(f"{kind} {key}: {err}")
    for note in notes:
        print(f"note: {note}")
    if args.keep:
        print(f"work directory kept: {workdir}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "n": plan.n, "big": N_BIG if plan.big else None, "duration": plan.duration,
            "watch_samples": plan.watch_samples, "seconds": elapsed, "placement": placement,
            "rows": records,
            "raw": {k: {"values": r.values, "errors": r.errors, "extra": r.extra}
                    for k, r in results.items()},
            "notes": notes,
        }, indent=2, default=str))
    return run_parts(args)


PARTS = ("core", "security", "cluster", "runner")


def run_parts(args: argparse.Namespace) -> int:
    """The other tables of the suite, each its own script, run in turn."""
    here = Path(__file__).resolve().parent
    rc = 0
    for part in args.parts:
        if part == "core":
            continue
        cmd = [sys.executable, str(here / f"{part}.py")]
        if args.quick:
            cmd += {"cluster": ["--entries", "10000", "--seconds", "1"],
                    "runner": ["--quick"]}.get(part, ["--duration", "1", "--logins", "3"])
        if part == "cluster" and not args.no_upstream:
            cmd.append("--upstream")
        if part == "runner" and args.no_upstream:
            cmd.append("--no-upstream")
        print(f"\n== {part}: {' '.join(cmd[1:])}", flush=True)
        rc = subprocess.run(cmd).returncode or rc
    return rc


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


LOAD0 = _loadavg()

if __name__ == "__main__":
    sys.exit(main())
