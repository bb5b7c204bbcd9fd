"""Server side of auth: per-server state, per-connection login state, login throttling.

* :class:`ServerAuth` — one per server: the password hasher, the login
  throttle, a limiter for crypto work in worker threads, the
  :class:`~distkv.types.TypeSystem` (for users' converters);
* :class:`SessionAuth` — one per connection: the Diffie-Hellman key, the
  logged-in user, their ACL (:mod:`distkv.acl`) and converter, failed
  attempts. Before any login the connection is the built-in root user
  (unrestricted) when the server requires no login;
* :class:`LoginThrottle` — slows repeated failed logins, per connection and
  per user name, with bounded delays and bounded memory;
* :class:`LoginContext` — what a method's server class may use while it
  checks a login or builds a record.

Nothing here logs or reports secrets: error texts name users, never
passwords or keys.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from distkv.acl import UNRESTRICTED
from distkv.exceptions import ClientError, NoAuthError
from distkv.util import NotGiven

from .password import PasswordHasher

if TYPE_CHECKING:
    from distkv.core import Store
    from distkv.types import Converter, TypeSystem

__all__ = ["LoginContext", "LoginThrottle", "ServerAuth", "SessionAuth", "auth_methods"]


def auth_methods(store: Store, base: Sequence[Any] = ()) -> list | None:
    """The greeting's ``auth`` list for the (sub-)root ``base``, or None without ``:n.auth``.

    The first element is the active method, or None if no usable method is
    active (``current`` missing or naming no configured method).
    """
    auth = store.follow((*base, None, "auth"))
    if auth is None:
        return None
    value = auth.value
    current = value.get("current") if isinstance(value, dict) else None
    names = list(auth.children or ())
    if current not in names:
        current = None
    return [current, *(n for n in names if n != current)]


class LoginThrottle:
    """Delays for login attempts after failures.

    Each failure of a user name makes the next attempt for that name wait
    ``base * factor ** (failures - 1)`` seconds after the failure (at most
    ``max_delay``); each failure on a connection makes that connection's next
    attempt wait the same way. A success clears the name's record; records
    older than ``forget`` seconds expire and at most ``max_names`` are kept.
    ``clock`` is injectable for tests.
    """

    __slots__ = ("base", "factor", "max_delay", "forget", "max_names", "clock", "_names")

    def __init__(
        self,
        *,
        base: float = 0.25,
        factor: float = 2.0,
        max_delay: float = 8.0,
        forget: float = 900.0,
        max_names: int = 10000,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.base = base
        self.factor = factor
        self.max_delay = max_delay
        self.forget = forget
        self.max_names = max_names
        self.clock = clock
        self._names: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def _step(self, failures: int) -> float:
        if failures <= 0:
            return 0.0
        return min(self.base * self.factor ** min(failures - 1, 64), self.max_delay)

    def delay(self, name: str, conn_failures: int = 0) -> float:
        """Seconds to wait before checking an attempt for ``name``."""
        wait = self._step(conn_failures)
        rec = self._names.get(name)
        if rec is not None:
            failures, last = rec
            now = self.clock()
            if now - last > self.forget:
                del self._names[name]
            else:
                wait = max(wait, last + self._step(failures) - now)
        return max(0.0, wait)

    def failed(self, name: str) -> None:
        names = self._names
        failures = names.pop(name, (0, 0.0))[0]
        names[name] = (failures + 1, self.clock())
        while len(names) > self.max_names:
            names.popitem(last=False)

    def succeeded(self, name: str) -> None:
        self._names.pop(name, None)

    def failures(self, name: str) -> int:
        rec = self._names.get(name)
        return 0 if rec is None else rec[0]


class ServerAuth:
    """Auth state shared by all connections of one server."""

    def __init__(
        self,
        store: Store,
        types: TypeSystem | None = None,
        *,
        hasher: PasswordHasher | None = None,
        throttle: LoginThrottle | None = None,
        crypto_threads: int = 2,
        sleep: Callable[[float], Any] = anyio.sleep,
    ):
        self.store = store
        self.types = types
        self.hasher = hasher if hasher is not None else PasswordHasher()
        self.throttle = throttle if throttle is not None else LoginThrottle()
        self.limiter = anyio.CapacityLimiter(crypto_threads)
        self.sleep = sleep

    def session(self, base: Sequence[Any] = ()) -> SessionAuth:
        """The state of a new connection (call when sending the greeting)."""
        methods = auth_methods(self.store, base)
        return SessionAuth(self, need_login=bool(methods) and methods[0] is not None)

    async def run_crypto(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` in a worker thread, at most ``crypto_threads`` at a time."""
        return await anyio.to_thread.run_sync(fn, *args, limiter=self.limiter)


class SessionAuth:
    """Auth state of one connection."""

    __slots__ = (
        "server", "need_login", "dh_key", "user", "acl", "conv", "base", "failures", "busy",
    )

    def __init__(self, server: ServerAuth, *, need_login: bool = False):
        self.server = server
        #: The greeting named an active method: only ``before_login`` actions until login.
        self.need_login = need_login
        self.dh_key: bytes | None = None
        #: The logged-in :class:`~distkv.auth.base.BaseServerUser` (None: not logged in).
        self.user: Any = None
        #: The user's ACL (:data:`~distkv.acl.UNRESTRICTED` or a :class:`~distkv.acl.UserACL`).
        self.acl: Any = UNRESTRICTED
        #: The user's :class:`~distkv.types.Converter`, or None.
        self.conv: Converter | None = None
        #: The data root the user logged in at.
        self.base: tuple = ()
        self.failures = 0
        self.busy = False

    def __repr__(self) -> str:
        who = "nobody" if self.user is None else repr(self.user)
        return f"<SessionAuth {who} acl={self.acl!r}>"

    @property
    def logged_in(self) -> bool:
        return self.user is not None

    @property
    def unrestricted(self) -> bool:
        """No ACL applies: may use ``None`` paths and the auth actions."""
        return not self.acl.restricted

    def require_login(self, action: str) -> None:
        """Raise :class:`NoAuthError` if ``action`` needs a login that has not happened."""
        if self.need_login and self.user is None:
            raise NoAuthError(f"You need to log in before '{action}'")

    def _may(self, flag: str) -> bool:
        if not self.unrestricted:
            return False
        if self.user is None:  # the built-in root user, unless a login is still due
            return not self.need_login
        return bool(getattr(self.user, flag, False))

    def require_auth_read(self) -> None:
        if not self._may("can_auth_read"):
            raise ClientError("Not allowed to read auth data")

    def require_auth_write(self) -> None:
        if not self._may("can_auth_write"):
            raise ClientError("Not allowed to change auth data")


class LoginContext:
    """What a method's server class may use while checking a login or building a record."""

    __slots__ = ("auth", "stream", "chain")

    def __init__(self, auth: SessionAuth, stream: Any = None, chain: Any = NotGiven):
        self.auth = auth
        #: The request's stream (for methods with a dialogue), or None.
        self.stream = stream
        #: The write precondition of an ``auth_set`` (a method's dialogue may change it).
        self.chain = chain

    @property
    def dh_key(self) -> bytes | None:
        return self.auth.dh_key

    @property
    def hasher(self) -> PasswordHasher:
        return self.auth.server.hasher

    async def run_crypto(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await self.auth.server.run_crypto(fn, *args)
