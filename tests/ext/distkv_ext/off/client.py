"""Would add ``distkv client off`` (the extension is disabled)."""

from __future__ import annotations

import asyncclick as click


@click.command(short_help="Disabled.")
async def cli() -> None:
    """Never reachable: the extension has a .no_load file."""
    print("off was loaded")
