#!/usr/bin/env python3
"""distkv-ref: start the released DistKV 0.65.0 command line so that it works.

scripts/upstream-venv installs this file as ``bin/distkv-ref`` into the
reference venv; it takes exactly the arguments of upstream's ``distkv``.
Nothing of upstream is changed on disk; three things are adjusted at run time:

* The command runs inside an ``asyncscope`` main scope. Upstream's console
  script never opens one, so every ``distkv client …`` (and a server that
  syncs from a peer) dies with "'NoneType' object has no attribute 'service'".
* ``-C key=value`` overrides are applied here: moat-util 0.35.0 computes the
  updated config and then drops it.
* The TCP listener binds to ``server.bind_default.host`` (upstream always
  listens on every interface), so tests can stay on 127.0.0.1.

``DISTKV_REF_PURE=1`` keeps upstream's own behaviour for the last two.
"""

from __future__ import annotations

import os
import sys
import warnings

# trio 0.22 / anyio 3.6 warn a lot on import; none of it matters here.
warnings.filterwarnings("ignore")


def apply_overrides(cfg, overrides):
    """Return ``cfg`` with each ``key.path=value`` of ``overrides`` applied.

    Values are evaluated like upstream's path syntax would (numbers, ``t``/``f``,
    paths …); anything that does not evaluate stays a string. A bare key
    (no ``=``) removes the entry.
    """
    from moat.util import NotGiven, P, path_eval

    for item in overrides:
        key, eq, text = item.partition("=")
        if eq:
            try:
                value = path_eval(text)
            except Exception:  # noqa: BLE001 - any parse failure means "a string"
                value = text
        else:
            value = NotGiven
        cfg = cfg._update(P(key), value)  # returns a changed copy
    return cfg


def patch_config_overrides():
    """Make ``-C`` work: run upstream's setup without them, then apply them ourselves."""
    import moat.util.main as moat_main

    upstream_setup = moat_main.wrap_main

    def setup_with_overrides(*args, conf=(), ctx=None, **kw):
        result = upstream_setup(*args, conf=(), ctx=ctx, **kw)
        obj = getattr(ctx, "obj", None)
        if conf and obj is not None:
            obj.cfg = apply_overrides(obj.cfg, conf)
        return result

    moat_main.wrap_main = setup_with_overrides


def patch_listener_host():
    """Let the client listener bind to the configured host only."""
    import anyio
    import moat.util.server as moat_server

    async def serve_on_host(self):
        host = self._kw.get("host") or None
        listener = await anyio.create_tcp_listener(local_host=host, local_port=self.port)
        if self._rdy is not None:
            self._rdy(listener)
        async with listener:
            await listener.serve(self._accept)

    moat_server._Server.run = serve_on_host


def command_context():
    """The ``ctx.obj`` seed that upstream's ``distkv.command.cmd()`` hands to moat-util."""
    from distkv.default import CFG
    from moat.util import attrdict

    return attrdict(
        moat=attrdict(
            name="distkv",
            sub_pre="distkv.command",
            sub_post="cli",
            ext_pre="distkv_ext",
            ext_post="main.cli",
            CFG=CFG,
        )
    )


async def run_in_scope(argv):
    import asyncclick as click
    from asyncscope import main_scope
    from moat.util import main_

    import distkv.command  # noqa: F401 - registers the `pdb` subcommand like upstream

    click.anyio_backend = "trio"
    async with main_scope("distkv-ref"):
        return await main_.main(
            args=argv, prog_name="distkv", standalone_mode=False, obj=command_context()
        )


def innermost(exc: BaseException) -> BaseException:
    """The first leaf of a (possibly nested) exception group."""
    for _ in range(50):
        inner = getattr(exc, "exceptions", None)
        if not inner:
            break
        exc = inner[0]
    return exc


def exit_code_for(exc: BaseException) -> int | None:
    """Report ``exc`` like a console script would; None means "not ours, re-raise"."""
    import asyncclick as click

    from distkv.exceptions import ClientError, ServerError

    if isinstance(exc, SystemExit):
        code = exc.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    if isinstance(exc, click.exceptions.Exit):
        return exc.exit_code
    if isinstance(exc, click.ClickException):
        exc.show()
        return exc.exit_code
    if isinstance(exc, click.Abort):
        print("Aborted!", file=sys.stderr)
        return 1
    if isinstance(exc, (ClientError, ServerError)):
        print(f"{type(exc).__name__}:", *exc.args, file=sys.stderr)
        return 1
    if isinstance(exc, KeyboardInterrupt):
        return 130
    return None


def main(argv: list[str] | None = None) -> None:
    import anyio

    if argv is None:
        argv = sys.argv[1:]
    if not os.environ.get("DISTKV_REF_PURE"):
        patch_config_overrides()
        patch_listener_host()
    try:
        anyio.run(run_in_scope, argv, backend="trio")
    except BaseException as exc:  # noqa: BLE001 - unwrap groups, re-raise the rest
        code = exit_code_for(innermost(exc))
        if code is None:
            raise
        sys.exit(code)
    sys.exit(0)


if __name__ == "__main__":
    main()
