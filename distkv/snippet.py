"""User code stored in the tree: compiling snippets and running them with a time limit.

Type checks, codecs (08) and stored procedures (09) are Python *function
bodies* kept as text. :class:`Snippet` turns one into a function:

* the header ``def _proc(<params>):`` (``async def`` for async snippets) is
  put in front and four spaces are inserted after every newline, so any
  consistently indented body works;
* a call binds the first positional arguments to the first parameters, takes
  every other parameter out of the keyword arguments (default ``None``) and
  uses the remaining keywords as the function's global namespace (builtins
  are available as usual); ``return`` gives the result.

:class:`CodeRunner` runs such code for the server with a bounded run time.
Why a worker thread, and not something else:

* a watchdog built on ``sys.settrace`` slows every line of every snippet,
  and signals (``SIGALRM``) raise in whatever the main thread runs at that
  moment — usually the event loop, which must never see a stray exception;
* a subprocess could be killed cleanly, but every value would cross a pipe
  (the server checks every typed write and converts every value it sends to
  a user with a converter) and the snippets' ``entry`` argument is a live
  server object;
* a worker thread costs one thread hand-over per call. The caller waits at
  most ``timeout`` seconds, so a snippet that loops forever or sleeps stalls
  the caller for that long and no longer. The runaway thread then gets an
  asynchronous :class:`CodeInterrupt` exception (delivered at its next
  bytecode, which stops plain Python loops) and is replaced by a fresh
  worker. A thread that ignores the interrupt (stuck in a C call, or catching
  ``BaseException`` in a loop) is re-interrupted on later calls; while
  ``max_runaway`` of them are still alive, no further code is run and callers
  get a clear error instead. (C code that holds the GIL for a long time, such
  as a huge integer power, cannot be stopped in-process by any of these.)
"""

from __future__ import annotations

import ast
import builtins
import ctypes
import queue
import threading
import types
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["CodeInterrupt", "CodeRunner", "CodeTimeoutError", "Snippet"]

_BUILTINS = builtins.__dict__


class Snippet:
    """A compiled function body with named parameters.

    ``path`` names the snippet in tracebacks and error texts. A syntax error
    raises :class:`ValueError` naming the path and the line in the body.
    """

    __slots__ = ("path", "params", "is_async", "_code")

    def __init__(
        self, text: str, params: Sequence[str], path: Any, *, is_async: bool = False
    ) -> None:
        if not isinstance(text, str):
            raise ValueError(f"{path}: the code must be a string, not {type(text).__name__}")
        self.path = path
        self.params = tuple(params)
        self.is_async = is_async
        header = f"{'async ' if is_async else ''}def _proc({', '.join(self.params)}):\n    "
        try:
            tree = ast.parse(header + text.replace("\n", "\n    "), str(path))
        except SyntaxError as exc:
            line = (exc.lineno or 1) - 1
            raise ValueError(f"{path}: cannot compile the code: {exc.msg} (line {line})") from None
        ast.increment_lineno(tree, -1)  # tracebacks count the body's lines from 1
        module = compile(tree, str(path), "exec")
        self._code = next(
            c for c in module.co_consts if isinstance(c, types.CodeType) and c.co_name == "_proc"
        )

    def __repr__(self) -> str:
        return f"<Snippet {self.path}>"

    def __call__(self, *args: Any, **kw: Any) -> Any:
        params = self.params
        if len(args) > len(params):
            raise TypeError(f"{self.path}: {len(params)} arguments expected, {len(args)} given")
        if len(args) < len(params):
            args = (*args, *(kw.pop(name, None) for name in params[len(args) :]))
        kw["__builtins__"] = _BUILTINS
        fn = types.FunctionType(self._code, kw, "_proc")
        kw["_proc"] = fn
        return fn(*args)


class CodeTimeoutError(RuntimeError):
    """User code did not finish in time, or too much runaway code still runs."""


class CodeInterrupt(BaseException):
    """Raised inside a runaway snippet's thread to stop it (not an ``Exception``,
    so that ``except Exception`` in user code does not swallow it)."""


def _interrupt(thread: threading.Thread) -> None:
    tid = thread.ident
    if tid is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(tid), ctypes.py_object(CodeInterrupt)
        )


class _Job:
    __slots__ = ("fn", "args", "kw", "result", "error", "done", "abandoned", "event")

    def __init__(self, fn: Callable[..., Any], args: tuple, kw: dict) -> None:
        self.fn = fn
        self.args = args
        self.kw = kw
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = False
        self.abandoned = False
        self.event = threading.Event()


class _Worker:
    """One thread that runs jobs one after the other until it is retired."""

    __slots__ = ("jobs", "lock", "thread", "finished")

    def __init__(self, name: str) -> None:
        self.jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        # Guards job.done, job.abandoned and finished: an interrupt is only
        # sent under this lock while the thread has not finished, so it can
        # never hit another thread that reuses this one's id.
        self.lock = threading.Lock()
        self.finished = False
        self.thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self.thread.start()

    def interrupt(self) -> None:
        """Stop the running job's code (the worker then ends)."""
        with self.lock:
            if not self.finished:
                _interrupt(self.thread)

    def _loop(self) -> None:
        try:
            while True:
                job = self.jobs.get()
                if job is None:
                    return
                try:
                    job.result = job.fn(*job.args, **job.kw)
                except BaseException as exc:  # noqa: BLE001  (handed to the caller)
                    job.error = exc
                with self.lock:
                    job.done = True
                    if job.abandoned:
                        return
                job.event.set()
        except BaseException:  # noqa: BLE001, S110
            # An interrupt that arrived outside the job's code: this worker
            # has been retired, so it just ends.
            pass
        finally:
            while True:  # an interrupt may still be pending: retry until marked
                try:
                    with self.lock:
                        self.finished = True
                    break
                except BaseException:  # noqa: BLE001, S112
                    continue


class CodeRunner:
    """Runs callables in a worker thread, waiting at most ``timeout`` seconds each.

    :meth:`run` is synchronous: the calling thread (the server's event loop)
    blocks until the code is done or the time is up. Calls are serialised.
    """

    def __init__(
        self, timeout: float = 0.5, *, max_runaway: int = 4, name: str = "distkv-code"
    ) -> None:
        self.timeout = timeout
        self.max_runaway = max_runaway
        self.name = name
        self._worker: _Worker | None = None
        self._runaway: list[_Worker] = []
        self._lock = threading.Lock()
        self._count = 0

    def __repr__(self) -> str:
        return f"<CodeRunner timeout={self.timeout} runaway={len(self._runaway)}>"

    @property
    def runaway(self) -> int:
        """How many timed-out snippets are still running."""
        self._reap()
        return len(self._runaway)

    def _reap(self) -> None:
        self._runaway = [w for w in self._runaway if w.thread.is_alive()]

    def _current(self) -> _Worker:
        w = self._worker
        if w is None:
            self._count += 1
            w = self._worker = _Worker(f"{self.name}-{self._count}")
        return w

    def run(self, fn: Callable[..., Any], *args: Any, what: str = "the code", **kw: Any) -> Any:
        """``fn(*args, **kw)`` in the worker; its result, or its exception re-raised.

        Raises :class:`CodeTimeoutError` (mentioning ``what``) if it takes longer
        than ``timeout`` seconds, or at once if ``max_runaway`` earlier
        snippets are still running.
        """
        with self._lock:
            if self._runaway:
                self._reap()
                for w in self._runaway:
                    w.interrupt()
                if len(self._runaway) >= self.max_runaway:
                    raise CodeTimeoutError(
                        f"{len(self._runaway)} timed-out snippets are still running; "
                        f"not running {what}"
                    )
            w = self._current()
            job = _Job(fn, args, kw)
            w.jobs.put(job)
            if not job.event.wait(self.timeout):
                with w.lock:
                    if not job.done and not w.finished:
                        job.abandoned = True
                        _interrupt(w.thread)
                        self._worker = None
                        self._runaway.append(w)
                        raise CodeTimeoutError(
                            f"{what} did not finish within {self.timeout:g} seconds"
                        )
            err = job.error
            if err is not None:
                raise err
            return job.result

    def close(self) -> None:
        """Stop the idle worker (runaway ones are daemon threads and are left alone)."""
        with self._lock:
            w, self._worker = self._worker, None
        if w is not None:
            w.jobs.put(None)
