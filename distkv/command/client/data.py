"""``distkv client data PATH [get|set|delete|list|monitor|update]`` (12 §4.1).

The path comes before the verb; ``data PATH`` alone reads the value. The
older order of seed 000 (``data get -rd_ PATH``) is accepted when it is
unambiguous, and ``watch`` is an alias of ``monitor``.
"""

from __future__ import annotations

import datetime
import time
from typing import Any

import asyncclick as click

from distkv.command.util import (
    DictFolder,
    add_dates,
    attr_args,
    build_value,
    iter_msgpack_file,
    to_path,
)
from distkv.util import NotGiven
from distkv.util.path import Path, PathLongener

__all__ = ["cli", "DataGroup"]

ALIASES = {"watch": "monitor"}


class DataGroup(click.Group):
    """The ``data`` group: ``PATH VERB …``, also accepting ``VERB … PATH``."""

    def _is_verb(self, word: str) -> bool:
        return word in self.commands or word in ALIASES

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, ALIASES.get(cmd_name, cmd_name))

    async def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return await super().parse_args(ctx, await self._path_first(ctx, args))

    async def _path_first(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Rewrite ``VERB OPTS… PATH`` to ``PATH VERB OPTS…`` if that is the only reading.

        ``PATH VERB …`` wins whenever the second word is a verb. The path is the
        one remaining word (searched from the end) without which the verb's
        options parse with nothing left over.
        """
        if len(args) < 2 or not self._is_verb(args[0]) or self._is_verb(args[1]):
            return args
        verb, rest = args[0], args[1:]
        cmd = self.get_command(ctx, verb)
        assert cmd is not None
        for i in range(len(rest) - 1, -1, -1):
            word = rest[i]
            if word.startswith("-") and word != "-":
                continue
            remaining = rest[:i] + rest[i + 1 :]
            try:
                sub = await cmd.make_context(
                    verb, list(remaining), parent=ctx, resilient_parsing=True
                )
            except click.ClickException:
                continue
            if not sub.args:
                return [word, verb, *remaining]
        if "--help" in rest:
            return [":", verb, "--help"]
        return args


@click.group(cls=DataGroup, invoke_without_command=True, short_help="Manage data.")
@click.argument("path")
@click.pass_context
async def cli(ctx: click.Context, path: str) -> None:
    """Read and write the data stored at PATH ('data PATH' alone prints its value).

    PATH uses dots between elements, ':' is the root: 'one.two', ':', 'a:12'.
    """
    obj = ctx.obj
    obj.path = to_path(path)
    if ctx.invoked_subcommand is None:
        await print_value(obj, obj.path)


# --- reading -------------------------------------------------------------------------


def _drop_transport_fields(rec: dict) -> None:
    """Remove what belongs to the stream, not the entry (``seq``, flow-control ``wseq``)."""
    rec.pop("seq", None)
    rec.pop("wseq", None)


async def print_value(obj: Any, path: Path, *, raw: bool = False, add_date: bool = False) -> None:
    """Print one entry's value (or, with client -m, the whole reply)."""
    from distkv.util.yaml import yprint

    client = await obj.connect()
    res = await client.get(path, nchain=obj.meta)
    if add_date and "value" in res:
        add_dates(res["value"])
    if obj.meta:
        yprint(res, stream=obj.stdout)
        return
    if "value" not in res:
        if obj.debug:
            click.echo(f"No data at {path}", err=True)
        return
    value = res["value"]
    if not raw:
        yprint(value, stream=obj.stdout)
    elif isinstance(value, (bytes, bytearray)):
        obj.stdout.flush()
        obj.stdout.buffer.write(value)
        obj.stdout.buffer.flush()
    else:
        obj.stdout.write(str(value))


async def print_tree(
    obj: Any,
    path: Path,
    *,
    as_dict: str | None = None,
    maxdepth: int | None = None,
    mindepth: int | None = None,
    empty: bool = False,
    paths_only: bool = False,
    add_date: bool = False,
) -> None:
    """Print a subtree: one ``- !P path: value`` item per entry, or one ``-d`` mapping.

    ``paths_only`` prints ``- !P path`` items instead (the ``-d`` mapping is unchanged).
    """
    from distkv.util.yaml import yprint

    kw: dict[str, Any] = {}
    if maxdepth is not None and maxdepth >= 0:
        kw["max_depth"] = maxdepth
    if mindepth:
        kw["min_depth"] = mindepth
    if empty:
        kw["empty"] = True
    if obj.meta:
        kw["nchain"] = obj.meta
    folder = DictFolder(as_dict) if as_dict is not None else None
    out = obj.stdout

    client = await obj.connect()
    async for rec in client.get_tree(path, **kw):
        _drop_transport_fields(rec)
        rel = rec.pop("path")
        if add_date and "value" in rec:
            add_dates(rec["value"])
        if paths_only and folder is None:
            yprint([rel], stream=out)
            continue
        if obj.meta:
            item = rec
        else:
            item = rec.get("value", NotGiven)
            if item is NotGiven:
                if not empty:
                    continue
                item = None
        if folder is not None:
            folder.add(rel, item)
        else:
            yprint([{rel: item}], stream=out)
    if folder is not None:
        yprint(folder.result(simplify=bool(maxdepth)), stream=out)


@cli.command("get")
@click.option("-r", "--recursive", is_flag=True, help="Print the whole subtree.")
@click.option(
    "-d", "--as-dict", metavar="KEY",
    help="With -r: print one nested mapping, values under KEY (customarily '_').",
)
@click.option("-m", "--maxdepth", type=int, help="With -r: go at most this deep.")
@click.option("-M", "--mindepth", type=int, help="With -r: start at this depth.")
@click.option("-e", "--empty", is_flag=True, help="With -r: include entries without a value.")
@click.option("-R", "--raw", is_flag=True, help="Print strings without quotes, bytes as is.")
@click.option("-D", "--add-date", is_flag=True, help="Add '_FIELD' dates for time stamps.")
@click.pass_obj
async def get(
    obj: Any,
    recursive: bool,
    as_dict: str | None,
    maxdepth: int | None,
    mindepth: int | None,
    empty: bool,
    raw: bool,
    add_date: bool,
) -> None:
    """Print the value at PATH, or (-r) the values below it."""
    if recursive:
        await print_tree(
            obj, obj.path, as_dict=as_dict, maxdepth=maxdepth, mindepth=mindepth,
            empty=empty, add_date=add_date,
        )
        return
    if as_dict is not None or maxdepth is not None or mindepth is not None or empty:
        raise click.UsageError("'-d', '-m', '-M' and '-e' only work with '-r'.")
    await print_value(obj, obj.path, raw=raw, add_date=add_date)


@cli.command("list")
@click.option(
    "-d", "--as-dict", metavar="KEY", help="Print one nested mapping, values under KEY."
)
@click.option("-m", "--maxdepth", type=int, default=1, show_default=True, help="Go this deep.")
@click.option("-M", "--mindepth", type=int, default=1, show_default=True, help="Start here.")
@click.pass_obj
async def list_(obj: Any, as_dict: str | None, maxdepth: int, mindepth: int) -> None:
    """List the paths below PATH (with or without a value), one level by default."""
    await print_tree(
        obj, obj.path, as_dict=as_dict, maxdepth=maxdepth, mindepth=mindepth,
        empty=True, paths_only=True,
    )


# --- writing -------------------------------------------------------------------------


def _chain(last: tuple[str, int] | None) -> dict | None:
    return None if not last else {"node": last[0], "tick": last[1]}


@cli.command("set")
@attr_args
@click.option(
    "-l", "--last", nargs=2, type=(str, int), metavar="NODE TICK",
    help="Only if this change (node, tick) is the entry's last one.",
)
@click.option("-n", "--new", is_flag=True, help="Only if the entry has no value yet.")
@click.pass_obj
async def set_(
    obj: Any,
    vars_: tuple[tuple[str, str], ...],
    eval_: tuple[tuple[str, str], ...],
    path_: tuple[tuple[str, str], ...],
    last: tuple[str, int] | None,
    new: bool,
) -> None:
    """Store a value at PATH.

    NAME is a path into the stored value ('-v a.b X' changes key a.b of a
    mapping), ':' the whole value ('-e : 123'). '-e NAME -' removes NAME;
    removing the whole value deletes the entry.
    """
    from distkv.util.yaml import yprint

    if not (vars_ or eval_ or path_):
        raise click.UsageError("Nothing to set: use -v, -e or -p.")
    if new and last:
        raise click.UsageError("'--new' and '--last' are mutually exclusive.")
    from distkv.exceptions import ACLError

    client = await obj.connect()
    readable = True
    try:
        res = await client.get(obj.path, nchain=obj.meta or 2)
    except ACLError:
        # A write-only user may replace the whole value without reading it
        # first (the tutorial's "wom" example); a partial update needs a read.
        whole = all(name == ":" for name, _ in (*vars_, *eval_, *path_))
        if not whole:
            raise
        readable, res = False, {}
    old = res.get("value", NotGiven)
    value = build_value(old, vars_, eval_, path_)
    if new:
        chain = None
    elif last:
        chain = _chain(last)
    elif not readable:
        chain = NotGiven
    else:
        chain = res.get("chain") if old is not NotGiven else None
    if value is NotGiven:
        res = await client.delete(obj.path, nchain=obj.meta, chain=chain)
    else:
        res = await client.set(obj.path, value=value, nchain=obj.meta, chain=chain)
    if obj.meta:
        yprint(res, stream=obj.stdout)


@cli.command("delete")
@click.option("-p", "--prev", metavar="VALUE", help="Only if the value is VALUE.")
@click.option("-e", "--eval", "eval_", is_flag=True, help="Evaluate the --prev value.")
@click.option(
    "-l", "--last", nargs=2, type=(str, int), metavar="NODE TICK",
    help="Only if this change (node, tick) is the entry's last one.",
)
@click.option("-r", "--recursive", is_flag=True, help="Delete the whole subtree.")
@click.option("--internal", is_flag=True, hidden=True)
@click.pass_obj
async def delete(
    obj: Any,
    prev: str | None,
    eval_: bool,
    last: tuple[str, int] | None,
    recursive: bool,
    internal: bool,
) -> None:
    """Delete the value at PATH (-r: everything below it, too)."""
    from distkv.util.yaml import yprint

    if eval_ and prev is None:
        raise click.UsageError("'-e' needs a '--prev' value to evaluate.")
    if recursive:
        if prev is not None or last:
            raise click.UsageError("'--prev' and '--last' don't work with '-r'.")
        client = await obj.connect()
        res = await client.delete_tree(obj.path, nchain=obj.meta)
        if not obj.meta:
            return
        if isinstance(res, dict):
            yprint(res, stream=obj.stdout)
            return
        longer = PathLongener(obj.path)
        async for rec in res:
            _drop_transport_fields(rec)
            longer(rec)
            yprint(rec, stream=obj.stdout)
            print("---", file=obj.stdout)
        return

    kw: dict[str, Any] = {}
    if prev is not None:
        if eval_:
            from distkv.util.evaluate import literal_eval

            kw["prev"] = literal_eval(prev)
        else:
            kw["prev"] = prev
    if last:
        kw["chain"] = _chain(last)
    client = await obj.connect()
    res = await client.delete(obj.path, nchain=obj.meta, **kw)
    if obj.meta:
        yprint(res, stream=obj.stdout)


@cli.command("update")
@click.option(
    "-i", "--infile", required=True, metavar="FILE",
    help="A msgpack file of records (e.g. a save file).",
)
@click.pass_obj
async def update(obj: Any, infile: str) -> None:
    """Apply the records of a msgpack file below PATH.

    Shortened paths are expanded. A record with a value sets PATH + its
    path (as 'set' does: your converter, if any, decodes the value); one
    with a path but no value deletes that entry; others are skipped.
    """
    client = await obj.connect()
    longer = PathLongener()
    async for rec in iter_msgpack_file(infile):
        if not isinstance(rec, dict) or "path" not in rec:
            continue
        longer(rec)
        target = obj.path + tuple(rec["path"])
        if "value" in rec:
            await client.set(target, value=rec["value"])
        elif "tick" in rec:  # an update record without value: a deletion
            await client.delete(target)


# --- watching ------------------------------------------------------------------------


@cli.command("monitor")
@click.option("-s", "--state", is_flag=True, help="Print the current state first.")
@click.option("-o", "--only", is_flag=True, help="Print only this entry's values.")
@click.option("-D", "--add-date", is_flag=True, help="Add '_FIELD' dates for time stamps.")
@click.option("-i", "--ignore", multiple=True, metavar="PATH", help="Skip this subtree.")
@click.pass_obj
async def monitor(
    obj: Any, state: bool, only: bool, add_date: bool, ignore: tuple[str, ...]
) -> None:
    """Print changes below PATH as they happen (YAML documents, full paths).

    Records after the 'uptodate' marker carry 'time' and '_time'.
    """
    from distkv.util.yaml import yprint

    skip = [to_path(p) for p in ignore]
    out = obj.stdout
    live = not state
    seen = False
    client = await obj.connect()
    async with client.watch(
        obj.path, nchain=obj.meta, fetch=state, max_depth=0 if only else -1
    ) as watcher:
        async for rec in watcher:
            _drop_transport_fields(rec)
            if rec.get("state") == "uptodate":
                if only:
                    if not seen:
                        return
                    continue
                live = True
            else:
                if "path" in rec:
                    rec["path"] = full = obj.path + rec["path"]
                    if any(full[: len(s)] == s for s in skip):
                        continue
                if add_date and "value" in rec:
                    add_dates(rec["value"])
                if only:
                    if "value" in rec:
                        print(rec["value"], file=out)
                        out.flush()
                        seen = True
                    continue
            if live:
                rec["time"] = time.time()
                rec["_time"] = datetime.datetime.now().isoformat(sep=" ", timespec="milliseconds")
            yprint(rec, stream=out)
            print("---", file=out)
            if live:
                out.flush()
            seen = True
