"""Helpers shared by the CLI commands.

* :class:`LazyGroup`: a click group whose subcommands are imported on first
  use (built-in modules plus ``distkv_ext.<name>.<sub>`` extensions;
  :func:`extensions` finds those, :func:`merge_ext_config` adds their
  configuration);
* :func:`attr_args` / :func:`build_value`: the ``-v``/``-e``/``-p NAME VALUE``
  options and the value they build;
* :class:`DictFolder`: ``-d KEY`` output, folding ``(path, value)`` results
  into one nested mapping;
* :func:`add_dates`: ``-D/--add-date``;
* :func:`to_path`, :func:`iter_msgpack_file`, :func:`error_line`.

The commands themselves live in :mod:`distkv.command.main`, ``dump``, ``pdb``
and :mod:`distkv.command.client`.
"""

from __future__ import annotations

import datetime
import importlib
import importlib.util
import pkgutil
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any

import anyio
import asyncclick as click

from distkv.exceptions import DistKVError
from distkv.util import NotGiven, attrdict
from distkv.util.extensions import EXT_PACKAGE, NO_LOAD, enabled_extensions, merge_ext_config
from distkv.util.path import P, Path

__all__ = [
    "EXT_PACKAGE",
    "NO_LOAD",
    "LazyGroup",
    "extensions",
    "merge_ext_config",
    "to_path",
    "attr_args",
    "build_value",
    "set_item",
    "DictFolder",
    "add_dates",
    "iter_msgpack_file",
    "error_line",
    "primary_exception",
]

DATE_WINDOW = 366 * 24 * 3600  # -D: numbers within this many seconds of now are dates


# --- subcommand loading -------------------------------------------------------------


def extensions(sub: str) -> dict[str, str]:
    """Enabled extensions providing ``distkv_ext.<name>.<sub>``: name -> module."""
    return enabled_extensions(sub)


class LazyGroup(click.Group):
    """A group whose subcommands are modules with a ``cli`` attribute, imported on use.

    ``modules`` maps built-in command names to module names; ``package``
    (optional) is a package whose every submodule is a subcommand;
    ``ext_sub`` makes ``distkv_ext.<name>.<ext_sub>`` a subcommand ``<name>``.
    """

    def __init__(
        self,
        *args: Any,
        modules: Mapping[str, str] | None = None,
        package: str | None = None,
        ext_sub: str | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(*args, **kw)
        self._modules = dict(modules or {})
        self._package = package
        self._ext_sub = ext_sub
        self._scanned = False

    def _scan(self) -> None:
        if self._scanned:
            return
        self._scanned = True
        if self._package is not None:
            pkg = importlib.import_module(self._package)
            for info in pkgutil.iter_modules(pkg.__path__):
                if not info.name.startswith("_"):
                    self._modules.setdefault(info.name, f"{self._package}.{info.name}")
        if self._ext_sub is not None:
            for name, mod in extensions(self._ext_sub).items():
                self._modules.setdefault(name, mod)

    def is_extension(self, name: str) -> bool:
        """Whether subcommand ``name`` comes from an extension."""
        self._scan()
        return self._modules.get(name, "").startswith(EXT_PACKAGE + ".")

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._scan()
        return sorted(set(self.commands) | set(self._modules))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        self._scan()
        modname = self._modules.get(cmd_name)
        if modname is None:
            return None
        if _root_param(ctx, "debug_loader"):
            click.echo(f"Loading {cmd_name!r} from {modname}", err=True)
        cmd = importlib.import_module(modname).cli
        self.commands[cmd_name] = cmd
        return cmd


def _root_param(ctx: click.Context, name: str) -> Any:
    return ctx.find_root().params.get(name)


# --- values from the command line ----------------------------------------------------


def to_path(text: str) -> Path:
    """Parse a path argument; a bad one raises ValueError naming it."""
    try:
        return P(text)
    except ValueError as exc:
        msg = str(exc)
        if text not in msg:
            msg = f"Bad path {text!r}: {msg}"
        raise ValueError(msg) from None


def attr_args(fn: Callable) -> Callable:
    """Add the repeatable ``-v/-e/-p NAME VALUE`` options.

    They arrive as the parameters ``vars_``, ``eval_`` and ``path_``.
    """
    fn = click.option(
        "-p", "--path", "path_", nargs=2, multiple=True, metavar="NAME PATH",
        help="Set NAME to a path value. NAME ':' is the whole value.",
    )(fn)
    fn = click.option(
        "-e", "--eval", "eval_", nargs=2, multiple=True, metavar="NAME EXPR",
        help="Set NAME to an evaluated value; EXPR '-' deletes NAME.",
    )(fn)
    fn = click.option(
        "-v", "--var", "vars_", nargs=2, multiple=True, metavar="NAME TEXT",
        help="Set NAME to a string. NAME ':' is the whole value.",
    )(fn)
    return fn


def set_item(value: Any, path: tuple, item: Any) -> Any:
    """Return ``value`` with the item at ``path`` set to ``item`` (``NotGiven`` = remove).

    An empty path replaces the whole value. Non-mappings along the way are
    replaced by mappings when setting; removing something that isn't there
    changes nothing.
    """
    if not path:
        return item
    if not isinstance(value, dict):
        if item is NotGiven:
            return value
        value = attrdict()
    key = path[0]
    if len(path) > 1:
        item = set_item(value.get(key, NotGiven), path[1:], item)
    if item is NotGiven:
        value.pop(key, None)
    else:
        value[key] = item
    return value


def build_value(
    old: Any,
    vars_: Iterable[tuple[str, str]] = (),
    eval_: Iterable[tuple[str, str]] = (),
    path_: Iterable[tuple[str, str]] = (),
) -> Any:
    """Merge ``-v``/``-e``/``-p`` arguments into ``old`` (``NotGiven`` = no value).

    Strings (``-v``) are applied first, then evaluated values (``-e``; ``-``
    removes), then paths (``-p``). The result is ``NotGiven`` if the value
    was removed entirely.
    """
    from distkv.util.evaluate import literal_eval

    value = old
    for name, text in vars_:
        value = set_item(value, to_path(name), text)
    for name, text in eval_:
        if text == "-":
            item = NotGiven
        else:
            item = literal_eval(text)
        value = set_item(value, to_path(name), item)
    for name, text in path_:
        value = set_item(value, to_path(name), to_path(text))
    return value


# --- output --------------------------------------------------------------------------


class DictFolder:
    """Fold ``(relative path, value)`` results into one nested mapping (``-d KEY``).

    Each result walks/creates maps along its path and stores its value under
    ``key``. :meth:`result` optionally simplifies maps whose ``key`` is ``None``.
    """

    __slots__ = ("key", "root")

    def __init__(self, key: str) -> None:
        self.key = key
        self.root: dict = {}

    def add(self, path: Iterable[Any], value: Any) -> None:
        d = self.root
        for elem in path:
            d = d.setdefault(elem, {})
        d[self.key] = value

    def result(self, simplify: bool = False) -> Any:
        """The folded mapping; with ``simplify``, ``{KEY: None}`` maps become ``None``
        and ``KEY: None`` entries next to children are dropped."""
        if not simplify:
            return self.root
        return self._simplify(self.root)

    def _simplify(self, d: dict) -> Any:
        for k, v in d.items():
            if isinstance(v, dict) and k != self.key:
                d[k] = self._simplify(v)
        if self.key in d and d[self.key] is None:
            if len(d) == 1:
                return None
            del d[self.key]
        return d


def add_dates(value: Any, now: float | None = None) -> None:
    """Add ``_<field>`` ISO timestamps next to numeric fields within a year of ``now``.

    Works in place on mappings (recursively, also inside lists); keys that
    start with ``_`` are left alone.
    """
    if now is None:
        now = time.time()
    lo, hi = now - DATE_WINDOW, now + DATE_WINDOW

    def walk(v: Any) -> None:
        if isinstance(v, (list, tuple)):
            for item in v:
                walk(item)
            return
        if not isinstance(v, dict):
            return
        for k, item in list(v.items()):
            if isinstance(k, str) and k.startswith("_"):
                continue
            if isinstance(item, (int, float)) and not isinstance(item, bool):
                if lo <= item <= hi:
                    stamp = datetime.datetime.fromtimestamp(item)
                    v[f"_{k}"] = stamp.isoformat(sep=" ", timespec="milliseconds")
            else:
                walk(item)

    walk(value)


async def iter_msgpack_file(filename: str) -> AsyncIterator[Any]:
    """Yield the msgpack objects of a file (a plain concatenation, 10 §1)."""
    from distkv.codec import make_unpacker

    unpacker = make_unpacker()
    async with await anyio.open_file(filename, "rb") as f:
        while chunk := await f.read(65536):
            unpacker.feed(chunk)
            for obj in unpacker:
                yield obj


# --- errors --------------------------------------------------------------------------


def _leaves(exc: BaseException) -> Iterable[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            yield from _leaves(sub)
    else:
        yield exc


def primary_exception(exc: BaseException) -> BaseException:
    """The exception that matters in a (possibly grouped) failure.

    Exception groups from task groups are flattened; a click exit/usage
    error or a KeyboardInterrupt wins, then the first ordinary exception.
    """
    leaves = list(_leaves(exc))
    for leaf in leaves:
        if isinstance(leaf, (click.ClickException, click.exceptions.Exit, click.Abort,
                             KeyboardInterrupt, SystemExit)):
            return leaf
    for leaf in leaves:
        if isinstance(leaf, Exception):
            return leaf
    return leaves[0] if leaves else exc


_PLAIN = (ValueError, LookupError, OSError)


def error_line(exc: BaseException) -> str:
    """The one line printed for a failed command.

    distkv errors: ``ClassName: args…``; file errors: ``Error: reason: file``;
    other user errors: ``Error: message``; anything else ``Error: ClassName: message``.
    """
    if isinstance(exc, DistKVError):
        text = " ".join(str(a) for a in exc.args)
        line = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    elif isinstance(exc, OSError) and exc.strerror:
        line = f"Error: {exc.strerror}"
        if exc.filename is not None:
            line += f": {exc.filename}"
    else:
        text = str(exc)
        if isinstance(exc, KeyError) and len(exc.args) == 1:
            text = f"Unknown key {exc.args[0]!r}"
        if not isinstance(exc, _PLAIN) or not text:
            text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
        line = f"Error: {text}"
    return " ".join(part.strip() for part in line.splitlines() if part.strip())
