"""Stored code: procedures below ``codes.prefix``, modules below ``modules.prefix``.

A procedure record (``:.distkv.code.proc.<name…>``) holds

* ``code`` — the body of a function, compiled as 08 §1 describes
  (:class:`distkv.snippet.Snippet`): ``return`` works, and ``await`` in
  async code;
* ``is_async`` — ``True``: ``async def``, awaited; ``None``: a plain
  function, called directly; ``False``: a plain function run in a worker thread;
* ``vars`` — parameter names; callers fill them by position or keyword,
  missing ones are ``None``. All other keyword arguments become the global
  variables of the code (that is how runners pass ``_client``, ``_info`` …);
* ``default`` — default keyword data (runners merge job data over it);
* ``info`` — a one-line description.

:class:`CodeRoot` mirrors the procedures and compiles each record when it
arrives; tracebacks show the stored lines with their own line numbers. A
record that does not compile is recorded as an error (subsystem
``compile``, path = the procedure's name, message ``compiler error``) and
can't be called until fixed (which resolves the error). When a record
changes or is deleted, its entry's :meth:`CodeEntry.wait_changed` returns
and the root's listeners are called, so that runners can restart jobs that
use it.

:class:`ModuleRoot` mirrors module records (``:.distkv.code.module.<name…>``,
``{code: <module source>}``), executes each as a module and registers it in
``sys.modules`` under the dotted name, so that stored code can import it.
Modules that import other stored modules may arrive in any order: during the
initial load such imports are retried until nothing more loads.
"""

from __future__ import annotations

import functools
import inspect
import keyword
import linecache
import logging
import sys
import types
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import anyio

from distkv.exceptions import DistKVError
from distkv.obj import ClientEntry, ClientRoot
from distkv.snippet import Snippet
from distkv.util import NotGiven
from distkv.util.path import P, Path

if TYPE_CHECKING:
    from distkv.client import Client
    from distkv.errors import ErrorRoot

__all__ = [
    "CodeRoot",
    "CodeEntry",
    "ModuleRoot",
    "ModuleEntry",
    "CodeNotFoundError",
    "CodeCompileError",
    "make_proc",
    "line_info",
]

logger = logging.getLogger(__name__)


class CodeNotFoundError(LookupError):
    """There is no procedure at this path."""


class CodeCompileError(RuntimeError):
    """The procedure's stored code does not compile."""


def line_info(code: str) -> str:
    """The generated description of a record without ``info``: ``<N lines>``."""
    n = len(code.splitlines())
    return f"<{n} line{'' if n == 1 else 's'}>"


def _register_source(filename: str, code: str) -> None:
    """Make tracebacks show the stored source lines."""
    linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)


def make_proc(code: str, variables: Iterable[str] = (), path: Any = (), *,
              is_async: bool | None = None) -> Snippet:
    """Compile a procedure body (see the module docstring); ``path`` names it.

    ``is_async=True`` makes an ``async def``. Bad code raises ``ValueError``
    or ``SyntaxError`` naming the line; bad parameter names ``ValueError``.
    """
    variables = list(variables)
    for v in variables:
        if not isinstance(v, str) or not v.isidentifier() or keyword.iskeyword(v):
            raise ValueError(f"{v!r} is not a valid parameter name")
    if len(set(variables)) != len(variables):
        raise ValueError(f"Duplicate parameter names in {variables!r}")
    path = P(path)
    proc = Snippet(code, variables, path, is_async=is_async is True)
    _register_source(str(path), code)
    return proc


# --- procedures -----------------------------------------------------------------------


class _LoadingEntry(ClientEntry):
    """An entry that (re)loads its record whenever the value changes."""

    __slots__ = ()

    async def set_value(self, value: Any) -> None:
        await super().set_value(value)
        await self._load(value)

    async def update(self, value: Any, wait: bool = False) -> Any:
        res = await super().update(value, wait=wait)
        await self._load(value)
        return res

    async def _load(self, value: Any) -> None:
        """Load the record ``value`` (``NotGiven``: it was deleted); subclasses say how."""
        raise NotImplementedError


class CodeEntry(_LoadingEntry):
    """One procedure record, compiled; call it (see :meth:`__call__`)."""

    __slots__ = ("code", "is_async", "error", "generation", "_changed")

    def __init__(self, parent: ClientEntry, name: Any):
        super().__init__(parent, name)
        #: The compiled function (``None``: no code, or it does not compile).
        self.code: Callable[..., Any] | None = None
        self.is_async: bool | None = None
        #: Why the stored code can't be used (``None`` if it can).
        self.error: BaseException | None = None
        #: Counts the changes of this record.
        self.generation = 0
        self._changed: anyio.Event | None = None

    @classmethod
    def child_type(cls, name: Any) -> type[ClientEntry]:
        return CodeEntry

    @property
    def info(self) -> str | None:
        """The record's ``info``, or ``<N lines>``."""
        v = self.value
        if not isinstance(v, Mapping):
            return None
        info = v.get("info")
        if info:
            return info
        code = v.get("code")
        return line_info(code) if isinstance(code, str) else None

    async def _load(self, value: Any) -> None:
        self.code = None
        self.error = None
        root = self.root
        if value is not NotGiven:
            try:
                if not isinstance(value, Mapping) or not isinstance(value.get("code"), str):
                    raise ValueError("not a code record: it needs a 'code' text")
                is_async = value.get("is_async")
                self.code = make_proc(
                    value["code"], value.get("vars") or (), self._path, is_async=is_async is True
                )
                self.is_async = is_async
            except Exception as exc:  # anything the compiler raises
                self.error = exc
                if isinstance(root, CodeRoot):
                    await root._report(self.subpath, exc)
            else:
                if isinstance(root, CodeRoot):
                    await root._report(self.subpath, None)
        self.generation += 1
        ev, self._changed = self._changed, None
        if ev is not None:
            ev.set()
        if isinstance(root, CodeRoot):
            root._notify(self)

    async def wait_changed(self) -> None:
        """Wait until this record changes (or is deleted)."""
        if self._changed is None:
            self._changed = anyio.Event()
        await self._changed.wait()

    def __call__(self, *args: Any, **kw: Any) -> Any:
        """Call the procedure: the result for plain code (``is_async: null``),
        an awaitable for async and thread code."""
        fn = self.code
        if fn is None:
            raise self._unusable()
        if self.is_async is False:
            return anyio.to_thread.run_sync(functools.partial(fn, *args, **kw))
        return fn(*args, **kw)

    async def call(self, *args: Any, **kw: Any) -> Any:
        """Call the procedure and return its result, whatever its kind."""
        res = self(*args, **kw)
        if self.is_async is not None and inspect.isawaitable(res):
            res = await res
        return res

    def _unusable(self) -> Exception:
        if self.error is not None:
            exc = CodeCompileError(f"The code at {self.subpath} can't be used: {self.error!r}")
            exc.__cause__ = self.error
            return exc
        return CodeNotFoundError(f"No code at {self.subpath}")


class _ReportingRoot(ClientRoot):
    """A root whose records can fail to load; results go to an ErrorRoot.

    ``err`` is the :class:`~distkv.errors.ErrorRoot` they go to (default: the
    client's, see :meth:`ClientRoot.helper_root`). Subclasses say under which
    ``SUBSYSTEM`` and with which words.
    """

    SUBSYSTEM = ""
    WHAT = ""  # "Code", "Module"
    FAILS = ""  # "does not compile", …

    def __init__(self, client: Client, path: Any, *, err: ErrorRoot | None = None, **kw: Any):
        super().__init__(client, path, **kw)
        self.err = err

    async def run_starting(self) -> None:
        if self.err is None:
            from distkv.errors import ErrorRoot

            try:
                self.err = await self.helper_root(ErrorRoot)  # type: ignore[assignment]
            except (DistKVError, KeyError) as exc:
                logger.warning("%s errors won't be recorded: %r", self.WHAT, exc)

    def _error_fields(self, exc: BaseException) -> dict:
        return {"exc": exc}

    async def _report(self, name: Path, exc: BaseException | None) -> None:
        err = self.err
        try:
            if exc is None:
                if err is not None:
                    await err.record_working(self.SUBSYSTEM, name)
                return
            logger.warning("%s %s %s: %r", self.WHAT, name, self.FAILS, exc)
            if err is not None:
                await err.record_error(self.SUBSYSTEM, name, **self._error_fields(exc))
        except DistKVError as rec_exc:
            logger.warning("Could not record the %s result of %s: %r",
                           self.SUBSYSTEM, name, rec_exc)

    async def _store(self, path: Path, value: dict) -> Any:
        """Write record ``path`` and return its entry once it is loaded here."""
        entry = self.follow(path, create=True)
        await entry.update(value, wait=True)
        return entry

    async def remove(self, path: Any) -> bool:
        """Delete record ``path`` (which unloads it); ``False`` if there was none."""
        entry = self.follow(P(path))
        if entry is None:
            return False
        await entry.delete(wait=True)
        return True


class CodeRoot(_ReportingRoot):
    """The stored procedures (``codes.prefix``), compiled and callable.

    Compile errors are recorded (subsystem ``compile``) in ``err``.
    """

    CFG = "codes"
    SUBSYSTEM = "compile"
    WHAT = "Code"
    FAILS = "does not compile"

    def __init__(self, client: Client, path: Any, *, err: ErrorRoot | None = None, **kw: Any):
        super().__init__(client, path, err=err, **kw)
        self._listeners: list[Callable[[CodeEntry], Any]] = []

    @classmethod
    def child_type(cls, name: Any) -> type[ClientEntry]:
        return CodeEntry

    def _error_fields(self, exc: BaseException) -> dict:
        # the text names the line; a traceback would only show the compiler
        return {"comment": repr(exc), "message": "compiler error"}

    # --- change listeners --------------------------------------------------------------

    def add_listener(self, fn: Callable[[CodeEntry], Any]) -> None:
        """Call ``fn(entry)`` after a record was (re)loaded or deleted."""
        self._listeners.append(fn)

    def remove_listener(self, fn: Callable[[CodeEntry], Any]) -> None:
        self._listeners.remove(fn)

    def _notify(self, entry: CodeEntry) -> None:
        for fn in list(self._listeners):
            try:
                fn(entry)
            except Exception:
                logger.exception("Code listener %r failed", fn)

    # --- calling -------------------------------------------------------------------------

    def get_code(self, name: Any) -> CodeEntry:
        """The entry of procedure ``name`` (``"a.b"`` or a path).

        Raises :class:`CodeNotFoundError` if there is none.
        """
        entry = self.follow(P(name))
        if not isinstance(entry, CodeEntry):
            raise CodeNotFoundError(f"No code at {P(name)}")
        return entry

    def __call__(self, name: Any, *args: Any, **kw: Any) -> Any:
        """Call procedure ``name``: see :meth:`CodeEntry.__call__`."""
        return self.get_code(name)(*args, **kw)

    async def call(self, name: Any, *args: Any, **kw: Any) -> Any:
        """Call procedure ``name`` and return its result, whatever its kind."""
        return await self.get_code(name).call(*args, **kw)

    # --- changing --------------------------------------------------------------------------

    async def add(
        self,
        path: Any,
        code: str,
        is_async: bool | None = None,
        variables: Iterable[str] = (),
        *,
        default: Mapping | None = None,
        info: str | None = None,
        **extra: Any,
    ) -> CodeEntry:
        """Store (or replace) procedure ``path``; returns its entry, loaded.

        The code is compiled first, so bad code raises here (``SyntaxError``,
        ``ValueError``) instead of being stored.
        """
        path = P(path)
        variables = list(variables)
        make_proc(code, variables, self._path + path, is_async=is_async is True)
        value: dict[str, Any] = {"code": code, "is_async": is_async, "vars": variables}
        if default:
            value["default"] = dict(default)
        if info:
            value["info"] = info
        value.update(extra)
        return await self._store(path, value)


# --- modules ---------------------------------------------------------------------------


def _ensure_package(name: str) -> types.ModuleType:
    """``sys.modules[name]``, made importable as a package (a placeholder if new)."""
    mod = sys.modules.get(name)
    if mod is None:
        mod = types.ModuleType(name)
        mod.__path__ = []  # type: ignore[attr-defined]  (lets submodules import)
        sys.modules[name] = mod
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(_ensure_package(parent), child, mod)
    return mod


class ModuleEntry(_LoadingEntry):
    """One module record; ``module`` is the loaded module (or ``None``)."""

    __slots__ = ("module", "error")

    def __init__(self, parent: ClientEntry, name: Any):
        super().__init__(parent, name)
        self.module: types.ModuleType | None = None
        self.error: BaseException | None = None

    @classmethod
    def child_type(cls, name: Any) -> type[ClientEntry]:
        return ModuleEntry

    @property
    def module_name(self) -> str:
        """The name to import it by: the sub-path, joined with dots."""
        return ".".join(str(e) for e in self.subpath)

    def _unload(self) -> None:
        name = self.module_name
        mod, self.module = self.module, None
        if mod is not None and sys.modules.get(name) is mod:
            del sys.modules[name]
            parent, _, child = name.rpartition(".")
            pmod = sys.modules.get(parent) if parent else None
            if pmod is not None and getattr(pmod, child, None) is mod:
                delattr(pmod, child)

    def _install(self, code: str) -> types.ModuleType:
        name = self.module_name
        filename = str(self._path)
        compiled = compile(code, filename, "exec")
        _register_source(filename, code)
        mod = types.ModuleType(name)
        mod.__file__ = filename
        mod.__path__ = []  # type: ignore[attr-defined]  (stored modules may have submodules)
        parent, _, child = name.rpartition(".")
        sys.modules[name] = mod
        try:
            exec(compiled, mod.__dict__)
        except BaseException:
            del sys.modules[name]
            raise
        if parent:
            setattr(_ensure_package(parent), child, mod)
        prefix = name + "."
        for other, sub in list(sys.modules.items()):
            if other.startswith(prefix) and "." not in other[len(prefix) :]:
                setattr(mod, other[len(prefix) :], sub)
        return mod

    async def _load(self, value: Any) -> None:
        self._unload()
        self.error = None
        if value is NotGiven:
            return
        root = self.root
        try:
            if not isinstance(value, Mapping) or not isinstance(value.get("code"), str):
                raise ValueError("not a module record: it needs a 'code' text")
            self.module = self._install(value["code"])
        except Exception as exc:
            self.error = exc
            if isinstance(root, ModuleRoot):
                await root._failed(self, exc)
        else:
            if isinstance(root, ModuleRoot):
                await root._report(self.subpath, None)


class ModuleRoot(_ReportingRoot):
    """The stored modules (``modules.prefix``), loaded into ``sys.modules``."""

    CFG = "modules"
    SUBSYSTEM = "module"
    WHAT = "Module"
    FAILS = "does not load"

    def __init__(self, client: Client, path: Any, *, err: ErrorRoot | None = None, **kw: Any):
        super().__init__(client, path, err=err, **kw)
        # modules whose import of another module failed, while (re)trying them in bulk
        self._deferred: list[ModuleEntry] | None = []

    @classmethod
    def child_type(cls, name: Any) -> type[ClientEntry]:
        return ModuleEntry

    def _error_fields(self, exc: BaseException) -> dict:
        return {"exc": exc, "message": "module error"}

    async def running(self) -> None:
        # retry modules that imported stored modules which hadn't arrived yet
        pending = self._deferred or []
        while pending:
            self._deferred = []
            for entry in pending:
                await entry._load(entry.value)
            if len(self._deferred) == len(pending):
                break  # no progress
            pending = self._deferred
        self._deferred = None
        for entry in pending:
            if entry.error is not None:
                await self._report(entry.subpath, entry.error)

    async def _failed(self, entry: ModuleEntry, exc: BaseException) -> None:
        if self._deferred is not None and isinstance(exc, ImportError):
            self._deferred.append(entry)
            return
        await self._report(entry.subpath, exc)

    def get_module(self, name: Any) -> types.ModuleType:
        """The loaded module ``name`` (``"a.b"`` or a path); ``LookupError`` if none."""
        entry = self.follow(P(name))
        if not isinstance(entry, ModuleEntry) or entry.module is None:
            raise LookupError(f"No module {P(name)} loaded")
        return entry.module

    async def add(self, path: Any, code: str, **extra: Any) -> ModuleEntry:
        """Store (or replace) module ``path``; returns its entry, loaded.

        The source is compiled first, so a syntax error raises here.
        """
        path = P(path)
        compile(code, str(self._path + path), "exec")
        return await self._store(path, {"code": code, **extra})
