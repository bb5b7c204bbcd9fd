"""``distkv client acl …``: named ACLs below ``:n.acl`` (12 §4.2, 07).

``acl set NAME PATH -a rx`` grants letters at PATH of ACL NAME (``+rx``
adds, ``-rx`` removes, a lone ``-`` deletes the entry); ``acl get``/``dump``
read it back, ``acl test`` asks the server what an ACL says about a path,
``acl list`` names the ACLs. A user gets an ACL with
``auth user param USER acl NAME``.

Fixed against 0.65.0 (15 #34): ``get``, ``set`` and ``dump`` work, and
``set -a -`` deletes instead of complaining about the letter ``-``.
"""

from __future__ import annotations

from typing import Any

import asyncclick as click

from distkv.acl import CLI_MODES
from distkv.command.util import DictFolder, to_path

from ._meta import meta_path, meta_records

__all__ = ["cli"]


@click.group(short_help="Manage ACLs.")
async def cli() -> None:
    """Manage access control lists (the letters rwdcxena per path, '+'/'#' wildcards)."""


@cli.command("list")
@click.pass_obj
async def list_(obj: Any) -> None:
    """List the ACLs' names."""
    from distkv.util.yaml import yprint

    client = await obj.connect()
    res = await client._request("enum_internal", path=("acl",), empty=True)
    yprint(res if obj.meta else list(res.result), stream=obj.stdout)


@cli.command()
@click.option(
    "-d", "--as-dict", metavar="KEY",
    help="Print one nested mapping, values under KEY (customarily '_').",
)
@click.argument("name")
@click.argument("path")
@click.pass_obj
async def dump(obj: Any, name: str, path: str, as_dict: str | None) -> None:
    """Print ACL NAME below PATH (':' for all of it)."""
    from distkv.util.yaml import yprint

    client = await obj.connect()
    folder = DictFolder(as_dict) if as_dict is not None else None
    async for rec in meta_records(
        client, meta_path(path, "acl", name, nonempty=False), nchain=obj.meta
    ):
        rec.pop("seq", None)
        rel = rec.pop("path")
        item = rec if obj.meta else rec.get("value")
        if folder is not None:
            folder.add(rel, item)
        else:
            yprint([{rel: item}], stream=obj.stdout)
    if folder is not None:
        yprint(folder.result(), stream=obj.stdout)


@cli.command()
@click.argument("name")
@click.argument("path")
@click.pass_obj
async def get(obj: Any, name: str, path: str) -> None:
    """Print the letters of ACL NAME at PATH (not what applies there: see 'acl test')."""
    from distkv.util.yaml import yprint

    client = await obj.connect()
    res = await client._request("get_internal", path=meta_path(path, "acl", name), nchain=obj.meta)
    if obj.meta:
        yprint(res, stream=obj.stdout)
    elif "value" in res:
        yprint(res.value, stream=obj.stdout)
    elif obj.debug:
        click.echo(f"ACL {name} has no entry at {path}", err=True)


def new_modes(old: str, spec: str) -> str | None:
    """The letters after applying ``spec`` (``+xy`` add, ``-xy`` remove, ``xy`` replace)
    to ``old``; None for a lone ``-`` (delete the entry)."""
    if spec == "-":
        return None
    op = spec[0] if spec[:1] in ("+", "-") else "="
    letters = spec[1:] if op != "=" else spec
    bad = sorted(set(letters) - set(CLI_MODES))
    if bad:
        raise click.UsageError(
            f"Unknown ACL letters {''.join(bad)!r}: use {CLI_MODES!r}, '+…'/'-…' or '-'."
        )
    if op == "+":
        return old + "".join(c for c in dict.fromkeys(letters) if c not in old)
    if op == "-":
        return "".join(c for c in old if c not in letters)
    return "".join(dict.fromkeys(letters))


@cli.command("set")
@click.option(
    "-a", "--acl", "spec", default="+x", show_default=True,
    help="Letters: '+xy' adds, '-xy' removes, 'xy' replaces, a lone '-' deletes the entry.",
)
@click.argument("name")
@click.argument("path")
@click.pass_obj
async def set_(obj: Any, name: str, path: str, spec: str) -> None:
    """Change the letters of ACL NAME at PATH; prints the old and new letters."""
    from distkv.util.yaml import yprint

    if not spec:
        raise click.UsageError("'-a' needs letters, '+…', '-…' or '-'.")
    target = meta_path(path, "acl", name)
    client = await obj.connect()
    res = await client._request("get_internal", path=target, nchain=3 if obj.meta else 1)
    old = res.get("value", "")
    if not isinstance(old, str):
        old = ""
    new = new_modes(old, spec)
    chain = res.get("chain")
    if new is None:
        res = await client._request("delete_internal", path=target, chain=chain)
        new = "-"
    else:
        res = await client._request("set_internal", path=target, value=new, chain=chain)
    out: dict = {"old": old, "new": new}
    if obj.meta:
        out["chain"] = res.get("chain")
        out["tock"] = res.get("tock")
    yprint(out, stream=obj.stdout)


@cli.command()
@click.option("-m", "--mode", help="The letter to test (with -a).")
@click.option("-a", "--acl", "acl_name", metavar="NAME", help="Test this ACL. Default: yours.")
@click.argument("path")
@click.pass_obj
async def test(obj: Any, path: str, mode: str | None, acl_name: str | None) -> None:
    """What an ACL says about PATH: '-' (refused), '+', or the letters that apply."""
    from distkv.util.yaml import yprint

    p = to_path(path)
    if not p:
        raise click.UsageError("You need a non-empty path.")
    if mode is not None and (len(mode) != 1 or mode not in CLI_MODES + "W"):
        raise click.UsageError(f"The mode must be one of the letters {CLI_MODES!r}.")
    kw: dict = {}
    if mode is not None:
        kw["mode"] = mode
    if acl_name is not None:
        kw["acl"] = acl_name
    client = await obj.connect()
    res = await client._request("test_acl", path=p, **kw)
    if obj.meta:
        yprint(res, stream=obj.stdout)
    elif isinstance(res.access, bool):
        print("+" if res.access else "-", file=obj.stdout)
    else:
        print(res.access, file=obj.stdout)
