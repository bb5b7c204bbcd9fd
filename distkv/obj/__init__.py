"""Active objects: subtrees of the server mirrored in memory and kept current.

::

    from distkv.obj import ClientEntry, ClientRoot

    class Item(ClientEntry):
        async def set_value(self, value):
            await super().set_value(value)
            print(self.subpath, value)

    class Items(ClientRoot):
        @classmethod
        def child_type(cls, name):
            return Item

    async with client.mirror(P("one"), root_type=Items) as root:
        print(root["two"].value)  # the subtree is loaded here, and kept current

:mod:`.entry` holds :class:`ClientEntry` and :class:`AttrClientEntry`,
:mod:`.root` the :class:`ClientRoot` that runs the ``watch``, and
:mod:`.handlers` the per-client sharing behind :meth:`ClientRoot.as_handler`
(:func:`handler_scope`). Stored code, error records and runners are built on
these (:mod:`distkv.code`, :mod:`distkv.errors`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from distkv.util.path import P

from .entry import AttrClientEntry, ClientEntry
from .handlers import handler_scope, has_handler_host
from .root import ClientRoot

if TYPE_CHECKING:
    from distkv.client import Client

__all__ = [
    "AttrClientEntry",
    "ClientEntry",
    "ClientRoot",
    "handler_scope",
    "has_handler_host",
    "mirror",
]


@asynccontextmanager
async def mirror(
    client: Client,
    path: Any,
    *,
    root_type: type[ClientRoot] | None = None,
    need_wait: bool = False,
    **kw: Any,
) -> AsyncIterator[ClientRoot]:
    """Mirror ``path`` (a Path, tuple, list or path text) while the body runs.

    Yields the ``root_type`` (default :class:`ClientRoot`) instance once the
    subtree is loaded; ``kw`` goes to its constructor.
    """
    root = (root_type or ClientRoot)(client, P(path), need_wait=need_wait, **kw)
    async with root.run():
        yield root
