"""The top-level ``distkv`` command: global options, config, logging, error reporting.

``cmd()`` is the console-script entry point. The group loads the
subcommands ``server``, ``dump``, ``client`` and ``pdb`` on first use, plus
``distkv_ext.<name>.main`` extensions (each providing ``cli``).

Every command's failures end here: distkv errors print ``ClassName: text``,
other errors ``Error: text`` (one line on stderr, exit 1; with ``-vv`` the
traceback too); usage errors exit 2; Ctrl-C exits 130.
"""

from __future__ import annotations

import logging
import logging.config
import sys
import traceback
from collections.abc import Sequence
from typing import Any

import asyncclick as click

from distkv.command.util import LazyGroup, error_line, merge_ext_config, primary_exception
from distkv.util import attrdict

__all__ = ["cli", "cmd", "verbosity_level"]

BUILTIN = {
    "server": "distkv.command.server",
    "dump": "distkv.command.dump",
    "client": "distkv.command.client",
    "pdb": "distkv.command.pdb",
}
TRACEBACK_VERBOSITY = 3  # -vv


def verbosity_level(verbosity: int) -> int:
    """Root log level for ``V = 1 + #v - #q``: 0 ERROR, 1 WARNING, 2 INFO, 3+ DEBUG."""
    if verbosity < 0:
        return logging.CRITICAL
    if verbosity >= 3:
        return logging.DEBUG
    return (logging.ERROR, logging.WARNING, logging.INFO)[verbosity]


class MainGroup(LazyGroup):
    """The ``distkv`` group; turns any failure below it into one line and an exit code."""

    def get_help_option_names(self, ctx: click.Context) -> list[str]:
        # click returns these from a set: keep the declared order, so help is stable
        names = set(super().get_help_option_names(ctx))
        return [n for n in ctx.help_option_names if n in names]

    async def invoke(self, ctx: click.Context) -> Any:
        try:
            return await super().invoke(ctx)
        except BaseException as exc:  # noqa: BLE001  (we re-raise what isn't ours)
            leaf = primary_exception(exc)
            if isinstance(leaf, (click.ClickException, click.exceptions.Exit, click.Abort,
                                 SystemExit)):
                if leaf is exc:
                    raise
                raise leaf from None
            if isinstance(leaf, KeyboardInterrupt):
                raise click.exceptions.Exit(130) from None
            if not isinstance(leaf, Exception) or isinstance(leaf, BrokenPipeError):
                raise
            params = ctx.params
            verbosity = 1 + params.get("verbose", 0) - params.get("quiet", 0)
            if verbosity >= TRACEBACK_VERBOSITY:
                traceback.print_exception(exc, file=sys.stderr)
            click.echo(error_line(leaf), err=True)
            raise click.exceptions.Exit(1) from None


@click.group(
    cls=MainGroup,
    modules=BUILTIN,
    ext_sub="main",
    context_settings={"help_option_names": ["-h", "-?", "--help"]},
)
@click.option("-v", "--verbose", count=True, help="Be more verbose (repeatable).")
@click.option("-q", "--quiet", count=True, help="Be less verbose (repeatable).")
@click.option("-D", "--debug", count=True, help="Debug speed-ups (weak crypto keys etc.).")
@click.option("-L", "--debug-loader", is_flag=True, help="Report subcommand loading.")
@click.option(
    "-l", "--log", multiple=True, metavar="LOGGER=LEVEL",
    help="Set one logger's level, e.g. 'asyncactor=ERROR' (repeatable).",
)
@click.option(
    "-c", "--cfg", metavar="FILE",
    help="Config file (YAML). Default: the first of ~/config/distkv.cfg, "
    "~/.config/distkv.cfg, ~/.distkv.cfg, /etc/distkv/distkv.cfg, /etc/distkv.cfg. "
    "'/dev/null' reads none.",
)
@click.option(
    "-C", "--conf", multiple=True, metavar="KEY=VALUE",
    help="Override a config value, e.g. 'connect.port=27587'; 'KEY' alone deletes it "
    "(repeatable).",
)
@click.pass_context
async def cli(
    ctx: click.Context,
    verbose: int,
    quiet: int,
    debug: int,
    debug_loader: bool,
    log: Sequence[str],
    cfg: str | None,
    conf: Sequence[str],
) -> None:
    """DistKV: a master-less distributed key-value store.

    Options belong to the (sub)command they follow. Subcommands only
    understand '--help'.
    """
    from distkv.config import load_config

    levels = []
    for spec in log:
        name, eq, level = spec.partition("=")
        if not eq or not name or not level:
            raise click.BadParameter(f"{spec!r} is not LOGGER=LEVEL", param_hint="'-l'")
        levels.append((name, level.upper()))

    verbosity = 1 + verbose - quiet
    config = load_config(cfg, conf)
    if ctx.invoked_subcommand and ctx.command.is_extension(ctx.invoked_subcommand):
        merge_ext_config(config, ctx.invoked_subcommand)
    setup_logging(config, verbosity, levels)

    ctx.obj = attrdict(cfg=config, debug=verbosity, DEBUG=debug, stdout=sys.stdout)
    # Below the top level only '--help' is a help option ('-h' means '--host' there).
    ctx.help_option_names = ["--help"]


def setup_logging(cfg: dict, verbosity: int, levels: Sequence[tuple[str, str]]) -> None:
    """Configure logging from ``cfg.logging``, the root level from the verbosity."""
    lcfg = cfg.get("logging")
    if lcfg:
        logging.config.dictConfig(lcfg)
    logging.getLogger().setLevel(verbosity_level(verbosity))
    for name, level in levels:
        logging.getLogger(name).setLevel(level)
    logging.captureWarnings(verbosity > 0)


def cmd(args: Sequence[str] | None = None) -> None:
    """Run the ``distkv`` command line (the console script)."""
    try:
        cli(args=args, prog_name="distkv")
    except KeyboardInterrupt:
        sys.exit(130)
