"""Shared mirrors per client: :func:`handler_scope` and the host behind ``as_handler``.

``await CodeRoot.as_handler(client)`` returns one running mirror per client,
class and path, however often it is called. Running mirrors need a task
group that lives as long as they are used; :func:`handler_scope` provides it::

    async with open_client(...) as client, handler_scope(client):
        code = await CodeRoot.as_handler(client)
        print(await code.call("the.answer"))

Leaving the scope stops every mirror started in it. If one of them fails
(e.g. the connection breaks), the scope's body is cancelled and the error
is raised from the ``async with``.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

if TYPE_CHECKING:
    from distkv.client import Client

    from .root import ClientRoot

__all__ = ["HandlerHost", "handler_scope", "handler_host", "has_handler_host", "serve_root"]

_hosts: weakref.WeakKeyDictionary[Any, HandlerHost] = weakref.WeakKeyDictionary()


class HandlerHost:
    """Runs the shared mirrors of one client in one task group."""

    __slots__ = ("client", "tg", "roots", "error", "_starting")

    def __init__(self, client: Client, tg: anyio.abc.TaskGroup):
        self.client = client
        self.tg = tg
        self.roots: dict[Any, ClientRoot] = {}
        #: The first failure of a hosted mirror (raised when the scope ends).
        self.error: Exception | None = None
        self._starting: dict[Any, anyio.Event] = {}

    async def get(self, ident: Any, make: Callable[[], ClientRoot]) -> ClientRoot:
        """The running root for ``ident``; ``make()`` creates it if there is none."""
        while True:
            root = self.roots.get(ident)
            if root is not None:
                await root.wait_loaded()
                return root
            starting = self._starting.get(ident)
            if starting is None:
                break
            await starting.wait()  # somebody else is starting it: use theirs (or retry)
        self._starting[ident] = done = anyio.Event()
        try:
            root = make()
            await self.tg.start(serve_root, root, self._fail)
            self.roots[ident] = root
            return root
        finally:
            del self._starting[ident]
            done.set()

    def _fail(self, exc: Exception) -> None:
        if self.error is None:
            self.error = exc
        self.tg.cancel_scope.cancel()


async def serve_root(
    root: ClientRoot,
    fail: Callable[[Exception], None] | None = None,
    *,
    task_status: anyio.abc.TaskStatus,
) -> None:
    """Run ``root`` until cancelled; for ``tg.start``, which returns once it is loaded.

    A failure before that is raised; a later one goes to ``fail`` (if given).
    """
    started = False
    try:
        async with root.run():
            started = True
            task_status.started()
            await anyio.sleep_forever()
    except Exception as exc:
        if not started or fail is None:
            raise
        fail(exc)


def handler_host(client: Client) -> HandlerHost:
    """The host of ``client``'s shared mirrors; ``RuntimeError`` outside a handler scope."""
    host = _hosts.get(client)
    if host is None:
        raise RuntimeError(
            "Shared mirrors (as_handler) need a handler scope: "
            "wrap the code in 'async with distkv.obj.handler_scope(client):'"
        )
    return host


def has_handler_host(client: Client) -> bool:
    """Whether ``client`` is inside a :func:`handler_scope`."""
    return client in _hosts


@asynccontextmanager
async def handler_scope(client: Client) -> AsyncIterator[HandlerHost]:
    """Host ``client``'s shared mirrors for the duration of the ``async with``.

    Nested scopes for the same client reuse the outer one.
    """
    if client in _hosts:
        yield _hosts[client]
        return
    error: Exception | None = None
    async with anyio.create_task_group() as tg:
        host = _hosts[client] = HandlerHost(client, tg)
        try:
            yield host
        except Exception as exc:
            # re-raised outside the task group, so that it isn't wrapped in a group
            error = exc
        finally:
            if _hosts.get(client) is host:
                del _hosts[client]
            tg.cancel_scope.cancel()
    if host.error is not None:
        raise host.error
    if error is not None:
        raise error
