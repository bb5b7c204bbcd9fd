"""The top-level `distkv` command: help, config sources, extensions, error reporting.

Everything runs the real CLI in a subprocess, as a user would.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from procs import distkv_cmd, free_port

from distkv.command.util import error_line
from distkv.exceptions import ClientAuthRequiredError, ClientChainError


def run(*args: str, home: Path | None = None, env: dict | None = None, input: str | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `distkv ARGS…` (no test config added) and capture its output."""
    e = dict(os.environ)
    if home is not None:
        e["HOME"] = str(home)
    if env:
        e.update(env)
    return subprocess.run(
        distkv_cmd(*args), capture_output=True, text=True, timeout=60, env=e, input=input,
        cwd=cwd,
    )


def ok(res: subprocess.CompletedProcess) -> str:
    assert res.returncode == 0, (res.returncode, res.stdout, res.stderr)
    return res.stdout


def one_line_error(res: subprocess.CompletedProcess, code: int = 1) -> str:
    """Assert a failure that printed exactly one line on stderr and nothing else."""
    assert res.returncode == code, (res.returncode, res.stdout, res.stderr)
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.stderr
    return lines[0]


# --- help ----------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["-h", "-?", "--help"])
def test_top_help(flag):
    out = ok(run(flag))
    assert out.startswith("Usage: distkv [OPTIONS] COMMAND [ARGS]...")
    for opt in ("--verbose", "--quiet", "--debug", "--debug-loader", "--log", "--cfg", "--conf"):
        assert opt in out
    commands = out.split("Commands:")[1].split()
    for name in ("client", "dump", "pdb", "server"):
        assert name in commands


def test_subcommand_help_needs_no_server():
    port = str(free_port())  # nothing listens there
    out = ok(run("-c", "/dev/null", "-C", f"connect.port={port}", "client", "--help"))
    assert "-h, --host HOST" in out and "-m, --metadata" in out
    assert "data" in out.split("Commands:")[1].split()
    out = ok(run("-c", "/dev/null", "-C", f"connect.port={port}", "client", "data", "--help"))
    assert "Usage: distkv client data [OPTIONS] PATH [COMMAND] [ARGS]..." in out
    for verb in ("delete", "get", "list", "monitor", "set", "update"):
        assert verb in out.split("Commands:")[1].split()
    out = ok(run("-c", "/dev/null", "client", "data", "one.two", "set", "--help"))
    assert "-v, --var NAME TEXT" in out and "-n, --new" in out
    # the older verb-first order shows the verb's help, too
    out = ok(run("-c", "/dev/null", "client", "data", "get", "--help"))
    assert "-r, --recursive" in out and "-d, --as-dict KEY" in out


def test_subcommands_only_know_long_help():
    res = run("-c", "/dev/null", "dump", "-h")
    assert res.returncode == 2
    assert "No such option '-h'" in res.stderr


def test_dump_help():
    out = ok(run("dump", "--help"))
    commands = out.split("Commands:")[1].split()
    for name in ("cfg", "file", "init", "msg", "post", "yaml"):
        assert name in commands


# --- configuration -------------------------------------------------------------------


def test_override_takes_effect():
    out = ok(run("-c", "/dev/null", "-C", "connect.port=12345", "dump", "cfg", "connect.port"))
    assert out == "12345\n"
    # values that are not Python literals are strings
    out = ok(run("-c", "/dev/null", "-C", "connect.host=db.example", "dump", "cfg", "connect"))
    assert out.startswith("host: db.example\nport: 27586\n")
    # later overrides win; a new key makes new maps
    out = ok(run("-c", "/dev/null", "-C", "a.b=1", "-C", "a.b=(1, 'x')", "dump", "cfg", "a"))
    assert out == "b:\n- 1\n- x\n"


def test_override_deletes_key():
    res = run("-c", "/dev/null", "-C", "connect.host", "dump", "cfg", "connect.host")
    assert one_line_error(res) == "Error: Unknown config key 'connect.host'"


def test_dump_cfg_strings_bare():
    assert ok(run("-c", "/dev/null", "dump", "cfg", "connect.host")) == "localhost\n"
    assert ok(run("-c", "/dev/null", "dump", "cfg", "connect.ssl")) == "False\n"


def test_cfg_file(tmp_path):
    cfg = tmp_path / "test.cfg"
    cfg.write_text("connect:\n  host: 127.0.0.9\nfoo: bar\n")
    out = ok(run("-c", str(cfg), "dump", "cfg", "connect"))
    # merged over the defaults, key by key
    assert out.startswith("host: 127.0.0.9\nport: 27586\n")
    assert ok(run("-c", str(cfg), "dump", "cfg", "foo")) == "bar\n"
    # -C wins over the file
    out = ok(run("-c", str(cfg), "-C", "foo=baz", "dump", "cfg", "foo"))
    assert out == "baz\n"


def test_cfg_search_order(tmp_path):
    home = tmp_path
    (home / ".config").mkdir()
    (home / "config").mkdir()
    files = [
        (home / "config" / "distkv.cfg", "first"),
        (home / ".config" / "distkv.cfg", "second"),
        (home / ".distkv.cfg", "third"),
    ]
    for fn, name in files:
        fn.write_text(f"which: {name}\n")
    for fn, name in files:
        assert ok(run("dump", "cfg", "which", home=home)) == f"{name}\n"
        fn.unlink()
    # none left: just the defaults
    res = run("dump", "cfg", "which", home=home)
    assert one_line_error(res) == "Error: Unknown config key 'which'"


def test_explicit_cfg_beats_search(tmp_path):
    (tmp_path / ".distkv.cfg").write_text("which: home\n")
    explicit = tmp_path / "explicit.yaml"
    explicit.write_text("which: explicit\n")
    assert ok(run("-c", str(explicit), "dump", "cfg", "which", home=tmp_path)) == "explicit\n"
    res = run("-c", "/dev/null", "dump", "cfg", "which", home=tmp_path)
    assert res.returncode == 1


# --- errors --------------------------------------------------------------------------


def test_bad_override_key():
    line = one_line_error(run("-c", "/dev/null", "-C", "a..b=3", "dump", "cfg"))
    assert line.startswith("Error: Bad config key 'a..b'")
    line = one_line_error(run("-c", "/dev/null", "-C", "=3", "dump", "cfg"))
    assert line.startswith("Error: Bad config key ''")


def test_missing_cfg_file(tmp_path):
    missing = tmp_path / "nope.cfg"
    line = one_line_error(run("-c", str(missing), "dump", "cfg"))
    assert line == f"Error: Cannot read config file {missing}: No such file or directory"


def test_bad_cfg_file(tmp_path):
    bad = tmp_path / "bad.cfg"
    bad.write_text("connect: [\n")
    line = one_line_error(run("-c", str(bad), "dump", "cfg"))
    assert line.startswith(f"Error: Config file {bad} is not valid YAML")
    bad.write_text("- just\n- a list\n")
    line = one_line_error(run("-c", str(bad), "dump", "cfg"))
    assert line == f"Error: Config file {bad} must contain a mapping"


def test_bad_path_argument():
    line = one_line_error(run("-c", "/dev/null", "dump", "cfg", "a..b"))
    assert line.startswith("Error: Invalid path 'a..b'")
    line = one_line_error(run("-c", "/dev/null", "client", "data", "x:foo"))
    assert line.startswith("Error: Invalid path 'x:foo'")


def test_traceback_only_with_vv():
    res = run("-c", "/dev/null", "-v", "dump", "cfg", "nope")
    assert one_line_error(res) == "Error: Unknown config key 'nope'"
    res = run("-c", "/dev/null", "-vv", "dump", "cfg", "nope")
    assert res.returncode == 1
    assert "Traceback (most recent call last)" in res.stderr
    assert res.stderr.splitlines()[-1] == "Error: Unknown config key 'nope'"


def test_usage_errors_exit_2():
    res = run("-c", "/dev/null", "nonexistent")
    assert res.returncode == 2
    assert "No such command 'nonexistent'" in res.stderr
    res = run("-c", "/dev/null", "-l", "noequals", "dump", "cfg")
    assert res.returncode == 2
    assert "'noequals' is not LOGGER=LEVEL" in res.stderr
    res = run("-c", "/dev/null", "dump", "init", "onlynode")
    assert res.returncode == 2
    assert "Missing argument 'FILE'" in res.stderr


def test_bad_log_level():
    line = one_line_error(run("-c", "/dev/null", "-l", "foo=LOUD", "dump", "cfg", "connect.port"))
    assert line == "Error: Unknown level: 'LOUD'"
    out = ok(run("-c", "/dev/null", "-l", "asyncactor=error", "dump", "cfg", "connect.port"))
    assert out == "27586\n"


def test_error_line_formats():
    assert (
        error_line(ClientAuthRequiredError("You need to log in using:", "password"))
        == "ClientAuthRequiredError: You need to log in using: password"
    )
    assert (
        error_line(ClientChainError("Entry already exists at a.b"))
        == "ClientChainError: Entry already exists at a.b"
    )
    err = FileNotFoundError(2, "No such file or directory", "/x/y")
    assert error_line(err) == "Error: No such file or directory: /x/y"
    assert error_line(ValueError("bad\nthing")) == "Error: bad thing"
    assert error_line(KeyError("foo")) == "Error: Unknown key 'foo'"
    assert error_line(TypeError("oops")) == "Error: TypeError: oops"


# --- extensions, loader, pdb ---------------------------------------------------------


@pytest.fixture
def extension(tmp_path):
    """An installed `distkv_ext.hello` with a top-level and a client command."""
    pkg = tmp_path / "distkv_ext" / "hello"  # distkv_ext is a namespace package
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "_config.yaml").write_text("hello:\n  greeting: hi\n  name: world\n")
    (pkg / "main.py").write_text(textwrap.dedent('''
        import asyncclick as click

        @click.command(short_help="Say hello.")
        @click.pass_obj
        async def cli(obj):
            print(obj.cfg.hello.greeting, obj.cfg.hello.name)
    '''))
    (pkg / "client.py").write_text(textwrap.dedent('''
        import asyncclick as click

        @click.command(short_help="Greet a server.")
        @click.pass_obj
        async def cli(obj):
            print("client", obj.cfg.connect.port, obj.cfg.hello.greeting)
    '''))
    return {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}


def test_extension_commands(extension):
    out = ok(run("-c", "/dev/null", "--help", env=extension))
    assert "hello" in out.split("Commands:")[1].split()
    assert ok(run("-c", "/dev/null", "hello", env=extension)) == "hi world\n"
    # the extension's defaults don't override the user's settings
    out = ok(run("-c", "/dev/null", "-C", "hello.name=you", "hello", env=extension))
    assert out == "hi you\n"
    out = ok(run("-c", "/dev/null", "client", "--help", env=extension))
    assert "hello" in out.split("Commands:")[1].split()
    out = ok(run("-c", "/dev/null", "client", "-p", "4711", "hello", env=extension))
    assert out == "client 4711 hi\n"


def test_debug_loader(extension):
    res = run("-c", "/dev/null", "-L", "hello", env=extension)
    assert res.stdout == "hi world\n"
    assert "Loading 'hello' from distkv_ext.hello.main" in res.stderr


def test_pdb_runs_the_command():
    res = run("-c", "/dev/null", "pdb", "dump", "cfg", "connect.port", input="c\n")
    assert res.returncode == 0, res.stderr
    assert "(Pdb)" in res.stdout
    assert res.stdout.rstrip().endswith("27586")


def test_module_entry_point():
    res = subprocess.run(
        [sys.executable, "-m", "distkv", "-c", "/dev/null", "dump", "cfg", "connect.port"],
        capture_output=True, text=True, timeout=60,
    )
    assert res.returncode == 0 and res.stdout == "27586\n"
