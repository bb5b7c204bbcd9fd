"""One run of one job on this runner: :class:`JobRun`.

1. :meth:`JobRun.claim` writes ``started = now``, ``node = <runner>`` to the
   job's state, conditional on the state's chain, and waits for the echo.
   If somebody else wrote the state first, the job is not started.
2. :meth:`JobRun.run` calls the procedure with the job's ``data`` merged
   over the procedure's ``default``, plus ``_client``, ``_cfg``, ``_cls``
   (the message and state classes), ``_P``, ``_Path``, ``_log``,
   ``_digits``, ``_self`` (a :class:`~distkv.runner.admin.CallAdmin`) and,
   for async code, ``_info`` (an :class:`~distkv.runner.messages.InfoQueue`).
3. Then ``node`` is cleared and ``stopped`` set. A result is stored as
   ``result``, the failure count reset and the job's error record
   (subsystem ``run``, path = the job's path) resolved; an exception is
   recorded there and counted (``backoff``, at most 20).

A run is stopped early by :meth:`JobRun.stop` with a reason: ``deleted``,
``off`` (no ``target`` any more), ``code`` (its code changed: it is
restarted), ``taken`` (another runner wrote its state: nothing is written),
``cancel`` (the job asked for it), ``shutdown`` (the runner stops: another
runner restarts it at once).
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import anyio

from distkv.actor import ActorState, BrokenState, CompleteState, DetachedState, PartialState
from distkv.codec import packb
from distkv.exceptions import ClientChainError, DistKVError
from distkv.util import NotGiven, attrdict
from distkv.util.path import P, Path

from .admin import CallAdmin
from .messages import ChangeMsg, ErrorRecorded, InfoQueue, MQTTmsg, ReadyMsg, RunnerMsg, TimerMsg
from .schedule import MAX_FAILURES

if TYPE_CHECKING:
    from distkv.code import CodeEntry

    from .entry import RunnerEntry, StateEntry
    from .root import RunnerRoot

__all__ = ["JobRun", "CLASSES", "digits"]

logger = logging.getLogger(__name__)

#: ``_cls`` of a job: the classes it may need to look at its messages.
CLASSES = attrdict(
    ActorState=ActorState, BrokenState=BrokenState, DetachedState=DetachedState,
    PartialState=PartialState, CompleteState=CompleteState, NotGiven=NotGiven,
    RunnerMsg=RunnerMsg, ChangeMsg=ChangeMsg, MQTTmsg=MQTTmsg, TimerMsg=TimerMsg,
    ReadyMsg=ReadyMsg, ErrorRecorded=ErrorRecorded,
)

#: Seconds a stopping runner may spend telling the tree that its jobs ended.
SHUTDOWN_WRITE_TIME = 3


def digits(value: float, n: int = 6) -> float:
    """``value`` rounded to ``n`` significant digits (``_digits`` of a job)."""
    if not value or not math.isfinite(value):
        return value
    return round(value, n - 1 - int(math.floor(math.log10(abs(value)))))


def _storable(value: Any) -> Any:
    """``value`` if it can be stored, else its ``repr``."""
    try:
        packb(value)
    except (TypeError, ValueError, OverflowError):
        return repr(value)
    return value


def _leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


class JobRun:
    """One run of job ``entry`` (state ``state``) on runner ``root``."""

    __slots__ = ("root", "entry", "state", "code_path", "generation", "reason",
                 "_scope", "info", "started")

    def __init__(self, root: RunnerRoot, entry: RunnerEntry, state: StateEntry):
        self.root = root
        self.entry = entry
        self.state = state
        self.code_path: Path | None = entry.code_path
        #: The generation of the code record when the run started.
        self.generation = -1
        #: Why the run was stopped from outside (``None``: it wasn't).
        self.reason: str | None = None
        self._scope: anyio.CancelScope | None = None
        self.info: InfoQueue | None = None
        self.started = 0.0

    def __repr__(self) -> str:
        return f"<JobRun {self.entry._path} {self.reason or ''}>"

    @property
    def me(self) -> str:
        return self.root.runner_name

    def stop(self, reason: str) -> None:
        """End the run early, for ``reason`` (see the module docstring)."""
        if self.reason is None:
            self.reason = reason
        if self._scope is not None:
            self._scope.cancel()

    def push(self, msg: Any) -> None:
        """Put ``msg`` on the job's ``_info`` queue (if it has one)."""
        if self.info is not None:
            self.info.put(msg)

    # --- claiming -------------------------------------------------------------------------

    async def claim(self) -> bool:
        """Mark the job as running here; ``False`` if somebody else was quicker."""
        state = self.state
        self.started = time.time()
        try:
            state.assign(started=self.started, node=self.me, interrupted=NotGiven,
                         computed=NotGiven, reason=NotGiven)
            await state.save(wait=True)
        except ClientChainError:
            await state.refresh()
            return False
        return state.__dict__.get("node") == self.me and self.reason is None

    # --- running --------------------------------------------------------------------------

    async def run(self) -> None:
        """Run the job to its end and record the outcome (see the module docstring)."""
        result: Any = NotGiven
        error: BaseException | None = None
        try:
            try:
                with anyio.CancelScope() as self._scope:
                    if self.reason is not None:
                        self._scope.cancel()
                    try:
                        result = await self._call()
                    except Exception as exc:
                        error = _leaf(exc)
            except anyio.get_cancelled_exc_class():
                # the runner itself is stopping
                if self.reason is None:
                    self.reason = "shutdown"
                with anyio.CancelScope(shield=True), anyio.move_on_after(SHUTDOWN_WRITE_TIME):
                    await self._finish(NotGiven, None)
                raise
            await self._finish(result, error)
        finally:
            self.root.job_ended(self)

    async def _call(self) -> Any:
        root = self.root
        entry = self.entry
        code: CodeEntry = root.code.get_code(self.code_path or ())
        self.generation = code.generation
        async with AsyncExitStack() as stack:
            tg = await stack.enter_async_context(anyio.create_task_group())
            info = self.info = InfoQueue() if code.is_async else None
            admin = CallAdmin(self, tg, stack, info)
            kw = self._arguments(code, admin)
            if info is not None and root.group_state is not None:
                info.put(root.group_state)
            ok_after = entry.ok_after
            if isinstance(ok_after, (int, float)) and ok_after > 0:
                tg.start_soon(self._ok_after, float(ok_after))
            res = await code.call(**kw)
            tg.cancel_scope.cancel()  # the job is done: so are its watches, timers, subtasks
        return res

    def _arguments(self, code: CodeEntry, admin: CallAdmin) -> dict[str, Any]:
        client = self.root.client
        default = code.value.get("default") if isinstance(code.value, dict) else None
        data = self.entry.data
        kw: dict[str, Any] = {}
        if isinstance(default, dict):
            kw.update(default)
        if isinstance(data, dict):
            kw.update(data)
        kw.update(
            _client=client, _cfg=client.config, _cls=CLASSES, _P=P, _Path=Path,
            _log=logging.getLogger(f"distkv.job.{self.entry.subpath}"),
            _digits=digits, _self=admin,
        )
        if self.info is not None:
            kw["_info"] = self.info
        return kw

    async def _ok_after(self, delay: float) -> None:
        await anyio.sleep(delay)
        await self.healthy()

    async def healthy(self) -> None:
        """The job works: reset its failure count, resolve its error."""
        if self.state.__dict__.get("backoff"):
            await self.state.save_fields(owner=self.me, backoff=0, error=NotGiven)
        await self.root.record_working(self.entry._path)

    # --- the outcome -------------------------------------------------------------------------

    async def _finish(self, result: Any, error: BaseException | None) -> None:
        reason = self.reason
        if reason == "taken":
            return  # the state is somebody else's now
        state = self.state
        now = time.time()
        fields: dict[str, Any] = {"node": None, "stopped": now}
        try:
            if reason is not None and reason != "cancel":
                if reason in ("shutdown", "code"):
                    fields["interrupted"] = True
            elif error is not None:
                if not isinstance(error, ErrorRecorded):
                    await self.root.record_error(self.entry._path, exc=error)
                failures = state.__dict__.get("backoff") or 0
                fields["backoff"] = min(failures + 1, MAX_FAILURES)
                fields["error"] = repr(error)
                logger.info("Job %s failed: %r", self.entry._path, error)
            elif reason is None:
                fields["result"] = _storable(None if result is NotGiven else result)
                fields["backoff"] = 0
                fields["error"] = NotGiven
                await self.root.record_working(self.entry._path)
            await state.save_fields(owner=self.me, **fields)
        except DistKVError as exc:
            logger.warning("Could not record the end of job %s: %r", self.entry._path, exc)
