"""The Python client: :func:`open_client` and :class:`Client`.

``open_client(**cfg)`` connects (over TLS if ``connect.ssl`` says so),
answers the greeting, logs in with ``connect.auth`` if the server requires
it, starts mirroring the dynamic configuration and yields a :class:`Client`.
The connection machinery (seq numbers, streams, flow control) is in
:mod:`.connection`; the configuration mirror in :mod:`.dynconfig`.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import ssl
import string
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
import anyio.abc

from distkv.config import default_config, to_attrdict
from distkv.exceptions import (
    ClientAuthMethodError,
    ClientAuthRequiredError,
    ServerClosedError,
    ServerConnectionError,
)
from distkv.protocol import MessageReader, ProtocolError
from distkv.util import NotGiven, attrdict, combine_dict
from distkv.util.path import Path, PathLongener

from .connection import Connection, Reply, StreamedRequest
from .dynconfig import ConfigChanges, DynConfig

__all__ = ["Client", "ManyData", "NoData", "open_client"]

logger = logging.getLogger(__name__)

_NAME_CHARS = string.ascii_lowercase + string.digits
# Room for the envelope around the largest value a server accepts.
_MESSAGE_SLACK = 65536


class NoData(ValueError):
    """A request that must yield exactly one item yielded none."""


class ManyData(ValueError):
    """A request that must yield exactly one item yielded several."""


# Actions whose ``path`` is a file name on the server, not a tree path.
_FILE_ACTIONS = frozenset({"log", "save"})


def _as_path(path: Any) -> Path:
    if path.__class__ is Path:
        return path
    if isinstance(path, str):
        raise RuntimeError("You need a path, not a string")
    if isinstance(path, (tuple, list)):
        return Path.build(path)
    raise TypeError(f"A path must be a Path, tuple or list, not {type(path).__name__}")


def _build_config(cfg: dict) -> attrdict:
    """``cfg`` deep-merged over the defaults; ``host``/``port`` go to ``connect``."""
    cfg = dict(cfg)
    shortcuts = {k: cfg.pop(k) for k in ("host", "port") if k in cfg}
    if shortcuts:
        cfg["connect"] = combine_dict(shortcuts, cfg.get("connect") or {})
    return to_attrdict(combine_dict(cfg, default_config()))


def _os_reason(exc: OSError) -> str:
    """The most specific text for a failed connect (anyio wraps the real error)."""
    cause: BaseException | None = exc.__cause__
    if isinstance(cause, BaseExceptionGroup):
        cause = cause.exceptions[0]
    for e in (cause, exc):
        if isinstance(e, OSError):
            if isinstance(e, socket.gaierror) and e.strerror:
                return e.strerror
            if e.errno:
                # asyncio's strerror is "Connect call failed (…)"; this is the real reason
                return os.strerror(e.errno)
            if e.strerror:
                return e.strerror
    return str(cause or exc)


def _ssl_context(spec: Any) -> ssl.SSLContext | None:
    """The TLS context for ``connect.ssl``: false (plain TCP), true (verify the server
    against the system's CAs), or ``{ca: FILE, cert: FILE, key: FILE}`` (``ca``:
    the CA to verify the server with; ``cert``/``key``: a client certificate)."""
    if not spec:
        return None
    if spec is True:
        return ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if not isinstance(spec, dict):
        raise ServerConnectionError(
            f"connect.ssl must be true, false or a map with 'ca', 'cert', 'key', not {spec!r}"
        )
    unknown = set(spec) - {"ca", "cert", "key"}
    if unknown:
        raise ServerConnectionError(f"connect.ssl: unknown keys {sorted(unknown)}")
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=spec.get("ca"))
        if spec.get("cert"):
            ctx.load_cert_chain(spec["cert"], spec.get("key"))
    except (OSError, ssl.SSLError) as exc:
        raise ServerConnectionError(f"connect.ssl: {exc.strerror or exc}") from None
    return ctx


def _preconditions(chain: Any, prev: Any) -> dict[str, Any]:
    """The request fields for a write's ``chain`` and ``prev`` conditions (NotGiven: none)."""
    kw: dict[str, Any] = {}
    if prev is not NotGiven:
        kw["prev"] = prev
    if chain is not NotGiven:
        kw["chain"] = chain
    return kw


async def _single(msg: dict) -> AsyncIterator[dict]:
    yield msg


@asynccontextmanager
async def open_client(**cfg: Any) -> AsyncIterator[Client]:
    """Connect to a server; yields a :class:`Client`, closes the connection after.

    ``cfg`` is configuration merged over the defaults, typically
    ``connect={"host": …, "port": …}`` (``host=`` and ``port=`` are accepted
    as shortcuts). Raises :class:`ServerConnectionError` if the server cannot
    be reached and :class:`TimeoutError` if the connection is not ready within
    ``connect.init_timeout`` seconds.
    """
    client = Client(_build_config(cfg))
    error: Exception | None = None
    async with anyio.create_task_group() as tg:
        try:
            await client._connect(tg)
            try:
                from distkv.obj.handlers import handler_scope

                # shared mirrors (``X.as_handler(client)``) live as long as the client
                async with handler_scope(client):
                    yield client
            except Exception as exc:
                # re-raised outside the task group, so that it is not wrapped
                # in an ExceptionGroup
                error = exc
        except Exception as exc:
            error = exc
        finally:
            await client._aclose()
            tg.cancel_scope.cancel()
    if error is not None:
        raise error


class Client:
    """A connection to a distkv server; create it with :func:`open_client`.

    Every method that takes a path accepts a :class:`~distkv.util.path.Path`,
    tuple or list. Replies are attrdicts as sent by the server (with ``seq``
    and ``tock``). Errors from the server are raised as the matching
    :mod:`distkv.exceptions` class (:class:`~distkv.exceptions.ServerError`
    unless recognised).
    """

    def __init__(self, cfg: attrdict):
        self._cfg = cfg
        self._dyn = DynConfig(cfg)
        self._conn: Connection | None = None
        #: A random id of this client.
        self.name = "".join(secrets.choice(_NAME_CHARS) for _ in range(9))
        self.client_name: str = cfg.connect.get("name") or socket.gethostname()
        #: The server's greeting (``node``, ``tick``, ``tock``, ``version``, …).
        self.greeting = attrdict()
        #: The server's node name.
        self.node: str | None = None
        #: The negotiated stream window (0 = no flow control).
        self.qlen = 0

    @property
    def server_name(self) -> str | None:
        return self.node

    @property
    def config(self) -> attrdict:
        """The configuration, with the dynamic in-tree sections merged in."""
        return self._dyn.live

    def config_changes(self, *sections: str) -> AbstractAsyncContextManager[ConfigChanges]:
        """``async with client.config_changes("runner") as changes:`` then ``async for
        name, value in changes:`` — changes of :attr:`config` sections made in the tree
        (none named: all sections); see :class:`~distkv.client.dynconfig.ConfigChanges`."""
        return self._dyn.changes(*sections)

    # --- connecting ---------------------------------------------------------------

    async def _connect(self, tg: anyio.abc.TaskGroup) -> None:
        c = self._cfg.connect
        host, port = c.host, c.port
        timeout = c.get("init_timeout") or 5
        ssl_context = _ssl_context(c.get("ssl"))
        max_message = int(self._cfg.server.get("max_message") or 16 * 1024 * 1024)
        reader = MessageReader(max_message + _MESSAGE_SLACK)
        try:
            with anyio.fail_after(timeout):
                if ssl_context is None:
                    stream = await anyio.connect_tcp(host, port)
                else:
                    stream = await anyio.connect_tcp(
                        host, port, ssl_context=ssl_context, tls_standard_compatible=False
                    )
                try:
                    pending = await self._greet(stream, reader)
                    self._conn = conn = Connection(stream, reader, self.qlen)
                    tg.start_soon(conn.read_loop, pending)
                    tg.start_soon(conn.write_loop)
                    if "qlen" in self.greeting:
                        conn.send_nowait({"seq": 0, "qlen": self.qlen})
                    await self._login()
                except BaseException:
                    await anyio.aclose_forcefully(stream)
                    raise
        except TimeoutError:
            raise TimeoutError(
                f"Connecting to {host}:{port} took more than {timeout} seconds"
            ) from None
        except ssl.SSLError as exc:
            raise ServerConnectionError(
                f"Cannot connect to {host}:{port}: TLS failed: {exc.reason or exc}"
            ) from None
        except OSError as exc:
            raise ServerConnectionError(
                f"Cannot connect to {host}:{port}: {_os_reason(exc)}"
            ) from None

        tg.start_soon(self._dyn.run, self)
        with anyio.move_on_after(timeout) as scope:
            await self._dyn.ready_event().wait()
        if scope.cancelled_caught:
            logger.warning("The server did not send the configuration within %s seconds", timeout)

    async def _greet(self, stream: anyio.abc.ByteStream, reader: MessageReader) -> list[dict]:
        """Read the greeting; returns messages that arrived right after it."""
        msgs: list[dict] = []
        try:
            while not msgs:
                msgs = reader.feed(await stream.receive())
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            raise ServerClosedError("The server closed the connection before greeting") from None
        except ProtocolError as exc:
            raise ServerClosedError(f"Bad greeting from the server: {exc}") from None
        greeting = msgs[0]
        if greeting.get("seq") != 0:
            if "error" in greeting:
                raise ServerClosedError(greeting["error"])
            raise ServerClosedError(f"The server did not greet us: {greeting!r}")
        self.greeting = greeting
        self.node = greeting.get("node")
        qlen = greeting.get("qlen")
        if isinstance(qlen, int):
            qlen = min(qlen, int(self._cfg.server.get("buffer") or 0))
            # windows below 4 cannot work: the unacked "start" message would
            # block the stream
            self.qlen = qlen if qlen >= 4 else 0
        return msgs[1:]

    async def _login(self) -> None:
        """Log in if the greeting names an active auth method.

        ``connect.auth`` is an auth string or a ``{type: METHOD, …}`` map
        (both parsed by ``distkv.auth.gen_auth``), or an object with an
        ``_auth_method`` name and an ``async auth(client)`` method that
        performs the login.
        """
        methods = self.greeting.get("auth")
        if not methods or methods[0] is None:
            return
        method = methods[0]
        auth = self._cfg.connect.get("auth")
        if auth is None:
            raise ClientAuthRequiredError("You need to log in using:", method)
        from distkv.auth import gen_auth  # the auth methods (06 §7)

        auth = gen_auth(auth)  # a string, a {type: …} map (config file), or built already
        if auth._auth_method != method:
            raise ClientAuthMethodError(f"You cannot use {auth._auth_method!r} auth", methods)
        await auth.auth(self)

    async def dh_secret(self, length: int = 1024) -> bytes:
        """The key shared with the server by a Diffie-Hellman exchange (made
        once per connection; the ``password`` method encrypts with it)."""
        from distkv.auth.client import dh_secret

        return await dh_secret(self, length)

    async def _aclose(self) -> None:
        if self._conn is not None:
            await self._conn.aclose()

    def _connection(self) -> Connection:
        conn = self._conn
        if conn is None:
            raise ServerClosedError("Not connected")
        return conn

    # --- generic requests ------------------------------------------------------------

    async def _request(
        self,
        action: str | None,
        iter: bool | None = None,  # noqa: A002  (upstream's name)
        seq: int | None = None,
        _async: bool = False,
        **params: Any,
    ) -> Any:
        """Send a request and wait for its reply.

        Returns the reply map, or a :class:`StreamedRequest` if the server
        answers with a stream. ``iter=True`` always returns an async iterator;
        ``iter=False`` always returns exactly one item (:class:`NoData` /
        :class:`ManyData` otherwise). ``_async=True`` returns at once with an
        object whose ``await obj.get()`` waits for the reply. With ``seq``,
        the message is sent as part of that open client stream (``action``
        then goes into ``state``) and nothing is awaited.
        """
        conn = self._connection()
        if "path" in params and action not in _FILE_ACTIONS:
            params["path"] = _as_path(params["path"])
        if seq is not None:
            if action is not None:
                params["state"] = action
            params["seq"] = seq
            await conn.send(params)
            return None
        params["action"] = action
        reply: Reply = await conn.request(params)
        if _async:
            return reply
        res = await reply.get()
        if iter is None:
            return res
        if iter:
            return res if isinstance(res, StreamedRequest) else _single(res)
        if not isinstance(res, StreamedRequest):
            return res
        found: list[dict] = []
        async for item in res:
            found.append(item)
            if len(found) > 1:
                res.close()
                raise ManyData(f"More than one reply to {action!r}")
        if not found:
            raise NoData(f"No reply to {action!r}")
        return found[0]

    @asynccontextmanager
    async def _stream(
        self, action: str, stream: bool = False, **params: Any
    ) -> AsyncIterator[StreamedRequest]:
        """A request with a streamed reply; yields the :class:`StreamedRequest`.

        With ``stream=True`` the request itself is a stream too: send more
        messages with ``await req.send(**msg)``. Leaving the context stops
        the request on the server (unless it has ended already).
        """
        async with self._open_stream(action, params, client_stream=stream) as req:
            yield req

    @asynccontextmanager
    async def _open_stream(
        self,
        action: str,
        params: dict,
        *,
        client_stream: bool = False,
        long_path: bool = False,
        number: bool = True,
    ) -> AsyncIterator[StreamedRequest]:
        if "path" in params:
            params["path"] = _as_path(params["path"])
        params["action"] = action
        req = await self._connection().open_stream(
            params,
            client_stream=client_stream,
            number=number,
            longener=PathLongener() if long_path else None,
        )
        try:
            yield req
        finally:
            req.close()

    # --- data ------------------------------------------------------------------------

    async def get(self, path: Any, *, nchain: int = 0) -> attrdict:
        """The entry at ``path``: ``{value?, chain?, tock}`` (no value: none there)."""
        return await self._request("get_value", path=path, iter=False, nchain=nchain)

    async def set(
        self,
        path: Any,
        value: Any,
        *,
        chain: Any = NotGiven,
        prev: Any = NotGiven,
        nchain: int = 0,
        idem: bool | None = None,
    ) -> attrdict:
        """Store ``value`` at ``path``.

        ``chain`` is the chain the entry must currently have (``None``: the
        entry must not have a value); ``prev`` the value it must have;
        ``idem`` skips the write if the value is unchanged. A failed ``chain``
        precondition raises :class:`~distkv.exceptions.ClientChainError`.
        Returns ``{changed, prev?, chain?, tock}``.
        """
        kw = _preconditions(chain, prev)
        if idem is not None:
            kw["idem"] = idem
        return await self._request(
            "set_value", path=path, value=value, iter=False, nchain=nchain, **kw
        )

    async def delete(
        self,
        path: Any,
        *,
        chain: Any = NotGiven,
        prev: Any = NotGiven,
        nchain: int = 0,
        recursive: bool = False,
    ) -> Any:
        """Delete the value at ``path`` (``recursive``: the whole subtree)."""
        kw = _preconditions(chain, prev)
        if recursive:
            if kw:
                raise ValueError("'chain' and 'prev' cannot be used with 'recursive'")
            return await self._request("delete_tree", path=path, nchain=nchain)
        return await self._request("delete_value", path=path, nchain=nchain, **kw)

    async def delete_tree(self, path: Any, *, nchain: int = 0) -> Any:
        """Delete a subtree: ``{changed: n}``, or a stream of deletions if ``nchain``."""
        return await self._request("delete_tree", path=path, nchain=nchain)

    async def list(
        self, path: Any, *, with_data: bool = False, empty: bool | None = None, **kw: Any
    ) -> Any:
        """The names of the children of ``path`` (``with_data``: a name -> value map).

        ``empty`` (default: ``not with_data``) includes children without a value.
        """
        if empty is None:
            empty = not with_data
        res = await self._request("enum", path=path, with_data=with_data, empty=empty, **kw)
        return res.result

    async def get_tree(
        self, path: Any, *, long_path: bool = True, **kw: Any
    ) -> AsyncIterator[attrdict]:
        """Iterate over the entries below ``path`` (``nchain``, ``min_depth``,
        ``max_depth``, ``empty``); each record's ``path`` is relative to ``path``.
        """
        # like upstream, a plain request (its first message carries no wseq)
        async with self._open_stream(
            "get_tree", {"path": path, **kw}, long_path=long_path, number=False
        ) as req:
            async for rec in req:
                yield rec

    @asynccontextmanager
    async def watch(
        self, path: Any, *, long_path: bool = True, **kw: Any
    ) -> AsyncIterator[StreamedRequest]:
        """Watch ``path`` (``fetch``, ``nchain``, ``min_depth``, ``max_depth``,
        ``empty``); yields an async iterator of change records.

        With ``fetch=True`` the current entries come first, then a
        ``{state: "uptodate"}`` record (without ``path``). Record paths are
        relative to ``path``. A watch that is not read stops being acked, so
        the server pauses it; the connection's other requests are unaffected.
        """
        async with self._open_stream("watch", {"path": path, **kw}, long_path=long_path) as req:
            yield req

    async def get_tock(self) -> int:
        """A fresh tock from the server."""
        return (await self._request("get_tock")).tock

    async def stop(self, seq: int) -> attrdict:
        """Cancel the running request ``seq``: ``{result: was_running}``."""
        return await self._request("stop", task=seq)

    # --- messages ------------------------------------------------------------------

    async def msg_send(self, topic: Any, data: Any = None, raw: bytes | None = None) -> attrdict:
        """Publish ``data`` (packed by the server) or ``raw`` bytes on a backend topic."""
        if raw is None:
            return await self._request("msg_send", topic=topic, data=data)
        if data is not None:
            raise RuntimeError("You can either send raw or non-raw data")
        return await self._request("msg_send", topic=topic, raw=raw)

    def msg_monitor(self, topic: Any, raw: bool = False) -> Any:
        """``async with client.msg_monitor(topic) as mon: async for msg in mon: …``"""
        return self._stream("msg_monitor", topic=topic, raw=raw)

    # --- active objects ------------------------------------------------------------

    def mirror(self, path: Any, *, root_type: Any = None, need_wait: bool = False, **kw: Any
               ) -> Any:
        """``async with client.mirror(path, root_type=…) as root:`` — the subtree at
        ``path`` mirrored in memory and kept current (see :mod:`distkv.obj`).
        ``path`` may also be path text (``"one.two"``)."""
        from distkv.obj import mirror

        return mirror(self, path, root_type=root_type, need_wait=need_wait, **kw)
