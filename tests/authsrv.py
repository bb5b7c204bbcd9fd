"""An in-process server with the auth actions, ACLs and type checks plugged in.

Until the server wires :mod:`distkv.auth.actions` and
:class:`distkv.types.TypeSystem` in itself, ``auth_server()`` does it for a
test: it registers the auth actions (replacing stubs of the same name), gives
the server a fast password hasher and a quick login throttle, and hooks the
type system's record validator into the store. Everything is undone when the
context ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from inproc import inproc_server

from distkv.auth.actions import register
from distkv.auth.password import PasswordHasher
from distkv.auth.server import LoginThrottle, ServerAuth
from distkv.server.registry import REGISTRY
from distkv.snippet import CodeRunner
from distkv.types import TypeSystem, meta_position
from distkv.util import NotGiven

__all__ = ["FAST_HASHER", "auth_server"]

FAST_HASHER = PasswordHasher(opslimit=1, memlimit=8192)


def _data_checker(types: TypeSystem) -> Any:
    """Type-check local data writes (what the server's ``write`` will do itself)."""

    def check(entry: Any, value: Any, local: bool) -> None:
        if local and value is not NotGiven and meta_position(entry) is None:
            types.check_value(entry.path, value, entry=entry)

    return check


@contextmanager
def auth_server(*, throttle: LoginThrottle | None = None, **kw: Any) -> Iterator[Any]:
    """An in-process server (see :func:`inproc.inproc_server`) with auth; yields it."""
    undo = register(REGISTRY, replace=True)
    try:
        with inproc_server(**kw) as server:
            types = server.types = TypeSystem(server.store, CodeRunner(timeout=0.5))
            server.auth = ServerAuth(
                server.store, types, hasher=FAST_HASHER,
                throttle=throttle or LoginThrottle(base=0.01, max_delay=0.05),
            )
            checks = [types.validator, _data_checker(types)]
            server.store.validators.extend(checks)
            try:
                yield server
            finally:
                for check in checks:
                    server.store.validators.remove(check)
                types.runner.close()
    finally:
        undo()
