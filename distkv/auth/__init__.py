"""Authentication: auth methods, the ``-a`` / ``connect.auth`` syntax, logging in.

Methods are modules: ``root``, ``_test`` and ``password`` here, any dotted
module name for extensions. :func:`loader` returns a method's classes
(:mod:`.base` describes them); :func:`gen_auth` turns an auth string into
credentials the client library logs in with (:mod:`.client`). The server side
— per-connection login state, login throttling, the auth actions — is in
:mod:`.server` and :mod:`.actions`; Diffie-Hellman in :mod:`.dh`.

Auth strings (06 §7): ``"<method> [token …]"`` or ``"=<file>"`` (a YAML map
whose ``type`` is the method, the other keys its parameters). Tokens:

* ``key=value`` — a parameter; the value becomes an int if it looks like
  one, unless the method declares ``key`` a string (so ``password=12345``
  stays a string, unlike upstream's 15 #31);
* ``key?`` — ask for it on the terminal (prompt ``key? ``, no echo);
* ``key?=Prompt`` — the same with the prompt ``Prompt: ``.

Parameters are checked against the method's schema before anything is sent.
"""

from __future__ import annotations

import getpass
import re
import warnings
from collections.abc import Callable, Container, Iterable, Mapping
from importlib import import_module
from typing import Any

from distkv.exceptions import ClientAuthError, NoAuthModuleError

from .base import BaseClientUser, BaseClientUserMaker, BaseServerUser, BaseServerUserMaker
from .client import dh_secret, login

__all__ = [
    "BaseClientUser",
    "BaseClientUserMaker",
    "BaseServerUser",
    "BaseServerUserMaker",
    "dh_secret",
    "gen_auth",
    "loader",
    "login",
    "parse_auth_args",
    "string_keys",
]

_METHOD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
# modules of this package that are not auth methods
_NOT_METHODS = frozenset({"actions", "base", "client", "dh", "server"})


def loader(method: str, typ: str = "user", *, make: bool = False, server: bool = False) -> type:
    """The class of auth method ``method`` for record kind ``typ`` (see :mod:`.base`).

    Raises :class:`NoAuthModuleError` if there is no such method.
    """
    if not isinstance(method, str) or not _METHOD_NAME.match(method) or method in _NOT_METHODS:
        raise NoAuthModuleError(method)
    modname = method if "." in method else f"{__name__}.{method}"
    try:
        mod = import_module(modname)
    except ModuleNotFoundError:
        raise NoAuthModuleError(method) from None
    load = getattr(mod, "load", None)
    if not callable(load):
        raise NoAuthModuleError(method)
    try:
        cls = load(typ, make=make, server=server)
    except NotImplementedError:
        raise NoAuthModuleError(method, typ) from None
    if getattr(cls, "_auth_method", None) != method:
        # an extension module loaded under its dotted name
        cls = type(cls.__name__, (cls,), {"_auth_method": method})
    return cls


def string_keys(schema: Mapping[str, Any]) -> frozenset[str]:
    """The parameters a schema declares as strings."""
    props = schema.get("properties") or {}
    return frozenset(
        k for k, v in props.items() if isinstance(v, dict) and v.get("type") == "string"
    )


def _number(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        return text


def read_secret(prompt: str) -> str:
    """Ask for a secret without echo (:func:`getpass.getpass`).

    Without a terminal (a secret piped in by a script) getpass says that the
    input may be echoed; its additional Python warning, which would be logged
    with a source line, is dropped.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", getpass.GetPassWarning)
        return getpass.getpass(prompt)


def parse_auth_args(
    tokens: Iterable[str],
    *,
    strings: Container[str] = frozenset(),
    prompt: Callable[[str], str] | None = None,
    into: dict | None = None,
) -> dict:
    """Parameters from ``key=value`` / ``key?`` / ``key?=Prompt`` tokens.

    ``strings`` are keys whose values are never turned into ints; ``prompt``
    reads a secret (default: :func:`read_secret`); ``into`` is updated
    and returned if given. Error texts never show a token (it might be a
    mistyped password).
    """
    ask = prompt if prompt is not None else read_secret
    res = {} if into is None else into
    for n, tok in enumerate(tokens, 1):
        key, eq, value = tok.partition("=")
        if key.endswith("?"):
            key = key[:-1]
            if key:
                res[key] = ask(f"{value}: " if eq else f"{key}? ")
                continue
        elif eq and key:
            res[key] = value if key in strings else _number(value)
            continue
        raise ClientAuthError(f"Auth parameter {n}: expected KEY=VALUE, KEY? or KEY?=PROMPT")
    return res


def gen_auth(spec: Any, *, prompt: Callable[[str], str] | None = None) -> BaseClientUser:
    """Login credentials from an auth string, a ``{type: …, …}`` map, or an object
    that already has an ``auth`` method (returned as is)."""
    if isinstance(spec, Mapping):
        params = dict(spec)
        method = params.pop("type", None)
        if not isinstance(method, str):
            raise ClientAuthError("An auth map needs a 'type' (the method)")
        return loader(method, "user").build(params)
    if hasattr(spec, "auth") and hasattr(spec, "_auth_method"):
        return spec
    if not isinstance(spec, str) or not spec.split():
        raise ClientAuthError(f"Not an auth specification: {type(spec).__name__}")
    method, *tokens = spec.split()
    if not tokens and method.startswith("="):
        from distkv.util.yaml import yload

        with open(method[1:], encoding="utf-8") as f:
            data = yload(f)
        if not isinstance(data, Mapping):
            raise ClientAuthError(f"{method[1:]}: an auth file must hold a map")
        return gen_auth(data)
    cls = loader(method, "user")
    params = parse_auth_args(tokens, strings=string_keys(cls.schema), prompt=prompt)
    return cls.build(params)
