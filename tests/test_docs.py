"""The documentation builds without warnings, and the example scripts work.

The Sphinx site is built with ``-W --keep-going`` into a temporary directory.
Each script in ``examples/`` runs against a real server process; the tests
check what it prints (``watch.py`` and ``mirror.py`` run until SIGINT, so
they are interrupted once they have shown a change).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from procs import ROOT, ServerProc

EXAMPLES = ROOT / "examples"


def test_sphinx_build_has_no_warnings(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(tmp_path / "doctrees"), str(ROOT / "docs"), str(tmp_path / "html")],
        capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stderr == ""
    for page in ("index", "quickstart", "tutorial", "cli", "protocol", "python",
                 "deployment", "differences", "architecture", "extensions"):
        assert (tmp_path / "html" / f"{page}.html").is_file(), page


def test_cli_reference_is_the_commands_help() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "COLUMNS")}
    res = subprocess.run([sys.executable, str(ROOT / "docs" / "cli_reference.py"), "--check"],
                         capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""


def test_every_example_is_tested() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == [
        "client.py", "job.py", "mirror.py", "watch.py"]


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProc]:
    with ServerProc(["-I", "Testing", "demo"]) as srv:
        yield srv


def example(server: ServerProc, name: str, *args: str) -> list[str]:
    return [sys.executable, str(EXAMPLES / name), "--host", "127.0.0.1",
            "--port", str(server.port), *args]


def run_example(server: ServerProc, name: str, *args: str) -> str:
    res = subprocess.run(example(server, name, *args), capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


class Background:
    """An example that runs until interrupted; its output is read line by line."""

    def __init__(self, cmd: list[str]):
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        self.lines: list[str] = []

    def expect(self, line: str, timeout: float = 20) -> None:
        """Read lines until ``line`` appears (the stream blocks, so bound it by a timer)."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.proc.stdout.readline()
            if not got:
                break
            self.lines.append(got.rstrip("\n"))
            if self.lines[-1] == line:
                return
        raise AssertionError(f"no {line!r} in {self.lines}; stderr: {self.stop()[1]}")

    def stop(self) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        err = self.proc.stderr.read() if self.proc.stderr else ""
        for f in (self.proc.stdout, self.proc.stderr):
            if f:
                f.close()
        return self.proc.returncode, err


def cli(server: ServerProc, *args: str) -> None:
    res = server.client(*args)
    assert res.returncode == 0, res.stderr


def test_client_example(server: ServerProc) -> None:
    out = run_example(server, "client.py", "ex.client").splitlines()
    assert out[0].startswith("Connected to demo (tock ")
    assert out[1] == "ex.client.answer = 42"
    assert out[2].startswith("Updated to 43; new chain {'node': 'demo', 'tick': ")
    assert out[3].startswith("Stale update refused: Chain is ")
    assert out[4:] == ["Children of ex.client: greeting, answer",
                       "  greeting = 'hello'", "  answer = 43"]
    assert server.client("data", "ex.client.answer").stdout == "43\n"


def test_watch_example(server: ServerProc) -> None:
    cli(server, "data", "ex.watch.old", "set", "-v", ":", "here")
    bg = Background(example(server, "watch.py", "ex.watch"))
    try:
        bg.expect("(up to date)")
        assert bg.lines == ["ex.watch.old = 'here'", "(up to date)"]
        cli(server, "data", "ex.watch.new", "set", "-e", ":", "123")
        bg.expect("ex.watch.new = 123")
        cli(server, "data", "ex.watch.old", "delete")
        bg.expect("ex.watch.old: deleted")
    finally:
        rc, err = bg.stop()
    assert rc == 0, err


def test_mirror_example(server: ServerProc) -> None:
    cli(server, "data", "ex.mirror.a", "set", "-e", ":", "1")
    bg = Background(example(server, "mirror.py", "ex.mirror"))
    try:
        bg.expect("(loaded 1 entry)")
        assert bg.lines == ["a = 1", "(loaded 1 entry)"]
        cli(server, "data", "ex.mirror.b.c", "set", "-v", ":", "two")
        bg.expect("b.c = 'two'")
        cli(server, "data", "ex.mirror.a", "delete")
        bg.expect("a: deleted")
    finally:
        rc, err = bg.stop()
    assert rc == 0, err


def test_job_example(server: ServerProc) -> None:
    for _ in range(2):  # the second run waits for a new run, not the old state
        out = run_example(server, "job.py", "--node", "ex1").splitlines()
        assert out == [
            "Forty-Two!",
            "Stored example.answer: 42",
            "Job example.question stored at :.distkv.run.at.ex1.default.example.question",
            "Forty-Two!",
            "Job done: result 42, error None",
        ]
    assert server.client("run", "-n", "ex1", "state", "-r", "example.question").stdout == "42\n"
    assert server.client("code", "example.answer").stdout.startswith("example.answer")
