"""``distkv pdb ARGS…``: start the Python debugger, then run ``distkv ARGS…``.

If that command fails, the debugger is entered post mortem before the error
is reported as usual.
"""

from __future__ import annotations

import pdb
import sys
from typing import Any

import asyncclick as click

__all__ = ["cli"]


@click.command(
    short_help="Run a command under the Python debugger.",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
async def cli(ctx: click.Context, args: tuple[str, ...]) -> Any:
    """Enter the debugger, then run the subcommand ARGS… (e.g. 'pdb client data :')."""
    pdb.set_trace()  # noqa: T100  (the whole point of this command)
    if not args:
        return None
    top = ctx.parent
    assert top is not None
    name, sub, rest = await top.command.resolve_command(top, list(args))
    sub_ctx = await sub.make_context(name, rest, parent=top)
    try:
        async with sub_ctx:
            return await sub.invoke(sub_ctx)
    except click.ClickException:
        raise
    except Exception:
        pdb.post_mortem(sys.exc_info()[2])
        raise
