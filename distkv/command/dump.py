"""``distkv dump …``: tools that need no server (10 §6).

``cfg`` prints the effective configuration, ``file`` shows a save/log file
as YAML, ``init`` writes an initial data file, ``yaml`` turns YAML documents
into a msgpack file.
"""

from __future__ import annotations

import sys
from typing import Any

import anyio
import asyncclick as click

from distkv.command.util import iter_msgpack_file, to_path
from distkv.util.path import PathLongener

__all__ = ["cli"]


@click.group(short_help="Low-level tools (no server needed).")
async def cli() -> None:
    """Low-level tools that don't need a running DistKV server."""


@cli.command("cfg")
@click.argument("path", default=":")
@click.pass_obj
async def cfg_(obj: Any, path: str) -> None:
    """Print the effective configuration below PATH (':', the default, is all of it).

    Strings are printed bare, everything else as YAML.
    """
    from distkv.util.yaml import yprint

    p = to_path(path)
    cfg = obj.cfg
    for elem in p:
        if isinstance(cfg, dict) and elem in cfg:
            cfg = cfg[elem]
        elif isinstance(cfg, list) and isinstance(elem, int) and -len(cfg) <= elem < len(cfg):
            cfg = cfg[elem]
        else:
            raise LookupError(f"Unknown config key {str(p)!r}")
    if isinstance(cfg, str):
        click.echo(cfg, file=obj.stdout)
    else:
        yprint(cfg, stream=obj.stdout)


@cli.command("file")
@click.option("-p", "--path", "expand", is_flag=True, help="Expand shortened paths.")
@click.option(
    "-f", "--filter", "filters", multiple=True, metavar="PATH",
    help="Only records at or below PATH (repeatable; implies -p).",
)
@click.argument("file")
@click.pass_obj
async def file_(obj: Any, file: str, expand: bool, filters: tuple[str, ...]) -> None:
    """Print the records of a save or log FILE as YAML documents."""
    from distkv.util.yaml import yprint

    prefixes = [to_path(f) for f in filters]
    longer = PathLongener() if expand or prefixes else None
    out = obj.stdout
    async for rec in iter_msgpack_file(file):
        if longer is not None and isinstance(rec, dict):
            longer(rec)
        if prefixes:
            p = rec.get("path") if isinstance(rec, dict) else None
            if p is None or not any(tuple(p[: len(f)]) == f for f in prefixes):
                continue
        yprint(rec, stream=out)
        print("---", file=out)


@cli.command("init")
@click.argument("node")
@click.argument("file")
async def init_(node: str, file: str) -> None:
    """Write an initial data FILE as if written by server NODE.

    'distkv server -l FILE NODE' then starts like 'distkv server -I "Initial data" NODE'.
    """
    from distkv.codec import packb

    record = {
        "chain": {"node": node, "tick": 1, "prev": None},
        "depth": 0,
        "path": [],
        "tock": 1,
        "value": "Initial data",
    }
    await anyio.Path(file).write_bytes(packb(record))


@cli.command("yaml")
@click.argument("outfile")
async def yaml_(outfile: str) -> None:
    """Read YAML documents from stdin and write them to OUTFILE as a msgpack stream."""
    from distkv.codec import packb
    from distkv.util.yaml import yload

    docs = yload(sys.stdin.read(), multi=True)
    await anyio.Path(outfile).write_bytes(b"".join(packb(d) for d in docs))
