"""Paths: :class:`Path`, the text syntax (:func:`P`, ``str(path)``) and stream shortening.

A path is a tuple of elements (strings, ints, bools, ``None``, bytes, floats,
tuples). The text form separates elements with ``.`` and uses ``:`` as the
escape character, e.g. ``P("a.b:12:t")`` is ``("a", "b", 12, True)``.

:class:`PathShortener` and :class:`PathLongener` implement the ``depth``
scheme that streams and save files use to send only the changed tail of
consecutive paths. Msgpack encoding of paths lives in :mod:`distkv.codec`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, MutableMapping
from typing import Any

from distkv.util.evaluate import literal_eval

__all__ = ["Path", "P", "PathShortener", "PathLongener"]


class Path(tuple):
    """An immutable, hashable sequence of path elements.

    ``Path("a", 1)`` builds from elements, :meth:`build` from an iterable.
    Slicing, ``+`` (a sequence) and ``|`` or ``/`` (one element) give
    paths; ``str()`` gives the text form. Unlike upstream's class, an empty
    path is false, as an empty tuple is.
    A path parsed from text with a ``:m`` marker has a non-empty ``mark``;
    the mark is not part of equality or hashing.
    """

    __slots__ = ()
    mark: str = ""

    def __new__(cls, *elems: Any) -> Path:
        return tuple.__new__(cls, elems)

    @classmethod
    def build(cls, elems: Iterable[Any]) -> Path:
        """A path with the elements of ``elems``."""
        return tuple.__new__(cls, elems)

    @classmethod
    def from_str(cls, text: str) -> Path:
        """Parse the text form (same as :func:`P`)."""
        return P(text)

    def __getnewargs__(self) -> tuple[Any, ...]:
        # pickle/copy call __new__(cls, *args): pass the elements one by one
        return tuple(self)

    def __getitem__(self, idx: Any) -> Any:
        res = tuple.__getitem__(self, idx)
        if idx.__class__ is slice:
            return tuple.__new__(Path, res)
        return res

    def __add__(self, other: Any) -> Path:
        if not isinstance(other, (tuple, list)):
            return NotImplemented
        res = tuple.__new__(Path, tuple.__add__(self, tuple(other)))
        mark = self.mark
        omark = getattr(other, "mark", "")
        if omark and omark != mark:
            if mark:
                raise ValueError(f"Cannot join paths with different marks: {mark!r}, {omark!r}")
            mark = omark
        return res.with_mark(mark) if mark else res

    def __or__(self, elem: Any) -> Path:
        """This path with one more element (``P("a") | 1 == Path("a", 1)``)."""
        res = tuple.__new__(Path, (*self, elem))
        return res.with_mark(self.mark) if self.mark else res

    __truediv__ = __or__

    def __radd__(self, other: Any) -> Path:
        if not isinstance(other, (tuple, list)):
            return NotImplemented
        return tuple.__new__(Path, tuple(other) + tuple(self))

    def with_mark(self, mark: str) -> Path:
        """This path carrying ``mark`` (an empty mark gives a plain path)."""
        if not mark:
            return self if self.__class__ is Path else tuple.__new__(Path, self)
        res = tuple.__new__(_MarkedPath, self)
        res.mark = mark
        return res

    def __str__(self) -> str:
        return _render(self, self.mark)

    def __repr__(self) -> str:
        return f"P({_render(self, self.mark)!r})"


class _MarkedPath(Path):
    """A path with a ``:m`` mark; has an instance dict, so only marked paths pay for it."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_marked, (tuple(self), self.mark))


def _marked(elems: tuple[Any, ...], mark: str) -> Path:
    return Path.build(elems).with_mark(mark)


# --- printing ------------------------------------------------------------------


_PRINTABLE = re.compile(rb"[\x20-\x7e]*")


def _esc(text: str) -> str:
    return text.replace(":", "::").replace(".", ":.").replace(" ", ":_")


def _render_elem(elem: Any) -> str:
    """The text of a non-string element, including its leading ``:``."""
    if elem is True:
        return ":t"
    if elem is False:
        return ":f"
    if elem is None:
        return ":n"
    if isinstance(elem, (bytes, bytearray)):
        if _PRINTABLE.fullmatch(elem):
            return ":v" + _esc(elem.decode("ascii"))
        return ":y" + elem.hex()
    if isinstance(elem, tuple):
        if not elem:
            return ":()"
        text = ",".join(repr(x) for x in elem)
        if text[0] in "bxyvm":  # b'…' first: would read as an escape letter
            text = f"({text})"
        return ":" + _esc(text)
    return ":" + _esc(repr(elem))


def _render(path: tuple[Any, ...], mark: str = "") -> str:
    if not path:
        return f":m{mark}:" if mark else ":"
    parts: list[str] = []
    if mark:
        parts.append(":m" + mark)
    for elem in path:
        if isinstance(elem, str):
            if not elem:
                parts.append(":e")
                continue
            if parts:
                parts.append(".")
            parts.append(_esc(elem))
        else:
            parts.append(_render_elem(elem))
    return "".join(parts)


# --- parsing -------------------------------------------------------------------

_TOKENS = re.compile(r"[^:._]+|[:._]")

# parser states
_START, _AFTER_DOT, _OPEN, _CLOSED = range(4)
_INLINE = {":": ":", ".": ".", "_": " "}
_CONSTANTS = {"t": True, "f": False, "n": None, "e": ""}


def _error(text: str, pos: int, reason: str) -> ValueError:
    return ValueError(f"Invalid path {text!r} at position {pos}: {reason}")


def _finish(text: str, pos: int, kind: str, buf: list[str]) -> Any:
    """Convert the accumulated text of an open element."""
    s = "".join(buf)
    if kind == "s":
        return s
    if kind == "e":
        try:
            res = literal_eval(s)
        except ValueError as exc:
            raise _error(text, pos, str(exc)) from None
        try:
            hash(res)
        except TypeError:
            raise _error(
                text, pos, f"{s!r} is not usable as a path element (a {type(res).__name__})"
            ) from None
        if isinstance(res, list):
            raise _error(text, pos, f"{s!r} is not usable as a path element (a list)")
        return res
    try:
        if kind == "x":
            return int(s, 16)
        if kind == "b":
            return int(s, 2)
        if kind == "y":
            return bytes.fromhex(s)
        return s.encode("ascii")  # kind "v"
    except (ValueError, UnicodeEncodeError):
        what = {"x": "hex number", "b": "binary number", "y": "hex bytes", "v": "ASCII bytes"}
        raise _error(text, pos, f"bad {what[kind]} {s!r}") from None


def P(text: str | Iterable[Any]) -> Path:  # noqa: N802  (upstream's name)
    """Parse the path text syntax; a Path, tuple or list is converted as is."""
    if text.__class__ is not str:
        if isinstance(text, Path):
            return text
        if isinstance(text, (tuple, list)):
            return Path.build(text)
        if not isinstance(text, str):
            raise TypeError(f"P() wants a string, not {type(text).__name__}")
    if ":" not in text:
        if not text:
            raise ValueError("The empty string is not a path (use ':' for the root)")
        parts = text.split(".")
        if "" in parts:
            _parse(text)  # raises, saying where
        return tuple.__new__(Path, parts)
    if text == ":":
        return Path()
    return _parse(text)


def _parse(text: str) -> Path:
    elems: list[Any] = []
    state = _START
    kind = ""  # of the open element: s(tring) e(val) x b y v
    buf: list[str] = []
    start = 0  # of the open element, for error messages
    mark = ""
    tokens = _TOKENS.finditer(text)
    for m in tokens:
        tok = m.group()
        pos = m.start()
        if tok == ".":
            if state in (_START, _AFTER_DOT):
                what = "a leading '.'" if state == _START else "'..'"
                raise _error(text, pos, f"empty element ({what})")
            if state == _OPEN:
                elems.append(_finish(text, start, kind, buf))
            state = _AFTER_DOT
            continue
        if tok != ":":
            if state == _OPEN:
                buf.append(tok)
            elif state == _CLOSED:
                raise _error(text, pos, f"expected '.' or ':' before {tok!r}")
            else:
                kind, buf, state, start = "s", [tok], _OPEN, pos
            continue

        # an escape: the next token decides
        m = next(tokens, None)
        if m is None:
            if not elems and state == _CLOSED and mark and kind == "":
                break  # ':mX:' is the empty path with a mark
            raise _error(text, pos, "a ':' at the end needs an escape character after it")
        esc = m.group()
        if esc in _INLINE:
            if state == _OPEN:
                buf.append(_INLINE[esc])
            else:
                kind, buf, state, start = "s", [_INLINE[esc]], _OPEN, pos
            continue
        if state == _OPEN:
            elems.append(_finish(text, start, kind, buf))
        kind = ""
        if esc in _CONSTANTS:
            elems.append(_CONSTANTS[esc])
            state = _CLOSED
            continue
        head, rest = esc[0], esc[1:]
        if head == "m":
            if not rest:
                raise _error(text, pos, "':m' needs a mark after it")
            if mark and mark != rest:
                raise _error(text, pos, f"conflicting marks {mark!r} and {rest!r}")
            mark = rest
            state = _CLOSED
            continue
        if head in "xbyv":
            kind, buf = head, [rest]
        else:
            kind, buf = "e", [esc]
        state, start = _OPEN, pos

    if state == _AFTER_DOT:
        raise _error(text, len(text) - 1, "empty element (a trailing '.')")
    if state == _OPEN:
        elems.append(_finish(text, start, kind, buf))
    res = tuple.__new__(Path, elems)
    return res.with_mark(mark) if mark else res


# --- shortening in streams ---------------------------------------------------------


class PathShortener:
    """Turn consecutive paths below ``prefix`` into ``(depth, suffix)`` pairs.

    ``depth`` is the length of the prefix shared with the previous path
    (relative to ``prefix``), ``suffix`` the rest. The suffix is a
    :class:`Path` when nothing is stripped at all (empty prefix, depth 0), a
    plain tuple otherwise, as upstream sends them.
    """

    __slots__ = ("prefix", "_plen", "_last")

    def __init__(self, prefix: Iterable[Any] = ()) -> None:
        self.prefix = tuple(prefix)
        self._plen = len(self.prefix)
        self._last: tuple[Any, ...] = ()

    def short(self, path: Iterable[Any]) -> tuple[int, tuple[Any, ...]]:
        """The ``(depth, suffix)`` of ``path``; raises ValueError if outside the prefix."""
        path = tuple(path)
        plen = self._plen
        if plen:
            if path[:plen] != self.prefix:
                raise ValueError(f"{_render(path)} is not below {_render(self.prefix)}")
            path = path[plen:]
        last = self._last
        depth = 0
        for a, b in zip(path, last, strict=False):
            if a != b:
                break
            depth += 1
        self._last = path
        if depth == 0 and not plen:
            return 0, tuple.__new__(Path, path)
        return depth, path[depth:]

    def __call__(self, record: MutableMapping[str, Any]) -> None:
        """Shorten ``record["path"]`` in place and set ``record["depth"]``."""
        record["depth"], record["path"] = self.short(record["path"])


class PathLongener:
    """Invert :class:`PathShortener`: rebuild full paths from ``(depth, suffix)``."""

    __slots__ = ("prefix", "_last")

    def __init__(self, prefix: Iterable[Any] = ()) -> None:
        self.prefix = Path.build(prefix)
        self._last: tuple[Any, ...] = ()

    def long(self, depth: int, suffix: Iterable[Any]) -> Path:
        """The full path (prefix included) of a record with this ``depth`` and ``suffix``."""
        last = self._last
        if depth.__class__ is not int or not 0 <= depth <= len(last):
            raise ValueError(f"Bad depth {depth!r}: the previous path has {len(last)} elements")
        rel = last[:depth] + tuple(suffix)
        self._last = rel
        return tuple.__new__(Path, tuple.__add__(self.prefix, rel))

    def __call__(self, record: MutableMapping[str, Any]) -> None:
        """Replace a shortened ``record["path"]`` by the full one and drop ``depth``.

        Records without ``path`` or ``depth`` are left alone.
        """
        if "path" not in record or "depth" not in record:
            return
        record["path"] = self.long(record.pop("depth"), record["path"])
