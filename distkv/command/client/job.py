"""``distkv client job [-n NODE|-] [-g GROUP] …``: 0.65's names for ``client run`` (12 §4.8).

* ``job run`` = ``run all`` (be a runner), ``job info``, ``job monitor``;
* ``job at PATH [get|set|list|state|path|delete]`` = ``run VERB PATH``
  (``job at PATH`` alone prints the job).

The verbs themselves are those of :mod:`distkv.command.client.run`.
"""

from __future__ import annotations

import asyncclick as click

from distkv.command.client.run import VERBS, group_options, make_command, setup_group
from distkv.command.util import to_path

__all__ = ["cli"]


@click.group(short_help="Jobs and runners (0.65's spelling of 'run').")
@group_options
@click.pass_context
async def cli(ctx: click.Context, node: str | None, group: str | None) -> None:
    """Jobs: stored code that runners start on any, one or all nodes.

    The same as 'distkv client run': 'job run' is 'run all', 'job at PATH
    VERB' is 'run VERB PATH'.
    """
    setup_group(ctx, node, group)


cli.add_command(make_command("run", VERBS["all"]))
cli.add_command(make_command("info", VERBS["info"]))
cli.add_command(make_command("monitor", VERBS["monitor"]))


@cli.group("at", invoke_without_command=True, short_help="One job (or the jobs below PATH).")
@click.argument("path")
@click.pass_context
async def at(ctx: click.Context, path: str) -> None:
    """The job at PATH (below the group); without a verb: print it."""
    to_path(path)  # complain early about a bad path
    ctx.obj.job_path = path
    if ctx.invoked_subcommand is None:
        await VERBS["get"].fn(ctx.obj, path, state=False)


for _name in ("get", "set", "list", "state", "path", "delete"):
    at.add_command(make_command(_name, VERBS[_name], path_from_obj=True))
