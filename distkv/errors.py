"""Error records: problems that clients (runners, code loaders, …) report in the tree.

Layout below ``errors.prefix`` (default ``:.distkv.error``)::

    <node>.<tock>            one record per (subsystem, path), made by <node>
    <node>.<tock>.<seen-by>  what node <seen-by> saw: seen, tock, comment, trace, message, data

A record's value (:class:`ErrorEntry`): ``subsystem``, ``path`` (of the
offending object), ``severity`` (0 fatal … 7 trace), ``resolved``,
``resolved_at``, ``count``, ``first_seen``, ``last_seen``, ``created``,
``message``.

``resolved`` is always a bool: ``False`` while the problem is open, ``True``
once it was fixed (:meth:`ErrorEntry.resolve`, :meth:`ErrorRoot.record_working`);
``resolved_at`` then holds the unix time. Upstream stored a time stamp in
``resolved`` when "working" was recorded; such values read as ``True`` (with
that time as ``resolved_at``).

Use it from Python::

    async with handler_scope(client):
        errors = await ErrorRoot.as_handler(client)
        async with errors.capture("poll", P("sensors.hall"), reraise=False):
            await poll_the_hall()      # an exception here is recorded, not raised
        # a clean run marks an open record of ("poll", sensors.hall) as resolved

If two nodes create a record for the same (subsystem, path) at the same
time, the one first seen wins (ties: the smaller node name); the node that
made the other one copies its details over and deletes it.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, ClassVar

import anyio

from distkv.exceptions import ClientChainError, DistKVError
from distkv.obj import AttrClientEntry, ClientEntry, ClientRoot
from distkv.util import NotGiven
from distkv.util.path import P

if TYPE_CHECKING:
    from distkv.client import Client

__all__ = ["ErrorRoot", "ErrorEntry", "ErrorDetail", "TRACE_LINES"]

logger = logging.getLogger(__name__)

#: Tracebacks stored in error details are cut to their last this many lines.
TRACE_LINES = 40


def format_trace(exc: BaseException) -> str:
    """The traceback of ``exc``, cut to its last :data:`TRACE_LINES` lines.

    For a ``SyntaxError`` only the error itself (where the code is wrong)."""
    if isinstance(exc, SyntaxError):
        parts = traceback.format_exception_only(exc)
    else:
        parts = traceback.format_exception(exc)
    lines = "".join(parts).splitlines()
    if len(lines) > TRACE_LINES:
        cut = len(lines) - TRACE_LINES + 1
        lines = [f"[… {cut} lines left out …]", *lines[-TRACE_LINES + 1 :]]
    return "\n".join(lines)


class ErrorDetail(AttrClientEntry):
    """What one node saw of an error (the record's child named after the node)."""

    ATTRS: ClassVar[tuple[str, ...]] = ("seen", "tock", "comment", "trace", "message", "data")

    @classmethod
    def child_type(cls, name: Any) -> None:
        return None

    @property
    def text(self) -> str | None:
        """``message`` with ``data`` filled in (``str.format``), else ``comment``."""
        msg = getattr(self, "message", None)
        if msg is None:
            return getattr(self, "comment", None)
        data = getattr(self, "data", None)
        if isinstance(data, Mapping):
            try:
                return msg.format(**data)
            except (KeyError, IndexError, ValueError, AttributeError):
                pass
        return msg

    def export(self, trace: bool = False) -> dict:
        """The detail as a map (without ``trace`` unless asked for)."""
        res = self.get_value()
        if not trace:
            res.pop("trace", None)
        return res


class ErrorEntry(AttrClientEntry):
    """One error record (``<node>.<tock>``); its children are :class:`ErrorDetail`."""

    ATTRS: ClassVar[tuple[str, ...]] = (
        "subsystem", "path", "severity", "resolved", "resolved_at", "count",
        "first_seen", "last_seen", "created", "message",
    )
    severity = 0
    resolved = False
    count = 0
    _key: tuple | None = None

    @classmethod
    def child_type(cls, name: Any) -> type[ClientEntry]:
        return ErrorDetail

    @property
    def node(self) -> Any:
        """The node that made this record."""
        parent = self.parent
        return parent.name if parent is not None else None

    @property
    def key(self) -> tuple | None:
        """``(subsystem, path)``, or ``None`` for a record without them."""
        sub = getattr(self, "subsystem", None)
        path = getattr(self, "path", None)
        if self.value is NotGiven or sub is None or path is None:
            return None
        return (sub, P(path))

    @property
    def details(self) -> dict[Any, ErrorDetail]:
        """Node name -> what that node saw."""
        return {d.name: d for d in self if d.value is not NotGiven}

    async def set_value(self, value: Any) -> None:
        await super().set_value(value)
        r = self.__dict__.get("resolved", NotGiven)
        if r is not NotGiven and not isinstance(r, bool):
            # upstream's "working" time stamp
            if isinstance(r, (int, float)) and r and "resolved_at" not in self.__dict__:
                self.resolved_at = r
            self.resolved = bool(r)
        root = self.root
        if isinstance(root, ErrorRoot):
            root._reindex(self)

    async def save(self, wait: bool = False) -> Any:
        """Write the record; if it changed meanwhile, write over the newer version."""
        try:
            res = await super().save(wait=wait)
        except ClientChainError:
            cur = await self.client.get(self._path, nchain=3)
            self.chain = cur.get("chain")
            res = await super().save(wait=wait)
        root = self.root
        if isinstance(root, ErrorRoot):
            root._reindex(self)
        return res

    async def resolve(self) -> None:
        """Mark the problem as fixed."""
        self.resolved = True
        self.resolved_at = time.time()
        await self.save()

    def export(self, verbose: int = 0, node: Any = None) -> dict:
        """The record as a map for display, with ``_path`` (where it is stored).

        ``verbose`` ≥ 1 adds ``details`` (node -> detail), ≥ 2 with tracebacks;
        ``node`` limits the details to that node's.
        """
        res = self.get_value()
        res["_path"] = self._path
        if verbose or node is not None:
            res["details"] = {
                name: d.export(trace=verbose >= 2)
                for name, d in self.details.items()
                if node is None or name == node
            }
        return res


class ErrorNode(ClientEntry):
    """The records made by one node (``<node>``)."""

    @classmethod
    def child_type(cls, name: Any) -> type[ClientEntry]:
        return ErrorEntry


class ErrorRoot(ClientRoot):
    """The error records below ``errors.prefix``, as seen by node ``node``.

    ``node`` (default: the client's name, ``connect.name`` or the host
    name) is the name this root records errors under.
    """

    CFG = "errors"

    def __init__(self, client: Client, path: Any, *, node: Any = None, **kw: Any):
        super().__init__(client, path, **kw)
        self._node = node if node is not None else client.client_name
        self._by_key: dict[tuple, list[ErrorEntry]] = {}
        self._create_lock = anyio.Lock()
        self._merging: set[int] = set()

    @classmethod
    def child_type(cls, name: Any) -> type[ClientEntry]:
        return ErrorNode

    @property
    def name(self) -> Any:
        """The node name this root records errors under."""
        return self._node

    @classmethod
    async def as_handler(  # type: ignore[override]
        cls, client: Client, name: Any = None, *, cfg: dict | None = None,
        key: str = "prefix", subpath: Any = (), **kw: Any,
    ) -> ErrorRoot:
        """The shared error root of ``client`` for node ``name`` (default: the client's)."""
        node = name if name is not None else client.client_name
        return await super().as_handler(  # type: ignore[return-value]
            client, cfg=cfg, key=key, subpath=subpath, name=node, node=node, **kw
        )

    # --- the (subsystem, path) index --------------------------------------------------

    def _reindex(self, entry: ErrorEntry) -> None:
        old = entry._key
        new = entry.key
        if old != new:
            if old is not None:
                lst = self._by_key.get(old)
                if lst is not None and entry in lst:
                    lst.remove(entry)
                    if not lst:
                        del self._by_key[old]
            entry._key = new
            if new is not None:
                self._by_key.setdefault(new, []).append(entry)
        if new is not None and len(self._by_key[new]) > 1:
            self._dedup(new)

    @staticmethod
    def _rank(e: ErrorEntry) -> tuple:
        first = getattr(e, "first_seen", None)
        return (first if isinstance(first, (int, float)) else float("inf"), str(e.node))

    def _winner(self, key: tuple) -> ErrorEntry | None:
        lst = self._by_key.get(key)
        if not lst:
            return None
        return lst[0] if len(lst) == 1 else min(lst, key=self._rank)

    def _dedup(self, key: tuple) -> None:
        winner = self._winner(key)
        for loser in self._by_key[key]:
            if loser is winner or loser.node != self._node or id(loser) in self._merging:
                continue
            if self._tg is None:
                return
            self._merging.add(id(loser))
            self._tg.start_soon(self._merge, loser, winner)

    async def _merge(self, loser: ErrorEntry, winner: ErrorEntry) -> None:
        """Move our detail of ``loser`` into ``winner``, then delete ``loser``."""
        try:
            mine = loser.get(self._node)
            if mine is not None and mine.value is not NotGiven:
                target = winner.follow((self._node,), create=True)
                assert isinstance(target, ErrorDetail)
                if target.value is NotGiven:
                    for k in ErrorDetail.ATTRS:
                        v = getattr(mine, k, NotGiven)
                        if v is not NotGiven:
                            setattr(target, k, v)
                    await target.save()
            winner.count = (winner.count or 0) + (loser.count or 0)
            await winner.save()
            await loser.delete(recursive=True)
        except DistKVError as exc:
            logger.warning("Could not merge error %s into %s: %r", loser._path, winner._path, exc)
        finally:
            self._merging.discard(id(loser))

    # --- the API --------------------------------------------------------------------

    def all_errors(self, subsystem: str | None = None) -> Iterator[ErrorEntry]:
        """Every error record (one per subsystem and path), optionally of one subsystem."""
        for key in list(self._by_key):
            if subsystem is not None and key[0] != subsystem:
                continue
            rec = self._winner(key)
            if rec is not None:
                yield rec

    def get_error(self, path: Any) -> ErrorEntry | None:
        """The record stored at ``path`` (relative to the prefix, or absolute below it)."""
        path = P(path)
        if path[: len(self._path)] == self._path:
            path = path[len(self._path) :]
        entry = self.follow(path)
        return entry if isinstance(entry, ErrorEntry) else None

    async def get_error_record(
        self, subsystem: str, path: Any, create: bool = True
    ) -> ErrorEntry | None:
        """The record of ``(subsystem, path)``; a new one if there is none and ``create``."""
        key = (subsystem, P(path))
        rec = self._winner(key)
        if rec is not None or not create:
            return rec
        async with self._create_lock:
            rec = self._winner(key)
            if rec is not None:
                return rec
            tock = await self.client.get_tock()
            rec = self.follow((self._node, tock), create=True)  # type: ignore[assignment]
            assert isinstance(rec, ErrorEntry)
            now = time.time()
            rec.subsystem = subsystem
            rec.path = key[1]
            rec.severity = 0
            rec.resolved = False
            rec.count = 0
            rec.created = rec.first_seen = rec.last_seen = now
            await rec.save()
            return rec

    async def record_error(
        self,
        subsystem: str,
        path: Any,
        *,
        exc: BaseException | None = None,
        data: Mapping | None = None,
        severity: int = 0,
        message: str | None = None,
        force: bool = False,
        comment: str | None = None,
    ) -> ErrorEntry:
        """Record a problem of ``subsystem`` with the object at ``path``.

        Counts the occurrence. While a more severe problem (lower
        ``severity``) is open, a less severe one only counts, unless
        ``force``. Otherwise the record is (re)opened and this node's detail
        replaced: ``comment`` (default ``repr(exc)``), ``trace`` (from
        ``exc``), ``message`` (a format string for ``data``) and ``data``.
        """
        rec = await self.get_error_record(subsystem, path)
        assert rec is not None
        now = time.time()
        keep = (
            not force and rec.count > 0 and not rec.resolved and rec.severity < severity
        )
        rec.count = (rec.count or 0) + 1
        rec.last_seen = now
        if keep:
            await rec.save()
            return rec
        rec.assign(severity=severity, resolved=False, resolved_at=NotGiven)
        if message is not None:
            rec.message = message
        res = await rec.save()
        if comment is None and exc is not None:
            comment = repr(exc)
        await self._set_detail(
            rec, tock=res.get("tock"), comment=comment,
            trace=format_trace(exc) if exc is not None else NotGiven,
            message=message, data=data,
        )
        logger.warning("Error %s %s: %s %s: %s", rec._path, self._node, subsystem, P(path),
                       comment if comment is not None else message)
        return rec

    async def record_working(
        self,
        subsystem: str,
        path: Any,
        *,
        comment: str | None = None,
        data: Mapping | None = None,
        force: bool = False,
    ) -> ErrorEntry | None:
        """The object at ``path`` works (again): resolve its open record, if any.

        ``comment``/``data`` are stored as this node's detail. With ``force``,
        an already resolved record is updated too. Returns the record or ``None``.
        """
        rec = await self.get_error_record(subsystem, path, create=False)
        if rec is None or (rec.resolved and not force):
            return rec
        rec.resolved = True
        rec.resolved_at = time.time()
        res = await rec.save()
        if comment is not None or data:
            await self._set_detail(rec, tock=res.get("tock"), comment=comment, trace=NotGiven,
                                   message=NotGiven, data=data)
        return rec

    async def _set_detail(self, rec: ErrorEntry, *, tock: Any, comment: Any, trace: Any,
                          message: Any, data: Mapping | None) -> None:
        detail = rec.follow((self._node,), create=True)
        assert isinstance(detail, ErrorDetail)
        detail.assign(
            seen=time.time(),
            tock=tock if tock is not None else NotGiven,
            comment=comment if comment is not None else NotGiven,
            trace=trace,
            message=message if message is not None else NotGiven,
            data=dict(data) if data else NotGiven,
        )
        try:
            await detail.save()
        except ClientChainError:
            cur = await self.client.get(detail._path, nchain=3)
            detail.chain = cur.get("chain")
            await detail.save()

    @asynccontextmanager
    async def capture(
        self,
        subsystem: str,
        path: Any,
        *,
        reraise: bool = True,
        resolve: bool = True,
        severity: int = 0,
        message: str | None = None,
        data: Mapping | None = None,
    ) -> AsyncIterator[None]:
        """Record an exception raised in the body as an error of ``(subsystem, path)``.

        The exception is re-raised if ``reraise`` (default), else swallowed.
        A body that completes resolves an open record (unless ``resolve`` is
        false). Only ``Exception``s are recorded: cancellation passes through.
        If recording itself fails, that is logged and the body's exception
        is still raised (or swallowed) as asked.
        """
        try:
            yield
        except Exception as exc:
            try:
                await self.record_error(
                    subsystem, path, exc=exc, severity=severity, message=message, data=data
                )
            except DistKVError as rec_exc:
                logger.error("Could not record %r for %s %s: %r", exc, subsystem, path, rec_exc)
            if reraise:
                raise
        else:
            if resolve:
                await self.record_working(subsystem, path)

