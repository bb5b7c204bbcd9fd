"""The released DistKV 0.65.0 as a test reference: its venv, broker, server and client.

``upstream_venv`` (a session fixture) runs ``scripts/upstream-venv`` once and
hands back the paths of the reference installation (cached in the repo's
``.upstream-venv``); if that cannot be installed the test fails, it is not
skipped. ``broker`` starts a mosquitto on 127.0.0.1 (upstream servers refuse
to run without one). Test modules import them as ``upstream_venv_fixture`` and
``broker_fixture``. ``UpstreamServer`` runs ``distkv-ref server``, ``ref_cli``
/ ``ref_python`` run upstream's client CLI / a Python snippet with upstream's
library.

``wire_server`` starts the server that wire-level tests talk to: ours by
default, upstream's with ``DISTKV_WIRE_TARGET=upstream`` (to check that an
assertion matches the reference).
"""

from __future__ import annotations

import functools
import os
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from procs import ROOT, ServerProc, free_port, wait_port

__all__ = [
    "Broker",
    "RefVenv",
    "UpstreamServer",
    "broker_fixture",
    "ref_cli",
    "ref_python",
    "upstream_venv_fixture",
    "wire_server",
]

INSTALL_SCRIPT = ROOT / "scripts" / "upstream-venv"
VENV_DIR = ROOT / ".upstream-venv"
INSTALL_TIMEOUT = 600.0
MOSQUITTO = "/usr/sbin/mosquitto"


def ref_env() -> dict[str, str]:
    """Environment for upstream processes: quiet about trio/anyio deprecations."""
    env = dict(os.environ)
    env["PYTHONWARNINGS"] = "ignore"
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    return env


@dataclass(frozen=True)
class RefVenv:
    """Where the reference installation lives."""

    root: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    @property
    def launcher(self) -> Path:
        return self.root / "bin" / "distkv-ref"


@functools.cache
def install_upstream(venv_dir: Path = VENV_DIR) -> RefVenv:
    """Run scripts/upstream-venv once per process; pytest.fail if it cannot install."""
    try:
        res = subprocess.run(
            [str(INSTALL_SCRIPT), str(venv_dir)],
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"cannot install the upstream reference with {INSTALL_SCRIPT}: {exc!r}")
    if res.returncode != 0:
        pytest.fail(
            f"{INSTALL_SCRIPT} failed with exit code {res.returncode}:\n"
            f"{res.stdout}\n{res.stderr}"
        )
    venv = RefVenv(venv_dir)
    if not venv.launcher.is_file():
        pytest.fail(f"{INSTALL_SCRIPT} did not create {venv.launcher}")
    return venv


@pytest.fixture(scope="session", name="upstream_venv")
def upstream_venv_fixture() -> RefVenv:
    """The upstream 0.65.0 reference installation."""
    return install_upstream()


class Broker:
    """A mosquitto MQTT broker on 127.0.0.1; a context manager."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="distkv-broker-")

    @property
    def uri(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> Broker:
        conf = Path(self._dir.name) / "mosquitto.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n")
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(self.port, 10.0, self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self.proc = None
        self._dir.cleanup()

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@pytest.fixture(scope="module", name="broker")
def broker_fixture() -> Iterator[Broker]:
    """A private MQTT broker for the upstream servers of one test module."""
    with Broker() as b:
        yield b


def ref_config(port: int, broker_uri: str, *, ping: tuple[float, float] | None = None,
               hostmap: Mapping[str, int] | None = None) -> str:
    """An upstream config file's text: this port, this broker, 127.0.0.1 only.

    ``ping`` is the ping actor's ``(cycle, gap)``; ``hostmap`` names the
    client port (on 127.0.0.1) of every peer a joining server may fetch from.
    """
    text = (
        "server:\n"
        f"  mqtt: {{uri: '{broker_uri}'}}\n"
        f"  bind_default: {{host: 127.0.0.1, port: {port}}}\n"
    )
    if ping is not None:
        text += f"  ping: {{cycle: {ping[0]}, gap: {ping[1]}}}\n"
    text += f"connect: {{host: 127.0.0.1, port: {port}}}\n"
    if hostmap:
        text += "hostmap:\n" + "".join(
            f"  {name}: '127.0.0.1:{p}'\n" for name, p in hostmap.items())
    return text


class UpstreamServer:
    """An upstream ``distkv server`` on 127.0.0.1; a context manager.

    ``args`` follow ``server`` (e.g. ``["-e", "-I", "123", "test_0"]``),
    ``global_args`` precede it; the config file names the port and the broker
    (and ``ping`` timing and a ``hostmap``, see :func:`ref_config`). The
    server's output goes to a file (a chatty server never blocks on a full
    pipe); :meth:`log` reads it, :attr:`output` collects it when stopped. A
    stopped server can be started again (with other ``args``, say); leaving
    the ``with`` block removes its files.
    """

    def __init__(self, venv: RefVenv, broker_uri: str, args: Sequence[str],
                 *, port: int | None = None, global_args: Sequence[str] = (),
                 ping: tuple[float, float] | None = None,
                 hostmap: Mapping[str, int] | None = None):
        self.venv = venv
        self.port = port or free_port()
        self.args = list(args)
        self.global_args = list(global_args)
        self.output = ""
        self.proc: subprocess.Popen | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="distkv-ref-")
        self.config = Path(self._dir.name) / "distkv.cfg"
        self.config.write_text(ref_config(self.port, broker_uri, ping=ping, hostmap=hostmap))
        self.logfile = Path(self._dir.name) / "server.log"

    def start(self, timeout: float = 30.0) -> UpstreamServer:
        with self.logfile.open("a") as out:
            self.proc = subprocess.Popen(
                [str(self.venv.launcher), "-c", str(self.config), *self.global_args,
                 "server", *self.args],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self._dir.name,
                env=ref_env(),
            )
        try:
            wait_port(self.port, timeout, self.proc)
        except (RuntimeError, TimeoutError) as exc:
            self.stop()
            raise RuntimeError(f"upstream server {self.args}: {exc}\n{self.output[-3000:]}") \
                from None
        return self

    def log(self) -> str:
        """What the server printed so far."""
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def stop(self, timeout: float = 10.0) -> None:
        p = self.proc
        if p is not None:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout)
            self.output += self.log()
            self.logfile.unlink()
            self.proc = None

    def __enter__(self) -> UpstreamServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        self._dir.cleanup()


def ref_cli(venv: RefVenv, port: int, *args: str, input: str | None = None,
            timeout: float = 30.0) -> subprocess.CompletedProcess:
    """Run upstream's ``distkv client ARGS…`` against 127.0.0.1:port."""
    return subprocess.run(
        [str(venv.launcher), "-c", "/dev/null", "client", "-h", "127.0.0.1", "-p", str(port),
         *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ref_env(),
    )


def ref_python(venv: RefVenv, code: str, *args: str,
               timeout: float = 30.0) -> subprocess.CompletedProcess:
    """Run a Python snippet with upstream's interpreter and library; ``sys.argv[1:]`` = args."""
    return subprocess.run(
        # -P: don't put the cwd on sys.path, where our own `distkv` package may be
        [str(venv.python), "-P", "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ref_env(),
    )


def wire_server(request: pytest.FixtureRequest, args: Sequence[str],
                global_args: Sequence[str] = ()) -> ServerProc | UpstreamServer:
    """The server (not started yet) that wire-level tests talk to.

    Ours by default; ``DISTKV_WIRE_TARGET=upstream`` runs the same tests against
    the reference (global ``-C`` options then go to the reference launcher too).
    """
    target = os.environ.get("DISTKV_WIRE_TARGET", "ours")
    if target == "ours":
        return ServerProc(args, global_args=global_args)
    if target == "upstream":
        venv = request.getfixturevalue("upstream_venv")
        mqtt = request.getfixturevalue("broker")
        return UpstreamServer(venv, mqtt.uri, args, global_args=global_args)
    raise pytest.UsageError(f"DISTKV_WIRE_TARGET must be 'ours' or 'upstream', not {target!r}")

