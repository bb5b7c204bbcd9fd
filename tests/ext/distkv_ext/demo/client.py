"""``distkv client demo greet NAME`` and ``distkv client demo count PATH``."""

from __future__ import annotations

from typing import Any

import asyncclick as click

from distkv.command.util import to_path


@click.group(short_help="Talk to the demo extension of the server.")
async def cli() -> None:
    """Call the server actions of the demo extension."""


@cli.command()
@click.argument("name")
@click.pass_obj
async def greet(obj: Any, name: str) -> None:
    """Be greeted by the server."""
    client = await obj.connect()
    res = await client._request("demo_greet", name=name)
    print(res.result)


@cli.command()
@click.argument("path")
@click.pass_obj
async def count(obj: Any, path: str) -> None:
    """Count the entries with a value below PATH."""
    client = await obj.connect()
    res = await client._request("demo_count", path=to_path(path))
    print(res.entries)
