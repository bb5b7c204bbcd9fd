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
import sys
from typing import IO, Any

import asyncclick as click

from distkv.command.util import DictFolder, to_path
from distkv.util import NotGiven
from distkv.util.path import P

__all__ = ["cli", "read_script", "tree_dict"]


@click.group(short_help="Manage types.")
async def cli() -> None:
    """Manage value types and the paths they apply to."""


def _type_path(path: str) -> tuple:
    p = to_path(path)
    if not p:
        raise click.UsageError("You need a non-empty path.")
    return ("type", *p)


async def tree_dict(client: Any, path: tuple) -> dict:
    """The meta subtree at ``path`` as a nested mapping, values under ``_``."""
    from distkv.util.path import PathLongener

    folder = DictFolder("_")
    longer = PathLongener()
    res = await client._request("get_tree_internal", path=path, iter=True)
    async for rec in res:
        longer(rec)
        if "value" in rec:
            folder.add(rec["path"], rec["value"])
    return folder.result()


def read_script(what: str, stream: IO[str] | None = None, *, until_blank: bool = False) -> str:
    """A script from standard input (prompting on a terminal).

    With ``until_blank`` the script ends at an empty line (so that several
    can follow each other), otherwise at the end of the input.
    """
    stream = stream if stream is not None else sys.stdin
    if stream.isatty():
        end = "an empty line" if until_blank else "Ctrl-D"
        click.echo(f"Enter the Python script to {what}; end with {end}.", err=True)
    if not until_blank:
        return stream.read()
    lines = []
    for line in stream:
        if not line.strip():
            break
        lines.append(line)
    return "".join(lines)


@cli.command()
@click.option("-s", "--script", type=click.File("w", lazy=True), help="Write the script here.")
@click.option("-S", "--schema", type=click.File("w", lazy=True), help="Write the schema here.")
@click.option("-y", "--yaml", "yaml_", is_flag=True, help="Write the schema as YAML (not JSON).")
@click.argument("path")
@click.pass_obj
async def get(obj: Any, path: str, script: IO[str] | None, schema: IO[str] | None,
              yaml_: bool) -> None:
    """Print type PATH (the script and schema can go to files instead)."""
    from distkv.util.yaml import ydump, yprint

    tpath = _type_path(path)
    client = await obj.connect()
    res = await client._request("get_internal", path=tpath, nchain=obj.meta)
    if "value" not in res:
        raise click.ClickException(f"There is no type {path}.")
    value = dict(res.value)
    if script is not None and value.get("code") is not None:
        script.write(value.pop("code"))
    if schema is not None and value.get("schema") is not None:
        s = value.pop("schema")
        schema.write(ydump(s) if yaml_ else json.dumps(s, indent=2) + "\n")
    if obj.meta:
        res["value"] = value
        yprint(res, stream=obj.stdout)
    else:
        yprint(value, stream=obj.stdout)


def _literal(text: str, what: str) -> Any:
    from distkv.util.evaluate import literal_eval

    try:
        return literal_eval(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=what) from None


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
    from distkv.util.yaml import yload, yprint

    tpath = _type_path(path)
    rec: dict = {}
    chain: Any = NotGiven
    if data is not None:
        rec = yload(data) or {}
        if not isinstance(rec, dict):
            raise click.UsageError("The -d file must hold a mapping.")
        if "value" in rec:  # a whole reply, as 'type get -m' prints it
            chain = rec.get("chain", NotGiven)
            rec = rec["value"]
        rec = dict(rec)
    rec["good"] = [*rec.get("good", ()), *(_literal(x, "'-g'") for x in good)]
    rec["bad"] = [*rec.get("bad", ()), *(_literal(x, "'-b'") for x in bad)]
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
    kw = {} if chain is NotGiven else {"chain": chain}
    client = await obj.connect()
    res = await client._request("set_internal", path=tpath, value=rec, nchain=obj.meta, **kw)
    if obj.meta:
        yprint(res, stream=obj.stdout)


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
    if delete:
        res = await client._request("delete_internal", path=mpath, nchain=obj.meta)
    elif type_:
        res = await client._request(
            "set_internal", path=mpath, value={"type": P(type_)}, nchain=obj.meta
        )
    else:
        res = await client._request("get_internal", path=mpath, nchain=obj.meta)
        if obj.meta:
            yprint(res, stream=obj.stdout)
        elif "value" not in res:
            raise click.ClickException(f"No type applies to {path}.")
        elif raw:
            t = res.value.get("type")
            print(t if isinstance(t, str) else P(t) if t is not None else "", file=obj.stdout)
        else:
            yprint(res.value, stream=obj.stdout)
        return
    if obj.meta:
        yprint(res, stream=obj.stdout)


@cli.command("list")
@click.argument("path", default=":")
@click.pass_obj
async def list_(obj: Any, path: str) -> None:
    """Print the types below PATH (default: all) as one mapping, values under '_'."""
    from distkv.util.yaml import yprint

    client = await obj.connect()
    yprint(await tree_dict(client, ("type", *to_path(path))), stream=obj.stdout)
