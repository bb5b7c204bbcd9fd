"""An in-process server for auth, ACL, type and codec tests.

``auth_server()`` is :func:`inproc.inproc_server` with the server's own
security set-up (:func:`distkv.server.security.install_security`) tuned for
tests through the configuration: the cheapest password hash and a quick
login throttle. Nothing is patched in: the actions, checks and conversions
are the ones a real server runs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from inproc import inproc_server
from procs import run_cli

from distkv.auth.password import PasswordHasher
from distkv.auth.server import LoginThrottle
from distkv.server.security import close_security, install_security

__all__ = ["FAST_CONF", "FAST_HASHER", "auth_server", "client_cli"]

FAST_CONF = {
    "server.password_hash.opslimit": 1,
    "server.password_hash.memlimit": 8192,
    "server.login.delay": 0.01,
    "server.login.max_delay": 0.05,
}
"""Config overrides for tests: the cheapest argon2id hash, short login delays."""

FAST_HASHER = PasswordHasher(opslimit=1, memlimit=8192)


@contextmanager
def auth_server(
    *, throttle: LoginThrottle | None = None, conf: Mapping[str, Any] | None = None, **kw: Any
) -> Iterator[Any]:
    """An in-process server (see :func:`inproc.inproc_server`) with its security
    state set up; yields it. ``throttle`` replaces the server's login throttle."""
    with inproc_server(conf={**FAST_CONF, **(conf or {})}, **kw) as server:
        if getattr(server, "auth", None) is None:
            install_security(server)  # (servers that do not set it up at start yet)
        if throttle is not None:
            server.auth.throttle = throttle
        try:
            yield server
        finally:
            close_security(server)


def client_cli(port: int, *args: str, input: str | None = None) -> tuple[int, str, str]:
    """``distkv client ARGS…`` against the server on ``port``: (exit code, stdout, stderr)."""
    res = run_cli(port, "client", *args, input=input)
    return res.returncode, res.stdout, res.stderr
