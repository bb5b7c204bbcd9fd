"""Regenerate the command sections of ``docs/cli.rst`` from the commands' ``--help``.

The page's introduction (everything above the first section) is written by
hand; everything from the ``distkv`` section on is the help text of every
command, walked depth first in the order ``--help`` lists them::

    .venv/bin/python docs/cli_reference.py          # rewrite docs/cli.rst
    .venv/bin/python docs/cli_reference.py --check  # exit 1 if it is stale

``tests/test_docs.py`` runs the check, so the page cannot drift from the code.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncclick as click

PAGE = Path(__file__).resolve().parent / "cli.rst"
FIRST = "``distkv``\n----------\n"
WIDTH = 78  # what click picks on an 80-column terminal


def _walk(cmd: click.Command, ctx: click.Context, names: str) -> Iterator[tuple[str, str]]:
    yield names, cmd.get_help(ctx)
    if not isinstance(cmd, click.Group):
        return
    if ctx.parent is None:
        ctx.help_option_names = ["--help"]  # as distkv's own callback does for subcommands
    for name in cmd.list_commands(ctx):
        sub = cmd.get_command(ctx, name)
        if sub is None or sub.hidden:
            continue
        yield from _walk(sub, _context(sub, name, ctx), f"{names} {name}")


def _context(cmd: click.Command, name: str, parent: click.Context | None) -> click.Context:
    """A context like ``make_context`` builds, without parsing any arguments."""
    settings = {"terminal_width": WIDTH, **cmd.context_settings}
    return click.Context(cmd, info_name=name, parent=parent, **settings)


def sections() -> str:
    """The generated part of the page."""
    os.environ.pop("COLUMNS", None)
    from distkv.command.main import cli

    out = []
    for path, text in _walk(cli, _context(cli, "distkv", None), "distkv"):
        title = f"``{path}``"
        body = "\n".join(("    " + line).rstrip() for line in text.splitlines())
        out.append(f"{title}\n{'-' * len(title)}\n\n::\n\n{body}\n")
    return "\n".join(out)


def render(current: str) -> str:
    """``current`` with its generated part replaced."""
    intro, sep, _ = current.partition(FIRST)
    if not sep:
        raise SystemExit(f"{PAGE}: no section {FIRST.splitlines()[0]} to start from")
    return intro + sections()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only report whether the page is stale")
    args = ap.parse_args()
    current = PAGE.read_text()
    new = render(current)
    if args.check:
        if new != current:
            print(f"{PAGE} is stale: run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
