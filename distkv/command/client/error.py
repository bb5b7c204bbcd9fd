"""``distkv client error dump|list|resolve`` (12 §4.6): the error records of :mod:`distkv.errors`.

``list`` is an alias of ``dump`` (the tutorials say ``list``).
"""

from __future__ import annotations

from typing import Any

import asyncclick as click

from distkv.command.util import DictFolder, to_path
from distkv.util.path import P

__all__ = ["cli"]

ALIASES = {"list": "dump"}


class ErrorGroup(click.Group):
    """The ``error`` group, with ``list`` as another name for ``dump``."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, ALIASES.get(cmd_name, cmd_name))


@click.group(cls=ErrorGroup, short_help="Show and resolve error records.")
async def cli() -> None:
    """The problems that runners, code loaders etc. recorded (below errors.prefix)."""


async def _errors(ctx: click.Context) -> Any:
    """The client's error root (loaded)."""
    from distkv.errors import ErrorRoot
    from distkv.obj import handler_scope

    client = await ctx.obj.connect()
    await ctx.with_async_resource(handler_scope(client))
    return await ErrorRoot.as_handler(client)


@cli.command("dump")
@click.option("-n", "--node", metavar="NODE", help="Only errors that NODE saw, with its details.")
@click.option("-s", "--subsystem", metavar="NAME", help="Only errors of this subsystem.")
@click.option("-r", "--resolved", is_flag=True, help="Only resolved errors.")
@click.option("-v", "--verbose", count=True, help="Add each node's details (-vv: tracebacks).")
@click.option("-a", "--all-errors", is_flag=True, help="Resolved and open errors.")
@click.option(
    "-d", "--as-dict", metavar="KEY",
    help="One mapping: subsystem, then path, the record under KEY.",
)
@click.option("-p", "--path", "path_", metavar="PATH", help="Only errors of objects below PATH.")
@click.argument("path", required=False)
@click.pass_context
async def dump(
    ctx: click.Context,
    node: str | None,
    subsystem: str | None,
    resolved: bool,
    verbose: int,
    all_errors: bool,
    as_dict: str | None,
    path_: str | None,
    path: str | None,
) -> None:
    """Print the open error records (YAML documents, or one mapping with -d).

    PATH (or -p PATH) limits the output to objects below PATH and shows
    their paths relative to it. '_path' is where a record is stored (for
    'error resolve').
    """
    from distkv.util.yaml import yprint

    if path is not None and path_ is not None:
        raise click.UsageError("Give the path either as argument or with -p, not both.")
    base = to_path(path if path is not None else path_) if (path or path_) else None
    out = ctx.obj.stdout
    err = await _errors(ctx)
    folder = DictFolder(as_dict) if as_dict is not None else None
    records = sorted(err.all_errors(subsystem), key=lambda r: (str(r.subsystem), str(r.path)))
    for rec in records:
        if not all_errors and bool(rec.resolved) != resolved:
            continue
        rel = P(rec.path)
        if base is not None:
            if rel[: len(base)] != base:
                continue
            rel = rel[len(base) :]
        if node is not None and node not in rec.details:
            continue
        item = rec.export(verbose=verbose, node=node)
        item["path"] = rel
        if folder is not None:
            folder.add((rec.subsystem, *rel), item)
        else:
            yprint(item, stream=out)
            print("---", file=out)
    if folder is not None:
        yprint(folder.result(), stream=out)


@cli.command("resolve")
@click.option(
    "-s", "--subsys", metavar="NAME",
    help="PATH is the offending object's path, for errors of this subsystem.",
)
@click.argument("path")
@click.pass_context
async def resolve(ctx: click.Context, subsys: str | None, path: str) -> None:
    """Mark an error as resolved.

    PATH is where the record is stored (its '_path', absolute or below
    errors.prefix), or with -s the path of the object the error is about.
    """
    err = await _errors(ctx)
    where = to_path(path)
    if subsys is not None:
        rec = await err.get_error_record(subsys, where, create=False)
    else:
        rec = err.get_error(where)
    if rec is None:
        what = f"{subsys} {where}" if subsys is not None else str(where)
        raise LookupError(f"No error record for {what}")
    await rec.resolve()
