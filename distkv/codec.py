"""The msgpack codec used on the wire, by the backends and in save/log files.

Arrays decode to tuples, maps to :class:`~distkv.util.attrdict`, map keys may
be anything hashable. Two extension types exist: 2 = integers >= 2**64
(unsigned big-endian magnitude), 3 = :class:`~distkv.util.path.Path` (the
concatenated encodings of its elements). Other extension codes decode to
:class:`msgpack.ExtType` and pack back unchanged.

Everything here is on the hot path: the packer runs in strict-types mode (so a
``Path`` reaches the ``default`` hook instead of being packed as a plain
array), and the hooks test the frequent cases first. Decoded paths of plain
elements (strings, ints, ``None``) are cached by payload, so a client that
keeps sending the same paths gets the same (immutable) Path objects back.
"""

from __future__ import annotations

import sys
from typing import Any

import msgpack
from msgpack import ExtType

from distkv.util import attrdict
from distkv.util.path import Path

__all__ = ["packb", "unpackb", "make_unpacker", "packer", "ExtType", "EXT_BIGINT", "EXT_PATH"]

EXT_BIGINT = 2
EXT_PATH = 3

_MAX_NEG = -(2**63)
_new_tuple = tuple.__new__


def _ext(code: int, data: bytes) -> ExtType:
    # ExtType() checks its arguments in Python code (slow, and it refuses the
    # negative codes that msgpack allows); ours are known to be fine
    return _new_tuple(ExtType, (code, data))


def _default(obj: Any) -> Any:
    """Map what strict-types msgpack refuses onto what it packs."""
    cls = obj.__class__
    if cls is tuple:
        return list(obj)
    if cls is Path:
        return _new_tuple(ExtType, (EXT_PATH, _path_payload(obj)))
    if cls is attrdict:
        return dict(obj)
    return _default_other(obj)


def _default_other(obj: Any) -> Any:
    if isinstance(obj, Path):
        return _ext(EXT_PATH, _path_payload(obj))
    if isinstance(obj, int):
        if obj.__class__ is not int:  # IntEnum and friends
            obj = int(obj)
            if _MAX_NEG <= obj < 2**64:
                return obj
        if obj >= 0:
            return _ext(EXT_BIGINT, obj.to_bytes((obj.bit_length() + 7) // 8, "big"))
        raise ValueError(f"Unable to pack {obj}: integers below -2**63 are not supported")
    if isinstance(obj, dict):
        return dict(obj)
    if isinstance(obj, (tuple, list)):
        return list(obj)
    if isinstance(obj, str):
        return str(obj)
    if isinstance(obj, float):
        return float(obj)
    if isinstance(obj, (bytes, bytearray)):
        return bytes(obj)
    mod = sys.modules.get("moat.lib.path")  # if it is not imported, obj can't be one
    if mod is not None and isinstance(obj, mod.Path):
        return _ext(EXT_PATH, _path_payload(tuple(obj)))
    raise TypeError(f"Unable to pack {type(obj).__name__} object: {obj!r:.100}")


def _new_packer() -> msgpack.Packer:
    return msgpack.Packer(use_bin_type=True, strict_types=True, default=_default)


# msgpack's Packer is not re-entrant (a Path inside a packed object is packed
# from within the outer pack call), so every user takes one from this pool.
_packers: list[msgpack.Packer] = [_new_packer()]


def _path_payload(path: tuple[Any, ...]) -> bytes:
    """The ext-3 payload: the packed elements, one after the other."""
    pk = _packers.pop() if _packers else _new_packer()
    try:
        data = pk.pack(list(path))
    finally:
        _packers.append(pk)
    n = len(path)
    # strip the array header: fixarray / array16 / array32
    return data[1 if n < 16 else 3 if n < 65536 else 5 :]


def packb(obj: Any) -> bytes:
    """Encode one object; raises ``TypeError``/``ValueError`` for what can't be packed."""
    pk = _packers.pop() if _packers else _new_packer()
    try:
        return pk.pack(obj)
    finally:
        _packers.append(pk)


def packer() -> msgpack.Packer:
    """A new packer with the codec's options, for a writer that packs many objects."""
    return _new_packer()


# Decoded paths by payload: clients send the same paths again and again, and a
# Path of immutable elements may be shared. Bounded: emptied when full.
_CACHE_SIZE = 4096
_CACHE_PAYLOAD = 128
_CACHE_ELEMS = frozenset({str, int, type(None)})
_path_cache: dict[bytes, Path] = {}


def _ext_hook(code: int, data: bytes, _cached: Any = _path_cache.get) -> Any:
    if code == EXT_PATH:
        res = _cached(data)
        return res if res is not None else _unpack_path(data)
    if code == EXT_BIGINT:
        return int.from_bytes(data, "big")
    return _ext(code, data)  # ExtType() would refuse negative codes


_UNPACK_OPTS: dict[str, Any] = {
    "raw": False,
    "use_list": False,
    "strict_map_key": False,
    "object_hook": attrdict,
    "ext_hook": _ext_hook,
}


def _new_unpacker() -> msgpack.Unpacker:
    return msgpack.Unpacker(**_UNPACK_OPTS)


# Path payloads are decoded with a streaming unpacker; reusing them is much
# cheaper than building one per path. Nested paths take another one.
_unpackers: list[msgpack.Unpacker] = [_new_unpacker()]


def _unpack_path(data: bytes) -> Path:
    up = _unpackers.pop() if _unpackers else _new_unpacker()
    start = up.tell()
    up.feed(data)
    res = tuple.__new__(Path, up)  # iterates until the payload is used up
    if up.tell() - start != len(data):
        # a truncated element is left in the buffer: drop this unpacker
        raise ValueError(f"Malformed path (ext 3) payload: {data.hex()}")
    _unpackers.append(up)
    if len(data) <= _CACHE_PAYLOAD:
        for e in res:
            if e.__class__ not in _CACHE_ELEMS:
                return res
        if len(_path_cache) >= _CACHE_SIZE:
            _path_cache.clear()
        _path_cache[data] = res
    return res


def unpackb(data: bytes, _unpackb: Any = msgpack.unpackb, _hook: Any = _ext_hook) -> Any:
    """Decode exactly one object from ``data``."""
    return _unpackb(
        data,
        raw=False,
        use_list=False,
        strict_map_key=False,
        object_hook=attrdict,
        ext_hook=_hook,
    )


def make_unpacker(**kw: Any) -> msgpack.Unpacker:
    """A streaming unpacker with the codec's options; ``kw`` adds msgpack options
    (e.g. ``max_buffer_size``) or overrides them."""
    return msgpack.Unpacker(**{**_UNPACK_OPTS, **kw})
