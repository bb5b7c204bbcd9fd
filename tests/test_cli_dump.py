"""`distkv dump …`: the tools that need no server (init, file, yaml, cfg)."""

from __future__ import annotations

import os
import subprocess
import textwrap

from procs import distkv_cmd

from distkv.codec import packb, unpackb
from distkv.util.path import P, PathShortener


def dump(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        distkv_cmd("-c", "/dev/null", "dump", *args),
        capture_output=True, text=True, timeout=60, input=input, env=dict(os.environ),
    )


def ok(res: subprocess.CompletedProcess) -> str:
    assert res.returncode == 0, (res.returncode, res.stdout, res.stderr)
    assert res.stderr == ""
    return res.stdout


def read_records(fn) -> list:
    from distkv.codec import make_unpacker

    unpacker = make_unpacker()
    unpacker.feed(fn.read_bytes())
    return list(unpacker)


def test_init_then_file(tmp_path):
    fn = tmp_path / "0.dkv"
    assert ok(dump("init", "node_a", str(fn))) == ""
    assert read_records(fn) == [
        {
            "chain": {"node": "node_a", "tick": 1, "prev": None},
            "depth": 0,
            "path": (),
            "tock": 1,
            "value": "Initial data",
        }
    ]
    assert ok(dump("file", str(fn))) == textwrap.dedent("""\
        chain:
          node: node_a
          tick: 1
          prev: null
        depth: 0
        path: []
        tock: 1
        value: Initial data
        ---
        """)


def _shortened_file(fn) -> None:
    """A file in save-file form: a state record, then entries with shortened paths."""
    short = PathShortener()
    recs = [{"nodes": {"n1": 4}, "known": {}, "deleted": {}, "node": "n1", "tock": 9}]
    for path, value in [("one", 1), ("one.two", 2), ("one.two.three", 3), ("four", 4)]:
        rec = {"value": value, "tock": value, "path": P(path)}
        short(rec)
        recs.append(rec)
    fn.write_bytes(b"".join(packb(r) for r in recs))


def test_file_paths_and_filters(tmp_path):
    fn = tmp_path / "save.dkv"
    _shortened_file(fn)
    raw = ok(dump("file", str(fn)))
    docs = raw.split("---\n")
    assert docs[0].startswith("nodes:\n  n1: 4\n")
    # as stored: shortened
    assert docs[3] == "value: 3\ntock: 3\npath:\n- three\ndepth: 2\n"

    expanded = ok(dump("file", "-p", str(fn)))
    assert "value: 3\ntock: 3\npath: !P one.two.three\n---\n" in expanded
    assert "depth" not in expanded

    filtered = ok(dump("file", "-f", "one.two", "-f", "four", str(fn)))
    assert filtered == (
        "value: 2\ntock: 2\npath: !P one.two\n---\n"
        "value: 3\ntock: 3\npath: !P one.two.three\n---\n"
        "value: 4\ntock: 4\npath: !P four\n---\n"
    )


def test_yaml_round_trip(tmp_path):
    fn = tmp_path / "out.mp"
    text = textwrap.dedent("""\
        path: !P one.two:3
        value:
          name: joe
          data: !bin abc
          list:
          - 1
          - 2.5
          - null
        ---
        plain: true
        """)
    assert ok(dump("yaml", str(fn), input=text)) == ""
    data = fn.read_bytes()
    recs = read_records(fn)
    assert recs == [
        {"path": P("one.two:3"), "value": {"name": "joe", "data": b"abc", "list": (1, 2.5, None)}},
        {"plain": True},
    ]
    assert unpackb(packb(recs[0])) == recs[0]
    assert data.startswith(packb(recs[0]))
    assert ok(dump("file", str(fn))) == text + "---\n"


def test_file_errors(tmp_path):
    missing = tmp_path / "missing.dkv"
    res = dump("file", str(missing))
    assert res.returncode == 1
    assert res.stderr == f"Error: No such file or directory: {missing}\n"
    res = dump("file", "-f", "a..b", str(missing))
    assert res.returncode == 1
    assert res.stderr.startswith("Error: Invalid path 'a..b'")
    assert len(res.stderr.splitlines()) == 1


def test_cfg_whole_and_parts():
    out = ok(dump("cfg"))
    assert out.startswith("connect:\n  host: localhost\n  port: 27586\n")
    assert out == ok(dump("cfg", ":"))
    assert ok(dump("cfg", "server.bind_default")) == "host: localhost\nport: 27586\nssl: false\n"
    assert ok(dump("cfg", "codes.prefix")) == "!P :.distkv.code.proc\n...\n"
    assert ok(dump("cfg", "server.bind:0")) == "{}\n"
    res = dump("cfg", "server.nope")
    assert res.returncode == 1
    assert res.stderr == "Error: Unknown config key 'server.nope'\n"
