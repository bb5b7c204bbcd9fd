"""``distkv client internal …`` (12 §4.7): a server's bookkeeping.

``state`` shows node ticks and tick sets, ``dump`` the meta tree, ``get``
the entry holding one node's tick, ``enum`` a node's ticks, ``kill`` drops
a node, ``mark`` declares ticks superseded or deleted, and ``deleter``
edits the list of nodes that purge deleted entries (``:n.actor.del``).
"""

from __future__ import annotations

from typing import Any

import asyncclick as click

from distkv.command.util import to_path

__all__ = ["cli"]

DELETER_PATH = ("actor", "del")
_STATE_ALL = ("nodes", "deleted", "missing", "remote_missing", "present", "superseded")


@click.group(short_help="Inspect and adjust a server's internal state.")
async def cli() -> None:
    """Inspect and adjust the internal state of a DistKV server."""


def _print(obj: Any, data: Any) -> None:
    from distkv.util.yaml import yprint

    if isinstance(data, dict):
        data.pop("seq", None)
    yprint(data, stream=obj.stdout)


@cli.command()
@click.option("-n", "--nodes", is_flag=True, help="Known nodes and their current tick.")
@click.option("-d", "--deleted", is_flag=True, help="Ticks whose entries have been purged.")
@click.option("-m", "--missing", is_flag=True, help="Ticks seen nowhere yet.")
@click.option("-r", "--remote-missing", is_flag=True, help="Missing ticks others asked for.")
@click.option("-p", "--present", is_flag=True, help="Ticks that some entry holds.")
@click.option("-s", "--superseded", is_flag=True, help="Ticks replaced by later changes.")
@click.option("-k", "--hidden", is_flag=True, hidden=True, help="Same as -s.")
@click.option("-D", "--debug", is_flag=True, help="Add the server's debug info.")
@click.option("--debugger", is_flag=True, help="Ask the server to start a debugger (ignored).")
@click.option("-a", "--all", "all_", is_flag=True, help="All of -n -d -m -r -p -s.")
@click.pass_context
async def state(ctx: click.Context, hidden: bool, all_: bool, **flags: bool) -> None:
    """Print the server's node ticks and tick sets (range lists: [begin, end))."""
    if hidden:
        flags["superseded"] = True
    if all_:
        flags.update(dict.fromkeys(_STATE_ALL, True))
    client = await ctx.obj.connect()
    res = await client._request("get_state", iter=False, **flags)
    if "known" in res:
        res["superseded"] = res.pop("known")
    _print(ctx.obj, res)


@cli.command()
@click.argument("path", default=":")
@click.pass_context
async def dump(ctx: click.Context, path: str) -> None:
    """Print the meta tree below PATH as one nested mapping (values under '_')."""
    obj = ctx.obj
    client = await ctx.obj.connect()
    res = await client._request(
        "get_tree_internal", path=to_path(path), iter=True, nchain=obj.meta
    )
    from distkv.util.path import PathLongener

    longer = PathLongener()  # the records come with shortened paths
    tree: dict = {}
    async for rec in res:
        longer(rec)
        rec.pop("seq", None)
        node = tree
        for elem in rec.pop("path", ()):
            node = node.setdefault(elem, {})
        node["_"] = rec if obj.meta else rec.get("value")
    _print(obj, tree)


@cli.command()
@click.argument("node")
@click.argument("tick", type=int)
@click.pass_context
async def get(ctx: click.Context, node: str, tick: int) -> None:
    """Print the value of the entry that holds NODE's TICK (-m: the whole record)."""
    obj = ctx.obj
    client = await obj.connect()
    try:
        res = await client._request("get_value", node=node, tick=tick, nchain=99, iter=False)
    except KeyError:
        raise LookupError(f"No entry holds tick {tick} of node {node!r}") from None
    if not obj.meta:
        res = res.get("value")
    _print(obj, res)


@cli.command()
@click.option("-n", "--num", type=int, default=0, help="At most this many ticks (0: all).")
@click.option("-c", "--current", is_flag=True, help="Only entries NODE changed last.")
@click.option(
    "-C", "--copy", is_flag=True,
    help="Rewrite the entries NODE changed last, so that this server owns them.",
)
@click.argument("node")
@click.pass_context
async def enum(ctx: click.Context, node: str, num: int, current: bool, copy: bool) -> None:
    """Print the ticks of NODE that entries still hold (with paths if -vv)."""
    obj = ctx.obj
    client = await obj.connect()
    res = await client._request("enum_node", node=node, max=num, current=current, iter=False)
    ticks = res["result"]
    verbose = obj.get("debug", 1) > 1
    out = []
    for tick in ticks:
        if not (copy or verbose):
            out.append(tick)
            continue
        rec = await client._request("get_value", node=node, tick=tick, nchain=3, iter=False)
        out.append({"tick": tick, "path": rec["path"]} if verbose else tick)
        if copy and rec.get("chain", {}).get("node") == node:
            await client.set(rec["path"], rec.get("value"), chain=rec["chain"])
    _print(obj, out)


@cli.command()
@click.argument("node")
@click.pass_context
async def kill(ctx: click.Context, node: str) -> None:
    """Forget NODE (refused while it heads an entry) and tell the other servers."""
    obj = ctx.obj
    client = await obj.connect()
    res = await client._request("kill_node", node=node, iter=False)
    if obj.meta:
        _print(obj, res)


@cli.command()
@click.option("-d", "--deleted", is_flag=True, help="Mark as deleted, not superseded.")
@click.option("-n", "--node", "source", default="?", help="Sender name (the server overrides it).")
@click.option("-b", "--broadcast", is_flag=True, help="Also send the marks to all servers.")
@click.argument("node")
@click.argument("ticks", nargs=-1, type=int)
@click.pass_context
async def mark(
    ctx: click.Context, node: str, ticks: tuple[int, ...], deleted: bool, source: str,
    broadcast: bool,
) -> None:
    """Mark NODE's TICKS as superseded (or deleted); print the resulting state.

    Without TICKS, NODE's missing ticks are marked; NODE "" marks every missing tick.
    """
    from distkv.core import RangeSet

    obj = ctx.obj
    client = await obj.connect()
    if ticks:
        marks = {node: RangeSet(ticks).to_wire()}
    else:
        missing = (await client._request("get_state", missing=True, iter=False)).get(
            "missing", {}
        )
        if node == "":
            marks = dict(missing)
        elif node in missing:
            marks = {node: missing[node]}
        else:
            raise LookupError(f"Node {node!r} has no missing ticks")
    msg = {"deleted" if deleted else "superseded": marks, "node": source, "tick": 0}
    await client._request("fake_info", iter=False, **msg)
    if broadcast:
        await client._request("fake_info_send", iter=False, **msg)
    res = await client._request("get_state", nodes=True, known=True, deleted=True, iter=False)
    _print(obj, res)


@cli.command()
@click.option("-d", "--delete", is_flag=True, help="Remove the NODES (none: clear the list).")
@click.argument("nodes", nargs=-1)
@click.pass_context
async def deleter(ctx: click.Context, nodes: tuple[str, ...], delete: bool) -> None:
    """Show or change the nodes that together purge deleted entries.

    All of them must be online for the clean-up to run.
    """
    obj = ctx.obj
    client = await obj.connect()
    res = await client._request("get_internal", path=DELETER_PATH, nchain=3, iter=False)
    value = res.get("value")
    if not delete and not nodes:
        _print(obj, res if obj.meta else value)
        return
    have = set((value or {}).get("nodes", ()))
    if delete:
        have = have - set(nodes) if nodes else set()
    else:
        have |= set(nodes)
    value = {"nodes": sorted(have)}
    res = await client._request(
        "set_internal", path=DELETER_PATH, value=value, chain=res.get("chain"), iter=False,
        nchain=3 if obj.meta else 0,
    )
    _print(obj, res if obj.meta else value)
