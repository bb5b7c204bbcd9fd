"""``distkv dump …``: tools that need no server (10 §6).

``cfg`` prints the effective configuration, ``file`` shows a save/log file
as YAML, ``init`` writes an initial data file, ``yaml`` turns YAML documents
into a msgpack file. ``msg`` and ``post`` talk to the servers' broadcast
medium directly: ``msg`` prints what goes over a topic, ``post`` sends to it.
"""

from __future__ import annotations

import sys
from typing import Any

import anyio
import asyncclick as click

from distkv.command.util import iter_msgpack_file, to_path
from distkv.util.path import Path, PathLongener

__all__ = ["cli"]


@click.group(short_help="Low-level tools (no server needed).")
async def cli() -> None:
    """Low-level tools that don't need a running DistKV server."""


@cli.command("cfg")
@click.argument("path", default=":")
@click.pass_obj
async def cfg_(obj: Any, path: str) -> None:
    """Print the effective configuration below PATH (':', the default, is all of it).

    Strings are printed bare, everything else as YAML.
    """
    from distkv.util.yaml import yprint

    p = to_path(path)
    cfg = obj.cfg
    for elem in p:
        if isinstance(cfg, dict) and elem in cfg:
            cfg = cfg[elem]
        elif isinstance(cfg, list) and isinstance(elem, int) and -len(cfg) <= elem < len(cfg):
            cfg = cfg[elem]
        else:
            raise LookupError(f"Unknown config key {str(p)!r}")
    if isinstance(cfg, str):
        click.echo(cfg, file=obj.stdout)
    else:
        yprint(cfg, stream=obj.stdout)


@cli.command("file")
@click.option("-p", "--path", "expand", is_flag=True, help="Expand shortened paths.")
@click.option(
    "-f", "--filter", "filters", multiple=True, metavar="PATH",
    help="Only records at or below PATH (repeatable; implies -p).",
)
@click.argument("file")
@click.pass_obj
async def file_(obj: Any, file: str, expand: bool, filters: tuple[str, ...]) -> None:
    """Print the records of a save or log FILE as YAML documents."""
    from distkv.util.yaml import yprint

    prefixes = [to_path(f) for f in filters]
    longer = PathLongener() if expand or prefixes else None
    out = obj.stdout
    async for rec in iter_msgpack_file(file):
        if longer is not None and isinstance(rec, dict):
            longer(rec)
        if prefixes:
            p = rec.get("path") if isinstance(rec, dict) else None
            if p is None or not any(tuple(p[: len(f)]) == f for f in prefixes):
                continue
        yprint(rec, stream=out)
        print("---", file=out)


@cli.command("init")
@click.argument("node")
@click.argument("file")
async def init_(node: str, file: str) -> None:
    """Write an initial data FILE as if written by server NODE.

    'distkv server -l FILE NODE' then starts like 'distkv server -I "Initial data" NODE'.
    """
    from distkv.codec import packb

    record = {
        "chain": {"node": node, "tick": 1, "prev": None},
        "depth": 0,
        "path": [],
        "tock": 1,
        "value": "Initial data",
    }
    await anyio.Path(file).write_bytes(packb(record))


@cli.command("yaml")
@click.argument("outfile")
async def yaml_(outfile: str) -> None:
    """Read YAML documents from stdin and write them to OUTFILE as a msgpack stream."""
    from distkv.codec import packb
    from distkv.util.yaml import yload

    docs = yload(sys.stdin.read(), multi=True)
    await anyio.Path(outfile).write_bytes(b"".join(packb(d) for d in docs))


# --- the broadcast medium -------------------------------------------------------------

TOOL_NODE = "dump-tool"  # our name on the medium (for the MQTT client id)
POST_TIMEOUT = 10.0  # seconds to connect, and to send


def _msg_topic(cfg: Any, text: str) -> tuple:
    """The topic for ``dump msg``'s PATH: ':' = ROOT/update, '+NAME' = ROOT/NAME, '+' = ROOT/#."""
    root = cfg.server.get("root", (":distkv",))
    root = tuple(to_path(root) if isinstance(root, str) else root)
    path = to_path(text)
    if not path:
        return (*root, "update")
    if len(path) == 1 and isinstance(path[0], str) and path[0].startswith("+"):
        return (*root, path[0][1:] or "#")
    return tuple(str(e) for e in path)


def _post_topic(topic: Any) -> tuple:
    if isinstance(topic, str):
        topic = to_path(topic)
    if not isinstance(topic, (list, tuple)) or not topic:
        raise ValueError(f"Not a topic: {topic!r}")
    return tuple(str(e) for e in topic)


async def _backend(cfg: Any, stack: Any) -> Any:
    """The configured medium, entered into ``stack``; no broker is an error."""
    from distkv.exceptions import ServerConnectionError
    from distkv.server.backend import broker_address, connect_backend

    server_cfg = dict(cfg.server)
    server_cfg["no_broker"] = "fail"
    try:
        backend = await connect_backend(server_cfg, TOOL_NODE)
    except ServerConnectionError:
        where = broker_address(server_cfg)[0]
        raise ServerConnectionError(f"No broker answers at {where}") from None
    if hasattr(backend, "__aenter__"):
        await stack.enter_async_context(backend)
    return backend


@cli.command("msg")
@click.argument("path", default=":")
@click.pass_obj
async def msg_(obj: Any, path: str) -> None:
    """Print every message on a topic of the broadcast medium, until interrupted.

    PATH ':' (the default) is the servers' update stream, '+NAME' their
    sub-stream NAME, '+' all of them; anything else is used as the topic
    (MQTT wildcards allowed). Split messages are shown reassembled.
    """
    import time
    from contextlib import AsyncExitStack

    from distkv.codec import unpackb
    from distkv.server.backend.split import BadChunkError, Joiner
    from distkv.util.yaml import yprint

    topic = _msg_topic(obj.cfg, path)
    out = obj.stdout
    joiner = Joiner()
    async with AsyncExitStack() as stack:
        backend = await _backend(obj.cfg, stack)
        async with backend.subscribe(topic) as msgs:
            async for got, payload in msgs:
                try:
                    data = joiner.feed(unpackb(payload))
                except BadChunkError as exc:
                    data = {"_error": str(exc)}
                except Exception:
                    data = {"_raw": bytes(payload)}
                if data is None:
                    continue  # more parts to come
                rec = dict(data) if isinstance(data, dict) else {"_data": data}
                rec["_topic"] = Path.build(got)
                rec["_timestamp"] = time.time()
                yprint(rec, stream=out)
                print("---", file=out, flush=True)


@cli.command("post")
@click.argument("path", required=False)
@click.pass_obj
async def post_(obj: Any, path: str | None) -> None:
    """Publish the YAML documents on stdin to topic PATH (plain msgpack).

    A document's '_topic' key, if present, is its topic instead (and is not sent).
    """
    from contextlib import AsyncExitStack

    import msgpack

    from distkv.util.yaml import yload

    default = _post_topic(path) if path else None
    docs = [d for d in yload(sys.stdin.read(), multi=True) if d is not None]
    todo = []
    for doc in docs:
        topic = default
        if isinstance(doc, dict) and "_topic" in doc:
            doc = dict(doc)
            topic = _post_topic(doc.pop("_topic"))
        if topic is None:
            raise click.UsageError("A document has no '_topic' and no PATH was given.")
        todo.append((topic, msgpack.packb(_plain(doc), use_bin_type=True)))
    async with AsyncExitStack() as stack:
        backend = await _backend(obj.cfg, stack)
        wait = getattr(backend, "wait_connected", None)
        if wait is not None:
            try:
                with anyio.fail_after(POST_TIMEOUT):
                    await wait()
            except TimeoutError:
                raise ConnectionError(f"Cannot reach the broker within {POST_TIMEOUT}s") from None
        for topic, payload in todo:
            await backend.publish(topic, payload)
        with anyio.move_on_after(POST_TIMEOUT):  # everything out before we leave the medium
            await backend.flush()


def _plain(value: Any) -> Any:
    """``value`` with paths turned into lists, so that plain msgpack can encode it."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
