"""A raw msgpack-over-TCP client for wire-level tests (no distkv client library).

:class:`WireClient` reads the greeting, sends maps (or raw bytes), and sorts
replies by ``seq`` so a test can wait for the reply to one request while
another stream keeps talking. Everything has a timeout; ``raw`` keeps every
received byte for tests that look at the encoding itself.
"""

from __future__ import annotations

import collections
import socket
import struct
import time
from typing import Any

from distkv.codec import make_unpacker, packb

__all__ = ["AnyInt", "ConnectionClosed", "WireClient", "TOCK"]

DEFAULT_TIMEOUT = 5.0


class ConnectionClosed(EOFError):
    """The server closed the connection."""


class AnyInt:
    """Compares equal to any int (not bool): for values such as tocks that vary by run."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, int) and not isinstance(other, bool)

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "<any int>"


TOCK = AnyInt()


class WireClient:
    """One TCP connection to a distkv server on 127.0.0.1."""

    def __init__(self, port: int, *, timeout: float = DEFAULT_TIMEOUT, qlen: int | None = None,
                 read_greeting: bool = True):
        self.timeout = timeout
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.unpacker = make_unpacker()
        self.raw = bytearray()
        self._buffer: collections.deque[dict] = collections.deque()  # read, not yet consumed
        self.greeting: dict = {}
        if read_greeting:
            self.greeting = self.recv()
            if qlen is not None:
                self.send({"seq": 0, "qlen": qlen})

    # sending

    def send(self, msg: dict) -> None:
        self.sock.sendall(packb(msg))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    # receiving

    def recv(self, timeout: float | None = None) -> dict:
        """The next message in arrival order, whatever its seq."""
        if self._buffer:
            return self._buffer.popleft()
        return self._read(timeout)

    def _read(self, timeout: float | None) -> dict:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            for msg in self.unpacker:
                return msg
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no message from the server in time")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                raise TimeoutError("no message from the server in time") from None
            except ConnectionResetError:
                raise ConnectionClosed("connection reset by the server") from None
            if not data:
                raise ConnectionClosed("the server closed the connection")
            self.raw += data
            self.unpacker.feed(data)

    def recv_for(self, seq: Any, timeout: float | None = None) -> dict:
        """The next message carrying ``seq`` (others are kept for later)."""
        for msg in self._buffer:
            if msg.get("seq") == seq:
                self._buffer.remove(msg)
                return msg
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            msg = self._read(max(0.0, deadline - time.monotonic()))
            if msg.get("seq") == seq:
                return msg
            self._buffer.append(msg)

    def pending(self, seq: Any) -> list[dict]:
        """Messages for ``seq`` received but not consumed yet."""
        return [m for m in self._buffer if m.get("seq") == seq]

    def request(self, msg: dict, timeout: float | None = None) -> dict:
        """Send a single-reply request and return its reply."""
        self.send(msg)
        return self.recv_for(msg["seq"], timeout)

    def stream(self, msg: dict, timeout: float | None = None, ack: bool = False) -> list[dict]:
        """Send a streaming request; return all its messages up to ``state: end``.

        With ``ack``, acknowledge like upstream's client does (window from our qlen).
        """
        self.send(msg)
        return self.read_stream(msg["seq"], timeout, ack=ack)

    def read_stream(self, seq: Any, timeout: float | None = None, ack: bool = False,
                    window: int = 10) -> list[dict]:
        out = []
        acked = 0
        while True:
            m = self.recv_for(seq, timeout)
            out.append(m)
            wseq = m.get("wseq")
            if ack and isinstance(wseq, int) and wseq - acked > window // 3:
                acked = wseq
                self.send({"seq": seq, "state": "ack", "ack": wseq})
            if m.get("state") == "end":
                return out

    def collect(self, duration: float) -> list[dict]:
        """Everything that arrives within ``duration`` seconds (buffered ones first)."""
        out = list(self._buffer)
        self._buffer.clear()
        deadline = time.monotonic() + duration
        while (left := deadline - time.monotonic()) > 0:
            try:
                out.append(self._read(left))
            except TimeoutError:
                break
        return out

    def is_closed_by_server(self, timeout: float = DEFAULT_TIMEOUT) -> bool:
        """Wait until the server closes the connection (True) or ``timeout`` passes (False).

        Messages arriving meanwhile are kept.
        """
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                msg = self._read(left)
            except ConnectionClosed:
                return True
            except TimeoutError:
                return False
            self._buffer.append(msg)
        return False

    # closing

    def close(self) -> None:
        self.sock.close()

    def abort(self) -> None:
        """Vanish: close with a TCP reset, no goodbye."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.sock.close()

    def __enter__(self) -> WireClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
