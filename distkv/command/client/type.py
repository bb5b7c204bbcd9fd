"""``distkv client type …``: value types below ``:n.type`` and where they apply (12 §4.10, 08).

The tutorial's example::

    distkv client type set -g 0 -g -2 -g 123 -b 1.2 -b '"Hello"' int <<END
    if int(value) != value: raise ValueError("not an integer")
    END
    distkv client type set -g 0 -g 99 -g 100 -b -1 -b 101 int.percent <<END
    if not (0 <= value <= 100): raise ValueError("not a percentage")
    END
    distkv client type match -t int.percent 'stats.#.quota'

A type needs at least two good and one bad example, and a script (from
``-s FILE``, or standard input) and/or a JSON schema (``-S FILE``). Example
values are Python literals.

Fixed against 0.65.0 (15 #40): a ``schema`` in the ``-d`` file is used,
``match -d`` deletes the match (not a type), reading a match works; example
values are evaluated as literals, never as code.
"""

from __future__ import annotations

import json
from typing import IO, Any

import asyncclick as click

from distkv.command.util import to_path

from ._meta import (
    get_record,
    link_target,
    literal,
    meta_path,
    print_record,
    read_link,
    read_record_file,
    read_script,
    store_record,
    tree_dict,
    write_link,
)

__all__ = ["cli"]


@click.group(short_help="Manage types.")
async def cli() -> None:
    """Manage value types and the paths they apply to."""


@cli.command()
@click.option("-s", "--script", type=click.File("w", lazy=True), help="Write the script here.")
@click.option("-S", "--schema", type=click.File("w", lazy=True), help="Write the schema here.")
@click.option("-y", "--yaml", "yaml_", is_flag=True, help="Write the schema as YAML (not JSON).")
@click.argument("path")
@click.pass_obj
async def get(obj: Any, path: str, script: IO[str] | None, schema: IO[str] | None,
              yaml_: bool) -> None:
    """Print type PATH (the script and schema can go to files instead)."""
    from distkv.util.yaml import ydump

    res, value = await get_record(obj, meta_path(path, "type"), f"There is no type {path}.")
    if script is not None and value.get("code") is not None:
        script.write(value.pop("code"))
    if schema is not None and value.get("schema") is not None:
        s = value.pop("schema")
        schema.write(ydump(s) if yaml_ else json.dumps(s, indent=2) + "\n")
    print_record(obj, res, value)


@cli.command("set")
@click.option("-g", "--good", multiple=True, metavar="VALUE", help="A value that must pass.")
@click.option("-b", "--bad", multiple=True, metavar="VALUE", help="A value that must fail.")
@click.option("-d", "--data", type=click.File("r"), help="Start from this YAML file.")
@click.option("-s", "--script", type=click.File("r"), help="The checking script ('-': stdin).")
@click.option("-S", "--schema", type=click.File("r"), help="A JSON schema file.")
@click.option("-y", "--yaml", "yaml_", is_flag=True, help="The schema file is YAML.")
@click.argument("path")
@click.pass_obj
async def set_(obj: Any, path: str, good: tuple[str, ...], bad: tuple[str, ...],
               data: IO[str] | None, script: IO[str] | None, schema: IO[str] | None,
               yaml_: bool) -> None:
    """Define type PATH: its examples and a script (from stdin if no -s/-S) or schema.

    The script is the body of a function of 'value' that raises for a bad value.
    """
    from distkv.util.yaml import yload

    rec, chain = read_record_file(data, "-d")
    rec["good"] = [*rec.get("good", ()), *(literal(x, "'-g'") for x in good)]
    rec["bad"] = [*rec.get("bad", ()), *(literal(x, "'-b'") for x in bad)]
    if script is not None:
        if rec.get("code") is not None:
            raise click.UsageError("The -d file already has a script.")
        rec["code"] = script.read()
    if schema is not None:
        if rec.get("schema") is not None:
            raise click.UsageError("The -d file already has a schema.")
        rec["schema"] = yload(schema) if yaml_ else json.load(schema)
    if len(rec["good"]) < 2:
        raise click.UsageError("A type needs at least two good examples (-g).")
    if not rec["bad"]:
        raise click.UsageError("A type needs at least one bad example (-b).")
    if rec.get("code") is None and rec.get("schema") is None:
        rec["code"] = read_script("check 'value'")
    code = rec.get("code")
    if code is not None and not str(code).strip():
        raise click.UsageError("The script is empty.")
    await store_record(obj, meta_path(path, "type"), rec, chain)


@cli.command()
@click.option("-t", "--type", "type_", metavar="TYPE", help="Apply type TYPE (e.g. int.percent).")
@click.option("-d", "--delete", is_flag=True, help="Remove this match.")
@click.option("-R", "--raw", is_flag=True, help="Print just the type's path.")
@click.argument("path")
@click.pass_obj
async def match(obj: Any, path: str, type_: str | None, delete: bool, raw: bool) -> None:
    """Apply a type to PATH ('+' one level, '#' several), show (no option) or remove it.

    PATH ':' prints all matches.
    """
    from distkv.util.yaml import yprint

    p = to_path(path)
    client = await obj.connect()
    if not p:
        if type_ or delete or raw:
            raise click.UsageError("Options don't work with the whole match tree.")
        yprint(await tree_dict(client, ("match",)), stream=obj.stdout)
        return
    if type_ and delete:
        raise click.UsageError("You can't both set and delete a match.")
    if raw and (type_ or delete):
        raise click.UsageError("'-R' only works when reading a match.")
    mpath = ("match", *p)
    if type_ or delete:
        await write_link(obj, mpath, "type", None if delete else type_)
        return
    value = await read_link(obj, mpath, f"No type applies to {path}.")
    if value is None:
        return
    if raw:
        print(link_target(value, "type") or "", file=obj.stdout)
    else:
        yprint(value, stream=obj.stdout)


@cli.command("list")
@click.argument("path", default=":")
@click.pass_obj
async def list_(obj: Any, path: str) -> None:
    """Print the types below PATH (default: all) as one mapping, values under '_'."""
    from distkv.util.yaml import yprint

    client = await obj.connect()
    yprint(await tree_dict(client, meta_path(path, "type", nonempty=False)), stream=obj.stdout)
