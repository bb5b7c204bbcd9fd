"""Real processes for tests: free ports, `distkv server` processes, CLI runs.

Every helper binds to 127.0.0.1 only, uses ports the OS hands out (so parallel
runs do not collide), has a bounded timeout, and stops what it started.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 20.0


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now.

    The OS may offer a port again once its probe socket is closed, so a port
    this process handed out before is never returned twice.
    """
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def wait_port(port: int, timeout: float = START_TIMEOUT,
              proc: subprocess.Popen | None = None) -> None:
    """Wait until something accepts connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise RuntimeError(f"process exited with {proc.returncode} before listening:\n{out}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout}s")


def distkv_cmd(*args: str) -> list[str]:
    """The command line that runs our `distkv` with this interpreter."""
    return [sys.executable, "-m", "distkv", *args]


def base_config(port: int, extra: Sequence[str] = (), *,
                no_broker: str | None = "standalone") -> list[str]:
    """Global options for a test: no config file, 127.0.0.1, the given port.

    The broker address is a free port (never the shared 1883); ``no_broker``
    is the policy for it — standalone unless the test asks for another one
    (``None``: the configuration's default, i.e. host a broker there).
    ``extra`` comes last, so it can override all of this.
    """
    return [
        "-c", "/dev/null",
        "-C", f"server.bind_default.port={port}",
        "-C", "server.bind_default.host=127.0.0.1",
        "-C", f"connect.port={port}",
        "-C", "connect.host=127.0.0.1",
        "-C", f"server.mqtt.uri=mqtt://127.0.0.1:{free_port()}",
        *(("-C", f"server.no_broker={no_broker}") if no_broker else ()),
        *extra,
    ]


class ServerProc:
    """A `distkv server` process on 127.0.0.1; a context manager.

    ``args`` are the arguments after ``server`` (e.g. ``["-I", "Testing", "n1"]``);
    ``no_broker`` as for :func:`base_config` (standalone unless asked otherwise).
    """

    def __init__(
        self,
        args: Sequence[str],
        *,
        port: int | None = None,
        global_args: Sequence[str] = (),
        cwd: str | os.PathLike | None = None,
        env: dict | None = None,
        no_broker: str | None = "standalone",
    ):
        self.port = port or free_port()
        self.no_broker = no_broker
        self.args = list(args)
        self.global_args = list(global_args)
        self.cwd = cwd
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.output = ""

    def start(self, timeout: float = START_TIMEOUT) -> ServerProc:
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        self.proc = subprocess.Popen(
            distkv_cmd(*base_config(self.port, self.global_args, no_broker=self.no_broker),
                       "server", *self.args),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=self.cwd,
            env=env,
        )
        wait_port(self.port, timeout, self.proc)
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        """Stop the server (SIGTERM, then SIGKILL) and collect its output."""
        p = self.proc
        if p is None:
            return None
        if p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout)
        if p.stdout:
            self.output += p.stdout.read()
            p.stdout.close()
        self.proc = None
        return p.returncode

    def kill(self) -> int | None:
        """kill -9."""
        return self.stop(signal.SIGKILL)

    def client(self, *args: str, input: str | None = None, timeout: float = 30.0,
               global_args: Sequence[str] = ()) -> subprocess.CompletedProcess:
        """Run `distkv client ARGS…` against this server."""
        return run_cli(self.port, "client", *args, input=input, timeout=timeout,
                       global_args=global_args)

    def __enter__(self) -> ServerProc:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def run_cli(port: int, *args: str, input: str | None = None, timeout: float = 30.0,
            global_args: Sequence[str] = (), cwd: str | os.PathLike | None = None,
            ) -> subprocess.CompletedProcess:
    """Run the real `distkv` CLI (with test base config) and capture its output."""
    return subprocess.run(
        distkv_cmd(*base_config(port, global_args), *args),
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )
