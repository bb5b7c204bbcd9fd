"""Bytes to messages: a bounded streaming msgpack reader.

Messages on the wire are bare msgpack maps, concatenated. The reader refuses
anything else (a non-map, malformed data, a message larger than the limit)
with :class:`ProtocolError`; the caller then closes that one connection.
"""

from __future__ import annotations

import msgpack

from distkv.codec import make_unpacker

__all__ = ["MessageReader", "ProtocolError"]


class ProtocolError(ValueError):
    """The peer sent something that is not a protocol message."""


class MessageReader:
    """Feed bytes, get complete messages (dicts)."""

    __slots__ = ("_unpacker", "max_message")

    def __init__(self, max_message: int = 16 * 1024 * 1024):
        self.max_message = max_message
        self._unpacker = make_unpacker(max_buffer_size=max_message)

    def feed(self, data: bytes) -> list[dict]:
        """Add received bytes; return the messages that are now complete."""
        up = self._unpacker
        try:
            up.feed(data)
        except msgpack.BufferFull:
            raise ProtocolError(f"message larger than {self.max_message} bytes") from None
        out = []
        try:
            for msg in up:
                if not isinstance(msg, dict):
                    raise ProtocolError(f"expected a map, got {type(msg).__name__}")
                out.append(msg)
        except ProtocolError:
            raise
        except (ValueError, msgpack.UnpackException, TypeError) as exc:
            raise ProtocolError(f"malformed msgpack: {exc}") from None
        return out
