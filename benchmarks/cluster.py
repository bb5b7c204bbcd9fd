"""Cluster benchmarks: joining, replication latency, replicated write rate.

    .venv/bin/python benchmarks/cluster.py [--entries N] [--only join latency rate]
                                           [--upstream] [--json FILE]

Every figure comes from real processes on 127.0.0.1 and one mosquitto:

* ``join`` — server A (``-I``) holds N entries (default 100,000, written
  pipelined) and is idle again; a fresh server B is started without data
  and without naming a peer (it has to find one). Measured: from starting
  B's process until B serves, i.e. has fetched everything and opened its
  client port; then B is checked to serve all N entries;
* ``latency`` — A → B replication: a client sets a key on A, a watcher on B
  sees the change; p50/p99 of 500 sequential samples;
* ``rate`` — three servers; three clients write, each through its own
  server, at a fixed total rate for a few seconds; the rate goes up by half
  each round. Measured: the highest rate after which every server held
  every write within 2 s (QoS 0 brokers drop what subscribers can't take,
  so a flood is no "sustained" rate: the servers then catch up by recovery).

``--upstream`` measures upstream distkv 0.65.0 the same way (its own
processes, ``.upstream-venv``; slow: its join of 100k entries alone takes
about a minute). The ping cycle is the default (10 s) for both.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import loadgen as lg  # noqa: E402
import msgpack  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
UPSTREAM = REPO / ".upstream-venv" / "bin" / "distkv-ref"
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
TIMEOUT = 180.0
LOG_INFO = False  # --keep: our servers log at INFO, with milliseconds


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """A child process in its own process group, output to a log file."""

    def __init__(self, label: str, argv: list[str], logfile: Path, env: dict | None = None):
        self.label = label
        self.argv = argv
        self.logfile = logfile
        self.env = env
        self.proc: subprocess.Popen | None = None

    def start(self) -> Proc:
        with open(self.logfile, "ab") as out:
            self.proc = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, **(self.env or {})}, start_new_session=True)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        p, self.proc = self.proc, None
        if p is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                return
            try:
                p.wait(10)
                return
            except subprocess.TimeoutExpired:
                continue

    def tail(self) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-15:])
        except OSError:
            return ""


def wait_port(port: int, proc: Proc, timeout: float = TIMEOUT) -> float:
    """Wait until ``port`` accepts connections; the monotonic time it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise lg.BenchError(f"{proc.label} exited:\n{proc.tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return time.monotonic()
        except OSError:
            time.sleep(0.01)
    raise lg.BenchError(f"{proc.label}: nothing listens on {port} after {timeout}s")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_idle(proc: Proc, quiet: float = 0.5, timeout: float = 60.0) -> float:
    """Wait until the process used (almost) no CPU for ``quiet`` seconds; returns the wait.

    A server that has just taken a burst of writes is still busy for a while
    (e.g. reading the broker's copies of its own broadcasts); joining is
    measured against an idle server.
    """
    t0 = time.monotonic()
    pid = proc.proc.pid
    last = cpu_seconds(pid)
    while time.monotonic() - t0 < timeout:
        time.sleep(quiet)
        now = cpu_seconds(pid)
        if now - last < quiet * 0.05:
            break
        last = now
    return time.monotonic() - t0


class Net:
    """One broker and the servers of one implementation (ours or upstream's)."""

    def __init__(self, kind: str, workdir: Path, names: list[str]):
        self.kind = kind
        self.dir = workdir
        self.ports = {n: free_port() for n in names}
        self.mqtt = free_port()
        self.procs: list[Proc] = []

    def __enter__(self) -> Net:
        conf = self.dir / f"mosquitto-{self.kind}.conf"
        conf.write_text(f"listener {self.mqtt} 127.0.0.1\nallow_anonymous true\n")
        p = Proc("mosquitto", [MOSQUITTO, "-c", str(conf)], self.dir / f"mosq-{self.kind}.log")
        self.procs.append(p.start())
        wait_port(self.mqtt, p, 10)
        return self

    def __exit__(self, *exc: object) -> None:
        for p in reversed(self.procs):
            p.stop()

    def start(self, name: str, *args: str) -> Proc:
        cfg = [
            "-c", "/dev/null",
            "-C", f"server.mqtt.uri=mqtt://127.0.0.1:{self.mqtt}",
            "-C", "server.bind_default.host=127.0.0.1",
            "-C", f"server.bind_default.port={self.ports[name]}",
            "-C", "connect.host=127.0.0.1",
        ]
        for n, port in self.ports.items():
            cfg += ["-C", f"hostmap.{n}=127.0.0.1:{port}"]
        if self.kind == "ours" and LOG_INFO:
            cfg += ["-C", "logging.loggers.distkv.level=INFO",
                    "-C", "logging.formatters.std.format=%(asctime)s.%(msecs)03d %(message)s"]
        if self.kind == "ours":
            argv = [sys.executable, "-m", "distkv", *cfg, "server", *args, name]
            env = None
        else:
            argv = [str(UPSTREAM), *cfg, "server", *args, name]
            env = {"PYTHONWARNINGS": "ignore"}
        p = Proc(f"{self.kind}:{name}", argv, self.dir / f"{self.kind}-{name}.log", env)
        self.procs.append(p.start())
        return p


# ---------------------------------------------------------------- the measurements


def bench_join(net: Net, entries: int) -> dict:
    a = net.start("a", "-I", "Testing")
    wait_port(net.ports["a"], a)
    with lg.Conn(net.ports["a"], timeout=60) as c:
        r = lg.fill(c, entries)
    log(f"  {net.kind}: A holds {entries} entries ({r.rate:,.0f} writes/s)")
    idle = wait_idle(a)
    log(f"  {net.kind}: A idle {idle:.1f}s after the writes")
    t0 = time.monotonic()
    b = net.start("b")
    t1 = wait_port(net.ports["b"], b)
    with lg.Conn(net.ports["b"], timeout=60) as c:
        n, t_tree = lg.get_tree(c, ("fill",), timeout=120)
    if n != entries:
        raise lg.BenchError(f"{net.kind}: B serves {n} of {entries} entries")
    return {"join_s": t1 - t0, "entries": entries}


def bench_latency(net: Net, samples: int = 500) -> dict:
    with lg.Conn(net.ports["b"]) as watcher, lg.Conn(net.ports["a"]) as writer:
        lat = lg.watch_latency(watcher, writer, samples, timeout=120)
    lat.sort()
    return {
        "latency_p50_ms": statistics.median(lat) * 1000,
        "latency_p99_ms": lat[int(len(lat) * 0.99) - 1] * 1000,
    }


def set_value_req(prefix: tuple) -> lg.RequestMaker:
    """Like ``loadgen.set_value_req``, with packers of its own.

    The writers run in threads, and msgpack packers are not thread-safe:
    loadgen's shared ones now and then garbled a request under load.
    """
    outer = msgpack.Packer(use_bin_type=True)
    elem = msgpack.Packer(use_bin_type=True)
    head = b"".join(elem.pack(e) for e in prefix)

    def make(i: int, seq: int) -> bytes:
        path = msgpack.ExtType(lg.PATH_EXT, head + elem.pack(f"k{i}"))
        return outer.pack({"action": "set_value", "path": path, "value": i, "nchain": 0,
                           "seq": seq})

    return make


def paced_writes(port: int, prefix: tuple, rate: float, seconds: float) -> int:
    """Write ``prefix.k<i>`` = i at ``rate`` per second for ``seconds``; returns the count.

    Requests go out in small batches on schedule, at most 256 unanswered.
    """
    make = set_value_req(prefix)
    with lg.Conn(port, timeout=60) as c:
        sock, up = c.sock, c.unpacker
        sent = done = 0
        t0 = time.perf_counter()
        end = t0 + seconds
        while True:
            now = time.perf_counter()
            due = min(int((now - t0) * rate), sent + 256 - (sent - done)) if now < end else sent
            if due > sent:
                sock.sendall(b"".join(make(i, c.next_seq()) for i in range(sent, due)))
                sent = due
            if done == sent and now >= end:
                return sent
            sock.settimeout(0.005 if now < end else 30)
            try:
                data = sock.recv(1 << 16)
            except TimeoutError:
                continue
            if not data:
                raise lg.BenchError("server closed the connection")
            up.feed(data)
            for msg in up:
                if "error" in msg:
                    raise lg.BenchError(f"error reply: {msg['error']}")
                done += 1


def replicated_within(net: Net, names: list[str], counts: dict[str, int], lag: float) -> bool:
    """Does every server hold every writer's last write within ``lag`` seconds?"""
    deadline = time.monotonic() + lag
    for server in names:
        with lg.Conn(net.ports[server], timeout=30) as c:
            for writer in names:
                last = counts[writer] - 1
                path = lg.Path(("rate", writer, f"k{last}"))
                while c.request("get_value", path=path, nchain=0).get("value") != last:
                    if time.monotonic() > deadline:
                        return False
                    time.sleep(0.01)
    return True


def bench_rate(net: Net, seconds: float) -> dict:
    """The highest total write rate (through three servers) that replication keeps up with.

    A rate counts as sustained if, after writing at it for ``seconds``, every
    server holds every write within 2 s. Rates go up by half each step until
    one fails (or the writers cannot reach it).
    """
    names = ["a", "b", "c"]
    procs = {"a": net.start("a", "-I", "Testing")}
    wait_port(net.ports["a"], procs["a"])
    for n in ("b", "c"):
        procs[n] = net.start(n)
        wait_port(net.ports[n], procs[n])
    rate = 500.0
    best = 0.0
    while rate < 200_000:
        counts: dict[str, int] = {}
        errors: list[BaseException] = []

        def write(name: str, r: float = rate, counts: dict = counts, errors: list = errors
                  ) -> None:
            try:
                counts[name] = paced_writes(net.ports[name], ("rate", name), r / 3, seconds)
            except BaseException as exc:  # reported below
                errors.append(exc)

        t0 = time.monotonic()
        threads = [threading.Thread(target=write, args=(n,)) for n in names]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        reached = sum(counts.values()) / (time.monotonic() - t0)
        ok = replicated_within(net, names, counts, 2.0)
        log(f"  {net.kind}: {rate:,.0f}/s asked, {reached:,.0f}/s written: "
            f"{'kept up' if ok else 'fell behind'}")
        if not ok:
            break
        best = max(best, min(rate, reached))
        if reached < rate * 0.9:
            break  # the writers (or the servers' acceptance) are the limit
        rate *= 1.5
        # start the next trial on fresh keys with every server caught up
        replicated_within(net, names, counts, TIMEOUT)
    return {"rate_writes_per_s": best}


def run(kind: str, only: set[str], entries: int, seconds: float, keep: str | None) -> dict:
    res: dict = {}
    with tempfile.TemporaryDirectory(prefix=f"distkv-cluster-{kind}-") as d:
        workdir = Path(keep or d)
        workdir.mkdir(parents=True, exist_ok=True)
        if only & {"join", "latency"}:
            with Net(kind, workdir, ["a", "b"]) as net:
                log(f"{kind}: join")
                joined = bench_join(net, entries if "join" in only else 10)
                if "join" in only:
                    res.update(joined)
                if "latency" in only:
                    log(f"{kind}: latency")
                    res.update(bench_latency(net))
        if "rate" in only:
            with Net(kind, workdir, ["a", "b", "c"]) as net:
                log(f"{kind}: rate")
                res.update(bench_rate(net, seconds))
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--seconds", type=float, default=3.0, help="duration of each rate round")
    ap.add_argument("--only", nargs="+", choices=["join", "latency", "rate"],
                    default=["join", "latency", "rate"])
    ap.add_argument("--upstream", action="store_true", help="measure upstream 0.65.0 too")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--keep", metavar="DIR", help="keep the processes' logs in DIR")
    args = ap.parse_args()
    global LOG_INFO
    LOG_INFO = bool(args.keep)
    only = set(args.only)
    results = {"ours": run("ours", only, args.entries, args.seconds, args.keep)}
    if args.upstream:
        if not UPSTREAM.exists():
            raise SystemExit(f"{UPSTREAM} is missing: run scripts/upstream-venv first")
        results["upstream"] = run("upstream", only, args.entries, args.seconds, args.keep)
    keys = [k for k in ("join_s", "latency_p50_ms", "latency_p99_ms", "rate_writes_per_s")
            if k in results["ours"]]
    print(f"{'figure':<22}{'ours':>14}{'upstream':>14}{'ratio':>9}")
    for k in keys:
        o = results["ours"][k]
        u = results.get("upstream", {}).get(k)
        ratio = f"{o / u:.2f}" if u else "-"
        print(f"{k:<22}{o:>14,.2f}{(f'{u:,.2f}' if u else '-'):>14}{ratio:>9}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
