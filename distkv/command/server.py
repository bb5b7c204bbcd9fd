"""``distkv server``: run a server node.

All the work is done by :class:`distkv.server.Server`; this module turns the
command line into its arguments, prints ``Running.`` once clients can
connect, and ends cleanly (logs flushed, exit code 0) on SIGTERM or SIGINT.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Sequence
from typing import Any

import anyio
import asyncclick as click

from distkv.util import NotGiven

__all__ = ["cli"]

logger = logging.getLogger(__name__)


def init_value(text: str | None, evaluate: bool) -> Any:
    """The ``-I`` value: ``-`` is None, ``-e`` evaluates it as a Python literal."""
    if text is None:
        return NotGiven
    if text == "-":
        return None
    if not evaluate:
        return text
    from distkv.util.evaluate import literal_eval

    try:
        return literal_eval(text)
    except (ValueError, SyntaxError) as exc:
        raise click.BadParameter(f"{text!r}: {exc}", param_hint="'-I'") from None


@click.command(name="server")
@click.option(
    "-l", "--load", type=click.Path(exists=True, dir_okay=False, readable=True),
    help="Load this save or log file first (may be a pipe, e.g. <(cat *.dkv)).",
)
@click.option(
    "-a", "--auth", "--authoritative", "authoritative", is_flag=True,
    help="The loaded data is complete: ticks still missing afterwards count as superseded.",
)
@click.option(
    "-f", "--force", is_flag=True,
    help="Become ready even if ticks are still missing.",
)
@click.option(
    "-s", "--save", type=click.Path(dir_okay=False, writable=True), hidden=True,
    help="Write a change log to this file, starting now.",
)
@click.option(
    "-i", "--incremental", is_flag=True, hidden=True,
    help="With -s: don't start the log with the full current state.",
)
@click.option(
    "-I", "--init", "init", metavar="VALUE", hidden=True,
    help="Start a NEW network whose root entry has this value ('-' = None).",
)
@click.option(
    "-e", "--eval", "eval_", is_flag=True, hidden=True,
    help="Evaluate the -I value as a Python literal.",
)
@click.argument("name")
@click.argument("nodes", nargs=-1)
@click.pass_obj
async def cli(
    obj: Any,
    name: str,
    nodes: Sequence[str],
    load: str | None,
    authoritative: bool,
    force: bool,
    save: str | None,
    incremental: bool,
    init: str | None,
    eval_: bool,
) -> None:
    """Run the DistKV server node NAME.

    NAME must be unique within the network. NODES (optional) are peers to
    fetch the initial state from before serving (otherwise a server without
    data fetches from the first ready peer it hears of).
    """
    from distkv.server import Server

    if authoritative and force:
        raise click.UsageError("'-a' and '-f' exclude each other.")
    if load and nodes:
        raise click.UsageError("Loading a file (-l) and fetching from NODES exclude each other.")
    if incremental and not save:
        raise click.UsageError(
            "'-i' only makes sense with '-s FILE'. (A new network starts with '-I VALUE'.)")
    value = init_value(init, eval_)

    server = Server(
        name,
        obj.cfg,
        init=value,
        load=load,
        save=save,
        incremental=incremental,
        authoritative=authoritative,
        force=force,
        nodes=nodes,
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(_stop_on_signal, tg.cancel_scope)
        await tg.start(server.serve)
        if obj.debug >= 1:
            click.echo("Running.")


async def _stop_on_signal(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for sig in signals:
            logger.info("Received %s: shutting down.", signal.Signals(sig).name)
            scope.cancel()
            return
