"""``distkv client code PATH [get|set|list|delete|module …]`` (12 §4.4).

PATH names a procedure below ``codes.prefix`` (``:`` = all of them). The
verb may also come first (``code set the.answer``, as in the tutorial).
Records are read and written directly; :mod:`distkv.code` is what loads
and runs them. Output shows procedure names (paths below the prefix).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import asyncclick as click

from distkv.command.client.data import DataGroup
from distkv.command.util import DictFolder, attr_args, to_path
from distkv.util import NotGiven
from distkv.util.path import P, Path

__all__ = ["cli"]

_MODES = {"async": True, "sync": None, "thread": False}


@click.group(cls=DataGroup, invoke_without_command=True, short_help="Manage stored code.")
@click.argument("path")
@click.pass_context
async def cli(ctx: click.Context, path: str) -> None:
    """Stored procedures (PATH is below codes.prefix; ':' means all).

    'code PATH' alone prints one line per procedure: its name and info.
    Modules (experimental) are handled by 'code PATH module get|set|delete'.
    """
    obj = ctx.obj
    obj.code_path = to_path(path)
    if ctx.invoked_subcommand is None:
        client = await obj.connect()
        async for name, value in _records(client, obj.code_path):
            click.echo(f"{name} {_info(value)}", file=obj.stdout)


def _prefix(client: Any, section: str) -> Path:
    return P(client.config[section]["prefix"])


def _info(value: Any) -> str:
    from distkv.code import line_info

    if not isinstance(value, Mapping):
        return "<not a code record>"
    info = value.get("info")
    if info:
        return str(info)
    code = value.get("code")
    return line_info(code) if isinstance(code, str) else "<no code>"


async def _records(client: Any, path: Path, **kw: Any) -> Any:
    """``(name, value)`` of every record at or below ``path``."""
    prefix = _prefix(client, "codes")
    async for rec in client.get_tree(prefix + path, **kw):
        if "value" in rec:
            yield path + rec["path"], rec["value"]


def _read_text(filename: str) -> str:
    if filename == "-":
        return sys.stdin.read()
    with open(filename, encoding="utf-8") as f:
        return f.read()


def _write_text(filename: str, text: str) -> None:
    if filename == "-":
        sys.stdout.write(text)
        return
    with open(filename, "w", encoding="utf-8") as f:
        f.write(text)


def _read_yaml_map(filename: str) -> dict:
    from distkv.util.yaml import yload

    data = yload(_read_text(filename))
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise click.UsageError(f"{filename}: the data must be a mapping")
    return dict(data)


async def _print_record(obj: Any, section: str, what: str, script: str | None) -> None:
    """Print the record at PATH below ``section``'s prefix (``-s``: its code to a file)."""
    from distkv.util.yaml import yprint

    client = await obj.connect()
    res = await client.get(_prefix(client, section) + obj.code_path, nchain=obj.meta)
    if "value" not in res:
        raise LookupError(f"No {what} at {obj.code_path}")
    value = res["value"]
    if script is not None and isinstance(value, Mapping):
        _write_text(script, value.get("code", ""))
        value = {k: v for k, v in value.items() if k != "code"}
    if obj.meta:
        res.pop("seq", None)
        res["value"] = value
        yprint(res, stream=obj.stdout)
    else:
        yprint(value, stream=obj.stdout)


async def _read_record(obj: Any, section: str, data: str | None) -> tuple[Path, dict, Any]:
    """``(full path, record, chain)`` to start a ``set`` from.

    The record is the stored one (if any) updated with the ``-d`` file; the
    chain (``None`` if there is no record yet) guards the write.
    """
    client = await obj.connect()
    full = _prefix(client, section) + obj.code_path
    res = await client.get(full, nchain=2)
    old = res.get("value", NotGiven)
    rec: dict[str, Any] = dict(old) if isinstance(old, Mapping) else {}
    if data is not None:
        rec.update(_read_yaml_map(data))
    return full, rec, (res.get("chain") if old is not NotGiven else None)


async def _write_record(obj: Any, full: Path, rec: dict, chain: Any) -> None:
    """Store ``rec`` at ``full`` if its chain is still ``chain`` (with -m: print the reply)."""
    from distkv.util.yaml import yprint

    client = await obj.connect()
    res = await client.set(full, rec, chain=chain, nchain=obj.meta)
    if obj.meta:
        res.pop("seq", None)
        yprint(res, stream=obj.stdout)


# --- procedures --------------------------------------------------------------------------


@cli.command("get")
@click.option("-s", "--script", metavar="FILE", help="Write the code to FILE ('-': stdout).")
@click.pass_obj
async def get(obj: Any, script: str | None) -> None:
    """Print the record at PATH (with -s, without its code)."""
    await _print_record(obj, "codes", "code", script)


_DROP = object()  # '-e NAME /': not a parameter any more


def _apply_vars(rec: dict, vars_: Any, eval_: Any, path_: Any) -> None:
    """-v/-e/-p NAME VALUE: parameters and their defaults (see ``set --help``)."""
    from distkv.util.evaluate import literal_eval

    names = list(rec.get("vars") or ())
    default = dict(rec.get("default") or {})
    items: list[tuple[str, Any]] = list(vars_)
    for name, text in eval_:
        value = NotGiven if text == "-" else _DROP if text == "/" else literal_eval(text)
        items.append((name, value))
    items += [(n, to_path(v)) for n, v in path_]
    for name, value in items:
        if not name.isidentifier():
            raise click.UsageError(f"{name!r} is not a valid parameter name")
        if value is _DROP:
            if name in names:
                names.remove(name)
            default.pop(name, None)
            continue
        if name not in names:
            names.append(name)
        if value is NotGiven:
            default.pop(name, None)
        else:
            default[name] = value
    rec["vars"] = names
    if default:
        rec["default"] = default
    else:
        rec.pop("default", None)


@cli.command("set")
@attr_args
@click.option("-a", "--async", "mode", flag_value="async",
              help="Async code ('async def'); the default for new code.")
@click.option("-A", "--sync", "mode", flag_value="sync", help="Plain (sync) code.")
@click.option("-t", "--thread", "mode", flag_value="thread",
              help="Sync code that runs in a worker thread.")
@click.option("-s", "--script", metavar="FILE", help="Read the code from FILE ('-': stdin).")
@click.option("-i", "--info", metavar="TEXT", help="A one-line description ('' removes it).")
@click.option("-d", "--data", metavar="YAMLFILE", help="Start from the record in this file.")
@click.pass_obj
async def set_(
    obj: Any,
    vars_: tuple[tuple[str, str], ...],
    eval_: tuple[tuple[str, str], ...],
    path_: tuple[tuple[str, str], ...],
    mode: str | None,
    script: str | None,
    info: str | None,
    data: str | None,
) -> None:
    """Store the code at PATH; without -s it is read from stdin.

    An existing record keeps what isn't changed (also its code, if stdin
    is empty or a terminal). Each -v/-e/-p NAME VALUE makes NAME a
    parameter with that default; '-e NAME -' keeps NAME without default,
    '-e NAME /' drops the parameter. The code must compile.
    """
    from distkv.code import make_proc

    full, rec, chain = await _read_record(obj, "codes", data)
    if script is not None:
        code = _read_text(script)
    elif "code" not in rec or not sys.stdin.isatty():
        code = sys.stdin.read()
    else:
        code = ""
    if code.strip():
        rec["code"] = code
    if not isinstance(rec.get("code"), str):
        raise click.UsageError("No code: give it on stdin or with -s FILE.")
    if mode is not None:
        rec["is_async"] = _MODES[mode]
    elif chain is None and "is_async" not in rec:  # a new record
        rec["is_async"] = True
    if info is not None:
        if info:
            rec["info"] = info
        else:
            rec.pop("info", None)
    _apply_vars(rec, vars_, eval_, path_)
    make_proc(rec["code"], rec["vars"], full, is_async=rec.get("is_async") is True)
    await _write_record(obj, full, rec, chain)


def _summary(value: Any, full: bool) -> Any:
    if full or not isinstance(value, Mapping):
        return value
    res = {k: v for k, v in value.items() if k != "code"}
    if not res.get("info"):
        res["info"] = _info(value)
    return res


@cli.command("list")
@click.option("-d", "--as-dict", metavar="KEY", help="Print one nested mapping, values under KEY.")
@click.option("-m", "--maxdepth", type=int, help="Go at most this deep below PATH.")
@click.option("-M", "--mindepth", type=int, help="Start at this depth below PATH.")
@click.option("-f", "--full", is_flag=True, help="Include the code.")
@click.option("-s", "--short", is_flag=True, help="One 'name :: info' line per record.")
@click.pass_obj
async def list_(
    obj: Any, as_dict: str | None, maxdepth: int | None, mindepth: int | None,
    full: bool, short: bool,
) -> None:
    """List the records at and below PATH (the code shows as '<N lines>' unless -f)."""
    from distkv.util.yaml import yprint

    kw: dict[str, Any] = {}
    if maxdepth is not None and maxdepth >= 0:
        kw["max_depth"] = maxdepth
    if mindepth:
        kw["min_depth"] = mindepth
    folder = DictFolder(as_dict) if as_dict is not None else None
    client = await obj.connect()
    async for name, value in _records(client, obj.code_path, **kw):
        if short:
            click.echo(f"{name} :: {_info(value)}", file=obj.stdout)
        elif folder is not None:
            folder.add(name, _summary(value, full))
        else:
            yprint([{name: _summary(value, full)}], stream=obj.stdout)
    if folder is not None and not short:
        yprint(folder.result(), stream=obj.stdout)


@cli.command("delete")
@click.pass_obj
async def delete(obj: Any) -> None:
    """Delete the record at PATH."""
    await _delete(obj, _prefix(await obj.connect(), "codes") + obj.code_path)


async def _delete(obj: Any, full: Path) -> None:
    from distkv.util.yaml import yprint

    client = await obj.connect()
    res = await client.get(full, nchain=2)
    if "value" not in res:
        if obj.debug:
            click.echo("Does not exist.", file=obj.stdout)
        return
    res = await client.delete(full, chain=res.get("chain"), nchain=obj.meta)
    if obj.meta:
        res.pop("seq", None)
        yprint(res, stream=obj.stdout)
    elif obj.debug:
        click.echo("Deleted.", file=obj.stdout)


# --- modules -------------------------------------------------------------------------------


@cli.group("module")
async def module() -> None:
    """Stored modules (experimental): PATH is the module's dotted name below modules.prefix."""


@module.command("get")
@click.option("-s", "--script", metavar="FILE", help="Write the source to FILE ('-': stdout).")
@click.pass_obj
async def module_get(obj: Any, script: str | None) -> None:
    """Print the module record at PATH (with -s, without its source)."""
    await _print_record(obj, "modules", "module", script)


@module.command("set")
@click.option("-s", "--script", metavar="FILE", help="Read the source from FILE ('-': stdin).")
@click.option("-d", "--data", metavar="YAMLFILE", help="Start from the record in this file.")
@click.pass_obj
async def module_set(obj: Any, script: str | None, data: str | None) -> None:
    """Store a module at PATH; without -s its source is read from stdin. It must compile."""
    full, rec, chain = await _read_record(obj, "modules", data)
    code = _read_text(script if script is not None else "-")
    if code.strip():
        rec["code"] = code
    if not isinstance(rec.get("code"), str):
        raise click.UsageError("No source: give it on stdin or with -s FILE.")
    compile(rec["code"], str(full), "exec")
    await _write_record(obj, full, rec, chain)


@module.command("delete")
@click.pass_obj
async def module_delete(obj: Any) -> None:
    """Delete the module record at PATH."""
    await _delete(obj, _prefix(await obj.connect(), "modules") + obj.code_path)
