"""``distkv client auth [-m METHOD] …``: auth methods and users (12 §4.3, 06).

Typical setup (the tutorial's)::

    distkv client auth -m password user add name=joe password?=Code
    distkv client auth -m password init -s
    distkv client -a "password name=joe password?=Code" data :

Without ``-m`` a command uses the active method, or the only configured
one. ``user param USER acl NAME`` / ``user param USER conv NAME`` give a user
an ACL or a converter group (takes effect at their next login). The
tutorial's spellings ``user set param …`` and ``user modify --aux
codec=NAME name=USER`` work too (hidden: 0.65.0 never had them).

Fixed against 0.65.0 (15 #41): ``user get``/``user mod`` work for the
built-in methods, ``init`` sees an active method, guessing the method prints
nothing, and ``user add`` checks a new user's parameters (a password user
needs a password).
"""

from __future__ import annotations

from typing import Any

import asyncclick as click

from distkv.util import NotGiven

__all__ = ["cli"]


@click.group(short_help="Manage authorization.")
@click.option(
    "-m", "--method", metavar="METHOD",
    help="The auth method ('-' for none). Default: the active one, or the only one.",
)
@click.pass_obj
async def cli(obj: Any, method: str | None) -> None:
    """Manage auth methods and users."""
    obj.auth_method = method


async def _current(client: Any) -> str | None:
    """The active method (``current`` of ``:n.auth``), if any."""
    res = await client._request("get_internal", path=("auth",))
    value = res.get("value")
    cur = value.get("current") if isinstance(value, dict) else None
    return cur if isinstance(cur, str) else None


async def _configured(client: Any) -> list[str]:
    res = await client._request("enum_internal", path=("auth",), empty=True)
    return [m for m in res.result if isinstance(m, str)]


async def _method(obj: Any) -> str | None:
    """The method to work on: ``-m``, else the active one, else the only configured one."""
    m = obj.auth_method
    if m is not None:
        return None if m == "-" else m
    client = await obj.connect()
    cur = await _current(client)
    if cur is not None:
        return cur
    found = await _configured(client)
    if len(found) != 1:
        raise click.UsageError("You need to set the auth method (-m METHOD).")
    return found[0]


async def _need_method(obj: Any) -> str:
    m = await _method(obj)
    if m is None:
        raise click.UsageError("This command needs an auth method, not '-'.")
    return m


def _maker(obj: Any, method: str) -> type:
    from distkv.auth import loader

    cls = loader(method, "user", make=True)
    if obj.DEBUG:
        cls = type(cls.__name__, (cls,), {"length": 16})  # quick, weak DH (-D)
    return cls


def _params(cls: type, args: tuple[str, ...], into: dict | None = None) -> dict:
    from distkv.auth import parse_auth_args, string_keys

    return parse_auth_args(args, strings=string_keys(cls.gen_schema), into=into)


@cli.command("list")
@click.pass_obj
async def list_(obj: Any) -> None:
    """List the configured auth methods (with -m: just that one, if configured)."""
    client = await obj.connect()
    found = await _configured(client)
    m = obj.auth_method
    if m is not None:
        found = [x for x in found if x == m]
    for name in found:
        print(name, file=obj.stdout)


@cli.command()
@click.option("-s", "--switch", is_flag=True, help="Replace an active method (or turn auth off).")
@click.pass_obj
async def init(obj: Any, switch: bool) -> None:
    """Make the method active ('-m -': turn auth off). Affects new connections."""
    method = await _method(obj)
    client = await obj.connect()
    if await _current(client) is not None and not switch:
        raise click.UsageError("Authorization is already set up; use '-s' to switch.")
    await client._request("set_auth_typ", typ=method)
    if obj.debug >= 0:
        if method:
            print("Authorization switched to", method, file=obj.stdout)
        else:
            print("Authorization turned off.", file=obj.stdout)


@cli.group()
async def user() -> None:
    """Manage users."""


@user.command("list")
@click.option("-v", "--verbose", is_flag=True, help="Print whole records, not just the names.")
@click.pass_obj
async def list_user(obj: Any, verbose: bool) -> None:
    """List the method's users."""
    from distkv.util.yaml import yprint

    method = await _need_method(obj)
    client = await obj.connect()
    res = await client._request("auth_list", iter=True, typ=method, kind="user", nchain=obj.meta)
    async for rec in res:
        if obj.meta or verbose:
            if obj.debug < 2:
                rec.pop("seq", None)
                rec.pop("tock", None)
            rec.pop("wseq", None)
            yprint(rec, stream=obj.stdout)
        else:
            print(rec["ident"], file=obj.stdout)


@user.command()
@click.argument("ident")
@click.pass_obj
async def get(obj: Any, ident: str) -> None:
    """Print a user's (public) parameters."""
    from distkv.util.yaml import yprint

    cls = _maker(obj, await _need_method(obj))
    client = await obj.connect()
    u = await cls.recv(client, ident)
    yprint(u.export(), stream=obj.stdout)


async def _send(obj: Any, u: Any) -> None:
    from distkv.util.yaml import yprint

    client = await obj.connect()
    res = await u.send(client)
    if obj.meta:
        res["ident"] = u.ident
        yprint(res, stream=obj.stdout)
    else:
        print(u.ident, file=obj.stdout)


@user.command()
@click.argument("args", nargs=-1, metavar="KEY=VALUE|KEY?|KEY?=PROMPT…")
@click.pass_obj
async def add(obj: Any, args: tuple[str, ...]) -> None:
    """Add a user, e.g. 'name=joe password?' (a '?' asks without echo)."""
    cls = _maker(obj, await _need_method(obj))
    u = cls.build(_params(cls, args), initial=True)
    u.chain = None  # must be new
    await _send(obj, u)


@user.command()
@click.option("-n", "--new", is_flag=True, help="Start afresh instead of changing the record.")
@click.argument("ident")
@click.argument("type_", metavar="TYPE")
@click.argument("key")
@click.argument("args", nargs=-1, metavar="KEY=VALUE…")
@click.pass_obj
async def param(obj: Any, new: bool, ident: str, type_: str, key: str, args: tuple[str, ...]
                ) -> None:
    """Set TYPE ('acl' or 'conv') of user IDENT to KEY (an ACL / converter name; '-' removes).

    Extra KEY=VALUE arguments are stored alongside. Takes effect at the
    user's next login.
    """
    await _set_param(obj, ident, type_, key, args, new=new)


async def _set_param(obj: Any, ident: str, type_: str, key: str, args: tuple[str, ...] = (),
                     *, new: bool = False) -> None:
    """Store ``{key: KEY, …args}`` as the user's TYPE record and confirm it."""
    from distkv.auth import parse_auth_args
    from distkv.util.yaml import yprint

    method = await _need_method(obj)
    client = await obj.connect()
    upath = ("auth", method, "user", ident)
    if "value" not in await client._request("get_internal", path=upath):
        raise click.UsageError(f"There is no {method} user {ident!r}.")
    path = (*upath, type_)
    res = await client._request("get_internal", path=path, nchain=3)
    value = res.get("value", NotGiven)
    chain = None if value is NotGiven else res.get("chain")
    if new or not isinstance(value, dict):
        value = {}
    if key == "-":
        if args:
            raise click.UsageError("You can't set parameters when removing.")
        res = await client._request("delete_internal", path=path, chain=chain)
    else:
        value = dict(value)
        value["key"] = key
        parse_auth_args(args, into=value)
        res = await client._request("set_internal", path=path, value=value, chain=chain)
    if obj.meta:
        yprint(res, stream=obj.stdout)
    else:
        print(ident, type_, key, file=obj.stdout)


# The tutorial's spellings, which 0.65.0 never had: ``user set param …`` and
# ``user modify --aux codec=NAME name=USER``.

@user.group("set", hidden=True)
async def set_() -> None:
    """Same as 'user param' (the tutorial's spelling)."""


set_.add_command(param)

_AUX_TYPES = {"acl": "acl", "codec": "conv", "conv": "conv"}


@user.command(hidden=True)
@click.option("--aux", multiple=True, metavar="KEY=NAME",
              help="acl=NAME or codec=NAME: the user's ACL or converter group.")
@click.argument("args", nargs=-1, metavar="name=USER [KEY=VALUE…]")
@click.pass_obj
async def modify(obj: Any, aux: tuple[str, ...], args: tuple[str, ...]) -> None:
    """Change user USER: '--aux' as with 'user param', other parameters as with 'user mod'."""
    names = [a.partition("=")[2] for a in args if a.startswith("name=")]
    rest = tuple(a for a in args if not a.startswith("name="))
    if len(names) != 1 or not names[0]:
        raise click.UsageError("Name the user: name=USER.")
    settings = []
    for item in aux:
        k, eq, v = item.partition("=")
        if not eq or k not in _AUX_TYPES or not v:
            raise click.UsageError(f"--aux {item}: use acl=NAME or codec=NAME.")
        settings.append((_AUX_TYPES[k], v))
    if not settings and not rest:
        raise click.UsageError("Nothing to change.")
    if rest:
        await _modify(obj, names[0], rest)
    for type_, name in settings:
        await _set_param(obj, names[0], type_, name)


@user.command()
@click.argument("ident")
@click.argument("args", nargs=-1, metavar="KEY=VALUE|KEY?|KEY?=PROMPT…")
@click.pass_obj
async def mod(obj: Any, ident: str, args: tuple[str, ...]) -> None:
    """Change user IDENT, e.g. 'password?' for a new password."""
    await _modify(obj, ident, args)


async def _modify(obj: Any, ident: str, args: tuple[str, ...]) -> None:
    """Apply ``KEY=VALUE…`` to user IDENT's record and store it."""
    cls = _maker(obj, await _need_method(obj))
    client = await obj.connect()
    old = await cls.recv(client, ident)
    params = _params(cls, args, into=old.export())
    u = cls.build(params, initial=False)
    u.chain = old.chain if u.ident == ident else None
    await _send(obj, u)


@user.command("auth")
@click.option(
    "-a", "--auth", "spec", default="root", show_default=True,
    help="Credentials: 'METHOD KEY=VALUE…' or '=FILE'.",
)
@click.pass_obj
async def auth_(obj: Any, spec: str) -> None:
    """Check credentials (on this connection; who you are does not change)."""
    from distkv.auth import gen_auth

    creds = gen_auth(spec)
    client = await obj.connect()
    await creds.auth(client)
    if obj.debug > 0:
        print("OK.", file=obj.stdout)
