"""``distkv client codec …``: codecs below ``:n.codec`` and converter groups (12 §4.5, 08).

The tutorial's example::

    distkv client codec set -i '"12.5"' 12.5 -o 13.25 '"13.25"' float.str
    Enter the Python script to encode 'value'; end with an empty line.
    return str(value)

    Enter the Python script to decode 'value'; end with an empty line.
    return float(value)

    distkv client codec convert -c float.str floatval 'monitor.#.value'
    distkv client auth user param joe conv floatval

Scripts come from ``-e``/``-d`` files, the ``-D`` YAML file, or standard
input (encoder first, each ending at an empty line). Example values are
Python literals.

Fixed against 0.65.0: ``convert`` confirms what it did instead of printing
a tock (15 #39); ``get -e/-d`` take the scripts out of the record; examples
are evaluated as literals, never as code.
"""

from __future__ import annotations

from typing import IO, Any

import asyncclick as click

from distkv.command.util import to_path
from distkv.util.path import P, Path

from ._meta import (
    get_record,
    link_target,
    literal,
    meta_path,
    meta_records,
    print_record,
    read_link,
    read_record_file,
    read_script,
    store_record,
    write_link,
)

__all__ = ["cli"]


@click.group(short_help="Manage codecs and converters.")
async def cli() -> None:
    """Manage codecs (value conversions) and converters (which codec applies where)."""


@cli.command()
@click.option("-e", "--encode", type=click.File("w", lazy=True), help="Write the encoder here.")
@click.option("-d", "--decode", type=click.File("w", lazy=True), help="Write the decoder here.")
@click.option("-s", "--script", type=click.File("w", lazy=True), help="Write the rest here.")
@click.argument("path")
@click.pass_obj
async def get(obj: Any, path: str, encode: IO[str] | None, decode: IO[str] | None,
              script: IO[str] | None) -> None:
    """Print codec PATH (its scripts can go to files instead)."""
    res, value = await get_record(obj, meta_path(path, "codec"), f"There is no codec {path}.")
    if encode is not None and value.get("encode") is not None:
        encode.write(value.pop("encode"))
    if decode is not None and value.get("decode") is not None:
        decode.write(value.pop("decode"))
    print_record(obj, res, value, script)


@cli.command("list")
@click.argument("path", default=":")
@click.pass_obj
async def list_(obj: Any, path: str) -> None:
    """List the codecs below PATH (default: all), one per line."""
    client = await obj.connect()
    async for rec in meta_records(client, meta_path(path, "codec", nonempty=False),
                                  nchain=obj.meta):
        print(" ".join(str(x) for x in rec["path"]), file=obj.stdout)


def _pairs(pairs: tuple[tuple[str, str], ...], what: str) -> list[tuple[Any, Any]]:
    return [(literal(a, what), literal(b, what)) for a, b in pairs]


@cli.command("set")
@click.option("-e", "--encode", type=click.File("r"), help="The encoder script.")
@click.option("-d", "--decode", type=click.File("r"), help="The decoder script.")
@click.option("-D", "--data", type=click.File("r"), help="Start from this YAML file.")
@click.option(
    "-i", "--in", "in_", nargs=2, multiple=True, metavar="SRC DST",
    help="Decoding example: the client's value SRC is stored as DST.",
)
@click.option(
    "-o", "--out", nargs=2, multiple=True, metavar="SRC DST",
    help="Encoding example: the stored value SRC is sent as DST.",
)
@click.argument("path")
@click.pass_obj
async def set_(obj: Any, path: str, encode: IO[str] | None, decode: IO[str] | None,
               data: IO[str] | None, in_: tuple[tuple[str, str], ...],
               out: tuple[tuple[str, str], ...]) -> None:
    """Define codec PATH: scripts (functions of 'value') and examples for both directions."""
    rec, chain = read_record_file(data, "-D")
    for key, f in (("encode", encode), ("decode", decode)):
        if f is not None:
            if key in rec:
                raise click.UsageError(f"The -D file already has an {key} script.")
            rec[key] = f.read()
    for key in ("encode", "decode"):
        if key not in rec:
            rec[key] = read_script(f"{key} 'value'", until_blank=True)
            if not rec[key].strip():
                raise click.UsageError(
                    f"The {key}r script is empty. On standard input, the encoder comes"
                    " first, then an empty line, then the decoder.")
    if in_:
        rec["in"] = [*rec.get("in", ()), *_pairs(in_, "'-i'")]
    if out:
        rec["out"] = [*rec.get("out", ()), *_pairs(out, "'-o'")]
    if rec["decode"] is not None and not rec.get("in"):
        raise click.UsageError("The decoder needs examples (-i).")
    if rec["encode"] is not None and not rec.get("out"):
        raise click.UsageError("The encoder needs examples (-o).")
    await store_record(obj, meta_path(path, "codec"), rec, chain)


@cli.command()
@click.option("-c", "--codec", metavar="CODEC", help="Use codec CODEC (a path, e.g. float.str).")
@click.option("-d", "--delete", is_flag=True, help="Remove this conversion.")
@click.option("-l", "--list", "list_this", is_flag=True,
              help="List group NAME's conversions ('NAME -' lists the groups).")
@click.argument("name")
@click.argument("path", default=":")
@click.pass_obj
async def convert(obj: Any, name: str, path: str, codec: str | None, delete: bool,
                  list_this: bool) -> None:
    """Convert values at PATH with a codec for users of converter group NAME.

    Without -c/-d/-l, print the codec that group NAME uses at PATH.
    """
    p = to_path(path)
    if sum(bool(x) for x in (codec, delete, list_this)) > 1:
        raise click.UsageError("Use only one of -c, -d and -l.")
    client = await obj.connect()
    if list_this:
        if name == "-":
            if p:
                raise click.UsageError("You can't use a path when listing the groups.")
            res = await client._request("enum_internal", path=("conv",), empty=True)
            for r in res.result:
                print(r, file=obj.stdout)
            return
        async for rec in meta_records(client, ("conv", name, *p), nchain=obj.meta):
            print(f"{Path.build(rec['path'])} : {link_target(rec.get('value'), 'codec')}",
                  file=obj.stdout)
        return
    target = meta_path(path, "conv", name)
    if codec or delete:
        await write_link(obj, target, "codec", None if delete else codec)
        if not obj.meta and obj.debug > 0:
            done = "removed" if delete else P(codec)
            print(f"{name} {path}: {done}", file=obj.stdout)
        return
    value = await read_link(obj, target, f"Group {name} converts nothing at {path}.")
    if value is not None:
        print(link_target(value, "codec"), file=obj.stdout)
