"""The root of a mirrored subtree: :class:`ClientRoot`.

``async with root.run():`` watches the root's path (``nchain: 3``,
``fetch: true``) in a task of its own and feeds every record to the entry
it names; the body starts once the initial dump is complete.

How a record is applied depends on how its chain relates to the entry's:

* the same change as the entry's → the echo of our own ``update``:
  :meth:`~ClientEntry.seen_value`;
* older than the entry's chain → stale, ignored;
* newer (or the entry has no chain) → :meth:`~ClientEntry.set_value`;
* unrelated → :meth:`~ClientEntry.mark_inconsistent`, then ``set_value``.

A deleted entry without children is removed after its final
``set_value(NotGiven)``.

Bounds: while loading, the server must send something at least every
``load_timeout`` seconds (default: twice ``connect.init_timeout``) or
:meth:`ClientRoot.run` fails with :class:`TimeoutError` (upstream waited
forever). If the server ends the watch because this mirror fell behind, the
mirror re-reads the subtree and reconciles it: entries that vanished
meanwhile get ``set_value(NotGiven)``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, ClassVar

import anyio
import anyio.abc

from distkv.config import to_attrdict
from distkv.exceptions import ServerClosedError, ServerError
from distkv.util import NotGiven, attrdict, combine_dict
from distkv.util.path import P, Path

from .entry import ClientEntry

if TYPE_CHECKING:
    from distkv.client import Client

__all__ = ["ClientRoot", "chain_relation", "SAME", "OLDER", "NEWER", "UNRELATED"]

logger = logging.getLogger(__name__)

#: How a record's chain relates to an entry's chain (see :func:`chain_relation`).
SAME, OLDER, NEWER, UNRELATED = "same", "older", "newer", "unrelated"

MIRROR_NCHAIN = 3


def _links(chain: Any) -> Iterator[tuple[Any, int]]:
    while chain:
        yield chain["node"], chain["tick"]
        chain = chain.get("prev")


def chain_relation(mine: Any, theirs: Any) -> str:
    """How the chain ``theirs`` of an incoming record relates to ``mine``.

    A chain lists the latest tick of each node that changed the entry,
    newest first. ``theirs`` is :data:`OLDER` if ``mine`` has a later tick of
    its head node, :data:`NEWER` if it has (at least) ``mine``'s head tick,
    :data:`SAME` if the heads match, else :data:`UNRELATED`. A missing chain
    on either side counts as :data:`NEWER`.
    """
    if not mine or not theirs:
        return NEWER
    m_node, m_tick = mine["node"], mine["tick"]
    t_node, t_tick = theirs["node"], theirs["tick"]
    if m_node == t_node and m_tick == t_tick:
        return SAME
    for node, tick in _links(theirs):
        if node == m_node:
            if tick >= m_tick:
                return NEWER
            break
    for node, tick in _links(mine):
        if node == t_node:
            if tick >= t_tick:
                return OLDER
            break
    return UNRELATED


class _Waiter:
    __slots__ = ("tick", "event")

    def __init__(self, tick: int):
        self.tick = tick
        self.event = anyio.Event()


class ClientRoot(ClientEntry):
    """A subtree of the server, mirrored in memory.

    Create it with ``client.mirror(path, root_type=…)`` or, shared per
    client, with :meth:`as_handler`. ``cfg`` is this root's configuration
    (see :meth:`find_cfg`); ``need_wait`` is accepted for compatibility
    (:meth:`wait_chain` always works). With ``require_client=False`` the
    client may be ``None``: the tree is then local only and :meth:`run`
    does not watch anything.
    """

    #: The client configuration section that :meth:`as_handler` uses.
    CFG: ClassVar[str | None] = None

    def __init__(
        self,
        client: Client | None,
        path: Any,
        *,
        need_wait: bool = False,
        cfg: dict | None = None,
        require_client: bool = True,
        load_timeout: float | None = None,
    ):
        if client is None and require_client:
            raise ValueError(f"{type(self).__name__} needs a client")
        self._name = None
        self._path = P(path)
        self._parent = None
        self._root = self
        self._children = {}
        self.value = NotGiven
        self.chain = None
        self._lock = None
        self.client = client
        self.need_wait = need_wait
        self._cfg = to_attrdict(cfg) if cfg is not None else attrdict()
        if load_timeout is None:
            init = 5
            if client is not None:
                init = client.config.get("connect", {}).get("init_timeout") or init
            load_timeout = 2 * init
        self.load_timeout = load_timeout
        self._tg: anyio.abc.TaskGroup | None = None
        self._failure: Exception | None = None
        self._loaded = anyio.Event()
        self._seen: dict[Any, int] = {}  # node -> highest tick seen
        self._waiters: dict[Any, list[_Waiter]] = {}
        self._sweep: set[int] | None = None  # ids of entries confirmed while re-reading

    #: The connection (a plain attribute on roots; entries have a property).
    client: Any = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._path}>"

    @classmethod
    def child_type(cls, name: Any) -> type[ClientEntry] | None:
        """The class of the root's children (default :class:`ClientEntry`)."""
        return ClientEntry

    @property
    def subpath(self) -> Path:
        return Path()

    @property
    def cfg(self) -> attrdict:
        """This root's configuration."""
        return self._cfg

    # --- hooks ---------------------------------------------------------------------

    async def run_starting(self) -> None:
        """Called before the watch starts (inside :meth:`run`'s task group)."""

    async def running(self) -> None:
        """Called after the initial dump, before the body of :meth:`run` starts.

        Don't block here; start long-running work with :meth:`spawn`.
        """

    # --- configuration -----------------------------------------------------------------

    def find_cfg(self, *keys: Any, default: Any = NotGiven) -> Any:
        """The item at ``keys`` in the root's value, else in its config.

        Raises ``KeyError`` if neither has it and no ``default`` is given.
        """
        for src in (self.value, self._cfg):
            v = src
            for k in keys:
                try:
                    v = v[k]
                except (KeyError, IndexError, TypeError):
                    break
            else:
                if v is not NotGiven:
                    return v
        if default is NotGiven:
            raise KeyError(keys)
        return default

    @classmethod
    async def as_handler(
        cls,
        client: Client,
        cfg: dict | None = None,
        key: str = "prefix",
        subpath: Any = (),
        name: Any = None,
        **kw: Any,
    ) -> ClientRoot:
        """The running mirror of this class for ``client``, shared per class and path.

        The path is ``cfg[key] + subpath``, where ``cfg`` is merged over the
        client config section named by :attr:`CFG`. Instances are shared per
        class, path and ``name`` (for roots that need several instances for
        one path); ``kw`` goes to the constructor of a new one. The first
        call starts it in the client's handler scope (see
        :func:`distkv.obj.handler_scope`); every call returns once it is loaded.
        """
        from .handlers import handler_host

        section = client.config.get(cls.CFG) if cls.CFG else None
        merged = to_attrdict(combine_dict(cfg or {}, section or {}))
        if key not in merged:
            where = f"config section {cls.CFG!r}" if cls.CFG else "its config"
            raise KeyError(f"{cls.__name__}: no {key!r} in {where}")
        path = P(merged[key]) + P(subpath)
        ident = (cls, path, name)

        def make() -> ClientRoot:
            return cls(client, path, cfg=merged, need_wait=True, **kw)

        return await handler_host(client).get(ident, make)

    # --- running ------------------------------------------------------------------------

    @asynccontextmanager
    async def run(self) -> AsyncIterator[ClientRoot]:
        """Mirror the subtree while the body runs; the body starts once it is loaded.

        If mirroring fails later (e.g. the connection breaks), the body is
        cancelled and the error is raised from the ``async with``.
        """
        error: BaseException | None = None
        self._failure = None
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                try:
                    await self.run_starting()
                    if self.client is not None:
                        await tg.start(self._watch)
                    else:
                        self._loaded.set()
                        await self.running()
                except Exception as exc:
                    error = exc
                else:
                    try:
                        yield self
                    except Exception as exc:
                        error = exc
            finally:
                tg.cancel_scope.cancel()
                self._tg = None
        # raised outside the task group, so that they aren't wrapped in a group
        if self._failure is not None:
            raise self._failure
        if error is not None:
            raise error

    def _fail(self, exc: Exception) -> None:
        """A background part of this root failed: stop, and raise ``exc`` from :meth:`run`."""
        if self._failure is None:
            self._failure = exc
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    async def spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any, **kw: Any
                    ) -> anyio.CancelScope:
        """Run ``fn(*args, **kw)`` in the root's task group; returns its cancel scope."""
        if self._tg is None:
            raise RuntimeError(f"{self!r} is not running")

        async def runner(*, task_status: anyio.abc.TaskStatus) -> None:
            with anyio.CancelScope() as scope:
                task_status.started(scope)
                await fn(*args, **kw)

        return await self._tg.start(runner)

    async def helper_root(self, cls: type[ClientRoot], **kw: Any) -> ClientRoot:
        """A loaded ``cls`` root for this one to use (e.g. an error root).

        Inside a handler scope that is the shared ``cls.as_handler(client, **kw)``;
        otherwise a private instance that runs as long as this root.
        """
        from .handlers import has_handler_host, serve_root

        if has_handler_host(self.client):
            return await cls.as_handler(self.client, **kw)
        if self._tg is None:
            raise RuntimeError(f"{self!r} is not running")
        cfg = self.client.config.get(cls.CFG) if cls.CFG else None
        if not cfg or "prefix" not in cfg:
            raise KeyError(f"{cls.__name__}: no 'prefix' in config section {cls.CFG!r}")
        root = cls(self.client, P(cfg["prefix"]), cfg=cfg, **kw)
        await self._tg.start(serve_root, root, self._fail)
        return root

    def cancel(self) -> None:
        """Stop mirroring (ends :meth:`run`'s task group)."""
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    async def wait_loaded(self) -> None:
        """Wait until the initial dump has been processed."""
        await self._loaded.wait()

    @property
    def loaded(self) -> bool:
        return self._loaded.is_set()

    async def _watch(self, *, task_status: anyio.abc.TaskStatus) -> None:
        status: anyio.abc.TaskStatus | None = task_status
        while True:
            try:
                await self._watch_once(status)
                raise ServerClosedError(f"The server ended the watch of {self._path}")
            except ServerError as exc:
                # a watcher that fell behind is ended by the server: read it all again
                if not isinstance(exc, ServerClosedError) and "Aborted" in str(exc):
                    logger.warning("Mirror %s fell behind (%s); re-reading it", self._path, exc)
                    if self._loaded.is_set():
                        status = None
                    continue
                if not self._loaded.is_set():
                    raise
                self._fail(exc)
                return
            except Exception as exc:
                if not self._loaded.is_set():
                    raise
                self._fail(exc)
                return

    async def _watch_once(self, task_status: anyio.abc.TaskStatus | None) -> None:
        resync = self._loaded.is_set() or bool(self._children) or self.value is not NotGiven
        if resync:
            self._sweep = set()
        async with self.client.watch(self._path, nchain=MIRROR_NCHAIN, fetch=True) as records:
            it = aiter(records)
            while True:  # the initial dump, bounded in time
                rec = None
                with anyio.move_on_after(self.load_timeout):
                    rec = await anext(it, None)
                    if rec is None:
                        raise ServerClosedError(
                            f"The watch of {self._path} ended before the initial data arrived"
                        )
                if rec is None:
                    raise TimeoutError(
                        f"Mirror of {self._path}: the server sent nothing for "
                        f"{self.load_timeout} seconds before completing the initial data"
                    )
                if "path" in rec:
                    await self._apply(rec)
                elif rec.get("state") == "uptodate":
                    break
            if resync:
                await self._finish_resync()
            if not self._loaded.is_set():
                self._loaded.set()
                await self.running()
            if task_status is not None:
                task_status.started()
            async for rec in it:
                if "path" in rec:
                    await self._apply(rec)

    # --- applying records -----------------------------------------------------------

    async def _apply(self, rec: dict) -> None:
        path = rec["path"]
        value = rec.get("value", NotGiven)
        chain = rec.get("chain")
        if value is NotGiven:
            entry = self.follow(path, empty_ok=True)
            if entry is None:  # never seen: nothing to delete
                self._note_seen(chain)
                return
        else:
            entry = self._follow_create(path)
            if entry is None:  # child_type refused it
                self._note_seen(chain)
                return
        lock = entry._lock
        if lock is not None and lock.locked():
            # our own update() is in flight: let it record its chain first
            async with lock:
                pass
        rel = chain_relation(entry.chain, chain)
        sweep = self._sweep
        if sweep is not None:
            sweep.add(id(entry))
        if rel == SAME and entry.value is not NotGiven:
            if sweep is None:
                await entry.seen_value()
        elif rel != OLDER:
            if rel == UNRELATED:
                entry.mark_inconsistent(rec)
            entry.chain = chain if value is not NotGiven else None
            await entry.set_value(value)
            if value is NotGiven:
                entry._remove_if_empty()
        self._note_seen(chain)

    def _follow_create(self, path: Any) -> ClientEntry | None:
        entry: ClientEntry = self
        for elem in path:
            child = entry._children.get(elem)
            if child is None:
                cls = entry.child_type(elem)
                if cls is None:
                    return None
                child = entry._children[elem] = cls(entry, elem)
            entry = child
        return entry

    async def _finish_resync(self) -> None:
        """After re-reading: entries that weren't confirmed have been deleted."""
        sweep, self._sweep = self._sweep, None
        assert sweep is not None
        gone = [e for e in self.all_children if id(e) not in sweep]
        if self.value is not NotGiven and id(self) not in sweep:
            gone.append(self)
        for entry in gone:
            entry.chain = None
            await entry.set_value(NotGiven)
            entry._remove_if_empty()

    # --- waiting for changes ------------------------------------------------------------

    def _note_seen(self, chain: Any) -> None:
        seen = self._seen
        waiters = self._waiters
        for node, tick in _links(chain):
            if seen.get(node, -1) < tick:
                seen[node] = tick
                ws = waiters.get(node)
                if ws:
                    keep = []
                    for w in ws:
                        if w.tick <= tick:
                            w.event.set()
                        else:
                            keep.append(w)
                    if keep:
                        waiters[node] = keep
                    else:
                        del waiters[node]

    async def wait_chain(self, chain: Any) -> None:
        """Wait until a change with ``chain``'s head (or a later one of its node)
        has come through the mirror. ``None`` returns at once."""
        if not chain:
            return
        node, tick = chain["node"], chain["tick"]
        if self._seen.get(node, -1) >= tick:
            return
        w = _Waiter(tick)
        self._waiters.setdefault(node, []).append(w)
        await w.event.wait()
