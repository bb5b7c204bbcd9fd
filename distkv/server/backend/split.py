"""Splitting large ``update``/``info`` messages into ``_p0`` chunks, and joining them.

Pure and synchronous: :class:`Splitter` turns a message map into the packed
payloads to publish; :class:`Joiner` takes received (unpacked) maps and hands
back complete messages. The rules (spec 05 §4, upstream-compatible):

* Escaping: a map that already has keys ``_p0`` … ``_pk`` gets them moved up
  by one (``_p(i+1)`` = old ``_pi``) and ``_p0 = ""``; the receiver undoes it.
* A packed message longer than :data:`SPLIT_OVER` (450) bytes is cut into
  chunks of ``450 - 15 - len(node name)`` bytes, each sent as
  ``{"_p0": [node, seq, i, chunk]}``; ``seq`` counts split messages per
  sender (from 1), ``i`` counts chunks from 1 and is negated on the last one.

Upstream kept incomplete messages forever. :class:`Joiner` keeps at most
``max_pending`` of them (and ``max_bytes`` of chunk data); beyond that the
oldest incomplete message is forgotten (counted in :attr:`Joiner.dropped`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from distkv.codec import packb, unpackb

__all__ = ["SPLIT_OVER", "CHUNK_OVERHEAD", "BadChunkError", "Joiner", "Splitter"]

SPLIT_OVER = 450  # packed messages longer than this are split
CHUNK_OVERHEAD = 15  # room left for the chunk wrapper, besides the node name
MAX_PENDING = 100
MAX_BYTES = 4 * 1024 * 1024
MAX_CHUNKS = 20000


class BadChunkError(ValueError):
    """A ``_p0`` chunk that does not have the shape ``[node, seq, i, bytes]``."""


def _escape(msg: Mapping) -> Mapping:
    if "_p0" not in msg:
        return msg
    out = dict(msg)
    n = 0
    while f"_p{n}" in out:
        n += 1
    for i in range(n, 0, -1):
        out[f"_p{i}"] = out[f"_p{i - 1}"]
    out["_p0"] = ""
    return out


def _unescape(msg: dict) -> dict:
    i = 0
    while f"_p{i + 1}" in msg:
        msg[f"_p{i}"] = msg[f"_p{i + 1}"]
        i += 1
    del msg[f"_p{i}"]
    return msg


class Splitter:
    """Packs one sender's messages, splitting the big ones."""

    __slots__ = ("node", "chunk_len", "seq")

    def __init__(self, node: str):
        self.node = node
        self.chunk_len = SPLIT_OVER - CHUNK_OVERHEAD - len(node)
        if self.chunk_len < 1:
            raise ValueError(f"node name too long to split messages: {node!r}")
        self.seq = 0

    def pack(self, msg: Mapping) -> list[bytes]:
        """The payloads to publish for ``msg`` (one, unless it is big)."""
        data = packb(_escape(msg))
        if len(data) <= SPLIT_OVER:
            return [data]
        self.seq = seq = self.seq + 1
        step = self.chunk_len
        node = self.node
        last = (len(data) - 1) // step + 1
        return [
            packb({"_p0": [node, seq, -n if n == last else n, data[(n - 1) * step : n * step]]})
            for n in range(1, last + 1)
        ]


class _Partial:
    __slots__ = ("chunks", "last", "size")

    def __init__(self) -> None:
        self.chunks: dict[int, bytes] = {}
        self.last = 0  # number of chunks, once the last one has been seen
        self.size = 0


class Joiner:
    """Reassembles split messages from any number of senders."""

    __slots__ = ("max_pending", "max_bytes", "dropped", "_partial", "_bytes")

    def __init__(self, max_pending: int = MAX_PENDING, max_bytes: int = MAX_BYTES):
        self.max_pending = max_pending
        self.max_bytes = max_bytes
        self.dropped = 0  # incomplete messages given up on
        self._partial: dict[tuple[str, int], _Partial] = {}  # insertion order = age
        self._bytes = 0

    @property
    def pending(self) -> int:
        """How many incomplete messages are held."""
        return len(self._partial)

    def feed(self, msg: Any) -> Any:
        """The complete message for a received map, or None while parts are missing.

        Maps without ``_p0`` come back unchanged. Raises :class:`BadChunkError`
        for a malformed chunk or a reassembled payload that is not a map.
        """
        if not isinstance(msg, dict) or "_p0" not in msg:
            return msg
        part = msg["_p0"]
        if part != "":
            msg = self._add(part)
            if msg is None:
                return None
        return _unescape(msg)

    def _add(self, part: Any) -> dict | None:
        try:
            node, seq, i, chunk = part
        except (TypeError, ValueError):
            raise BadChunkError(f"malformed message part: {part!r:.100}") from None
        if (
            not isinstance(chunk, bytes)
            or not isinstance(i, int)
            or not isinstance(seq, int)
            or i == 0
            or abs(i) > MAX_CHUNKS
        ):
            raise BadChunkError(f"malformed message part: {part!r:.100}")
        try:
            key = (node, seq)
            p = self._partial.get(key)
        except TypeError:  # unhashable node
            raise BadChunkError(f"malformed message part: {part!r:.100}") from None
        if p is None:
            p = self._partial[key] = _Partial()
        if i < 0:
            i = -i
            p.last = i
        old = p.chunks.get(i)
        if old is not None:  # a duplicate: keep the first copy
            return None
        p.chunks[i] = chunk
        p.size += len(chunk)
        self._bytes += len(chunk)
        if p.last and len(p.chunks) >= p.last and all(n in p.chunks for n in range(1, p.last + 1)):
            del self._partial[key]
            self._bytes -= p.size
            data = b"".join([p.chunks[n] for n in range(1, p.last + 1)])
            try:
                full = unpackb(data)
            except Exception as exc:
                raise BadChunkError(f"reassembled message does not unpack: {exc!r}") from None
            if not isinstance(full, dict):
                raise BadChunkError(f"reassembled message is not a map: {full!r:.100}")
            full["_p0"] = ""
            return full
        self._trim()
        return None

    def _trim(self) -> None:
        partial = self._partial
        while partial and (len(partial) > self.max_pending or self._bytes > self.max_bytes):
            key = next(iter(partial))
            self._bytes -= partial.pop(key).size
            self.dropped += 1
