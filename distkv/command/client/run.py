"""``distkv client run [-n NODE|-] [-g GROUP] VERB …``: jobs and the runner (12 §4.8).

Without ``-n`` the jobs run on any one runner of GROUP; ``-n NODE`` means
jobs for that node only, ``-n -`` jobs that every runner of GROUP runs.
GROUP defaults to ``default``. The verbs:

* ``all`` — be a runner of the group (runs until stopped);
* ``set PATH``, ``get PATH``, ``list [PATH]``, ``state PATH``, ``path PATH``,
  ``delete PATH`` — job records and their states (PATH is below the group);
* ``info`` — the groups (``-g -``: the nodes that have single-node jobs);
* ``monitor`` — the runners' keepalive messages.

This is the spelling of the tutorials; ``distkv client job …``
(:mod:`.job`) offers the same under 0.65's names (``job run``,
``job at PATH set`` …). The verbs are defined once, in :data:`VERBS`.
"""

from __future__ import annotations

import datetime
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import asyncclick as click

from distkv.command.util import DictFolder, add_dates, attr_args, build_value, to_path
from distkv.util import NotGiven
from distkv.util.path import P, Path

__all__ = ["cli", "VERBS", "Verb", "make_command", "group_options"]


# --- the group ----------------------------------------------------------------------------


def group_options(fn: Callable) -> Callable:
    """``-n NODE`` and ``-g GROUP``, for ``run`` and ``job``."""
    fn = click.option(
        "-g", "--group", metavar="GROUP",
        help="The runner group (default: 'default'; '-' with 'info': list the nodes).",
    )(fn)
    fn = click.option(
        "-n", "--node", metavar="NODE",
        help="Jobs for this node only; '-': jobs that every runner runs. "
        "Default: jobs for any one runner.",
    )(fn)
    return fn


def setup_group(ctx: click.Context, node: str | None, group: str | None) -> None:
    """Remember ``-n``/``-g`` for the verbs."""
    from distkv.runner import DEFAULT_GROUP

    if group == "-" and ctx.invoked_subcommand not in ("info", None):
        raise click.UsageError("'-g -' only works with 'info'.")
    if node == "":
        raise click.UsageError("'-n' needs a node name (or '-').")
    ctx.obj.run_node = node
    ctx.obj.run_group = group or DEFAULT_GROUP


@click.group(short_help="Run stored code: jobs and runners.")
@group_options
@click.pass_context
async def cli(ctx: click.Context, node: str | None, group: str | None) -> None:
    """Jobs: stored code that runners start on any, one or all nodes.

    'run set -c CODE -t 0 PATH' makes a job that runs once, now; 'run all'
    is the runner that runs it.
    """
    setup_group(ctx, node, group)


# --- helpers -----------------------------------------------------------------------------


@dataclass(slots=True)
class _Where:
    """The paths of the selected group."""

    kind: str
    jobs: Path
    states: Path  # for all-node groups: the parent of the runners' state subtrees


async def _where(obj: Any) -> tuple[Any, _Where]:
    from distkv.runner import job_prefix, kind_of, state_prefix

    client = await obj.connect()
    rcfg = client.config["runner"]
    node, group = obj.run_node, obj.run_group
    return client, _Where(kind_of(node), job_prefix(rcfg, node, group),
                          state_prefix(rcfg, node, group))


def _job_path(text: str | None) -> Path:
    return to_path(text) if text else Path()


async def _states(client: Any, where: _Where, below: Path | None = None) -> dict[Path, Any]:
    """Job path -> state (all-node groups: job path -> {runner: state}), below ``below``."""
    below = below or Path()
    res: dict[Path, Any] = {}
    if where.kind != "all":
        async for rec in client.get_tree(where.states + below):
            if "value" in rec:
                res[below + rec["path"]] = rec["value"]
        return res
    async for rec in client.get_tree(where.states):
        path = rec["path"]
        if "value" not in rec or len(path) < 2:
            continue
        rel = Path.build(path[1:])
        if rel[: len(below)] == below:
            res.setdefault(rel, {})[path[0]] = rec["value"]
    return res


def _iso(t: float) -> str:
    return datetime.datetime.fromtimestamp(t).isoformat(sep="T", timespec="seconds")


def _status(job: Mapping, state: Mapping | None) -> str:
    """One word: what the job does now or next."""
    from distkv.runner import next_start

    state = state or {}
    if state.get("node") is not None:
        return f"running({state['node']})"
    t, reason = next_start(job, state)
    word = reason.replace(" ", "-")
    if t is not None:
        word = f"{word}@{_iso(t)}"
    failures = state.get("backoff")
    if isinstance(failures, int) and failures > 0:
        word += f",failed({failures})"
    return word


def _out(obj: Any, item: Any) -> None:
    from distkv.util.yaml import yprint

    yprint(item, stream=obj.stdout)
    print("---", file=obj.stdout)


# --- the verbs -------------------------------------------------------------------------------


async def do_all(obj: Any, path: str | None, nodes: int) -> None:
    """Be a runner of the group until SIGTERM/SIGINT."""
    from distkv.runner import job_prefix, runner_class
    from distkv.server import systemd

    client = await obj.connect()
    rcfg = client.config["runner"]
    cls = runner_class(obj.run_node)
    root = cls(client, job_prefix(rcfg, obj.run_node, obj.run_group), cfg=rcfg, nodes=nodes)
    async with anyio.create_task_group() as tg:
        tg.start_soon(_stop_on_signal, tg.cancel_scope)
        async with root.run():
            systemd.notify("READY=1")
            interval = systemd.watchdog_interval()
            if interval:
                tg.start_soon(systemd.run_watchdog, interval)
            await anyio.sleep_forever()


async def _stop_on_signal(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            scope.cancel()
            return


async def do_list(obj: Any, path: str | None, state: bool, state_only: bool, table: bool,
                  as_dict: str | None) -> None:
    """List the jobs at and below PATH (-s: with their states)."""
    client, where = await _where(obj)
    below = _job_path(path)
    states = await _states(client, where, below) if (state or state_only or table) else {}
    folder = DictFolder(as_dict) if as_dict is not None else None
    async for rec in client.get_tree(where.jobs + below):
        value = rec.get("value")
        if not isinstance(value, Mapping):
            continue
        rel = below + rec["path"]
        st = states.get(rel)
        if table:
            if where.kind == "all":
                status = " ".join(f"{n}:{_status(value, s)}" for n, s in sorted((st or {}).items()))
                status = status or _status(value, None)
            else:
                status = _status(value, st)
            click.echo(f"{rel} {P(value.get('code') or ())} {status}", file=obj.stdout)
            continue
        item: dict[str, Any] = {}
        if not state_only:
            item["value"] = dict(value)
        if state or state_only:
            item["state"] = st
        add_dates(item)
        if folder is not None:
            folder.add(rel, item)
        else:
            _out(obj, {"path": rel, **item})
    if folder is not None:
        from distkv.util.yaml import yprint

        yprint(folder.result(), stream=obj.stdout)


async def do_get(obj: Any, path: str | None, state: bool) -> None:
    """Print the job at PATH (-s: with its state)."""
    from distkv.util.yaml import yprint

    client, where = await _where(obj)
    rel = _job_path(path)
    res = await client.get(where.jobs + rel, nchain=obj.meta)
    if "value" not in res:
        raise LookupError(f"No job at {rel}")
    item = dict(res) if obj.meta else dict(res["value"])
    item.pop("seq", None)
    if state:
        item["state"] = (await _states(client, where, rel)).get(rel)
    add_dates(item)
    yprint(item, stream=obj.stdout)


async def do_state(obj: Any, path: str | None, result: bool) -> None:
    """Print the state of the job at PATH (-r: only its result)."""
    from distkv.util.yaml import yprint

    client, where = await _where(obj)
    rel = _job_path(path)
    st = (await _states(client, where, rel)).get(rel)
    if st is None:
        raise LookupError(f"No state for {rel}")
    if result:
        if where.kind == "all":
            yprint({n: s.get("result") for n, s in st.items()}, stream=obj.stdout)
        else:
            yprint(st.get("result"), stream=obj.stdout)
        return
    st = dict(st)
    add_dates(st)
    yprint(st, stream=obj.stdout)


async def do_path(obj: Any, path: str | None) -> None:
    """Print where the job at PATH and its state are stored."""
    from distkv.util.yaml import yprint

    client, where = await _where(obj)
    rel = _job_path(path)
    if where.kind == "all":
        nodes = sorted((await _states(client, where, rel)).get(rel) or {})
        state: Any = {n: where.states + (n, *rel) for n in nodes}
    else:
        state = where.states + rel
    yprint({"command": where.jobs + rel, "state": state}, stream=obj.stdout)


def _target(text: str) -> float | None:
    if text == "-":
        return None
    if text == "now":
        return time.time()
    try:
        return time.time() + float(text)
    except ValueError:
        raise click.BadParameter(f"{text!r}: seconds from now, 'now' or '-'",
                                 param_hint="'-t'") from None


async def do_set(
    obj: Any, path: str | None, code: str | None, copy: str | None, time_: str | None,
    repeat: float | None, ok: float | None, backoff: float | None, delay: float | None,
    info: str | None, vars_: Any, eval_: Any, path_: Any,
) -> None:
    """Create or change the job at PATH."""
    from distkv.util.yaml import yprint

    client, where = await _where(obj)
    rel = _job_path(path)
    if not rel:
        raise click.UsageError("The job needs a path.")
    full = where.jobs + rel
    res = await client.get(full, nchain=2)
    old = res.get("value", NotGiven)
    rec: dict[str, Any] = dict(old) if isinstance(old, Mapping) else {}
    if copy is not None:
        src = await client.get(where.jobs + to_path(copy))
        if not isinstance(src.get("value"), Mapping):
            raise LookupError(f"No job at {copy} to copy")
        rec.update(src["value"])
    if code is not None:
        rec["code"] = to_path(code)
    if not rec.get("code"):
        raise click.UsageError("A new job needs its code (-c PATH).")
    if time_ is not None:
        rec["target"] = _target(time_)
    for key, value in (("repeat", repeat), ("ok_after", ok), ("backoff", backoff),
                       ("delay", delay)):
        if value is not None:
            rec[key] = value
    if info is not None:
        if info:
            rec["info"] = info
        else:
            rec.pop("info", None)
    data = build_value(rec.get("data", NotGiven), vars_, eval_, path_)
    if data is NotGiven:
        rec.pop("data", None)
    else:
        rec["data"] = data
    chain = res.get("chain") if old is not NotGiven else None
    res = await client.set(full, rec, chain=chain, nchain=obj.meta)
    if obj.meta:
        res.pop("seq", None)
        yprint(res, stream=obj.stdout)


async def do_delete(obj: Any, path: str | None, force: bool) -> None:
    """Delete the job at PATH and its state (not while it runs, unless -f)."""
    client, where = await _where(obj)
    rel = _job_path(path)
    if not rel:
        raise click.UsageError("Which job? It needs a path.")
    res = await client.get(where.jobs + rel, nchain=2)
    if "value" not in res:
        raise LookupError(f"No job at {rel}")
    st = (await _states(client, where, rel)).get(rel)
    per_node = st if where.kind == "all" else ({None: st} if st else {})
    running = sorted(str(s["node"]) for s in (per_node or {}).values()
                     if isinstance(s, Mapping) and s.get("node") is not None)
    if running and not force:
        raise click.ClickException(
            f"Job {rel} is running on {', '.join(running)}. Use --force to delete it anyway."
        )
    await client.delete(where.jobs + rel, chain=res.get("chain"))
    for n in per_node or {}:
        spath = where.states + ((n, *rel) if n is not None else rel)
        await client.delete(spath)
    if obj.debug:
        click.echo("Deleted.", file=obj.stdout)


async def do_info(obj: Any, path: str | None) -> None:
    """List the groups (with '-g -': the nodes that have single-node jobs)."""
    client = await obj.connect()
    rcfg = client.config["runner"]
    sub = rcfg.get("sub") or {}
    base = P(rcfg["prefix"])
    node = obj.run_node
    if obj.run_group == "-":
        if node is not None:
            raise click.UsageError("'-g -' lists the nodes: it can't be used with -n.")
        where = base | sub.get("single", "at")
    elif node is None:
        where = base | sub.get("group", "any")
    elif node == "-":
        where = base | sub.get("all", "all")
    else:
        where = base + (sub.get("single", "at"), node)
    try:
        names = await client.list(where)
    except Exception as exc:  # upstream's servers error on a missing path
        if "KeyError" not in str(exc):
            raise
        names = []
    for name in sorted(names, key=str):
        click.echo(str(name), file=obj.stdout)


async def do_monitor(obj: Any, path: str | None) -> None:
    """Print the runners' keepalive messages as they come."""
    client = await obj.connect()
    async with client.msg_monitor("run") as mon:
        async for rec in mon:
            data = rec.get("data", rec.get("raw"))
            if isinstance(data, Mapping):
                data = dict(data)
                add_dates(data)
            _out(obj, data)


# --- commands from the verbs ----------------------------------------------------------------


@dataclass(slots=True)
class Verb:
    """One verb: its implementation ``fn(obj, path, **options)`` and its options."""

    fn: Callable[..., Any]
    options: list[Callable] = field(default_factory=list)
    path: str | None = "required"  # "required", "optional" or None (no PATH)
    short_help: str | None = None


VERBS: dict[str, Verb] = {
    "all": Verb(do_all, [
        click.option("-n", "--nodes", type=int, default=0, metavar="N",
                     help="The group's expected size (for the jobs' state messages)."),
    ], path=None, short_help="Be a runner (runs until stopped)."),
    "list": Verb(do_list, [
        click.option("-s", "--state", is_flag=True, help="Add each job's state."),
        click.option("-S", "--state-only", is_flag=True, help="Only the states."),
        click.option("-t", "--table", is_flag=True, help="One line per job: path, code, status."),
        click.option("-d", "--as-dict", metavar="KEY",
                     help="One nested mapping, each job under KEY."),
    ], path="optional", short_help="List the jobs."),
    "get": Verb(do_get, [
        click.option("-s", "--state", is_flag=True, help="Add the job's state."),
    ], short_help="Print a job."),
    "state": Verb(do_state, [
        click.option("-r", "--result", is_flag=True, help="Only the result of the last run."),
    ], short_help="Print a job's state."),
    "path": Verb(do_path, [], short_help="Where a job and its state are stored."),
    "set": Verb(do_set, [
        click.option("-c", "--code", metavar="PATH", help="The code to run (below codes.prefix)."),
        click.option("-C", "--copy", metavar="PATH", help="Start from a copy of this job."),
        click.option("-t", "--time", "time_", metavar="SECONDS",
                     help="Start it this many seconds from now ('now', 0: at once; '-': never)."),
        click.option("-r", "--repeat", type=float, metavar="SECONDS",
                     help="After a successful run, run again this much later (0: don't)."),
        click.option("-k", "--ok", type=float, metavar="SECONDS",
                     help="A run that lasts this long counts as healthy (its error is cleared)."),
        click.option("-b", "--backoff", type=float, metavar="FACTOR",
                     help="Retry after delay·FACTOR^failures (default 1.1)."),
        click.option("-d", "--delay", type=float, metavar="SECONDS",
                     help="Base delay before retrying a failed run (default 100)."),
        click.option("-i", "--info", metavar="TEXT", help="A description ('' removes it)."),
        attr_args,
    ], short_help="Create or change a job."),
    "delete": Verb(do_delete, [
        click.option("-f", "--force", is_flag=True, help="Even while it runs."),
    ], short_help="Delete a job."),
    "info": Verb(do_info, [], path=None, short_help="List the groups."),
    "monitor": Verb(do_monitor, [], path=None, short_help="Show the runners' keepalives."),
}


def make_command(name: str, verb: Verb, *, path_from_obj: bool = False) -> click.Command:
    """A click command for ``verb``; PATH is an argument, or ``obj.job_path``."""

    async def command(**kw: Any) -> None:
        ctx = click.get_current_context()
        obj = ctx.obj
        path = obj.get("job_path") if path_from_obj else kw.pop("path", None)
        if verb.path == "required" and not path:
            raise click.UsageError("This needs the path of a job.")
        await verb.fn(obj, path, **kw)

    command.__doc__ = verb.fn.__doc__
    cmd: Any = command
    for opt in reversed(verb.options):
        cmd = opt(cmd)
    if verb.path is not None and not path_from_obj:
        cmd = click.argument("path", required=verb.path == "required")(cmd)
    return click.command(name, short_help=verb.short_help)(cmd)


for _name, _verb in VERBS.items():
    cli.add_command(make_command(_name, _verb))
