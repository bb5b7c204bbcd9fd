"""Helpers of the commands that edit meta records (``type``, ``codec``, ``acl``).

Meta records live below the meta root (``:n``) and are read and written with
the ``*_internal`` actions; these helpers build their paths, read example
values and scripts from the command line, and fetch, print and store records.
The module name starts with ``_``, so it is not a ``client`` subcommand.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from typing import IO, Any

import asyncclick as click

from distkv.command.util import DictFolder, to_path
from distkv.util import NotGiven

__all__ = [
    "meta_path",
    "literal",
    "read_script",
    "read_record_file",
    "meta_records",
    "tree_dict",
    "get_record",
    "print_record",
    "store_record",
    "write_link",
    "read_link",
    "link_target",
]


def meta_path(path: str, *head: Any, nonempty: bool = True) -> tuple:
    """``(*head, *PATH)``, e.g. ``meta_path("int.percent", "type")``.

    An empty PATH (``:``) is a usage error unless ``nonempty`` is false.
    """
    p = to_path(path)
    if nonempty and not p:
        raise click.UsageError("You need a non-empty path.")
    return (*head, *p)


def literal(text: str, what: str) -> Any:
    """The Python literal ``text`` given for option ``what`` (a usage error if it is none)."""
    from distkv.util.evaluate import literal_eval

    try:
        return literal_eval(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=what) from None


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


def read_record_file(data: IO[str] | None, option: str) -> tuple[dict, Any]:
    """``(record, chain)`` from the YAML file of ``option`` (``-d``/``-D``).

    The file holds a record, or a whole reply as ``get -m`` prints it; then
    its chain guards the write. Without a file: ``({}, NotGiven)``.
    """
    from distkv.util.yaml import yload

    if data is None:
        return {}, NotGiven
    rec = yload(data) or {}
    if not isinstance(rec, dict):
        raise click.UsageError(f"The {option} file must hold a mapping.")
    chain: Any = NotGiven
    if "value" in rec:
        chain = rec.get("chain", NotGiven)
        rec = rec["value"]
    return dict(rec), chain


async def meta_records(client: Any, path: tuple, **kw: Any) -> AsyncIterator[dict]:
    """The records of the meta subtree at ``path``, with full relative paths."""
    from distkv.util.path import PathLongener

    longer = PathLongener()
    res = await client._request("get_tree_internal", path=path, iter=True, **kw)
    async for rec in res:
        longer(rec)
        yield rec


async def tree_dict(client: Any, path: tuple) -> dict:
    """The meta subtree at ``path`` as a nested mapping, values under ``_``."""
    folder = DictFolder("_")
    async for rec in meta_records(client, path):
        if "value" in rec:
            folder.add(rec["path"], rec["value"])
    return folder.result()


async def get_record(obj: Any, path: tuple, missing: str) -> tuple[dict, dict]:
    """``(reply, value)`` of the record at ``path``; ``missing`` is the error if there is none.

    ``value`` is a copy, so that the caller can take parts out before printing.
    """
    client = await obj.connect()
    res = await client._request("get_internal", path=path, nchain=obj.meta)
    if "value" not in res:
        raise click.ClickException(missing)
    return res, dict(res.value)


def print_record(obj: Any, res: dict, value: dict, stream: IO[str] | None = None) -> None:
    """Print ``value`` (with client -m: the reply holding it)."""
    from distkv.util.yaml import yprint

    if obj.meta:
        res["value"] = value
        value = res
    yprint(value, stream=stream if stream is not None else obj.stdout)


async def store_record(obj: Any, path: tuple, rec: Any, chain: Any = NotGiven) -> Any:
    """Write ``rec`` at ``path`` (if its chain is ``chain``); with client -m, print the reply."""
    from distkv.util.yaml import yprint

    kw = {} if chain is NotGiven else {"chain": chain}
    client = await obj.connect()
    res = await client._request("set_internal", path=path, value=rec, nchain=obj.meta, **kw)
    if obj.meta:
        yprint(res, stream=obj.stdout)
    return res


async def write_link(obj: Any, path: tuple, key: str, target: str | None) -> None:
    """Set the ``{key: TARGET}`` record at ``path`` (a match or conversion), or
    delete it if ``target`` is None; with client -m, print the reply."""
    from distkv.util.path import P

    if target is not None:
        await store_record(obj, path, {key: P(target)})
        return
    client = await obj.connect()
    res = await client._request("delete_internal", path=path, nchain=obj.meta)
    if obj.meta:
        from distkv.util.yaml import yprint

        yprint(res, stream=obj.stdout)


async def read_link(obj: Any, path: tuple, missing: str) -> dict | None:
    """The ``{key: PATH}`` record at ``path``; ``missing`` is the error if there is none.

    With client -m the reply is printed instead and the result is None.
    """
    client = await obj.connect()
    res = await client._request("get_internal", path=path, nchain=obj.meta)
    if obj.meta:
        from distkv.util.yaml import yprint

        yprint(res, stream=obj.stdout)
        return None
    value = res.get("value")
    if not isinstance(value, dict):
        raise click.ClickException(missing)
    return value


def link_target(value: Any, key: str) -> Any:
    """The path that a ``{key: PATH}`` record points to, for printing."""
    from distkv.util.path import P

    target = value.get(key) if isinstance(value, dict) else None
    return P(target) if isinstance(target, (list, tuple)) else target
