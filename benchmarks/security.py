"""What security costs: login time and set_value throughput with checks on the path.

Starts one of our servers (standalone, on a free 127.0.0.1 port), sets up a
``password`` user, ``_test`` users, a type with a match and a codec with a
converter, and prints one table:

* login time (connect, greeting, login, config mirror) with the ``password``
  method — the normal 2048-bit Diffie-Hellman exchange and the CLI's ``-D``
  debug length (1536 bits) — beside a ``_test`` login;
* ``set_value`` throughput (pipelined, raw protocol) unchecked, with a type
  check on the path, and through a user's codec.

    .venv/bin/python benchmarks/security.py [--duration SECONDS] [--logins N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import loadgen as lg  # noqa: E402

from distkv.auth import gen_auth  # noqa: E402
from distkv.client import open_client  # noqa: E402
from distkv.util.path import P  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench-secret"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(workdir: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    cfg = workdir / "bench.cfg"
    cfg.write_text(
        "server:\n"
        f"  bind_default: {{host: 127.0.0.1, port: {port}}}\n"
        f"  mqtt: {{uri: 'mqtt://127.0.0.1:{free_port()}'}}\n"
        "  no_broker: standalone\n"  # one server: measure it without a broker
        f"connect: {{host: 127.0.0.1, port: {port}}}\n"
    )
    log = open(workdir / "server.log", "wb")  # noqa: SIM115 (closed with the process)
    proc = subprocess.Popen(
        [sys.executable, "-m", "distkv", "-c", str(cfg), "server", "-I", "bench", "sec1"],
        stdout=log, stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            lg.Conn(port).close()
            return proc, port
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the server did not start; see {workdir / 'server.log'}"
                ) from None
            time.sleep(0.05)


def connect(port: int, auth: object = None) -> object:
    conn: dict = {"host": "127.0.0.1", "port": port}
    if auth is not None:
        conn["auth"] = auth
    return open_client(connect=conn)


async def setup(port: int) -> None:
    from distkv.auth import loader

    async with connect(port) as c:
        joe = loader("password", make=True).build({"name": "joe", "password": PASSWORD})
        joe.chain = None
        await joe.send(c)
        for name in ("plain", "conv"):
            await c._request("set_internal", path=("auth", "_test", "user", name), value={})
        await c._request("set_internal", path=P("auth._test.user.conv.conv"),
                         value={"key": "floatval"})
        await c._request("set_internal", path=P("type.int"), value={
            "good": [0, 2], "bad": [None, "x"],
            "code": "if not isinstance(value, int): raise ValueError('not an int')"})
        await c._request("set_internal", path=P("match.typed.#"), value={"type": P("int")})
        await c._request("set_internal", path=P("codec.float.str"), value={
            "encode": "return str(value)", "decode": "return float(value)",
            "in": [["1.5", 1.5]], "out": [[1.5, "1.5"]]})
        await c._request("set_internal", path=P("conv.floatval.conv.#"),
                         value={"codec": P("float.str")})
        await c._request("set_auth_typ", typ="password")


async def login_times(port: int, n: int) -> dict[str, float]:
    """Mean seconds per connect+login, by method."""
    res = {}
    for label, length in (("password", 1024), ("password -D", 16)):
        t0 = time.perf_counter()
        for _ in range(n):
            auth = gen_auth(f"password name=joe password={PASSWORD}")
            auth.length = length
            async with connect(port, auth):
                pass
        res[label] = (time.perf_counter() - t0) / n
    async with connect(port, f"password name=joe password={PASSWORD}") as c:
        await c._request("set_auth_typ", typ="_test")
    t0 = time.perf_counter()
    for _ in range(n):
        async with connect(port, "_test name=plain"):
            pass
    res["_test"] = (time.perf_counter() - t0) / n
    return res


def raw_login(port: int, user: str) -> lg.Conn:
    conn = lg.Conn(port)
    seq = conn.send({"action": "auth", "typ": "_test", "ident": user, "chroot": (), "data": {}})
    for msg in conn.messages():
        if msg.get("seq") == seq:
            if "error" in msg:
                raise lg.BenchError(msg["error"])
            if msg.get("state") == "end":
                return conn
    raise AssertionError("unreachable")


def throughput(port: int, duration: float) -> dict[str, float]:
    """set_value requests per second: unchecked, type-checked, through a codec."""
    res = {}
    for label, user, prefix in (("unchecked", "plain", ("plain",)),
                                ("type check", "plain", ("typed",)),
                                ("codec", "conv", ("conv", "x"))):
        with raw_login(port, user) as conn:
            lg.pipelined(conn, lg.set_value_req(prefix, 1000), count=2000)  # warm up
            res[label] = lg.pipelined(conn, lg.set_value_req(prefix, 1000),
                                      duration=duration).rate
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=3.0, help="Seconds per throughput run.")
    ap.add_argument("--logins", type=int, default=10, help="Logins per method.")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="distkv-bench-sec-") as d:
        proc, port = start_server(Path(d))
        try:
            anyio.run(setup, port)
            logins = anyio.run(login_times, port, args.logins)
            rates = throughput(port, args.duration)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
    print(f"{'login (connect + login)':<28}{'ms':>10}")
    for label, t in logins.items():
        print(f"  {label:<26}{t * 1000:>10.1f}")
    print(f"{'set_value, pipelined':<28}{'req/s':>10}{'vs unchecked':>14}")
    base = rates["unchecked"]
    for label, r in rates.items():
        print(f"  {label:<26}{r:>10.0f}{r / base:>13.0%}")


if __name__ == "__main__":
    main()
