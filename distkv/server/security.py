"""Plugging authentication, ACLs, types and codecs into a server.

:func:`install_security` gives a :class:`~distkv.server.server.Server`

* ``server.types`` — the :class:`~distkv.types.TypeSystem` (types, matches,
  codecs, converters), whose record validator is added to the store's
  validators, so meta records are checked whenever they are written;
* ``server.auth`` — the :class:`~distkv.auth.server.ServerAuth` (password
  hasher, login throttle, crypto thread limiter) that every session asks for
  its per-connection state.

It must run before any data is loaded, so that loaded match records are
noticed. Optional tuning keys below ``server`` (all have defaults):

* ``code_timeout`` — seconds a type check or codec may run (0.5);
* ``password_hash`` — ``{opslimit, memlimit}`` of the argon2id hash (2, 19 MiB);
* ``login`` — ``{delay, max_delay}``: the wait after the first failed login
  for a name, doubling up to ``max_delay`` (0.25, 8).

:func:`close_security` stops the code runner's idle worker thread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from distkv.auth.password import PasswordHasher
from distkv.auth.server import LoginThrottle, ServerAuth
from distkv.snippet import CodeRunner
from distkv.types import TypeSystem

if TYPE_CHECKING:
    from .server import Server

__all__ = ["close_security", "install_security"]


def _section(cfg: Any, key: str) -> dict:
    value = cfg.get(key) if isinstance(cfg, dict) else None
    return value if isinstance(value, dict) else {}


def install_security(server: Server) -> None:
    """Give ``server`` its type system and auth state (see the module docstring)."""
    scfg = server.cfg.get("server") or {}
    runner = CodeRunner(float(scfg.get("code_timeout") or 0.5), name=f"distkv-code-{server.name}")
    types = TypeSystem(server.store, runner)
    server.store.validators.append(types.validator)
    pw = _section(scfg, "password_hash")
    hasher = PasswordHasher(
        opslimit=int(pw.get("opslimit") or 2), memlimit=int(pw.get("memlimit") or 19 * 1024 * 1024)
    )
    login = _section(scfg, "login")
    throttle = LoginThrottle(
        base=float(login.get("delay", 0.25)), max_delay=float(login.get("max_delay", 8.0))
    )
    server.types = types
    server.auth = ServerAuth(server.store, types, hasher=hasher, throttle=throttle)


def close_security(server: Server) -> None:
    """Release what :func:`install_security` started (the code runner's worker)."""
    types = getattr(server, "types", None)
    if types is not None:
        types.runner.close()
