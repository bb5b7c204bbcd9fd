"""Clusters of real ``distkv server`` processes on one broker, and how to compare them.

* :class:`Cluster` — server processes ``n1``, ``n2``, … on 127.0.0.1, all on
  one MQTT broker (optionally one of them through a :class:`CutProxy`), with
  short ping cycles, a hostmap naming every node's port, and each server's
  output in a log file (so a chatty server never blocks on a full pipe);
  :class:`ClusterNode` starts (waiting until its client port is open),
  kill -9s, stops and restarts one of them;
* :class:`CutProxy` — a TCP proxy the test can cut (all connections dropped,
  new ones refused) and restore: a network split between one server and
  the broker;
* :func:`tree`, :func:`same_trees`, :func:`conflict_log` — read what clients
  see, entry by entry with whole chains, and wait until every server agrees;
* :class:`Writer` — a client that writes keys and remembers every
  acknowledged write.
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path as FSPath
from typing import Any

import anyio
from procs import base_config, distkv_cmd, free_port, wait_port

from distkv.client import open_client
from distkv.util.path import P, Path

__all__ = [
    "Cluster",
    "ClusterNode",
    "CutProxy",
    "Writer",
    "conflict_log",
    "same_trees",
    "tree",
]

START_TIMEOUT = 30.0


class ClusterNode:
    """One ``distkv server`` process of a :class:`Cluster`."""

    def __init__(self, cluster: Cluster, name: str):
        self.cluster = cluster
        self.name = name
        self.port = free_port()
        self.log = cluster.directory / f"{name}.log"
        self.changes = cluster.directory / f"{name}.dkv"
        self.proc: subprocess.Popen | None = None
        self.broker_uri = cluster.broker_uri  # a CutProxy's address, for some nodes
        self.extra: list[str] = []  # more -C options for this node only

    def start(self, *args: str, peers: Sequence[str] = (), wait: bool = True,
              timeout: float = START_TIMEOUT) -> ClusterNode:
        """Run ``distkv server ARGS… NAME PEERS…`` (ARGS e.g. ``"-I", "x"`` or ``"-l", file``)."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        cmd = distkv_cmd(
            *base_config(self.port, self.cluster.global_args(self)),
            "server", *args, self.name, *peers,
        )
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with self.log.open("a") as out:
            out.write(f"=== start {' '.join(args)} {self.name} at {time.time():.3f}\n")
            out.flush()
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        if wait:
            self.wait_serving(timeout)
        return self

    def wait_serving(self, timeout: float = START_TIMEOUT) -> None:
        try:
            wait_port(self.port, timeout, self.proc)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{self.name} does not serve: {exc}\n{self.output()[-3000:]}") \
                from None

    def kill(self) -> None:
        """kill -9."""
        self._signal(signal.SIGKILL)

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL; returns the exit code."""
        return self._signal(signal.SIGTERM)

    def _signal(self, sig: int) -> int | None:
        p, self.proc = self.proc, None
        if p is None:
            return None
        if p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
        return p.returncode

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class Cluster:
    """Server processes sharing one broker (see the module docstring).

    ``names`` are created up front so that every server's hostmap knows every
    port. ``cycle``/``gap`` are the ping actor's timing.
    """

    def __init__(
        self,
        broker_uri: str,
        directory: FSPath,
        names: Iterable[str] = ("n1", "n2", "n3"),
        *,
        cycle: float = 1.0,
        gap: float = 0.2,
        extra: Sequence[str] = (),
    ):
        self.broker_uri = broker_uri
        self.directory = FSPath(directory)
        self.cycle = cycle
        self.gap = gap
        self.extra = list(extra)
        self.nodes = {n: ClusterNode(self, n) for n in names}

    def __getitem__(self, name: str) -> ClusterNode:
        return self.nodes[name]

    def global_args(self, node: ClusterNode) -> list[str]:
        args = [
            "-C", f"server.mqtt.uri={node.broker_uri}",
            "-C", "server.mqtt.retry_max=0.5",
            "-C", "server.no_broker=wait",
            "-C", f"server.ping.cycle={self.cycle}",
            "-C", f"server.ping.gap={self.gap}",
        ]
        for n in self.nodes.values():
            args += ["-C", f"hostmap.{n.name}=127.0.0.1:{n.port}"]
        return args + self.extra + node.extra

    def ports(self, names: Iterable[str] | None = None) -> list[int]:
        return [self.nodes[n].port for n in (names or self.nodes)]

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        for n in self.nodes.values():
            n.stop()

    def outputs(self) -> str:
        return "\n".join(f"--- {n.name}\n{n.output()[-4000:]}" for n in self.nodes.values())


# --- a TCP proxy that can be cut -------------------------------------------------------------


class CutProxy:
    """Forwards 127.0.0.1:``port`` to ``target``; :meth:`cut` drops everything until
    :meth:`restore`. Runs in a thread of its own."""

    def __init__(self, target_port: int):
        self.target = ("127.0.0.1", target_port)
        self.port = free_port()
        self._cut = False
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._sel = selectors.DefaultSelector()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._listener.setblocking(False)
        self._sel.register(self._listener, selectors.EVENT_READ)
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def uri(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def __enter__(self) -> CutProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        self._thread.join(5)
        with self._lock:
            self._drop_all()
        self._sel.close()
        self._listener.close()

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            self._drop_all()

    def restore(self) -> None:
        with self._lock:
            self._cut = False

    def _drop_all(self) -> None:
        for a, b in self._pairs:
            for s in (a, b):
                try:
                    self._sel.unregister(s)
                except (KeyError, ValueError):
                    pass
                s.close()
        self._pairs.clear()

    def _run(self) -> None:
        while not self._stop:
            for key, _ in self._sel.select(0.1):
                with self._lock:
                    if key.fileobj is self._listener:
                        self._accept()
                    else:
                        self._forward(key.fileobj, key.data)  # type: ignore[arg-type]

    def _accept(self) -> None:
        try:
            conn, _ = self._listener.accept()
        except OSError:
            return
        if self._cut:
            conn.close()
            return
        try:
            up = socket.create_connection(self.target, timeout=2)
        except OSError:
            conn.close()
            return
        for s in (conn, up):
            s.setblocking(True)
            s.settimeout(2)
        self._pairs.append((conn, up))
        self._sel.register(conn, selectors.EVENT_READ, up)
        self._sel.register(up, selectors.EVENT_READ, conn)

    def _forward(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            data = src.recv(65536)
            if data:
                dst.sendall(data)
                return
        except OSError:
            pass
        for pair in self._pairs:
            if src in pair:
                self._pairs.remove(pair)
                for s in pair:
                    try:
                        self._sel.unregister(s)
                    except (KeyError, ValueError):
                        pass
                    s.close()
                break


# --- what clients see -----------------------------------------------------------------------


def _chain(c: Any) -> tuple:
    links = []
    while c:
        links.append((c["node"], c.get("tick")))
        c = c.get("prev")
    return tuple(links)


async def tree(port: int) -> dict[Path, tuple[Any, tuple]]:
    """Every entry with a value, data and meta tree: ``path -> (value, whole chain)``."""
    res: dict[Path, tuple[Any, tuple]] = {}
    async with open_client(connect={"host": "127.0.0.1", "port": port}) as c:
        async for rec in c.get_tree(P(":"), nchain=-1):
            res[Path.build(rec["path"])] = (rec.get("value"), _chain(rec.get("chain")))
        async with c._open_stream(
            "get_tree_internal", {"path": (), "nchain": -1}, long_path=True, number=False
        ) as req:
            async for rec in req:
                res[Path.build((None, *rec["path"]))] = (rec.get("value"), _chain(rec["chain"]))
    return res


async def conflict_log(port: int) -> list[dict]:
    """The server's conflict log (``get_state`` with ``conflicts``)."""
    async with open_client(connect={"host": "127.0.0.1", "port": port}) as c:
        res = await c._request("get_state", conflicts=True)
    return [dict(r) for r in res["conflicts"]]


async def missing(port: int) -> dict:
    async with open_client(connect={"host": "127.0.0.1", "port": port}) as c:
        return dict((await c._request("get_state", missing=True)).get("missing") or {})


async def same_trees(ports: Sequence[int], within: float = 30.0) -> dict[Path, tuple]:
    """Wait until every server holds the same tree (and misses no tick); returns it.

    On timeout, fails with the differences.
    """
    deadline = time.monotonic() + within
    while True:
        trees = [await tree(p) for p in ports]
        miss = [await missing(p) for p in ports]
        if all(t == trees[0] for t in trees) and not any(miss):
            return trees[0]
        if time.monotonic() > deadline:
            diffs = []
            for p, t in zip(ports, trees, strict=True):
                for k in sorted(set(t) ^ set(trees[0]), key=repr)[:5]:
                    diffs.append(f"port {p}: only one side has {k}: {t.get(k, trees[0].get(k))}")
                for k in sorted(set(t) & set(trees[0]), key=repr):
                    if t[k] != trees[0][k]:
                        diffs.append(f"port {p}: {k}: {t[k]} != {trees[0][k]}")
                        break
            raise AssertionError(f"the trees differ after {within}s; missing: {miss}\n"
                                 + "\n".join(diffs[:20]))
        await anyio.sleep(0.3)  # noqa: ASYNC110  (polling other processes)


class Writer:
    """Writes ``prefix.k<i>`` keys through one server; ``acked`` maps every key to
    the last value the server acknowledged."""

    def __init__(self, port: int, prefix: Sequence[Any]):
        self.port = port
        self.prefix = Path.build(prefix)
        self.acked: dict[Path, Any] = {}
        self.errors = 0

    async def write(self, n: int, *, keys: int | None = None, start: int = 0,
                    value: Any = None, pause: float = 0.0, stop: anyio.Event | None = None
                    ) -> None:
        """Write ``n`` values (to ``keys`` distinct keys, round robin); connection
        errors end the run (the server may be killed meanwhile)."""
        keys = keys or n
        try:
            async with open_client(connect={"host": "127.0.0.1", "port": self.port}) as c:
                for i in range(start, start + n):
                    if stop is not None and stop.is_set():
                        return
                    path = self.prefix + (f"k{i % keys}",)
                    v = value if value is not None else f"{self.prefix}#{i}"
                    await c.set(path, v)
                    self.acked[path] = v
                    if pause:
                        await anyio.sleep(pause)
        except Exception:
            self.errors += 1
