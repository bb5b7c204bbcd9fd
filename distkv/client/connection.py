"""The request machinery over one client connection.

:class:`Connection` owns the byte stream to the server. One reader task
routes every incoming message to the handler registered for its ``seq``;
one writer task sends whatever requests queued up in the meantime, in a
single write. Each in-flight request is a small object in ``handlers``:

* :class:`Reply` — a request that expects one answer (one event per request);
  if the server answers with a stream instead, it turns into a
  :class:`StreamedRequest`;
* :class:`StreamedRequest` — a multi-message reply (and optionally a
  multi-message request), with ``wseq``/``ack`` flow control in both
  directions.

Per-stream queues are bounded by the flow-control window: a stream the
application does not read stops being acked, so the server stops sending on
it (other requests on the connection carry on). Without flow control (a
server that does not advertise ``qlen``) a stream that piles up
:data:`UNFLOWED_QUEUE_LIMIT` unread messages is ended with an error.

The public client API lives in :mod:`distkv.client.client`.
"""

from __future__ import annotations

import ast
import logging
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import anyio
import anyio.abc

from distkv.codec import packb
from distkv.exceptions import (
    ACLError,
    ClientChainError,
    ClientConnectionError,
    ClientError,
    DistKVError,
    ServerClosedError,
    ServerError,
)
from distkv.protocol import MessageReader, ProtocolError, RecvWindow, SendWindow

__all__ = [
    "Connection",
    "Reply",
    "StreamedRequest",
    "error_from_reply",
    "UNFLOWED_QUEUE_LIMIT",
]

logger = logging.getLogger(__name__)

#: Unread messages a stream may collect when the server does no flow control.
UNFLOWED_QUEUE_LIMIT = 100_000
#: Queued-but-unsent bytes above which new requests wait for the writer.
WRITE_HIGH_WATER = 256 * 1024
READ_CHUNK = 65536
#: Seconds a closing connection waits for queued messages to be written.
CLOSE_FLUSH_TIMEOUT = 1.0

# Error texts are the repr() of the server-side exception. These classes are
# re-created on our side so that callers can catch them specifically.
_TEXT_CLASSES: dict[str, type[DistKVError]] = {
    "ClientChainError": ClientChainError,
    "ClientError": ClientError,
    "ACLError": ACLError,
}
_ETYPE_CLASSES: dict[str, type[DistKVError]] = {
    "chain": ClientChainError,
    "conn": ClientConnectionError,
}


def error_from_reply(msg: dict) -> DistKVError:
    """The exception for an error reply (``{error: text, etype?: …}``).

    An ``etype`` picks the class directly (the text is then ``str(exc)``);
    otherwise a text like ``ClientChainError('…')`` is turned back into that
    class with the original arguments, and anything else is a
    :class:`ServerError` carrying the text.
    """
    text = msg["error"]
    cls = _ETYPE_CLASSES.get(msg.get("etype"))  # type: ignore[arg-type]
    if cls is not None:
        return cls(text)
    if isinstance(text, str) and text.endswith(")"):
        name, paren, inner = text[:-1].partition("(")
        cls = _TEXT_CLASSES.get(name)
        if cls is not None and paren:
            return cls(*_literal_args(inner, text))
    return ServerError(text)


def _literal_args(inner: str, text: str) -> tuple[Any, ...]:
    if not inner.strip():
        return ()
    try:
        args = ast.literal_eval(f"({inner},)")
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return (text,)
    return args if isinstance(args, tuple) else (text,)


def _copy_exc(exc: BaseException) -> BaseException:
    """A fresh instance, so that several waiters never share one traceback."""
    try:
        return type(exc)(*exc.args)
    except Exception:
        return exc


class Reply:
    """A request waiting for its single reply."""

    __slots__ = ("conn", "seq", "_event", "_result", "_error")

    def __init__(self, conn: Connection, seq: int):
        self.conn = conn
        self.seq = seq
        self._event = anyio.Event()
        self._result: Any = None
        self._error: BaseException | None = None

    def deliver(self, msg: dict) -> None:
        """Called by the reader with a message for this ``seq``."""
        if msg.get("state") == "start" and "error" not in msg:
            # The action answers with a stream after all.
            stream = StreamedRequest(self.conn, self.seq)
            self.conn.handlers[self.seq] = stream
            self._result = stream
        else:
            self.conn.handlers.pop(self.seq, None)
            if "error" in msg:
                self._error = error_from_reply(msg)
            else:
                self._result = msg
        self._event.set()

    def fail(self, exc: BaseException) -> None:
        """The connection is gone."""
        self._error = exc
        self._event.set()

    async def get(self) -> Any:
        """Wait for the reply: a message, or a :class:`StreamedRequest`."""
        try:
            await self._event.wait()
        except BaseException:
            if not self._event.is_set():
                self.conn.abandon(self.seq)
            elif isinstance(self._result, StreamedRequest):
                self._result.close()
            raise
        if self._error is not None:
            raise self._error
        return self._result


class _Discard:
    """Takes the place of a request whose caller went away."""

    __slots__ = ("conn", "seq", "streaming")

    def __init__(self, conn: Connection, seq: int):
        self.conn = conn
        self.seq = seq
        self.streaming = False

    def deliver(self, msg: dict) -> None:
        state = msg.get("state")
        if state == "start" and "error" not in msg:
            # Nobody will read this stream: have the server stop it.
            self.streaming = True
            self.conn.send_stop(self.seq)
        elif not self.streaming or state == "end" or "error" in msg:
            self.conn.handlers.pop(self.seq, None)

    def fail(self, exc: BaseException) -> None:
        pass


_ERROR = object()  # marks an exception in a stream's queue


class StreamedRequest:
    """A request with a multi-message reply; an async iterator over the items.

    ``start``/``end`` messages are consumed here; everything else (including
    watch's ``{state: "uptodate"}`` marker) is an item. An error reply ends
    the stream and is raised by the iteration. For client streams
    (``stream=True``), :meth:`send` adds messages to the request and
    :meth:`end` closes the client side.
    """

    __slots__ = (
        "conn",
        "seq",
        "end_msg",
        "_items",
        "_wake",
        "_done",
        "_recv",
        "_send",
        "_ack_wait",
        "_limit",
        "_longener",
        "_client_open",
    )

    def __init__(
        self,
        conn: Connection,
        seq: int,
        *,
        window: int | None = None,
        client_stream: bool = False,
        longener: Callable[[dict], None] | None = None,
    ):
        self.conn = conn
        self.seq = seq
        #: The server's ``end`` message, once it arrived.
        self.end_msg: dict | None = None
        if window is None:
            window = conn.qlen
        self._items: deque[Any] = deque()
        self._wake = anyio.Event()
        self._done = False  # no more messages will be queued
        self._recv = RecvWindow(window)
        self._send: SendWindow | None = SendWindow(conn.qlen) if conn.qlen > 0 else None
        self._ack_wait: anyio.Event | None = None
        self._limit = 4 * window + 16 if window > 0 else UNFLOWED_QUEUE_LIMIT
        self._longener = longener
        self._client_open = client_stream

    # --- called by the reader ------------------------------------------------

    def deliver(self, msg: dict) -> None:
        """Route one server message of this stream."""
        if "error" in msg:
            self._finish(error_from_reply(msg))
            return
        state = msg.get("state")
        if state is not None:
            if state == "ack":
                if self._send is not None:
                    self._send.ack(msg.get("ack"))  # type: ignore[arg-type]
                    if self._ack_wait is not None:
                        self._ack_wait.set()
                return
            if state == "start":
                return
            if state == "end":
                self.end_msg = msg
                self._finish(None)
                return
            # "uptodate" (and any other state) is passed to the application
        if self._done:
            return
        items = self._items
        if len(items) >= self._limit:
            self.conn.send_stop(self.seq)
            self._finish(ServerError(f"Stream {self.seq}: more than {self._limit} unread replies"))
            return
        items.append(msg)
        self._wake.set()

    def fail(self, exc: BaseException) -> None:
        """The connection is gone."""
        self._finish(exc)

    def _finish(self, exc: BaseException | None) -> None:
        if self._done:
            return
        self._done = True
        self._client_open = False
        self.conn.handlers.pop(self.seq, None)
        if exc is not None:
            self._items.append(_ERROR)
            self._items.append(exc)
        self._wake.set()
        if self._ack_wait is not None:
            self._ack_wait.set()

    # --- the application side ---------------------------------------------------

    @property
    def ended(self) -> bool:
        """Has the server finished this stream (or the connection gone)?"""
        return self._done

    def __aiter__(self) -> StreamedRequest:
        return self

    async def __anext__(self) -> dict:
        items = self._items
        while not items:
            if self._done:
                raise StopAsyncIteration
            await self._wake.wait()
            self._wake = anyio.Event()
        msg = items.popleft()
        if msg is _ERROR:
            raise items.popleft()
        ack = self._recv.received(msg.pop("wseq", None))
        if ack is not None and not self._done:
            self.conn.send_nowait({"seq": self.seq, "state": "ack", "ack": ack})
        if self._longener is not None:
            self._longener(msg)
        return msg

    async def recv(self) -> dict:
        """The next item; raises :class:`StopAsyncIteration` after the end."""
        return await self.__anext__()

    async def send(self, **msg: Any) -> None:
        """Send one more message of a client stream (``_stream(..., stream=True)``)."""
        if not self._client_open:
            raise ClientConnectionError(f"Stream {self.seq} does not accept messages")
        sw = self._send
        if sw is not None:
            while not sw.can_send():
                self._ack_wait = anyio.Event()
                await self._ack_wait.wait()
                if not self._client_open:
                    raise ClientConnectionError(f"Stream {self.seq} has ended")
            msg["wseq"] = sw.next_wseq()
        msg["seq"] = self.seq
        await self.conn.send(msg)

    async def end(self) -> None:
        """Close the client side of a client stream (``{state: "end"}``)."""
        if self._client_open:
            await self.send(state="end")
            self._client_open = False

    def number_first(self, msg: dict) -> None:
        """Give the initial request message its ``wseq`` (stream requests count it)."""
        if self._send is not None:
            msg["wseq"] = self._send.next_wseq()

    def close(self) -> None:
        """Leave the stream: tell the server to stop it unless it has ended."""
        if self._done:
            return
        conn = self.conn
        if self._client_open and not conn.closed:
            msg: dict[str, Any] = {"seq": self.seq, "state": "end"}
            if self._send is not None:
                msg["wseq"] = self._send.next_wseq()
            conn.send_nowait(msg)
        self._finish(None)
        conn.send_stop(self.seq)

    async def cancel(self) -> None:
        """Stop the stream now (same as leaving its context)."""
        self.close()


class Connection:
    """One connection to a server: seq numbers, handlers, reader and writer."""

    def __init__(self, stream: anyio.abc.ByteStream, reader: MessageReader, qlen: int = 0):
        self.stream = stream
        self.reader = reader
        #: The negotiated stream window (0 = no flow control).
        self.qlen = qlen
        #: seq -> Reply / StreamedRequest / placeholder
        self.handlers: dict[int, Any] = {}
        self._seq = 0
        self._wbuf: list[bytes] = []
        self._wsize = 0
        self._wake_writer = anyio.Event()
        self._drained: anyio.Event | None = None
        self._writing = False
        self._flushed: anyio.Event | None = None
        #: Why the connection is unusable (None while it works).
        self.error: BaseException | None = None

    @property
    def closed(self) -> bool:
        return self.error is not None

    # --- sending -----------------------------------------------------------------

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _check_open(self) -> None:
        if self.error is not None:
            raise _copy_exc(self.error)

    @staticmethod
    def pack(msg: dict) -> bytes:
        try:
            return packb(msg)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ValueError(f"Unable to pack: {exc}") from None

    def send_nowait(self, msg: dict) -> None:
        """Queue a message for the writer (never blocks; for acks, stops, cleanup)."""
        if self.error is not None:
            return
        data = self.pack(msg)
        self._wbuf.append(data)
        self._wsize += len(data)
        self._wake_writer.set()

    async def send(self, msg: dict) -> None:
        """Queue a message; waits while too much unsent data is queued."""
        self._check_open()
        data = self.pack(msg)
        while self._wsize > WRITE_HIGH_WATER:
            if self._drained is None:
                self._drained = anyio.Event()
            await self._drained.wait()
            self._check_open()
        self._wbuf.append(data)
        self._wsize += len(data)
        self._wake_writer.set()

    async def request(self, msg: dict) -> Reply:
        """Send a new request (``action`` etc. in ``msg``); returns its :class:`Reply`."""
        self._check_open()
        seq = msg["seq"] = self.next_seq()
        reply = Reply(self, seq)
        self.handlers[seq] = reply
        try:
            await self.send(msg)
        except BaseException:
            self.handlers.pop(seq, None)
            raise
        return reply

    async def open_stream(
        self,
        msg: dict,
        *,
        client_stream: bool = False,
        number: bool = True,
        longener: Callable[[dict], None] | None = None,
    ) -> StreamedRequest:
        """Send a request whose reply is a stream; ``number`` gives it ``wseq`` 1."""
        self._check_open()
        seq = msg["seq"] = self.next_seq()
        qlen = msg.get("qlen")
        window = qlen if isinstance(qlen, int) and qlen > 0 else None
        req = StreamedRequest(
            self, seq, window=window, client_stream=client_stream, longener=longener
        )
        if client_stream:
            msg["state"] = "start"
        if number:
            req.number_first(msg)
        self.handlers[seq] = req
        try:
            await self.send(msg)
        except BaseException:
            self.handlers.pop(seq, None)
            raise
        return req

    def send_stop(self, seq: int) -> None:
        """Ask the server to cancel request ``seq``; the reply is ignored."""
        if self.error is None:
            self.send_nowait({"action": "stop", "task": seq, "seq": self.next_seq()})

    def abandon(self, seq: int) -> None:
        """The caller of request ``seq`` went away: discard what still arrives."""
        if seq in self.handlers:
            self.handlers[seq] = _Discard(self, seq)

    # --- the tasks -----------------------------------------------------------------

    async def write_loop(self) -> None:
        """Send queued messages, batching whatever accumulated meanwhile."""
        stream = self.stream
        try:
            while self.error is None:
                await self._wake_writer.wait()
                self._wake_writer = anyio.Event()
                while self._wbuf and self.error is None:
                    buf = self._wbuf
                    data = buf[0] if len(buf) == 1 else b"".join(buf)
                    self._wbuf = []
                    self._wsize = 0
                    if self._drained is not None:
                        self._drained.set()
                        self._drained = None
                    self._writing = True
                    await stream.send(data)
                    self._writing = False
                if self._flushed is not None:
                    self._flushed.set()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            self.fail(ServerClosedError(f"Connection lost: {exc or type(exc).__name__}"))
        except Exception as exc:  # a bug here must not take the application down
            logger.exception("Client writer failed")
            self.fail(ServerClosedError(f"Client writer failed: {exc!r}"))

    async def flush(self, max_wait: float) -> None:
        """Wait (at most ``max_wait`` seconds, even when cancelled) until queued
        messages are written."""
        if self.error is not None or not (self._wbuf or self._writing):
            return
        self._flushed = flushed = anyio.Event()
        self._wake_writer.set()
        with anyio.move_on_after(max_wait, shield=True):
            await flushed.wait()

    async def read_loop(self, pending: Iterable[dict] = ()) -> None:
        """Route incoming messages until the connection ends."""
        for msg in pending:
            self._dispatch(msg)
        stream = self.stream
        feed = self.reader.feed
        try:
            while self.error is None:
                data = await stream.receive(READ_CHUNK)
                for msg in feed(data):
                    self._dispatch(msg)
                    if self.error is not None:
                        break
        except anyio.EndOfStream:
            self.fail(ServerClosedError("The server closed the connection"))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            self.fail(ServerClosedError(f"Connection lost: {exc or type(exc).__name__}"))
        except ProtocolError as exc:
            self.fail(ServerClosedError(f"Bad data from the server: {exc}"))
        except Exception as exc:  # a bug here must not take the application down
            logger.exception("Client reader failed")
            self.fail(ServerClosedError(f"Client reader failed: {exc!r}"))
        if self.error is not None:
            await anyio.aclose_forcefully(stream)

    def _dispatch(self, msg: dict) -> None:
        seq = msg.get("seq")
        if seq is None:
            if "error" in msg:
                # The server gave up on the whole connection.
                self.fail(ServerClosedError(msg["error"]))
            else:
                logger.debug("Ignoring a message without seq: %r", msg)
            return
        h = self.handlers.get(seq)
        if h is not None:
            h.deliver(msg)
        elif seq:
            logger.debug("Reply for unknown request %s: %r", seq, msg)

    def fail(self, exc: BaseException) -> None:
        """Mark the connection as dead; every pending request raises ``exc``."""
        if self.error is not None:
            return
        self.error = exc
        handlers, self.handlers = self.handlers, {}
        for h in handlers.values():
            h.fail(_copy_exc(exc))
        self._wake_writer.set()
        if self._drained is not None:
            self._drained.set()
        if self._flushed is not None:
            self._flushed.set()

    async def aclose(self) -> None:
        """Close the connection (pending requests get :class:`ServerClosedError`).

        Messages already queued (acks, stops) are written first, if that is quick.
        """
        await self.flush(CLOSE_FLUSH_TIMEOUT)
        self.fail(ServerClosedError("The connection was closed"))
        await anyio.aclose_forcefully(self.stream)
