"""``distkv server`` as a real process: options, output, signals, systemd, the broker it hosts."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import time
from pathlib import Path as FSPath
from typing import Any

import pytest
from procs import ServerProc, base_config, distkv_cmd, free_port, run_cli, wait_port
from wire import WireClient

from distkv.codec import make_unpacker
from distkv.util.path import Path


def records(fn: FSPath) -> list[dict]:
    up = make_unpacker()
    up.feed(fn.read_bytes())
    return list(up)


def get(port: int, *path: Any) -> dict:
    with WireClient(port) as c:
        return c.request({"seq": 1, "action": "get_value", "path": Path(*path), "nchain": 1})


def test_init_serves_and_sigterm_exits_cleanly() -> None:
    srv = ServerProc(["-I", "Testing", "n1"], no_broker="standalone").start()
    try:
        with WireClient(srv.port) as c:
            assert c.greeting["node"] == "n1" and c.greeting["tick"] == 1
        r = get(srv.port)
        assert r["value"] == "Testing"
        assert r["chain"] == {"node": "n1", "tick": 1, "prev": None}
    finally:
        assert srv.stop(signal.SIGTERM) == 0
    lines = srv.output.splitlines()
    assert "Running." in lines
    assert any(
        "WARNING" in ln and "no broker at mqtt://127.0.0.1:" in ln
        and ": running standalone (no replication)" in ln
        for ln in lines
    ), srv.output
    assert "Traceback" not in srv.output


def test_sigint_exits_cleanly() -> None:
    srv = ServerProc(["-I", "x", "n1"]).start()
    assert srv.stop(signal.SIGINT) == 0
    assert "Traceback" not in srv.output


@pytest.mark.parametrize(
    ("args", "value"),
    [(["-e", "-I", "123"], 123), (["-I", "-"], None), (["-e", "-I", "(1, 'a')"], (1, "a"))],
)
def test_init_value_forms(args: list[str], value: Any) -> None:
    with ServerProc([*args, "n1"]) as srv:
        assert get(srv.port)["value"] == value


def test_quiet_server_prints_nothing() -> None:
    srv = ServerProc(["-I", "x", "n1"], global_args=["-q"]).start()
    srv.stop()
    assert "Running." not in srv.output


def test_startup_log_full_and_incremental(tmp_path: FSPath) -> None:
    full, inc = tmp_path / "full.dkv", tmp_path / "inc.dkv"
    with ServerProc(["-I", "root", "-s", str(full), "n1"]) as srv:
        with WireClient(srv.port) as c:
            c.request({"seq": 1, "action": "set_value", "path": Path("a"), "value": 1})
    recs = records(full)
    assert "nodes" in recs[0] and "nodes" in recs[1]
    assert recs[2]["value"] == "root" and recs[2]["path"] == Path()
    assert recs[-1]["value"] == 1 and recs[-1]["tick"] == 2

    srv = ServerProc(["-l", str(full), "-s", str(inc), "-i", "n1"]).start()
    try:
        assert get(srv.port, "a")["value"] == 1
        with WireClient(srv.port) as c:
            c.request({"seq": 1, "action": "set_value", "path": Path("b"), "value": 2})
    finally:
        assert srv.stop() == 0
    recs = records(inc)
    assert len(recs) == 2 and "nodes" in recs[0]
    assert recs[1]["value"] == 2 and recs[1]["tick"] == 3


def test_load_from_a_pipe(tmp_path: FSPath) -> None:
    fn = tmp_path / "a.dkv"
    with ServerProc(["-I", "piped", "-s", str(fn), "n1"]):
        pass
    port = free_port()
    cmd = shlex.join(distkv_cmd(*base_config(port), "server")) + f" -l <(cat {fn}) n1"
    proc = subprocess.Popen(["bash", "-c", "exec " + cmd], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        wait_port(port, proc=proc)
        assert get(port)["value"] == "piped"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        proc.stdout.close()


def test_unreachable_peer_names_are_reported_not_fatal() -> None:
    # NODES are peers to fetch the state from; these names do not resolve
    srv = ServerProc(["-I", "x", "n1", "n2.invalid", "n3.invalid"]).start()
    try:
        assert get(srv.port)["value"] == "x"
    finally:
        assert srv.stop() == 0
    assert "Cannot fetch the state from n2.invalid" in srv.output
    assert "Cannot fetch the state from n3.invalid" in srv.output
    assert "Traceback" not in srv.output


def test_no_broker_with_fail_policy() -> None:
    r = run_cli(free_port(), "-C", "server.no_broker=fail", "server", "-I", "x", "n1",
                timeout=30)
    assert r.returncode == 1
    err = r.stderr.strip().splitlines()
    assert err[-1].startswith("ServerConnectionError: no broker at mqtt://127.0.0.1:")
    assert err[-1].endswith("(server.no_broker is 'fail')")
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["-a", "-f", "n1"], "'-a' and '-f' exclude each other"),
        (["-i", "n1"], "'-i' only makes sense with '-s FILE'"),
        (["-l", "/nonexistent/file", "n1"], "does not exist"),
        ([], "Missing argument 'NAME'"),
    ],
)
def test_usage_errors(args: list[str], text: str) -> None:
    r = run_cli(free_port(), "server", *args, timeout=30)
    assert r.returncode == 2
    assert text in r.stderr


def test_systemd_notification(tmp_path: FSPath) -> None:
    addr = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(addr)
    sock.settimeout(20)
    env = dict(os.environ, NOTIFY_SOCKET=addr, WATCHDOG_USEC="200000")
    srv = ServerProc(["-I", "x", "n1"], env=env).start()
    try:
        assert sock.recv(100) == b"READY=1"
        assert sock.recv(100) == b"WATCHDOG=1"
        assert sock.recv(100) == b"WATCHDOG=1"
    finally:
        srv.stop()
        sock.close()


def test_port_in_use() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = run_cli(port, "server", "-I", "x", "n1", timeout=30)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1] == \
        f"ServerError: Cannot listen on 127.0.0.1:{port}: Address already in use"


def test_default_config_hosts_a_broker_that_other_servers_join_and_take_over() -> None:
    # the flow of the tutorial's "Start the server" on one host, with the default
    # no_broker policy (host): the first server hosts the broker, the second joins
    # it and syncs; when the first goes, the second hosts the broker, and the
    # first, restarted without -I, syncs from it
    broker = free_port()
    p1, p2 = free_port(), free_port()
    common = ["-C", f"server.mqtt.uri=mqtt://127.0.0.1:{broker}",
              "-C", f"hostmap.demo=127.0.0.1:{p1}", "-C", f"hostmap.demo2=127.0.0.1:{p2}"]
    one = ServerProc(["-I", "Testing", "demo"], port=p1, global_args=common, no_broker=None)
    two = ServerProc(["demo2"], port=p2, global_args=common, no_broker=None)
    again = ServerProc(["demo"], port=p1, global_args=common, no_broker=None)
    try:
        one.start()
        wait_port(broker)
        two.start()  # it only listens once it has the data
        assert two.client("data", ":").stdout == "'Testing'\n"
        assert two.client("data", "one", "set", "-v", ":", "eins").returncode == 0
        wait_value(one, "one", "'eins'\n")
        assert one.stop() == 0
        wait_port(broker)  # two hosts it now
        assert two.client("data", "two", "set", "-v", ":", "zwei").returncode == 0
        again.start()
        assert again.client("data", "two").stdout == "'zwei'\n"
        assert again.client("data", ":").stdout == "'Testing'\n"
    finally:
        for srv in (one, two, again):
            srv.stop()
    hosting = f"no broker at mqtt://127.0.0.1:{broker}: hosting an embedded one there"
    assert hosting in one.output and hosting in two.output and hosting not in again.output
    assert "running standalone" not in one.output + two.output + again.output
    assert "Traceback" not in one.output + two.output + again.output


def wait_value(srv: ServerProc, path: str, text: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while (out := srv.client("data", path).stdout) != text:
        assert time.monotonic() < deadline, f"{path}: {out!r}, not {text!r}"
        time.sleep(0.2)
