"""``distkv client log …``: the server's change log and snapshots (10 §3-4).

File names are paths on the server's host.
"""

from __future__ import annotations

from typing import Any

import asyncclick as click

__all__ = ["cli"]


@click.group(short_help="Manage the server's change log.")
async def cli() -> None:
    """Control the change log and snapshots of the server you talk to."""


async def _request(obj: Any, action: str, **params: Any) -> None:
    from distkv.util.yaml import yprint

    client = await obj.connect()
    res = await client._request(action, **params)
    if obj.meta:
        yprint(res, stream=obj.stdout)


@cli.command()
@click.option("-i", "--incremental", is_flag=True, help="Don't write the current state first.")
@click.argument("path")
@click.pass_obj
async def dest(obj: Any, path: str, incremental: bool) -> None:
    """Log all changes to the file PATH (on the server).

    The file is started with the current state unless -i is given; a
    previous log is closed once the new one is ready.
    """
    await _request(obj, "log", path=path, fetch=not incremental)


@cli.command()
@click.option("-f", "--full", is_flag=True, help="Include the internal (meta) tree.")
@click.argument("path")
@click.pass_obj
async def save(obj: Any, path: str, full: bool) -> None:
    """Write a snapshot of the server's data to the file PATH (on the server)."""
    await _request(obj, "save", path=path, full=full)


@cli.command()
@click.pass_obj
async def stop(obj: Any) -> None:
    """Stop logging changes."""
    await _request(obj, "log")
