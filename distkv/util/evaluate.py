"""Restricted evaluation of Python literals, for paths (``:expr``), ``-e`` values and ``-C``.

:func:`literal_eval` accepts numbers (``0x…``, ``0b…``, ``1_000``, floats),
strings, bytes, ``True``/``False``/``None``, unary ``+``/``-`` on numbers, and
tuples, lists, dicts and sets of those. Names, calls, attributes, operators
and everything else are refused with a ``ValueError`` that names the culprit.
Nothing is ever executed: the text is parsed with :mod:`ast` and the tree is
walked.
"""

from __future__ import annotations

import ast
import re
from typing import Any

__all__ = ["literal_eval"]

_SCALARS = (int, float, str, bytes, bool, type(None))
_PLAIN_INT = re.compile(r"-?(?:0|[1-9][0-9]*)")  # the common case, without a parser

_DESCRIPTIONS: dict[type, str] = {
    ast.Name: "names are not allowed",
    ast.Call: "function calls are not allowed",
    ast.Attribute: "attribute access is not allowed",
    ast.Subscript: "subscripts are not allowed",
    ast.BinOp: "operators are not allowed",
    ast.BoolOp: "operators are not allowed",
    ast.Compare: "comparisons are not allowed",
    ast.Lambda: "lambdas are not allowed",
    ast.JoinedStr: "f-strings are not allowed",
    ast.Starred: "'*' is not allowed",
}


class _Refused(Exception):
    def __init__(self, node: ast.AST, reason: str) -> None:
        self.node = node
        self.reason = reason


def literal_eval(text: str) -> Any:
    """Evaluate ``text`` as a Python literal; raise ``ValueError`` if it is not one."""
    if not isinstance(text, str):
        raise TypeError(f"literal_eval() wants a string, not {type(text).__name__}")
    src = text.strip()
    if _PLAIN_INT.fullmatch(src):
        return int(src)
    if not src:
        raise ValueError(f"Cannot evaluate {_show(text)}: it is empty")
    try:
        tree = ast.parse(src, mode="eval")
    except SyntaxError as exc:
        detail = "" if exc.msg == "invalid syntax" else f" ({exc.msg})"
        raise ValueError(f"Cannot evaluate {_show(text)}: invalid syntax{detail}") from None
    except (ValueError, RecursionError, MemoryError):
        raise ValueError(f"Cannot evaluate {_show(text)}: not a valid expression") from None
    try:
        return _convert(tree.body)
    except _Refused as exc:
        part = ast.get_source_segment(src, exc.node)
        where = f" ({part!r})" if part and part != src else ""
        raise ValueError(f"Cannot evaluate {_show(text)}: {exc.reason}{where}") from None
    except RecursionError:
        raise ValueError(f"Cannot evaluate {_show(text)}: nested too deeply") from None


def _show(text: str) -> str:
    """``repr(text)``, shortened if it is long."""
    return repr(text) if len(text) <= 80 else repr(text[:70]) + "…"


def _convert(node: ast.AST) -> Any:
    cls = node.__class__
    if cls is ast.Constant:
        value = node.value  # type: ignore[attr-defined]
        if isinstance(value, _SCALARS):
            return value
        raise _Refused(node, f"{type(value).__name__} values are not allowed")
    if cls is ast.UnaryOp:
        op = node.op  # type: ignore[attr-defined]
        if isinstance(op, (ast.USub, ast.UAdd)):
            value = _convert(node.operand)  # type: ignore[attr-defined]
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return -value if isinstance(op, ast.USub) else +value
            raise _Refused(node, "unary +/- only apply to numbers")
        raise _Refused(node, "operators are not allowed")
    if cls is ast.Tuple:
        return tuple(_convert(e) for e in node.elts)  # type: ignore[attr-defined]
    if cls is ast.List:
        return [_convert(e) for e in node.elts]  # type: ignore[attr-defined]
    if cls is ast.Set:
        items = [_convert(e) for e in node.elts]  # type: ignore[attr-defined]
        try:
            return set(items)
        except TypeError:
            raise _Refused(node, "set items must be hashable") from None
    if cls is ast.Dict:
        res = {}
        for k, v in zip(node.keys, node.values, strict=True):  # type: ignore[attr-defined]
            if k is None:
                raise _Refused(v, "'**' is not allowed")
            key, value = _convert(k), _convert(v)
            try:
                res[key] = value
            except TypeError:
                raise _Refused(k, "dict keys must be hashable") from None
        return res
    reason = _DESCRIPTIONS.get(cls, f"{cls.__name__} expressions are not allowed")
    raise _Refused(node, reason)
