"""``distkv dump msg`` / ``dump post`` with a real mosquitto broker and server."""

from __future__ import annotations

import signal
import subprocess
import time

from brokers import mosquitto_fixture  # noqa: F401  (fixture)
from procs import ROOT, ServerProc, base_config, distkv_cmd, run_cli

from distkv.util.yaml import yload


def _monitor(port: int, uri: str, path: str) -> subprocess.Popen:
    return subprocess.Popen(
        distkv_cmd(*base_config(port, ["-C", f"server.mqtt.uri={uri}"]), "dump", "msg", path),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )


def _stop(proc: subprocess.Popen) -> tuple[list, str]:
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return [d for d in yload(out, multi=True) if d], err


def test_msg_shows_update(mosquitto):
    broker = ["-C", f"server.mqtt.uri={mosquitto.uri}"]
    with ServerProc(["-I", "Testing", "n1"], global_args=broker) as srv:
        mon = _monitor(srv.port, mosquitto.uri, ":")
        time.sleep(1.5)  # let it subscribe
        res = srv.client("data", "one.two", "set", "-v", ":", "hello", global_args=broker)
        assert res.returncode == 0, res.stderr
        time.sleep(1.0)
        docs, err = _stop(mon)
    ups = [d for d in docs if d.get("value") == "hello"]
    assert ups, (docs, err)
    assert list(ups[0]["path"]) == ["one", "two"]
    assert list(ups[0]["_topic"]) == [":distkv", "update"]  # the default server.root
    assert ups[0]["_timestamp"] > time.time() - 60


def test_post_seen_by_msg(mosquitto):
    from procs import free_port

    port = free_port()
    mon = _monitor(port, mosquitto.uri, "test.chan")
    time.sleep(1.5)
    broker = ["-C", f"server.mqtt.uri={mosquitto.uri}"]
    res = run_cli(port, "dump", "post", "test.chan", global_args=broker,
                  input="a: 1\nb: [x, y]\n---\n42\n")
    assert res.returncode == 0, res.stderr
    res = run_cli(port, "dump", "post", global_args=broker,
                  input="_topic: !P test.chan\nc: 3\n")
    assert res.returncode == 0, res.stderr
    time.sleep(1.0)
    docs, err = _stop(mon)
    for d in docs:
        d.pop("_timestamp")
        assert list(d.pop("_topic")) == ["test", "chan"]
    assert docs == [{"a": 1, "b": ["x", "y"]}, {"_data": 42}, {"c": 3}], err


def test_post_needs_topic(mosquitto):
    res = run_cli(1, "dump", "post", global_args=["-C", f"server.mqtt.uri={mosquitto.uri}"],
                  input="c: 3\n")
    assert res.returncode != 0
    assert "_topic" in res.stderr



def test_no_broker_is_one_line():
    from procs import free_port

    res = run_cli(free_port(), "dump", "msg", ":")  # base_config: a broker port nobody uses
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("ServerConnectionError: No broker answers at mqtt://127.0.0.1:")
