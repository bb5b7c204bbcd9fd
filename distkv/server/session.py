"""One client connection: greeting, dispatch, streams, ``stop``, errors.

A :class:`Session` owns one connection. Every chunk of bytes that arrives is
decoded, and each message in it dispatched:

* ``seq: 0`` is the client's hello (sets the stream window);
* a ``seq`` of a running request is routed to it (``ack`` or client-stream
  data);
* anything else is a new request, looked up in the command
  :mod:`~distkv.server.registry` and validated. Synchronous single-reply
  handlers run inline (no task); stream handlers and ``async`` handlers run as
  tasks of the connection's task group, so a slow stream never blocks other
  requests.

Replies are packed into a pending-output list and handed to the socket in
one piece per batch. Output is bounded: whoever queues output (the reader, a
stream) waits once more than :data:`OUT_HIGH` bytes are pending, so a client
that stops reading stops being read from — the socket's backpressure, not
server memory, absorbs it. Before any bytes go out the server's change log
is synced, so an acknowledged write is in the log before its reply leaves.

Two ways to drive a connection, with the same behaviour:

* a plain TCP connection on asyncio is taken over from anyio's stream and
  served by an :class:`asyncio.Protocol` (:class:`_Protocol`): every received
  chunk is decoded and dispatched in the transport's callback, its replies go
  out in one ``write`` at the end, and the transport's write-buffer limits
  pause reading while the client does not read. Output that tasks queue
  (streams) is flushed once per event-loop pass;
* anything else (TLS, trio, in-memory streams) is served by a reader loop
  over the anyio :class:`~anyio.abc.ByteStream` plus a writer task.

Errors: a failing request gets ``{error: repr(exc), seq, tock}`` (inside a
stream: the error, then ``end``); unknown or missing actions and bad fields
get the same with the request's ``seq`` and the connection stays open.

Security (:mod:`.security` sets up the server side): the greeting names the
active auth method; until the client has logged in, only actions registered
``before_login`` are served — anything else gets ``NoAuthError('You need to
log in before …')`` with its ``seq``, and the connection stays open
(upstream dropped it). After a login, :attr:`Session.acl` is the user's ACL
and :attr:`Session.conv` their converter, both ``None`` for unrestricted
users without conversion: the handlers' fast path is one attribute test.
Users with an ACL may not use the ``privileged`` actions (those that bypass
ACLs: ``update``, the backend pass-through, server files, node bookkeeping).
Malformed msgpack, a non-map message or one larger than
``server.max_message`` gets a best-effort ``{error: …}`` without ``seq`` and
ends this connection only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
import msgpack
from anyio.abc import ByteStream

from distkv import __version__
from distkv.auth.server import auth_methods
from distkv.codec import make_unpacker, packb, packer
from distkv.exceptions import CancelledError, ClientError, NoAuthError
from distkv.protocol import ProtocolError, RecvWindow, SendWindow
from distkv.protocol.flow import check_window
from distkv.util import attrdict
from distkv.util.path import Path

from .registry import REGISTRY, Command

if TYPE_CHECKING:
    from distkv.acl import UserACL
    from distkv.auth.server import SessionAuth
    from distkv.types import Converter

    from .server import Server

__all__ = ["Session", "Stream", "VERSION", "OUT_HIGH"]

logger = logging.getLogger(__name__)

VERSION = tuple(int(x) for x in __version__.split(".")[:3])
OUT_HIGH = 256 * 1024
_PLAIN = REGISTRY.plain
RECV_SIZE = 256 * 1024
INBOX_LEN = 100
CLOSE_TIMEOUT = 2.0
# Requests are attrdicts, whose ``__getattr__`` makes every method lookup slow:
# the hot path calls dict.get directly.
_msg_get = dict.get
_GONE = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, OSError)


class Stream:
    """The server side of one streamed reply (and of the client's stream, if any).

    ``send`` numbers messages (``wseq``) and blocks while the window is full;
    it never blocks other requests of the connection.
    """

    __slots__ = ("session", "seq", "window", "_ack_event", "_inbox", "_inbox_recv", "_rwin")

    def __init__(self, session: Session, seq: int, window: int, client_stream: bool):
        self.session = session
        self.seq = seq
        self.window = SendWindow(window)
        self._ack_event: anyio.Event | None = None
        if client_stream:
            self._inbox, self._inbox_recv = anyio.create_memory_object_stream[dict](INBOX_LEN)
            self._rwin: RecvWindow | None = RecvWindow(session.window)
        else:
            self._inbox = self._inbox_recv = None
            self._rwin = None

    async def send(self, msg: dict) -> None:
        """Send one message of this stream (``seq``/``wseq``/``tock`` are added)."""
        win = self.window
        if win.window > 0:
            # 04 §3: message n waits while n - last_ack >= window
            while win.wseq + 1 - win.acked >= win.window:
                self._ack_event = ev = anyio.Event()
                await ev.wait()
        sess = self.session
        sess.queue(self._stamp(msg))
        if sess.out_size > OUT_HIGH:
            await sess.wait_room()

    def send_nowait(self, msg: dict) -> None:
        """Queue a message ignoring the window (errors and ``end``)."""
        self.session.queue(self._stamp(msg))

    def _stamp(self, msg: dict) -> dict:
        msg["seq"] = self.seq
        win = self.window
        if win.window > 0:
            msg["wseq"] = win.next_wseq()
        if "tock" not in msg:
            msg["tock"] = self.session.server.next_tock()
        return msg

    def ack(self, n: Any) -> None:
        self.window.ack(n)
        ev = self._ack_event
        if ev is not None:
            self._ack_event = None
            ev.set()

    def _incoming(self, msg: dict) -> None:
        """A client message for this request (not an ack)."""
        if self._inbox is None:
            return  # nothing listens; upstream ignores such messages too
        if msg.get("state") == "end":
            self._inbox.close()
            return
        try:
            self._inbox.send_nowait(msg)
        except anyio.WouldBlock:
            raise ClientError(
                f"Request {self.seq}: the client sent more than {INBOX_LEN} unread messages"
            ) from None
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass

    async def recv(self) -> dict:
        """The next message the client sent on this stream.

        Raises :class:`anyio.EndOfStream` once the client sent ``state: end``.
        """
        if self._inbox_recv is None:
            raise ClientError(f"Request {self.seq} has no client stream")
        msg = await self._inbox_recv.receive()
        ack = self._rwin.received(msg.get("wseq")) if self._rwin else None
        if ack is not None:
            self.session.queue({"seq": self.seq, "state": "ack", "ack": ack})
        return msg

    def close_inbox(self) -> None:
        if self._inbox is not None:
            self._inbox.close()
            self._inbox_recv.close()


class _Reader:
    """Bytes to request maps, each at most ``max_message`` bytes.

    Unlike a plain bounded unpacker, a burst of many small pipelined requests
    is fine however large the burst: only single messages are limited.
    """

    __slots__ = ("_up", "_max", "_fed")

    def __init__(self, max_message: int):
        self._max = max_message
        self._up = make_unpacker(max_buffer_size=max_message + RECV_SIZE)
        self._fed = 0

    def feed(self, data: bytes) -> list[dict]:
        up = self._up
        limit = self._max
        try:
            up.feed(data)
        except msgpack.BufferFull:
            raise ProtocolError(f"message larger than {limit} bytes") from None
        self._fed += len(data)
        out = []
        last = up.tell()
        try:
            if self._fed - last <= limit:
                # all unread bytes fit the limit: no message in them can exceed it
                for msg in up:
                    if msg.__class__ is not attrdict and not isinstance(msg, dict):
                        raise ProtocolError(f"expected a map, got {type(msg).__name__}")
                    out.append(msg)
                last = up.tell()
            else:
                for msg in up:
                    pos = up.tell()
                    if pos - last > limit:
                        raise ProtocolError(f"message larger than {limit} bytes")
                    last = pos
                    if msg.__class__ is not attrdict and not isinstance(msg, dict):
                        raise ProtocolError(f"expected a map, got {type(msg).__name__}")
                    out.append(msg)
        except ProtocolError:
            raise
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise ProtocolError(f"malformed msgpack: {exc}") from None
        if self._fed - last > limit:
            raise ProtocolError(f"message larger than {limit} bytes")
        return out


class _Request:
    __slots__ = ("seq", "scope", "stream")

    def __init__(self, seq: int, stream: Stream | None):
        self.seq = seq
        self.scope = anyio.CancelScope()
        self.stream = stream


class _Protocol(asyncio.Protocol):
    """Transport callbacks, bound straight to the :class:`Session`'s methods
    (transport mode: one Python call less per received chunk)."""

    __slots__ = ("data_received", "pause_writing", "resume_writing", "session")

    def __init__(self, session: Session):
        self.session = session
        self.data_received = session._received  # type: ignore[method-assign]
        self.pause_writing = session._pause  # type: ignore[method-assign]
        self.resume_writing = session._resume  # type: ignore[method-assign]

    def eof_received(self) -> bool:
        self.session._input_ended()
        return True  # keep the transport open: the replies still go out

    def connection_lost(self, exc: Exception | None) -> None:
        self.session._input_ended()


def _asyncio_transport(stream: Any) -> tuple[asyncio.Transport, Any] | None:
    """The asyncio transport and protocol under anyio's plain TCP stream, if that is
    what ``stream`` is (not for TLS, trio or in-memory streams)."""
    tr = getattr(stream, "_transport", None)
    proto = getattr(stream, "_protocol", None)
    if isinstance(tr, asyncio.Transport) and hasattr(proto, "read_queue"):
        return tr, proto
    return None


class Session:
    """One client connection to a :class:`~distkv.server.server.Server`."""

    def __init__(self, server: Server, stream: ByteStream, peer: str = "?"):
        self.server = server
        self.store = server.store
        self.peer = peer
        self.root: Path = Path()  # the connection's root ("chroot")
        #: Login state (user, DH key, …); replaced when the greeting is sent.
        self.auth: SessionAuth = server.auth.session(self.root)
        #: The user's ACL, or None if no ACL restricts this connection.
        self.acl: UserACL | None = None
        #: The user's converter, or None.
        self.conv: Converter | None = None
        #: A login is required and has not happened yet.
        self.locked = False
        self.window = 0  # negotiated qlen; 0 = no flow control
        self.out_size = 0
        self._stream = stream
        self._out: list[bytes] = []
        self._sending = False
        self._batch = False  # the reader is dispatching: queue() need not wake the writer
        self._wake: anyio.Event | None = None
        self._progress: anyio.Event | None = None
        self._requests: dict[int, _Request] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self._buffer = int(server.cfg.server.get("buffer", 10) or 0)
        self._pack = packer().pack  # this connection's own: no pool round trip per reply
        # transport mode (see the module docstring)
        self._transport: asyncio.Transport | None = None
        self._reader: _Reader | None = None
        self._paused = False  # the transport's write buffer is full
        self._flush_pending = False
        self._call_soon: Callable[..., Any] | None = None
        self._backlog: list[dict] = []  # requests read but not dispatched while paused
        self._input_done = False
        self._done: anyio.Event | None = None

    # --- output ---------------------------------------------------------------

    def queue(self, msg: dict) -> None:
        """Add one message to the pending output; it goes out with the next batch."""
        try:
            data = self._pack(msg)
        except (TypeError, ValueError, OverflowError) as exc:
            bad = {"error": repr(ClientError(f"Unable to pack the reply: {exc!r}"))}
            for k in ("seq", "wseq", "tock"):
                if k in msg:
                    bad[k] = msg[k]
            data = packb(bad)
        self._out.append(data)
        self.out_size += len(data)
        if not self._batch:
            self._kick()

    def _kick(self) -> None:
        """Make sure that pending output gets sent soon."""
        if self._transport is not None:
            if not self._flush_pending:
                self._flush_pending = True
                self._call_soon(self._flush_soon)
            return
        ev = self._wake
        if ev is not None:
            self._wake = None
            ev.set()

    async def wait_room(self) -> None:
        """Wait while more than :data:`OUT_HIGH` bytes are pending (backpressure)."""
        while self.out_size > OUT_HIGH or self._paused:
            await self._wait_progress()

    async def drain(self) -> None:
        """Wait until everything queued so far has been handed to the socket."""
        tr = self._transport
        if tr is None:
            while self._out or self._sending:
                await self._wait_progress()
            return
        self._flush()
        # From now on "paused" means "not everything is sent yet".
        tr.set_write_buffer_limits(high=0)
        while not tr.is_closing() and (self._out or self._paused):
            await self._wait_progress()
            self._flush()

    async def _wait_progress(self) -> None:
        ev = self._progress
        if ev is None:
            self._progress = ev = anyio.Event()
        await ev.wait()

    def _made_progress(self) -> None:
        ev = self._progress
        if ev is not None:
            self._progress = None
            ev.set()

    def _flush_soon(self) -> None:
        self._flush_pending = False
        self._flush()

    def _flush(self) -> None:
        """Transport mode: hand everything pending to the transport, unless it is full."""
        out = self._out
        if not out or self._paused:
            return
        self.server.sync_log()  # acknowledged writes reach the log before their replies leave
        self._out = []
        self.out_size = 0
        tr = self._transport
        assert tr is not None
        if not tr.is_closing():
            tr.write(out[0] if len(out) == 1 else b"".join(out))  # may pause us
        self._made_progress()

    async def _send_out(self) -> None:
        """Stream mode: hand everything pending to the socket (caller checked ``_sending``)."""
        out = self._out
        self.server.sync_log()
        self._out = []
        self.out_size = 0
        self._sending = True
        self._made_progress()
        try:
            await self._stream.send(out[0] if len(out) == 1 else b"".join(out))
        except _GONE:
            self._closed()
            raise
        finally:
            self._sending = False
            self._made_progress()

    async def _writer(self) -> None:
        """Stream mode: sends whatever streams and request tasks queue (the reader
        sends its own replies itself while this task is idle: one task switch less
        per request)."""
        try:
            while True:
                if self._sending:
                    await self._wait_progress()
                elif self._out:
                    await self._send_out()
                else:
                    self._wake = ev = anyio.Event()
                    await ev.wait()
        except _GONE:
            pass

    def _closed(self) -> None:
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    def reply(self, seq: int, result: Any) -> None:
        """Queue the single reply for ``seq``."""
        if result is None:
            msg: dict = {}
        elif isinstance(result, dict):
            msg = result
        else:
            msg = {"result": result}
        msg["seq"] = seq
        if "tock" not in msg:
            msg["tock"] = self.server.next_tock()
        self.queue(msg)

    def reply_error(self, seq: int | None, exc: BaseException) -> None:
        """Queue ``{error: repr(exc), seq, tock}`` (no seq if ``seq`` is None)."""
        msg: dict = {"error": repr(exc)}
        if seq is not None:
            msg["seq"] = seq
        msg["tock"] = self.server.next_tock()
        self.queue(msg)

    # --- the connection ---------------------------------------------------------

    def greeting(self) -> dict:
        srv = self.server
        msg = {
            "seq": 0,
            "version": VERSION,
            "node": srv.name,
            "tick": srv.node_tick,
            "tock": srv.next_tock(),
            "qlen": check_window(self._buffer),
        }
        auth = auth_methods(self.store, self.root)
        if auth is not None:
            msg["auth"] = auth
        self.auth = srv.auth.session(self.root)
        self.locked = self.auth.need_login
        return msg

    def logged_in(self) -> None:
        """A login changed the user: take over their ACL and converter."""
        st = self.auth
        self.acl = st.acl if st.acl.restricted else None
        self.conv = st.conv
        self.locked = st.need_login and st.user is None

    def _max_message(self) -> int:
        return int(self.server.cfg.server.get("max_message", 16 * 1024 * 1024))

    async def run(self) -> None:
        """Serve this connection until the client goes away."""
        found = _asyncio_transport(self._stream)
        try:
            if found is None:
                await self._serve_stream()
            else:
                await self._serve_transport(*found)
        finally:
            self._tg = None
            for req in self._requests.values():
                if req.stream is not None:
                    req.stream.close_inbox()

    async def _serve_stream(self) -> None:
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                self.queue(self.greeting())
                tg.start_soon(self._writer)
                await self._read_loop()
                with anyio.move_on_after(CLOSE_TIMEOUT):
                    await self.drain()
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    await self._stream.aclose()
                except _GONE:
                    pass

    async def _read_loop(self) -> None:
        reader = _Reader(self._max_message())
        receive = self._stream.receive
        dispatch = self._dispatch
        while True:
            try:
                data = await receive(RECV_SIZE)
            except _GONE:
                return
            try:
                msgs = reader.feed(data)
            except ProtocolError as exc:
                logger.info("%s: closing the connection: %s", self.peer, exc)
                self.queue({"error": str(exc), "tock": self.server.next_tock()})
                return
            self._batch = True
            try:
                for msg in msgs:
                    dispatch(msg)
                    if self.out_size > OUT_HIGH:
                        self._batch = False
                        self._kick()
                        await self.wait_room()
                        self._batch = True
            finally:
                self._batch = False
            if self._out:
                if self._sending or self._wake is None:
                    self._kick()  # the writer is busy or about to run: it takes these too
                else:
                    try:
                        await self._send_out()
                    except _GONE:
                        return

    # --- transport mode ----------------------------------------------------------

    async def _serve_transport(self, tr: asyncio.Transport, old: Any) -> None:
        """Serve through :class:`_Protocol`; ``old`` is anyio's protocol, whose
        already received data is taken over."""
        self._reader = _Reader(self._max_message())
        self._call_soon = asyncio.get_running_loop().call_soon
        self._done = done = anyio.Event()
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                self._transport = tr
                tr.set_write_buffer_limits(high=OUT_HIGH)
                received = list(old.read_queue)
                old.read_queue.clear()
                ended = old.is_at_eof or old.exception is not None or tr.is_closing()
                tr.set_protocol(_Protocol(self))
                self.queue(self.greeting())
                for data in received:
                    self._received(data)
                if ended:
                    self._end_input()
                elif not self._input_done:
                    tr.resume_reading()  # (anyio reads only while someone receives)
                await done.wait()
                with anyio.move_on_after(CLOSE_TIMEOUT):
                    await self.drain()
                tg.cancel_scope.cancel()
        finally:
            if tr.get_write_buffer_size():
                tr.abort()  # the client does not read what is left
            else:
                tr.close()

    def _received(self, data: bytes) -> None:
        """A chunk arrived: decode, dispatch, send the replies in one write."""
        if self._input_done:
            return
        try:
            msgs = self._reader.feed(data)  # type: ignore[union-attr]
        except ProtocolError as exc:
            logger.info("%s: closing the connection: %s", self.peer, exc)
            self.queue({"error": str(exc), "tock": self.server.next_tock()})
            self._end_input()
            return
        if self._backlog:  # (reading is paused; keep the order anyway)
            self._backlog.extend(msgs)
            return
        self._run_batch(msgs)

    def _run_batch(self, msgs: list[dict]) -> None:
        dispatch = self._dispatch
        it = iter(msgs)
        self._batch = True
        try:
            for msg in it:
                dispatch(msg)
                if self.out_size > OUT_HIGH:
                    self._flush()
                    if self._paused:  # the client does not read: the rest waits
                        self._backlog = list(it)
                        break
        except Exception:
            logger.exception("%s: the connection failed", self.peer)
            self._end_input()
            self._transport.abort()  # type: ignore[union-attr]
        finally:
            self._batch = False
        self._flush()

    def _end_input(self) -> None:
        """Nothing more is read from this client; :meth:`run` drains and closes."""
        self._input_done = True
        self._backlog = []
        tr = self._transport
        if tr is not None and not tr.is_closing():
            tr.pause_reading()
        self._flush()
        if self._done is not None:
            self._done.set()

    def _pause(self) -> None:
        self._paused = True
        tr = self._transport
        if tr is not None and not tr.is_closing():
            tr.pause_reading()

    def _resume(self) -> None:
        self._paused = False
        self._made_progress()
        self._flush()
        if self._paused:
            return
        backlog, self._backlog = self._backlog, []
        if backlog:
            self._run_batch(backlog)
        tr = self._transport
        if not (self._paused or self._backlog or self._input_done or tr is None
                or tr.is_closing()):
            tr.resume_reading()

    def _input_ended(self) -> None:
        """The client closed its side, or the connection is gone."""
        self._made_progress()
        self._end_input()

    def _dispatch(self, msg: dict) -> None:
        seq = _msg_get(msg, "seq")
        if seq.__class__ is not int:
            self.reply_error(None, ClientError(f"A request needs an integer 'seq', not {seq!r}"))
            return
        if self._requests:
            req = self._requests.get(seq)
            if req is not None:
                self._route(req, msg)
                return
        action = _msg_get(msg, "action")
        try:
            cmd = _PLAIN.get(action)
        except TypeError:  # (an unhashable action)
            cmd = None
        if cmd is None:
            cmd = self._lookup(seq, action, msg)
            if cmd is None:
                return
        if self.locked and not cmd.before_login:
            self._refuse(cmd, seq, NoAuthError(f"You need to log in before '{action}'"))
            return
        if self.acl is not None and cmd.privileged:
            self._refuse(cmd, seq, ClientError(f"'{action}' is not allowed for users with an ACL"))
            return
        try:
            cmd.validate(msg)
        except ClientError as exc:
            self._refuse(cmd, seq, exc)
            return
        if not cmd.inline:
            if cmd.prepare is not None:
                try:
                    cmd.prepare(self, msg)
                except Exception as exc:
                    self._refuse(cmd, seq, exc)
                    return
            self._spawn(cmd, msg, seq, msg.get("state") == "start")
            return
        try:
            res = cmd.handler(self, msg)
        except Exception as exc:
            logger.debug("%s: %s failed", self.peer, action, exc_info=True)
            self.reply_error(seq, exc)
        else:
            if res.__class__ is dict and "tock" in res:  # what data handlers return
                res["seq"] = seq
                try:
                    data = self._pack(res)
                except (TypeError, ValueError, OverflowError):
                    self.queue(res)  # (sends the packing error)
                    return
                self._out.append(data)  # (what queue() does, inline)
                self.out_size += len(data)
                if not self._batch:
                    self._kick()
            else:
                self.reply(seq, res)

    def _lookup(self, seq: int, action: Any, msg: dict) -> Command | None:
        """The command for a request that is not a plain single-reply one; None if
        there is none (then the request has been answered or ignored)."""
        if action is None:
            if seq == 0:
                self._hello(msg)
            elif msg.get("state") not in ("ack", "end"):
                # (late traffic for a finished stream is ignored)
                self.reply_error(seq, ClientError("The request has no 'action'"))
            return None
        cmd = REGISTRY.lookup(action, msg)
        if cmd is None:
            self.reply_error(seq, ClientError(f"Unknown action: {action!r}"))
        return cmd

    def _refuse(self, cmd: Command, seq: int, exc: Exception) -> None:
        """Answer a request that is not run; a stream request gets its error inside a stream."""
        if cmd.stream:
            stream = Stream(self, seq, self.window, False)
            stream.send_nowait({"state": "start"})
            stream.send_nowait({"error": repr(exc)})
            stream.send_nowait({"state": "end"})
        else:
            self.reply_error(seq, exc)

    def _hello(self, msg: dict) -> None:
        qlen = msg.get("qlen")
        if qlen.__class__ is int:
            self.window = check_window(min(qlen, self._buffer))

    def _route(self, req: _Request, msg: dict) -> None:
        stream = req.stream
        if stream is None:
            return
        if msg.get("state") == "ack":
            stream.ack(msg.get("ack"))
            return
        try:
            stream._incoming(msg)
        except ClientError as exc:
            self.queue(
                {"error": str(exc), "seq": req.seq, "etype": exc.etype,
                 "tock": self.server.next_tock()}
            )
            req.scope.cancel()

    def _spawn(self, cmd: Command, msg: dict, seq: int, client_stream: bool) -> None:
        stream = None
        if cmd.stream:
            qlen = msg.get("qlen")
            window = check_window(qlen) if qlen.__class__ is int and qlen > 0 else self.window
            stream = Stream(self, seq, window, client_stream)
        req = _Request(seq, stream)
        self._requests[seq] = req
        assert self._tg is not None
        if stream is None:
            self._tg.start_soon(self._run_single, cmd, msg, req)
        else:
            self._tg.start_soon(self._run_stream, cmd, msg, req)

    def stop_request(self, seq: Any) -> bool:
        """Cancel the running request ``seq``; False if there is none."""
        req = self._requests.get(seq)
        if req is None:
            return False
        req.scope.cancel()
        return True

    async def _run_single(self, cmd: Command, msg: dict, req: _Request) -> None:
        try:
            with req.scope:
                try:
                    res = await cmd.handler(self, msg)
                except Exception as exc:
                    logger.debug("%s: %s failed", self.peer, cmd.name, exc_info=True)
                    self.reply_error(req.seq, exc)
                else:
                    self.reply(req.seq, res)
            if req.scope.cancelled_caught:
                self.reply_error(req.seq, CancelledError("stopped"))
        finally:
            del self._requests[req.seq]

    async def _run_stream(self, cmd: Command, msg: dict, req: _Request) -> None:
        stream = req.stream
        assert stream is not None
        try:
            with req.scope:
                try:
                    await stream.send({"state": "start"})
                    await cmd.handler(self, msg, stream)
                except Exception as exc:
                    logger.debug("%s: %s failed", self.peer, cmd.name, exc_info=True)
                    err = {"error": repr(exc)}
                    etype = getattr(exc, "etype", None)
                    if etype is not None:
                        err["etype"] = etype
                    stream.send_nowait(err)
        finally:
            del self._requests[req.seq]
            stream.close_inbox()
        stream.send_nowait({"state": "end"})
