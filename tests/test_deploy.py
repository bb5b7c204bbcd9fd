"""Deployment: the systemd units (systemd/) and the scripts they run (scripts/).

The units are checked by ``systemd-analyze verify`` in a scratch root that
holds the system's own units, our units and our scripts where the units
expect them; the sysusers file by ``systemd-sysusers`` in that root. The
scripts run for real against server processes in a temporary directory:
init, start (master mode), rotate, a crash, recover, a start from the
recovered state (hybrid mode), and the three runner scripts.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from procs import free_port, wait_port

from distkv.util.yaml import yload

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "systemd"
SCRIPTS = ROOT / "scripts"
DEPLOY_SCRIPTS = ["env", "common", "current", "run", "success", "recover", "rotate",
                  "run-any", "run-single", "run-all", "init"]
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
SYSTEMD_SYSUSERS = shutil.which("systemd-sysusers")
SYSTEM_UNITS = Path("/usr/lib/systemd/system")


def unit_names() -> list[str]:
    names = sorted(p.name for p in UNITS.iterdir() if p.suffix in (".service", ".timer"))
    # templates are verified as an instance
    return [n.replace("@.", "@grp.") for n in names]


@pytest.fixture
def fake_root(tmp_path: Path) -> Path:
    """A root with the system units, ours, and our scripts in /usr/lib/distkv."""
    assert SYSTEMD_ANALYZE is not None, "systemd-analyze is missing (Debian package 'systemd')"
    root = tmp_path / "root"
    shutil.copytree(SYSTEM_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    etc = root / "etc/systemd/system"
    etc.mkdir(parents=True)
    for unit in UNITS.iterdir():
        if unit.suffix in (".service", ".timer"):
            shutil.copy(unit, etc / unit.name)
    lib = root / "usr/lib/distkv"
    lib.mkdir(parents=True)
    for name in DEPLOY_SCRIPTS:
        shutil.copy(SCRIPTS / name, lib / name)
    (root / "usr/lib/sysusers.d").mkdir(parents=True)
    shutil.copy(UNITS / "sysusers.d/distkv.conf", root / "usr/lib/sysusers.d/distkv.conf")
    systemctl = root / "usr/bin/systemctl"  # the recover unit runs it
    systemctl.parent.mkdir(parents=True)
    systemctl.write_text("#!/bin/sh\n")
    systemctl.chmod(0o755)
    return root


def verify(root: Path, *units: str) -> subprocess.CompletedProcess:
    assert SYSTEMD_ANALYZE is not None
    return subprocess.run([SYSTEMD_ANALYZE, "verify", f"--root={root}", *units],
                          capture_output=True, text=True, timeout=60, cwd=root)


def test_units_verify(fake_root: Path) -> None:
    names = unit_names()
    assert "distkv.service" in names
    assert {"distkv-run-any@grp.service", "distkv-run-single@grp.service",
            "distkv-run-all@grp.service", "distkv-rotate.timer",
            "distkv-recover.service"} <= set(names)
    res = verify(fake_root, *names)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    # the check does catch mistakes: an unknown key, a missing program
    unit = fake_root / "etc/systemd/system/distkv.service"
    unit.write_text(unit.read_text().replace("Type=notify", "Typ=notify"))
    assert "Unknown key 'Typ'" in verify(fake_root, "distkv.service").stderr
    (fake_root / "usr/lib/distkv/run-all").unlink()
    res = verify(fake_root, "distkv-run-all.service")
    assert res.returncode != 0
    assert "/usr/lib/distkv/run-all" in res.stderr


def test_units_settings() -> None:
    text = {p.name: p.read_text() for p in UNITS.iterdir() if p.suffix in (".service", ".timer")}
    server = text["distkv.service"]
    for line in ("Type=notify", "ExecStart=/usr/lib/distkv/run", "SuccessExitStatus=42",
                 "OnFailure=distkv-recover.service", "WatchdogSec=10",
                 "EnvironmentFile=/usr/lib/distkv/env", "EnvironmentFile=-/etc/distkv.env"):
        assert line in server.splitlines()
    for kind in ("any", "single", "all"):
        assert f"ExecStart=/usr/lib/distkv/run-{kind}\n" in text[f"distkv-run-{kind}.service"]
        assert f"ExecStart=/usr/lib/distkv/run-{kind} %i\n" in text[f"distkv-run-{kind}@.service"]
    assert "OnUnitActiveSec=900" in text["distkv-rotate.timer"]


def test_sysusers(fake_root: Path) -> None:
    assert SYSTEMD_SYSUSERS is not None, "systemd-sysusers is missing (Debian package 'systemd')"
    subprocess.run([SYSTEMD_SYSUSERS, f"--root={fake_root}"], check=True, capture_output=True,
                   timeout=30)
    users = {line.split(":")[0]: line.split(":") for line in
             (fake_root / "etc/passwd").read_text().splitlines()}
    assert users["distkv"][4] == "DistKV owner"
    assert users["distkv"][5] == "/var/lib/distkv"


# --- the scripts against real servers -----------------------------------------------------------


class Site:
    """A host's distkv setup in a temporary directory: config, site env, DEST, TEMP."""

    def __init__(self, base: Path):
        self.base = base
        self.port = free_port()
        self.dest = base / "data"
        self.temp = base / "current.dkv"
        self.cfg = base / "distkv.cfg"
        self.site_env = base / "distkv.env"
        self.cfg.write_text(
            f"connect:\n  host: 127.0.0.1\n  port: {self.port}\n"
            f"server:\n  bind_default:\n    host: 127.0.0.1\n    port: {self.port}\n"
            f"  mqtt:\n    uri: mqtt://127.0.0.1:{free_port()}\n"
            "  no_broker: standalone\n"  # one server: no broker to host
        )
        self.env = dict(
            os.environ,
            PATH=f"{Path(sys.executable).parent}:/usr/bin:/bin",
            DISTKV_CFG=str(self.cfg), DISTKV_ENV=str(self.site_env), DISTKV_USER="",
            DEST=str(self.dest), TEMP=str(self.temp), DATE="period",
            PYTHONUNBUFFERED="1",
        )
        self.procs: list[subprocess.Popen] = []

    def script(self, name: str, *args: str, rc: int = 0) -> subprocess.CompletedProcess:
        res = subprocess.run([str(SCRIPTS / name), *args], env=self.env, capture_output=True,
                             text=True, timeout=60)
        assert res.returncode == rc, (name, res.stdout, res.stderr)
        return res

    def start(self, name: str, *args: str, env: dict | None = None) -> subprocess.Popen:
        log = (self.base / f"{name}-{len(self.procs)}.log").open("w")
        proc = subprocess.Popen([str(SCRIPTS / name), *args], env={**self.env, **(env or {})},
                                stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def start_server(self, env: dict | None = None) -> subprocess.Popen:
        proc = self.start("run", env=env)
        wait_port(self.port, 30, proc)
        return proc

    def cli(self, *args: str, input: str | None = None) -> str:
        res = subprocess.run(["distkv", "-c", str(self.cfg), "client", *args], env=self.env,
                             capture_output=True, text=True, timeout=60, input=input)
        assert res.returncode == 0, (args, res.stdout, res.stderr)
        return res.stdout

    def set_mode(self, mode: str) -> None:
        lines = [ln for ln in self.site_env.read_text().splitlines()
                 if not ln.startswith("MODE=")]
        self.site_env.write_text("\n".join([*lines, f"MODE={mode}", ""]))

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    s = Site(tmp_path)
    try:
        yield s
    finally:
        s.stop_all()


class NotifySocket:
    """A socket that receives sd_notify messages, like systemd's."""

    def __init__(self, path: Path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(30)

    def env(self, watchdog_sec: float | None = None) -> dict:
        env = {"NOTIFY_SOCKET": str(self.path)}
        if watchdog_sec is not None:
            env["WATCHDOG_USEC"] = str(int(watchdog_sec * 1_000_000))
        return env

    def receive(self) -> str:
        return self.sock.recv(4096).decode()

    def close(self) -> None:
        self.sock.close()


def wait_for(pred, timeout: float = 20) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_start_rotate_crash_recover(site: Site) -> None:
    period = site.dest / "period"
    site.script("init")
    env_lines = site.site_env.read_text().splitlines()
    assert "MODE=master" in env_lines and "LOCAL=no" in env_lines
    assert any(ln.startswith("NAME=") for ln in env_lines)
    assert (period / "0.dkv").stat().st_size > 0
    site.script("init")  # a second time changes nothing
    assert site.site_env.read_text().splitlines() == env_lines

    # master mode: the server starts from the saved state and logs to the next file;
    # it tells systemd when it is ready and keeps its watchdog fed
    notify = NotifySocket(site.base / "notify")
    server = site.start_server(env=notify.env(watchdog_sec=1))
    assert notify.receive() == "READY=1"
    assert notify.receive() == "WATCHDOG=1"
    notify.close()
    site.script("success")
    assert not site.temp.exists()
    site.cli("data", "one", "set", "-v", ":", "eins")
    site.script("rotate")
    site.cli("data", "two", "set", "-v", ":", "zwei")
    assert sorted(p.name for p in period.iterdir()) == ["0.dkv", "1.dkv", "2.dkv"]

    # a crash; in hybrid mode 'recover' prepares a start from disk
    server.send_signal(signal.SIGKILL)
    server.wait(10)
    site.set_mode("hybrid")
    site.script("recover")
    assert site.temp.stat().st_size > 0
    assert "exists already" in site.script("recover", rc=1).stderr
    server = site.start_server()
    site.script("success")
    assert not site.temp.exists()
    assert site.cli("data", "one") == "'eins'\n"
    assert site.cli("data", "two") == "'zwei'\n"
    assert sorted(p.name for p in period.iterdir()) == ["0.dkv", "1.dkv", "2.dkv", "3.dkv"]

    # the runner scripts: a job for each kind of group
    site.cli("code", "set", "-A", "who", input="return _client.client_name\n")
    name = next(ln[5:] for ln in env_lines if ln.startswith("NAME="))
    for node in ([], ["-n", name], ["-n", "-"]):
        site.cli("run", *node, "set", "-c", "who", "-t", "0", "j")
    site.cli("run", "-g", "other", "set", "-c", "who", "-t", "0", "j")
    notify = NotifySocket(site.base / "notify-runner")
    site.start("run-any", env=notify.env(watchdog_sec=1))
    for script in ("run-single", "run-all"):
        site.start(script)
    site.start("run-any", "other")
    # a runner, too, says when it is ready and feeds the watchdog
    assert notify.receive() == "READY=1"
    assert notify.receive() == "WATCHDOG=1"
    notify.close()

    def done(*args: str) -> bool:
        out = site.cli("run", *args, "list", "-t")
        return out.endswith(" done\n") or out.endswith(":done\n")

    wait_for(lambda: done() and done("-n", name) and done("-n", "-") and done("-g", "other"))
    assert yload(site.cli("run", "-n", "-", "state", "-r", "j")) == {name: name}
    assert site.cli("run", "info") == "default\nother\n"

    # the server elsewhere: 'run' does nothing (and says why)
    site.cfg.write_text(site.cfg.read_text().replace("host: 127.0.0.1\n  port",
                                                     "host: 192.0.2.1\n  port", 1))
    assert "not on this host" in site.script("run", rc=42).stderr
