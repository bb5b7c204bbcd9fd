"""One client connection: greeting, dispatch, streams, ``stop``, errors.

A :class:`Session` owns one byte stream. Its reader loop decodes every message
that a ``receive()`` brought and dispatches each:

* ``seq: 0`` is the client's hello (sets the stream window);
* a ``seq`` of a running request is routed to it (``ack`` or client-stream
  data);
* anything else is a new request, looked up in the command
  :mod:`~distkv.server.registry` and validated. Synchronous single-reply
  handlers run inline (no task); stream handlers and ``async`` handlers run as
  tasks of the connection's task group, so a slow stream never blocks other
  requests.

Replies are packed into a pending-output list; one writer task per
connection hands everything pending to the socket in a single ``send``.
Output is bounded: whoever queues output (the reader, a stream) waits once
more than :data:`OUT_HIGH` bytes are pending, so a client that stops reading
stops being read from — the socket's backpressure, not server memory, absorbs
it. Before any bytes go out the server's change log is synced, so an
acknowledged write is in the log before its reply leaves.

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

import logging
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

    # --- output ---------------------------------------------------------------

    def queue(self, msg: dict) -> None:
        """Add one message to the pending output; the writer task sends it."""
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
        ev = self._wake
        if ev is not None:
            self._wake = None
            ev.set()

    async def wait_room(self) -> None:
        """Wait while more than :data:`OUT_HIGH` bytes are pending (backpressure)."""
        while self.out_size > OUT_HIGH:
            await self._wait_progress()

    async def drain(self) -> None:
        """Wait until everything queued so far has been handed to the socket."""
        while self._out or self._sending:
            await self._wait_progress()

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

    async def _send_out(self) -> None:
        """Hand everything pending to the socket (caller checked ``_sending``)."""
        out = self._out
        self.server.sync_log()  # acknowledged writes reach the log before their replies leave
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
        """Sends whatever streams and request tasks queue (the reader sends its own
        replies itself while this task is idle: one task switch less per request)."""
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

    async def run(self) -> None:
        """Serve this connection until the client goes away."""
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
            self._tg = None
            for req in self._requests.values():
                if req.stream is not None:
                    req.stream.close_inbox()
            with anyio.CancelScope(shield=True):
                try:
                    await self._stream.aclose()
                except _GONE:
                    pass

    async def _read_loop(self) -> None:
        reader = _Reader(int(self.server.cfg.server.get("max_message", 16 * 1024 * 1024)))
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

    def _dispatch(self, msg: dict) -> None:
        seq = msg.get("seq")
        if seq.__class__ is not int:
            self.reply_error(None, ClientError(f"A request needs an integer 'seq', not {seq!r}"))
            return
        if self._requests:
            req = self._requests.get(seq)
            if req is not None:
                self._route(req, msg)
                return
        action = msg.get("action")
        state = msg.get("state")
        if action is None:
            if seq == 0:
                self._hello(msg)
            elif state not in ("ack", "end"):  # late traffic for a finished stream is ignored
                self.reply_error(seq, ClientError("The request has no 'action'"))
            return
        cmd = _PLAIN.get(action) if action.__class__ is str else None
        if cmd is None:
            cmd = REGISTRY.lookup(action, msg)
        if cmd is None:
            self.reply_error(seq, ClientError(f"Unknown action: {action!r}"))
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
        if cmd.stream or cmd.is_async:
            if cmd.prepare is not None:
                try:
                    cmd.prepare(self, msg)
                except Exception as exc:
                    self._refuse(cmd, seq, exc)
                    return
            self._spawn(cmd, msg, seq, state == "start")
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
