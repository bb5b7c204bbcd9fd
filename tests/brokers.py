"""Broadcast media as real processes for tests: a mosquitto broker, serf agents.

Both bind to 127.0.0.1 only, on ports from :func:`procs.free_port`, wait until
they answer, and are stopped (SIGTERM, then SIGKILL) when their ``with``
block ends. :class:`Mosquitto` can be stopped and started again on the same
port (a broker restart) and paused with SIGSTOP (a stalled broker).
:class:`SerfAgent` takes a list of agents to join. Fixtures: ``mosquitto``
(one per test) and ``serf_pair`` (two joined agents); test modules import
``mosquitto_fixture`` / ``serf_pair_fixture``.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import anyio
import pytest
from procs import free_port, wait_port

__all__ = [
    "MOSQUITTO", "SERF", "Mosquitto", "SerfAgent", "mosquitto_fixture", "nothing_more",
    "serf_pair_fixture", "take",
]

MESSAGE_TIMEOUT = 15


async def take(msgs: AsyncIterator, n: int = 1) -> list[tuple[tuple[str, ...], bytes]]:
    """The next ``n`` ``(topic, payload)`` pairs a backend subscription delivers."""
    out = []
    with anyio.fail_after(MESSAGE_TIMEOUT):
        async for topic, payload in msgs:
            out.append((topic, payload))
            if len(out) == n:
                break
    return out


async def nothing_more(msgs: AsyncIterator, wait: float = 0.5) -> bool:
    """True if the subscription delivers nothing within ``wait`` seconds."""
    with anyio.move_on_after(wait):
        async for _ in msgs:
            return False
    return True

MOSQUITTO = "/usr/sbin/mosquitto"
SERF = "/usr/bin/serf"


def _stop(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGCONT)  # in case it is paused
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


class Mosquitto:
    """A mosquitto MQTT broker (v5 / 3.1.1) on 127.0.0.1."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="distkv-mosquitto-")
        self.log = Path(self._dir.name) / "mosquitto.log"

    @property
    def uri(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> Mosquitto:
        conf = Path(self._dir.name) / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "log_dest stdout\nlog_type error\nlog_type warning\nlog_type notice\n"
        )
        with self.log.open("a") as out:
            self.proc = subprocess.Popen(
                [MOSQUITTO, "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 10
        while True:  # right after a restart the port may still be held for a moment
            try:
                wait_port(self.port, 2.0, self.proc)
                return self
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
                with self.log.open("a") as out:
                    self.proc = subprocess.Popen(
                        [MOSQUITTO, "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT
                    )

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP): connections stay open but nothing moves."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._dir.cleanup()


def _free_udp_tcp_port() -> int:
    """A port that is free for TCP and UDP (serf gossips over both)."""
    for _ in range(50):
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port for serf")


class SerfAgent:
    """A ``serf agent`` on 127.0.0.1 with its own gossip and RPC ports."""

    def __init__(self, name: str, join: Sequence[SerfAgent] = (), auth_key: str | None = None):
        self.name = name
        self.bind_port = _free_udp_tcp_port()
        self.rpc_port = free_port()
        self.join = list(join)
        self.auth_key = auth_key
        self.proc: subprocess.Popen | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="distkv-serf-")
        self.log = Path(self._dir.name) / "serf.log"

    @property
    def bind_addr(self) -> str:
        return f"127.0.0.1:{self.bind_port}"

    def start(self) -> SerfAgent:
        args = [
            SERF, "agent", f"-node={self.name}", f"-bind={self.bind_addr}",
            f"-rpc-addr=127.0.0.1:{self.rpc_port}", "-profile=local", "-log-level=warn",
        ]
        if self.auth_key:
            conf = Path(self._dir.name) / "serf.json"
            conf.write_text(json.dumps({"rpc_auth": self.auth_key}))
            args.append(f"-config-file={conf}")
        args += [f"-join={a.bind_addr}" for a in self.join]
        with self.log.open("a") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_port(self.rpc_port, 10.0, self.proc)
        except Exception as exc:
            self.stop()
            raise RuntimeError(
                f"serf agent {self.name} did not start:\n{self.log.read_text()}"
            ) from exc
        return self

    def members(self) -> list[str]:
        """Names of the alive members, as this agent sees them."""
        out = subprocess.run(
            [SERF, "members", f"-rpc-addr=127.0.0.1:{self.rpc_port}", "-status=alive"]
            + ([f"-rpc-auth={self.auth_key}"] if self.auth_key else []),
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout
        return sorted(line.split()[0] for line in out.splitlines() if line.strip())

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> SerfAgent:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._dir.cleanup()


@pytest.fixture(name="mosquitto")
def mosquitto_fixture() -> Iterator[Mosquitto]:
    """A private mosquitto for one test."""
    with Mosquitto() as broker:
        yield broker


@pytest.fixture(name="serf_pair")
def serf_pair_fixture() -> Iterator[tuple[SerfAgent, SerfAgent]]:
    """Two serf agents, the second joined to the first, both seeing each other."""
    with SerfAgent("one") as one, SerfAgent("two", join=[one]) as two:
        deadline = time.monotonic() + 10
        while one.members() != ["one", "two"] or two.members() != ["one", "two"]:
            if time.monotonic() > deadline:
                raise RuntimeError("the serf agents did not join")
            time.sleep(0.1)
        yield one, two
