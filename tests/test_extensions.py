"""Extensions (``distkv_ext.<name>``) that add server actions and client commands.

``tests/ext`` holds two: ``demo`` (the action ``demo_greet``/``demo_count``,
``distkv client demo greet|count``, a config default) and ``off`` (disabled
by its ``.no_load`` file). The end-to-end tests put that directory on
``PYTHONPATH`` of a real ``distkv server`` and of the CLI.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from procs import ServerProc, base_config, distkv_cmd

from distkv.client import open_client
from distkv.exceptions import ClientError, ServerError
from distkv.server.extensions import enabled_extensions, ext_config, load_extensions
from distkv.server.registry import Registry
from distkv.util import attrdict

pytestmark = pytest.mark.timeout(90)

EXT_DIR = Path(__file__).resolve().parent / "ext"


def ext_env(*dirs: Path) -> dict:
    paths = [str(d) for d in dirs] + [os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def cli(port: int, *args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(distkv_cmd(*base_config(port), *args), capture_output=True,
                          text=True, timeout=60, env=env)


def ok(res: subprocess.CompletedProcess) -> str:
    assert res.returncode == 0, res.stderr
    return res.stdout


@pytest.fixture
def ext_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``tests/ext`` on ``sys.path`` of this process, the imported extensions forgotten after."""
    monkeypatch.syspath_prepend(str(EXT_DIR))
    yield
    for name in [m for m in sys.modules if m == "distkv_ext" or m.startswith("distkv_ext.")]:
        del sys.modules[name]


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProc]:
    """A real server with the test extensions, holding a few entries."""
    with ServerProc(["-I", "Testing", "n1"], env=ext_env(EXT_DIR)) as srv:
        for key, value in (("a", "1"), ("a.b", "2"), ("a.b.c", "3"), ("x", "4")):
            assert srv.client("data", key, "set", "-v", ":", value).returncode == 0
        yield srv


# --- a real server and the CLI -------------------------------------------------------


def test_client_command_calls_server_action(server: ServerProc) -> None:
    out = ok(cli(server.port, "client", "demo", "greet", "Joe", env=ext_env(EXT_DIR)))
    assert out == "Hello, Joe! This is n1.\n"


def test_server_action_reads_the_store(server: ServerProc) -> None:
    env = ext_env(EXT_DIR)
    assert ok(cli(server.port, "client", "demo", "count", "a", env=env)) == "3\n"
    assert ok(cli(server.port, "client", "demo", "count", "a.b.c", env=env)) == "1\n"
    assert ok(cli(server.port, "client", "demo", "count", "nothing.here", env=env)) == "0\n"


def test_extension_commands_are_listed(server: ServerProc) -> None:
    out = ok(cli(server.port, "client", "--help", env=ext_env(EXT_DIR)))
    commands = out.split("Commands:")[1].split()
    assert "demo" in commands
    assert "off" not in commands


def test_no_load_disables_the_client_command(server: ServerProc) -> None:
    res = cli(server.port, "client", "off", env=ext_env(EXT_DIR))
    assert res.returncode == 2
    assert "No such command 'off'" in res.stderr


def test_no_load_disables_the_server_action(server: ServerProc) -> None:
    async def call(action: str) -> object:
        async with open_client(connect={"host": "127.0.0.1", "port": server.port}) as c:
            return await c._request(action, name="me")

    assert anyio.run(call, "demo_greet").result == "Hello, me! This is n1."
    with pytest.raises(ClientError, match="Unknown action: 'off_ping'"):
        anyio.run(call, "off_ping")


def test_user_config_beats_extension_default() -> None:
    with ServerProc(["-I", "Testing", "n2"], env=ext_env(EXT_DIR),
                    global_args=["-C", "demo.greeting=Moin"]) as srv:
        out = ok(cli(srv.port, "client", "demo", "greet", "Jan", env=ext_env(EXT_DIR)))
    assert out == "Moin, Jan! This is n2.\n"


def test_server_without_extensions_does_not_know_the_action() -> None:
    with ServerProc(["-I", "Testing", "n3"]) as srv:
        res = cli(srv.port, "client", "demo", "greet", "Joe", env=ext_env(EXT_DIR))
    assert res.returncode == 1
    assert "Unknown action: 'demo_greet'" in res.stderr


# --- the loader in this process -------------------------------------------------------


def test_enabled_extensions(ext_path: None) -> None:
    assert enabled_extensions("server") == {"demo": "distkv_ext.demo.server"}
    assert enabled_extensions("client") == {"demo": "distkv_ext.demo.client"}
    assert enabled_extensions("main") == {}
    assert enabled_extensions() == {"demo": "distkv_ext.demo"}


def test_load_registers_once_and_merges_config(ext_path: None) -> None:
    reg = Registry()
    cfg = attrdict(server={}, demo=attrdict(other=1))
    assert load_extensions(cfg, reg) == ["demo"]
    assert reg.names() == ["demo_count", "demo_greet"]
    assert cfg.demo == {"other": 1, "greeting": "Hello"}
    assert not reg.single["demo_greet"].privileged
    assert reg.single["demo_count"].privileged
    # a second server in the same process: config again, no second registration
    cfg2 = attrdict(server={}, demo=attrdict(greeting="Hi"))
    assert load_extensions(cfg2, reg) == ["demo"]
    assert cfg2.demo == {"greeting": "Hi"}
    assert reg.names() == ["demo_count", "demo_greet"]


def test_config_module_wins_over_yaml(tmp_path: Path, ext_path: None,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "distkv_ext" / "confmod"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "config.py").write_text("CFG = {'confmod': {'source': 'module'}}\n")
    (pkg / "_config.yaml").write_text("confmod:\n  source: yaml\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert ext_config("confmod") == {"confmod": {"source": "module"}}
    assert ext_config("demo") == {"demo": {"greeting": "Hello"}}
    assert ext_config("off") is None


def test_broken_extension_names_itself(tmp_path: Path, ext_path: None,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "distkv_ext" / "broken"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "server.py").write_text(textwrap.dedent("""
        def register(registry):
            registry.register("get_value", lambda session, msg: None)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry()
    reg.register("get_value", lambda session, msg: None)
    with pytest.raises(ServerError, match=r"Extension 'broken' \(distkv_ext.broken.server\) "
                       r"failed to load: ValueError\(\"action 'get_value' is registered twice"):
        load_extensions(attrdict(server={}), reg)
    (pkg / ".no_load").write_text("")
    assert load_extensions(attrdict(server={}), reg) == ["demo"]
