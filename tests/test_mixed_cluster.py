"""Mixed clusters: released DistKV 0.65.0 servers and ours replicate each other.

Real processes on one real mosquitto (127.0.0.1, free ports): upstream
servers run by ``distkv-ref`` (:mod:`upstream`), ours by ``distkv server``
(:mod:`cluster`), with the same short ping timing; every server's hostmap
names every other one, so a server without data can fetch the state from
any of them. The tests:

* a fresh server of ours joins an upstream server holding data, and fresh
  upstream servers join ours; then both kinds write and delete, each what
  the other wrote too;
* a split between the two kinds heals (we ask upstream for what we missed);
* an upstream server restarted from its saved state asks ours for what it
  missed.

What a user sees is compared: every entry's value, whole chain and tock,
read from every server (they must agree, and nobody may miss a tick), and
single entries read with each side's own CLI.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from pathlib import Path as FSPath
from typing import Any

import anyio
import pytest
from brokers import Mosquitto, mosquitto_fixture  # noqa: F401 - fixture: mosquitto
from cluster import Cluster, CutProxy
from procs import free_port, run_cli
from upstream import (  # noqa: F401 - fixture: upstream_venv
    RefVenv,
    UpstreamServer,
    ref_cli,
    ref_python,
    upstream_venv_fixture,
)

from distkv.client import open_client
from distkv.util import NotGiven
from distkv.util.path import P, Path
from distkv.util.yaml import yload

pytestmark = [pytest.mark.upstream, pytest.mark.anyio, pytest.mark.timeout(90)]

CYCLE, GAP = 1.0, 0.2  # the ping actor's timing, on both kinds of server
CONVERGE = 20.0  # seconds for a change to reach every server

# ("set", path, value) / ("delete", path): what a user does, on either kind of server
Op = tuple[Any, ...]

BIG = "0123456789abcdef" * 80  # over 450 bytes packed: sent in _p0 parts

INIT: list[Op] = [("set", (), "Testing")]  # what ``server -I Testing`` does

FIRST_DATA: list[Op] = [
    ("set", ("d", "int"), 42),
    ("set", ("d", "str"), "hello wörld"),
    ("set", ("d", "float"), 2.5),
    ("set", ("d", "bigint"), 2**70),
    ("set", ("d", "bytes"), b"\x00\xff"),
    ("set", ("d", "list"), [1, "two", [3]]),
    ("set", ("d", "map"), {"a": 1, "b": {"c": None}}),
    ("set", ("d", "big"), BIG),
    ("set", ("d", "n", 12, True), "odd path"),
    ("set", ("d", "twice"), "first"),
    ("set", ("d", "twice"), "second"),
    ("set", ("d", "gone"), "short-lived"),
    ("delete", ("d", "gone")),
    *(("set", ("d", "many", f"k{i}"), i) for i in range(20)),
]

UPSTREAM_OPS = '''
import ast, sys
import anyio
from distkv.client import open_client
from moat.util import Path

async def main(port, ops):
    async with open_client(connect={"host": "127.0.0.1", "port": port}) as c:
        for op in ops:
            if op[0] == "set":
                await c.set(Path(*op[1]), value=op[2])
            else:
                await c.delete(Path(*op[1]))

anyio.run(main, int(sys.argv[1]), ast.literal_eval(sys.argv[2]), backend="trio")
'''


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# --- the cluster ------------------------------------------------------------------------------


class Mixed:
    """Our servers (a :class:`Cluster`) and upstream servers on one broker.

    ``ours`` names our servers; ``theirs`` maps the upstream servers' names to
    the arguments before the name (e.g. ``["-I", "Testing"]``). Nothing runs
    until started.
    """

    def __init__(self, venv: RefVenv, broker: Mosquitto, directory: FSPath,
                 ours: Sequence[str], theirs: dict[str, list[str]]):
        self.venv = venv
        self.cluster = Cluster(broker.uri, directory, ours, cycle=CYCLE, gap=GAP)
        taken = {broker.port, *self.cluster.ports()}
        ports = {name: _port_apart(taken) for name in theirs}
        hostmap = {n.name: n.port for n in self.cluster.nodes.values()} | ports
        self.upstream = {
            name: UpstreamServer(venv, broker.uri, [*args, name], port=ports[name],
                                 ping=(CYCLE, GAP), hostmap=hostmap)
            for name, args in theirs.items()
        }
        for name, port in ports.items():
            self.cluster.extra += ["-C", f"hostmap.{name}=127.0.0.1:{port}"]
        # what our servers ask for and fetch, in the logs a failure shows
        self.cluster.extra += ["-l", "distkv.server.replication=DEBUG"]

    def port(self, name: str) -> int:
        up = self.upstream.get(name)
        return up.port if up is not None else self.cluster[name].port

    def ours(self, name: str, *args: str) -> tuple[int, str, str]:
        """Our CLI: ``distkv client ARGS…`` against our server ``name``."""
        res = run_cli(self.port(name), "client", *args)
        return res.returncode, res.stdout, res.stderr

    def theirs(self, name: str, *args: str) -> tuple[int, str, str]:
        """Upstream's CLI: ``distkv client ARGS…`` against the upstream server ``name``."""
        res = ref_cli(self.venv, self.port(name), *args)
        return res.returncode, res.stdout, res.stderr

    async def converged(self, ports: Sequence[int], want: dict[Path, Any], *,
                        contested: dict[Path, set] | None = None
                        ) -> dict[Path, tuple[Any, tuple, int]]:
        """:func:`converged`, with the servers' logs if they don't."""
        try:
            return await converged(ports, want, contested=contested)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.logs()}") from None

    def logs(self) -> str:
        ups = "\n".join(f"--- {n}\n{(u.output + u.log())[-3000:]}"
                        for n, u in self.upstream.items())
        return self.cluster.outputs() + "\n" + ups

    def __enter__(self) -> Mixed:
        return self

    def __exit__(self, *exc: object) -> None:
        for up in self.upstream.values():
            up.__exit__()
        self.cluster.__exit__()


def _port_apart(taken: set[int]) -> int:
    """A free port that none of ``taken`` uses (the OS may hand out a port twice)."""
    while (port := free_port()) in taken:
        pass
    taken.add(port)
    return port


# --- doing things, reading what users see -----------------------------------------------------


async def apply_ours(port: int, ops: Iterable[Op]) -> None:
    """Run ``ops`` with our client library against the server at ``port``."""
    async with open_client(connect={"host": "127.0.0.1", "port": port}) as c:
        for op in ops:
            if op[0] == "set":
                await c.set(op[1], op[2])
            else:
                await c.delete(op[1])


def apply_theirs(venv: RefVenv, port: int, ops: Iterable[Op]) -> None:
    """Run ``ops`` with upstream's client library against the server at ``port``."""
    res = ref_python(venv, UPSTREAM_OPS, str(port), repr(list(ops)))
    assert res.returncode == 0, res.stderr


def expected(*op_lists: Iterable[Op]) -> dict[Path, Any]:
    """The values a sequence of operations leaves behind (as read: arrays are tuples)."""
    res: dict[Path, Any] = {}
    for ops in op_lists:
        for op in ops:
            if op[0] == "set":
                res[Path.build(op[1])] = _as_read(op[2])
            else:
                res.pop(Path.build(op[1]), None)
    return res


def _as_read(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_as_read(v) for v in value)
    if isinstance(value, dict):
        return {k: _as_read(v) for k, v in value.items()}
    return value


def without(want: dict[Path, Any], *paths: str) -> dict[Path, Any]:
    return {k: v for k, v in want.items() if k not in {P(p) for p in paths}}


def _chain(c: Any) -> tuple[tuple[str, int], ...]:
    links = []
    while c:
        links.append((c["node"], c["tick"]))
        c = c.get("prev")
    return tuple(links)


async def entries(port: int) -> dict[Path, tuple[Any, tuple, int]]:
    """Every entry with a value, data and meta tree: ``path -> (value, whole chain, tock)``."""
    res = {}
    async with open_client(connect={"host": "127.0.0.1", "port": port}) as c:
        async for rec in c.get_tree(P(":"), nchain=-1):
            res[Path.build(rec["path"])] = (rec["value"], _chain(rec["chain"]), rec["tock"])
        async with c._open_stream(
            "get_tree_internal", {"path": (), "nchain": -1}, long_path=True, number=False
        ) as req:
            async for rec in req:
                if rec.get("value", NotGiven) is not NotGiven:
                    res[Path.build((None, *rec["path"]))] = (
                        rec["value"], _chain(rec["chain"]), rec["tock"])
    return res


async def missing(port: int) -> dict:
    async with open_client(connect={"host": "127.0.0.1", "port": port}) as c:
        return dict((await c._request("get_state", missing=True)).get("missing") or {})


async def converged(ports: Sequence[int], want: dict[Path, Any], *,
                    contested: dict[Path, set] | None = None
                    ) -> dict[Path, tuple[Any, tuple, int]]:
    """Wait until every server holds ``want`` in its data tree (and nothing else), all
    servers hold the same entries, chains and tocks, and none misses a tick.

    ``contested`` entries (written concurrently) may hold any of the given values
    (``None``: no value), but the same everywhere.
    """
    deadline = time.monotonic() + CONVERGE
    contested = contested or {}
    while True:
        trees = [await entries(p) for p in ports]
        data = [{k: v[0] for k, v in t.items() if not k or k[0] is not None}
                for t in trees]
        for d in data:
            for k, values in contested.items():
                if d.get(k) in values:
                    d.pop(k, None)
        miss = [await missing(p) for p in ports]
        if all(t == trees[0] for t in trees) and all(d == want for d in data) \
                and not any(miss):
            return trees[0]
        if time.monotonic() > deadline:
            lines = [f"missing ticks: {miss}"]
            for p, t, d in zip(ports, trees, data, strict=True):
                for k in [k for k in sorted(set(d) | set(want), key=repr)
                          if d.get(k, NotGiven) != want.get(k, NotGiven)][:5]:
                    lines.append(f"port {p}: {k} is {d.get(k, '(none)')!r:.60}, "
                                 f"want {want.get(k, '(none)')!r:.60}")
                for k in sorted(set(t) | set(trees[0]), key=repr):
                    if t.get(k) != trees[0].get(k):
                        lines.append(f"port {p}: {k}: {t.get(k)!r:.100} != "
                                     f"{trees[0].get(k)!r:.100}")
                        break
            raise AssertionError(f"no agreement after {CONVERGE}s:\n" + "\n".join(lines))
        await anyio.sleep(0.3)  # noqa: ASYNC110  (polling other processes)


def nodes_of(chain: tuple) -> list[str]:
    return [n for n, _t in chain]


def meta(res: tuple[int, str, str]) -> dict:
    """What ``-m data PATH get`` printed, without the request number (which varies by
    client); the two CLIs order the keys differently."""
    code, out, err = res
    assert (code, err) == (0, ""), res
    rec = yload(out)
    del rec["seq"]
    return rec


# --- the tests --------------------------------------------------------------------------------


async def test_our_server_joins_an_upstream_server_and_both_replicate(
    upstream_venv: RefVenv, mosquitto: Mosquitto, tmp_path: FSPath
) -> None:
    with Mixed(upstream_venv, mosquitto, tmp_path, ["o1"], {"u1": ["-I", "Testing"]}) as mx:
        u1 = mx.upstream["u1"].start()
        apply_theirs(upstream_venv, u1.port, FIRST_DATA)
        mx.cluster["o1"].start()  # joins: fetches the state from u1 before it serves
        ports = [u1.port, mx.port("o1")]
        want = expected(INIT, FIRST_DATA)
        tree = await mx.converged(ports, want)
        assert {nodes_of(tree[p][1])[0] for p in want} == {"u1"}
        assert tree[P("d.twice")][0] == "second"
        # our CLI reads what upstream's wrote
        assert mx.ours("o1", "data", "d.int", "get") == (0, "42\n", "")
        assert mx.ours("o1", "data", "d.n:12:t", "get") == (0, "'odd path'\n", "")
        assert mx.ours("o1", "data", "d.gone", "get") == (0, "", "No data at d.gone\n")

        # both ways: each side overwrites and deletes what the other one wrote
        ours_ops: list[Op] = [
            ("set", ("d", "int"), 43),
            ("set", ("o", "big"), BIG[::-1]),
            ("set", ("o", "x"), {"by": "o1"}),
            ("set", ("o", "tmp"), 1),
            ("delete", ("d", "str")),
        ]
        await apply_ours(mx.port("o1"), ours_ops)
        assert mx.ours("o1", "data", "o.x", "set", "-v", "by", "o1 CLI") == (0, "", "")
        ours_ops.append(("set", ("o", "x"), {"by": "o1 CLI"}))
        want = expected(INIT, FIRST_DATA, ours_ops)
        await mx.converged(ports, want)
        theirs_ops: list[Op] = [
            ("set", ("d", "int"), 44),
            ("set", ("u", "big"), BIG.upper()),
            ("delete", ("o", "tmp")),
            ("delete", ("d", "float")),
        ]
        apply_theirs(upstream_venv, u1.port, theirs_ops)
        want = expected(INIT, FIRST_DATA, ours_ops, theirs_ops)
        tree = await mx.converged(ports, want)
        # the overwritten entry remembers both writers (a chain names a node once)
        assert nodes_of(tree[P("d.int")][1]) == ["u1", "o1"]
        assert nodes_of(tree[P("o.big")][1]) == ["o1"]
        assert mx.theirs("u1", "data", "o.x", "get") == (0, "by: o1 CLI\n", "")
        assert mx.ours("o1", "data", "d.int", "get") == (0, "44\n", "")
        assert mx.theirs("u1", "data", "o.tmp", "get") == (0, "", "No data at o.tmp\n")
        assert mx.ours("o1", "data", "o.tmp", "get") == (0, "", "No data at o.tmp\n")
        assert meta(mx.ours("o1", "-m", "data", "d.int", "get")) \
            == meta(mx.theirs("u1", "-m", "data", "d.int", "get"))
        assert "Traceback" not in mx.logs()


async def test_upstream_servers_join_our_server_and_both_replicate(
    upstream_venv: RefVenv, mosquitto: Mosquitto, tmp_path: FSPath
) -> None:
    with Mixed(upstream_venv, mosquitto, tmp_path, ["o1"], {"u1": [], "u2": []}) as mx:
        o1 = mx.cluster["o1"].start("-I", "Testing")
        await apply_ours(o1.port, FIRST_DATA)
        u1 = mx.upstream["u1"].start()  # joins: fetches the state from o1 before it serves
        ports = [o1.port, u1.port]
        want = expected(INIT, FIRST_DATA)
        tree = await mx.converged(ports, want)
        assert {nodes_of(tree[p][1])[0] for p in want} == {"o1"}
        assert mx.theirs("u1", "data", "d.str", "get") == (0, "'hello wörld'\n", "")
        assert mx.theirs("u1", "data", "d.gone", "get") == (0, "", "No data at d.gone\n")

        # both ways; "d.again" is set by u1, deleted by o1 and set by u1 again, so
        # its chain holds a deletion that is no tombstone any more
        theirs_ops: list[Op] = [
            ("set", ("d", "int"), 43),
            ("set", ("u", "big"), BIG.upper()),
            ("set", ("u", "tmp"), 1),
            ("set", ("d", "again"), "first"),
            ("delete", ("d", "list")),
        ]
        apply_theirs(upstream_venv, u1.port, theirs_ops)
        want = expected(INIT, FIRST_DATA, theirs_ops)
        await mx.converged(ports, want)
        ours_ops: list[Op] = [
            ("set", ("d", "int"), 44),
            ("delete", ("u", "tmp")),
            ("delete", ("d", "again")),
            ("set", ("o", "big"), BIG[::-1]),
        ]
        await apply_ours(o1.port, ours_ops)
        want = expected(INIT, FIRST_DATA, theirs_ops, ours_ops)
        await mx.converged(ports, want)
        again: list[Op] = [("set", ("d", "again"), "second")]
        apply_theirs(upstream_venv, u1.port, again)
        want = expected(INIT, FIRST_DATA, theirs_ops, ours_ops, again)
        tree = await mx.converged(ports, want)
        assert nodes_of(tree[P("d.int")][1]) == ["o1", "u1"]
        assert nodes_of(tree[P("d.again")][1]) == ["u1", "o1"]
        assert mx.theirs("u1", "data", "u.tmp", "get") == (0, "", "No data at u.tmp\n")

        # a second fresh upstream server, with only our server to fetch from
        mx.upstream["u1"].stop()
        u2 = mx.upstream["u2"].start()
        ports = [o1.port, u2.port]
        assert await mx.converged(ports, want) == tree
        assert mx.theirs("u2", "data", "d.again", "get") == (0, "'second'\n", "")
        assert mx.theirs("u2", "data", "d.list", "get") == (0, "", "No data at d.list\n")
        assert meta(mx.theirs("u2", "-m", "data", "d.again", "get")) \
            == meta(mx.ours("o1", "-m", "data", "d.again", "get"))
        last: list[Op] = [("set", ("u2", "x"), "from u2"), ("delete", ("o", "big"))]
        apply_theirs(upstream_venv, u2.port, last)
        want = expected(INIT, FIRST_DATA, theirs_ops, ours_ops, again, last)
        await mx.converged(ports, want)
        assert mx.ours("o1", "data", "u2.x", "get") == (0, "'from u2'\n", "")
        assert "Traceback" not in mx.logs()


async def test_a_split_between_upstream_and_our_server_heals(
    upstream_venv: RefVenv, mosquitto: Mosquitto, tmp_path: FSPath
) -> None:
    with CutProxy(mosquitto.port) as proxy, \
            Mixed(upstream_venv, mosquitto, tmp_path, ["o1"], {"u1": ["-I", "Testing"]}) as mx:
        o1 = mx.cluster["o1"]
        o1.broker_uri = proxy.uri  # (upstream servers never reconnect to a broker: 15 #48)
        u1 = mx.upstream["u1"].start()
        apply_theirs(upstream_venv, u1.port, FIRST_DATA)
        o1.start()
        ports = [u1.port, o1.port]
        before = expected(INIT, FIRST_DATA)
        await mx.converged(ports, before)

        proxy.cut()
        theirs_ops: list[Op] = [
            ("set", ("u", "during"), 1),
            ("set", ("u", "big"), BIG.upper()),
            ("set", ("d", "int"), 43),
            ("delete", ("d", "str")),
            ("set", ("d", "list"), "u1 wins?"),
        ]
        apply_theirs(upstream_venv, u1.port, theirs_ops)
        ours_ops: list[Op] = [("set", ("o", "during"), 2), ("delete", ("d", "float")),
                              ("set", ("d", "list"), "o1 wins?")]
        await apply_ours(o1.port, ours_ops)
        # the split is real: neither side has the other's writes
        assert mx.ours("o1", "data", "u.during", "get") == (0, "", "No data at u.during\n")
        assert mx.theirs("u1", "data", "o.during", "get") == (0, "", "No data at o.during\n")
        proxy.restore()

        # written on both sides: either may win, but the same one everywhere (a value
        # against a deletion is left out: upstream lets any value replace a deletion)
        contested = {P("d.list"): {"u1 wins?", "o1 wins?"}}
        want = without(expected(INIT, FIRST_DATA, theirs_ops, ours_ops), "d.list")
        tree = await mx.converged(ports, want, contested=contested)
        assert nodes_of(tree[P("d.int")][1]) == ["u1"]
        assert mx.ours("o1", "data", "u.during", "get") == (0, "1\n", "")
        assert mx.theirs("u1", "data", "o.during", "get") == (0, "2\n", "")
        assert "Traceback" not in mx.logs()


async def test_a_restarted_upstream_server_fetches_what_it_missed_from_ours(
    upstream_venv: RefVenv, mosquitto: Mosquitto, tmp_path: FSPath
) -> None:
    with Mixed(upstream_venv, mosquitto, tmp_path, ["o1"], {"u1": ["-I", "Testing"]}) as mx:
        up = mx.upstream["u1"]
        u1 = up.start()
        apply_theirs(upstream_venv, u1.port, FIRST_DATA)
        o1 = mx.cluster["o1"].start()
        ports = [u1.port, o1.port]
        await mx.converged(ports, expected(INIT, FIRST_DATA))
        saved = tmp_path / "u1.state"
        assert mx.theirs("u1", "log", "save", str(saved))[0] == 0
        up.stop()

        # changes while u1 is down: new entries, overwrites, deletions
        ours_ops: list[Op] = [
            ("set", ("o", "while down"), 1),
            ("set", ("o", "big"), BIG[::-1]),
            ("set", ("d", "int"), 43),
            ("set", ("d", "map"), {"new": "map"}),
            ("delete", ("d", "str")),
            ("set", ("o", "gone"), 2),
            ("delete", ("o", "gone")),
        ]
        await apply_ours(o1.port, ours_ops)
        up.args = ["-l", str(saved), "u1"]
        up.start()  # serves at once (the file has its own events), then asks us
        want = expected(INIT, FIRST_DATA, ours_ops)
        tree = await mx.converged(ports, want)
        assert nodes_of(tree[P("d.int")][1]) == ["o1", "u1"]
        assert mx.theirs("u1", "data", "o.while down", "get") == (0, "1\n", "")
        assert mx.theirs("u1", "data", "d.str", "get") == (0, "", "No data at d.str\n")
        assert meta(mx.theirs("u1", "-m", "data", "d.map", "get")) \
            == meta(mx.ours("o1", "-m", "data", "d.map", "get"))
        assert "Traceback" not in mx.logs()
