"""``_self``: what a running job can ask its runner for (:class:`CallAdmin`).

Everything a job sets up through it — watches, monitors, timers, subtasks,
contexts — ends with the job. Messages from watches, monitors and timers
arrive on the job's ``_info`` queue (:mod:`distkv.runner.messages`)::

    await _self.watch(_P("home.hall.light"), fetch=True)
    await _self.timer(60)
    async for msg in _info:
        if isinstance(msg, _cls.ChangeMsg): ...
        elif isinstance(msg, _cls.TimerMsg): msg.timer.run(60)
"""

from __future__ import annotations

import logging
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from distkv.util import NotGiven
from distkv.util.path import P, Path

from .messages import ChangeMsg, ErrorRecorded, InfoQueue, MQTTmsg, ReadyMsg, TimerMsg

if TYPE_CHECKING:
    from .execute import JobRun

__all__ = ["CallAdmin", "Timer"]

logger = logging.getLogger(__name__)


class Timer:
    """A one-shot timer of a job: puts ``cls(timer)`` on ``_info`` when it fires.

    ``run(delay)`` (re)starts it, ``cancel()`` stops it; both return at once.
    """

    __slots__ = ("_admin", "_cls", "_scope", "delay")

    def __init__(self, admin: CallAdmin, cls: type):
        self._admin = admin
        self._cls = cls
        self._scope: anyio.CancelScope | None = None
        #: The delay of the last ``run``.
        self.delay: float | None = None

    def __repr__(self) -> str:
        return f"<Timer {self.delay}>"

    @property
    def running(self) -> bool:
        return self._scope is not None

    def run(self, delay: float) -> None:
        """Fire ``delay`` seconds from now (a running timer is restarted)."""
        self.cancel()
        self.delay = delay
        scope = self._scope = anyio.CancelScope()
        self._admin._tg.start_soon(self._fire, scope, delay)

    def cancel(self) -> None:
        """Don't fire."""
        scope, self._scope = self._scope, None
        if scope is not None:
            scope.cancel()

    async def _fire(self, scope: anyio.CancelScope, delay: float) -> None:
        with scope:
            await anyio.sleep(delay)
            if self._scope is scope:
                self._scope = None
                self._admin._put(self._cls(self))


class CallAdmin:
    """The ``_self`` of a running job (09 §3.1)."""

    __slots__ = ("_run", "_tg", "_stack", "_info", "_fetching", "_watches")

    def __init__(self, run: JobRun, tg: anyio.abc.TaskGroup, stack: AsyncExitStack,
                 info: InfoQueue | None):
        self._run = run
        self._tg = tg
        self._stack = stack
        self._info = info
        self._fetching = 0  # watches still sending their initial data
        self._watches = 0  # watches that fetch, in total

    def __repr__(self) -> str:
        return f"<CallAdmin {self._run.entry._path}>"

    @property
    def client(self) -> Any:
        return self._run.root.client

    @property
    def path(self) -> Path:
        """The job's full path."""
        return self._run.entry._path

    def _put(self, msg: Any) -> None:
        if self._info is None:
            raise RuntimeError("Only async code gets messages (it has no _info queue)")
        self._info.put(msg)

    # --- messages ----------------------------------------------------------------------

    async def watch(
        self,
        path: Any,
        cls: type = ChangeMsg,
        max_depth: int = 0,
        min_depth: int = 0,
        fetch: bool = True,
        **kw: Any,
    ) -> None:
        """Send a ``cls`` message for every change at (and below, up to
        ``max_depth``) ``path``; with ``fetch``, first for the current entries.

        Once every fetching watch of the job has sent its current data, a
        :class:`ReadyMsg` follows. A path marked ``:mr`` is a backend topic
        instead (see :meth:`monitor`).
        """
        path = P(path)
        if path.mark == "r":
            await self.monitor(path.with_mark(""), cls=cls if cls is not ChangeMsg else MQTTmsg)
            return
        if self._info is None:
            raise RuntimeError("Only async code can watch (it has no _info queue)")
        if fetch:
            self._fetching += 1
            self._watches += 1
        await self._tg.start(self._watch, path, cls, fetch,
                             {"max_depth": max_depth, "min_depth": min_depth, **kw})

    async def _watch(self, path: Path, cls: type, fetch: bool, kw: dict, *,
                     task_status: anyio.abc.TaskStatus) -> None:
        async with self.client.watch(path, fetch=fetch, nchain=kw.pop("nchain", 0), **kw) as w:
            task_status.started()
            async for rec in w:
                if "path" in rec:
                    self._put(cls(rec, path))
                elif rec.get("state") == "uptodate" and fetch:
                    self._fetching -= 1
                    if not self._fetching:
                        self._put(ReadyMsg(self._watches))

    async def monitor(self, path: Any, cls: type = MQTTmsg, raw: bool = False) -> None:
        """Send a ``cls`` message for every message on backend topic ``path``."""
        if self._info is None:
            raise RuntimeError("Only async code can monitor (it has no _info queue)")
        await self._tg.start(self._monitor, P(path).with_mark(""), cls, raw)

    async def _monitor(self, path: Path, cls: type, raw: bool, *,
                       task_status: anyio.abc.TaskStatus) -> None:
        async with self.client.msg_monitor(path, raw=raw) as mon:
            task_status.started()
            async for rec in mon:
                self._put(cls(rec))

    async def timer(self, delay: float | None, cls: type = TimerMsg) -> Timer:
        """A timer that sends a ``cls`` message ``delay`` seconds from now
        (``None``: not started; use ``timer.run(delay)``)."""
        t = Timer(self, cls)
        if delay is not None:
            t.run(delay)
        return t

    # --- the job ------------------------------------------------------------------------

    async def spawn(self, proc: Any, *args: Any, **kw: Any) -> anyio.CancelScope:
        """Run ``proc(*args, **kw)`` next to the job; it is cancelled when the job
        ends. Returns its cancel scope. If it fails, the job fails."""

        async def runner(*, task_status: anyio.abc.TaskStatus) -> None:
            with anyio.CancelScope() as scope:
                task_status.started(scope)
                await proc(*args, **kw)

        return await self._tg.start(runner)

    async def open_context(self, ctx: AbstractAsyncContextManager) -> Any:
        """Enter the async context ``ctx`` for the rest of the job; returns its value."""
        return await self._stack.enter_async_context(ctx)

    async def setup_done(self) -> None:
        """The job is up and healthy: its failure count is reset and its error resolved."""
        await self._run.healthy()

    async def error(self, path: Any = None, **kw: Any) -> None:
        """Record an error (for the job, or for ``path``) and raise :class:`ErrorRecorded`.

        ``kw`` goes to :meth:`distkv.errors.ErrorRoot.record_error` (``message``,
        ``data``, ``exc``, ``severity``, ``comment``…).
        """
        where = self.path if path is None else P(path)
        await self._run.root.record_error(where, **kw)
        raise ErrorRecorded(where)

    def cancel(self) -> None:
        """End the job now (not a failure)."""
        self._run.stop("cancel")

    # --- data -------------------------------------------------------------------------------

    async def send(self, path: Any, value: Any = NotGiven, raw: bytes | None = None) -> None:
        """Publish ``value`` (or ``raw`` bytes) on backend topic ``path``."""
        topic = P(path).with_mark("")
        if raw is not None:
            await self.client.msg_send(topic, raw=raw)
        else:
            await self.client.msg_send(topic, None if value is NotGiven else value)

    async def set(self, path: Any, value: Any, chain: Any = NotGiven, **kw: Any) -> Any:
        """Store ``value`` at ``path`` (a path marked ``:mr`` publishes it instead)."""
        path = P(path)
        if path.mark == "r":
            await self.send(path, value)
            return None
        return await self.client.set(path, value, chain=chain, **kw)

    async def get(self, path: Any, default: Any = None) -> Any:
        """The value at ``path``, or ``default`` if there is none."""
        res = await self.client.get(P(path))
        return res.get("value", default)
