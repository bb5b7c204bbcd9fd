"""YAML input and output: :func:`yload`, :func:`yprint`, :func:`ydump`.

Safe YAML plus a few tags: ``!P`` (a :class:`~distkv.util.path.Path` in its
text form), ``!bin`` (bytes that are ASCII text), ``!hex`` (other short bytes
as colon-separated hex pairs); longer binary data uses ``!!binary``.
Output is block style with keys in insertion order; tuples are sequences and
multi-line strings use the literal ``|`` style.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import IO, Any

import yaml

from distkv.util import attrdict
from distkv.util.path import P, Path

__all__ = ["yload", "yprint", "ydump"]

try:
    from yaml import CSafeDumper as _BaseDumper
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # PyYAML built without libyaml
    from yaml import SafeDumper as _BaseDumper  # type: ignore[assignment]
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]

_CONTAINERS = (dict, list, tuple, set)


class _Loader(_BaseLoader):  # type: ignore[misc,valid-type]
    """Safe loading plus ``!P``, ``!bin`` and ``!hex``."""


class _AttrLoader(_Loader):
    """Like :class:`_Loader`, with mappings as :class:`attrdict`."""


class _Dumper(_BaseDumper):  # type: ignore[misc,valid-type]
    """Safe dumping plus paths, tagged bytes, tuples and dict subclasses."""


def _load_path(loader: yaml.Loader, node: yaml.Node) -> Path:
    if isinstance(node, yaml.SequenceNode):
        return Path.build(loader.construct_sequence(node, deep=True))
    return P(loader.construct_scalar(node))


def _load_bin(loader: yaml.Loader, node: yaml.Node) -> bytes:
    return loader.construct_scalar(node).encode("utf-8")


def _load_hex(loader: yaml.Loader, node: yaml.Node) -> bytes:
    text = str(loader.construct_scalar(node))
    try:
        return bytes.fromhex(text.replace(":", ""))
    except ValueError:
        raise yaml.constructor.ConstructorError(
            None, None, f"!hex wants hex digits, not {text!r}", node.start_mark
        ) from None


def _load_attrdict(loader: yaml.Loader, node: yaml.MappingNode) -> Iterator[attrdict]:
    data = attrdict()
    yield data
    data.update(loader.construct_mapping(node))


for _cls in (_Loader, _AttrLoader):
    _cls.add_constructor("!P", _load_path)
    _cls.add_constructor("!bin", _load_bin)
    _cls.add_constructor("!hex", _load_hex)
_AttrLoader.add_constructor("tag:yaml.org,2002:map", _load_attrdict)


def _dump_path(dumper: yaml.Dumper, data: Path) -> yaml.Node:
    return dumper.represent_scalar("!P", str(data))


def _dump_bytes(dumper: yaml.Dumper, data: bytes) -> yaml.Node:
    data = bytes(data)
    if data.isascii():
        return dumper.represent_scalar("!bin", data.decode("ascii"))
    if len(data) < 33:
        return dumper.represent_scalar("!hex", data.hex(":"))
    return dumper.represent_binary(data)


def _dump_str(dumper: yaml.Dumper, data: str) -> yaml.Node:
    if "\n" in data:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


def _dump_seq(dumper: yaml.Dumper, data: Any) -> yaml.Node:
    return dumper.represent_list(data)


def _dump_map(dumper: yaml.Dumper, data: dict) -> yaml.Node:
    return dumper.represent_dict(data)


_Dumper.add_representer(str, _dump_str)
_Dumper.add_representer(bytes, _dump_bytes)
_Dumper.add_representer(bytearray, _dump_bytes)
_Dumper.add_representer(tuple, _dump_seq)
_Dumper.add_representer(attrdict, _dump_map)
_Dumper.add_multi_representer(Path, _dump_path)
_Dumper.add_multi_representer(dict, _dump_map)
_Dumper.add_multi_representer(tuple, _dump_seq)


def _dump(data: Any) -> str:
    text = yaml.dump(
        data, Dumper=_Dumper, default_flow_style=False, allow_unicode=True, sort_keys=False
    )
    if (
        (isinstance(data, Path) or not isinstance(data, _CONTAINERS))
        and text.count("\n") == 1
        and text[-2] not in "'\""
    ):
        # a bare plain scalar is an open-ended document: say where it ends
        text += "...\n"
    return text


def yload(stream: str | bytes | IO[Any], multi: bool = False, attr: bool = False) -> Any:
    """Load YAML from a string or an open file.

    With ``multi``, return an iterator over all documents; with ``attr``,
    mappings are :class:`~distkv.util.attrdict`.
    """
    loader = _AttrLoader if attr else _Loader
    if multi:
        return yaml.load_all(stream, Loader=loader)  # noqa: S506  (a safe loader)
    return yaml.load(stream, Loader=loader)  # noqa: S506


def ydump(data: Any) -> str:
    """``data`` as a YAML document (block style, keys in insertion order)."""
    return _dump(data)


def yprint(data: Any, stream: IO[str] | None = None) -> None:
    """Print ``data`` as the CLI does.

    Numbers and bools print as ``str()``, strings and bytes as ``repr()``,
    anything else as a YAML document. ``stream`` defaults to the current
    ``sys.stdout``.
    """
    if stream is None:
        stream = sys.stdout
    if isinstance(data, (int, float)):  # bool is an int
        print(data, file=stream)
    elif isinstance(data, (str, bytes)):
        print(repr(data), file=stream)
    else:
        stream.write(_dump(data))
