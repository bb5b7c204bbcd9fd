"""``distkv client …``: the commands that talk to a server.

The group reads ``-h/-p/-a/-m`` and prepares the connection; it is opened
lazily by the first ``await ctx.obj.connect()`` of a subcommand (so
``--help`` never needs a server) and closed when the command ends. After
that, ``ctx.obj.client`` is the :class:`distkv.client.Client`.

Every module in this package is a subcommand (its ``cli``), as is
``distkv_ext.<name>.client`` of an installed extension.
"""

from __future__ import annotations

import copy
from typing import Any

import asyncclick as click

from distkv.command.util import LazyGroup, merge_ext_config, primary_exception
from distkv.exceptions import ServerConnectionError

__all__ = ["cli"]

METADATA_NCHAIN = 3  # chain links requested (and printed) with -m


@click.group(cls=LazyGroup, package=__name__, ext_sub="client")
@click.option("-h", "--host", metavar="HOST", help="Server host. Default: config connect.host.")
@click.option(
    "-p", "--port", type=int, metavar="PORT", help="Server port. Default: config connect.port."
)
@click.option(
    "-a", "--auth", metavar="AUTH",
    help="Auth parameters, e.g. 'password name=joe password?'. Default: none.",
)
@click.option("-m", "--metadata", is_flag=True, help="Request and print metadata (chain, tock).")
@click.pass_context
async def cli(
    ctx: click.Context, host: str | None, port: int | None, auth: str | None, metadata: bool
) -> None:
    """Talk to a DistKV server."""
    obj = ctx.obj
    cfg = copy.deepcopy(obj.cfg)
    conn = cfg.setdefault("connect", {})
    if host is not None:
        conn["host"] = host
    if port is not None:
        conn["port"] = port
    if auth is not None:
        conn["auth"] = auth
    if ctx.invoked_subcommand and ctx.command.is_extension(ctx.invoked_subcommand):
        merge_ext_config(cfg, ctx.invoked_subcommand)
    obj.cfg = cfg
    obj.auth = auth
    obj.meta = METADATA_NCHAIN if metadata else 0

    async def connect() -> Any:
        """Open the connection (once); it closes when the ``client`` command ends."""
        client = obj.get("client")
        if client is None:
            client = obj.client = await _open(ctx, cfg)
        return client

    obj.connect = connect


async def _open(ctx: click.Context, cfg: dict) -> Any:
    from distkv.client import open_client

    where = f"{cfg['connect'].get('host')}:{cfg['connect'].get('port')}"
    try:
        return await ctx.with_async_resource(open_client(**cfg))
    except BaseException as exc:
        leaf = primary_exception(exc)
        if not isinstance(leaf, (OSError, ServerConnectionError)):
            raise
        if where in str(leaf):
            raise leaf from None
        reason = getattr(leaf, "strerror", None) or str(leaf) or type(leaf).__name__
        raise ServerConnectionError(f"Cannot connect to {where}: {reason}") from leaf
