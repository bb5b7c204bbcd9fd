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

    __slots__ = ("_unpacker", "_fed", "max_message")

    def __init__(self, max_message: int = 16 * 1024 * 1024):
        self.max_message = max_message
        # Room for one whole message plus the start of the next one.
        self._unpacker = make_unpacker(max_buffer_size=2 * max_message)
        self._fed = 0

    def feed(self, data: bytes) -> list[dict]:
        """Add received bytes; return the messages that are now complete.

        The size limit applies to each message, not to a received chunk: a
        large chunk is fed in slices and drained in between.
        """
        up = self._unpacker
        limit = self.max_message
        out: list[dict] = []
        view = memoryview(data)
        while view:
            pending = self._fed - up.tell()
            room = 2 * limit - pending
            piece, view = view[:room], view[room:]
            up.feed(piece)
            self._fed += len(piece)
            self._drain(out)
            if self._fed - up.tell() > limit:
                raise ProtocolError(f"message larger than {limit} bytes")
        return out

    def _drain(self, out: list[dict]) -> None:
        try:
            for msg in self._unpacker:
                if not isinstance(msg, dict):
                    raise ProtocolError(f"expected a map, got {type(msg).__name__}")
                out.append(msg)
        except ProtocolError:
            raise
        except (ValueError, msgpack.UnpackException, TypeError) as exc:
            raise ProtocolError(f"malformed msgpack: {exc}") from None
