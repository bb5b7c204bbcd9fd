"""The server: owns the store, the listeners, change logs, the backend and replication.

Startup (:meth:`Server.serve`):

1. The backend is chosen (:func:`~distkv.server.backend.connect_backend`):
   a broker or agent (kept connected in the background), or the in-memory
   bus. Without a reachable broker, ``server.no_broker`` decides: host an
   embedded broker there (the default), run standalone, keep waiting, or
   refuse to start (``fail``). With a medium, a
   :class:`~distkv.server.replication.Replicator` joins the network.
2. ``-I`` (``init``): the root entry gets that value as this node's first
   event (tick 1). ``-l`` (``load``): the file is applied (10 §5); the node's
   own tick comes back from it, so a restart never reuses ticks.
3. Replication starts (subscriptions, actors). A server that has no tick of
   its own yet (no data, no ``-I``/``-l``) fetches the state from a peer —
   one named in ``nodes`` (``distkv server NAME NODES…``) or the first ready
   peer it hears of — and waits until no tick is missing (unless ``force``);
   only then does it serve (05 §6.2). A server with data that was given
   ``nodes`` fetches from them too, before serving. Standalone there is no
   peer to hear of: a server without data starts a new, empty network (and
   says so in the log), unless ``nodes`` answer over the client protocol.
4. ``-s`` (``save``) starts a change log; then every ``server.bind`` entry
   (merged over ``server.bind_default``) gets a listener on its own host and
   port, with TLS if its ``ssl`` is a ``{cert, key}`` map.
5. ``task_status.started(server)``; systemd gets ``READY=1`` (and watchdog
   keep-alives) if it asked for them.

Cancelling :meth:`serve` closes the listeners, flushes and closes the logs
and leaves the backend (what was already published still goes out).
"""

from __future__ import annotations

import gc
import logging
import ssl
from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import Any

import anyio
from anyio.abc import ByteStream, Listener, SocketAttribute, TaskStatus
from anyio.streams.tls import TLSListener

from distkv.core import Store
from distkv.exceptions import ServerError
from distkv.util import NotGiven, attrdict, combine_dict
from distkv.util.path import P, Path

from . import actions, systemd  # noqa: F401  (importing actions registers them)
from .backend import Backend, StandaloneBackend, connect_backend
from .extensions import load_extensions
from .persist import ChangeLog, load_file, snapshot_chunks
from .replication import Replicator
from .replication.sync import fetch_state
from .security import close_security, install_security
from .session import Session

__all__ = ["Server"]

logger = logging.getLogger(__name__)


class Server:
    """One distkv server node.

    ``cfg`` is the whole configuration (as :func:`distkv.config.load_config`
    returns it); ``init`` the root value of a new network (NotGiven: none);
    ``load`` a file to load first; ``save`` a change log to start
    (``incremental``: without the initial full state); ``authoritative``: the
    loaded (or fetched) data is complete; ``force``: serve even if ticks are
    missing after fetching the state from a peer; ``nodes``: peers to fetch
    the state from before serving.
    """

    def __init__(
        self,
        name: str,
        cfg: dict,
        *,
        init: Any = NotGiven,
        load: str | None = None,
        save: str | None = None,
        incremental: bool = False,
        authoritative: bool = False,
        force: bool = False,
        nodes: Sequence[str] = (),
    ):
        self.name = name
        self.cfg = cfg if isinstance(cfg, attrdict) else attrdict(cfg)
        if not isinstance(self.cfg.get("server"), dict):
            raise ServerError("The configuration has no 'server' section")
        load_extensions(self.cfg)  # their config and actions (distkv_ext.<name>.server)
        self.store = Store(name)
        self.ports: list[int] = []
        self.backend: Backend = StandaloneBackend()
        self.replication: Replicator | None = None
        self.changelogs: list[ChangeLog] = []
        self._init = init
        self._load = load
        self._save = save
        self._incremental = incremental
        self._authoritative = authoritative
        self._force = force
        self._nodes = list(nodes)
        self._had_data = False
        self._tg: anyio.abc.TaskGroup | None = None
        #: The backend topic prefix ``server.root`` (05 §2).
        self.topic_root = _as_path(self.cfg.server.get("root", (":distkv",)))

    def __repr__(self) -> str:
        return f"<Server {self.name} ports={self.ports}>"

    # --- what sessions and actions use ------------------------------------------------

    @property
    def node_tick(self) -> int | None:
        """This node's current tick."""
        return self.store.node.tick

    def next_tock(self) -> int:
        return self.store.next_tock()

    def sync_log(self) -> None:
        """Called before replies go out: hand every buffered change-log record to
        the OS, and this server's broadcasts to the medium's socket if that needs
        no waiting, so that acknowledged changes survive this process's death."""
        for log in self.changelogs:
            log.sync()
        repl = self.replication
        if repl is not None:
            repl.push()

    def auth_methods(self) -> list | None:
        """The greeting's ``auth`` list, or None if ``:n.auth`` does not exist."""
        auth = self.store.follow((None, "auth"))
        if auth is None:
            return None
        value = auth.value
        current = value.get("current") if isinstance(value, dict) else None
        others = [name for name in (auth.children or ()) if name != current]
        return [current, *others]

    async def publish_info(self, msg: dict) -> None:
        """Broadcast an ``info`` map to the other servers (nobody, when standalone)."""
        if self.replication is not None:
            await self.replication.publish_info(msg)

    # --- persistence ---------------------------------------------------------------------

    async def save(self, path: str, *, full: bool = False) -> None:
        """Write a snapshot file.

        The snapshot is consistent: it is packed in one go (the server does
        nothing else meanwhile, about 0.2 s per 100,000 entries) and then
        written by a worker thread.
        """
        chunks = snapshot_chunks(self.store, full)

        def write() -> None:
            with open(path, "wb") as fh:
                fh.writelines(chunks)

        await anyio.to_thread.run_sync(write)

    async def start_log(self, path: str, *, fetch: bool = True) -> None:
        """Start a change log at ``path``, then close the previous one (they overlap)."""
        log = ChangeLog(self.store, path)
        try:
            log.write_state()
            if fetch:
                log.write_snapshot()
            log.sync()
        except BaseException:
            log.close()
            raise
        self.store.observers.append(log.observe)
        old, self.changelogs = self.changelogs, [log]
        for o in old:
            self._close_log(o)
        if self._tg is not None:
            self._tg.start_soon(log.run)
        logger.info("Change log: %s", path)

    def stop_log(self) -> None:
        """Flush and close the change log(s)."""
        old, self.changelogs = self.changelogs, []
        for o in old:
            self._close_log(o)

    def _close_log(self, log: ChangeLog) -> None:
        try:
            self.store.observers.remove(log.observe)
        except ValueError:
            pass
        log.close()

    # --- startup -----------------------------------------------------------------------

    def _load_data(self) -> None:
        store = self.store
        if self._init is not NotGiven:
            store.local_change(store.root, self._init)
        if self._load is not None:
            if self.replication is not None:
                with self.replication.applying():  # old events: not broadcast
                    res = load_file(store, self._load, authoritative=self._authoritative)
            else:
                res = load_file(store, self._load, authoritative=self._authoritative)
            logger.info("Loaded %s: %r", self._load, res)
            # The loaded tree lives long: keep the cyclic GC from walking it again
            # and again (it has no garbage cycles to find there).
            gc.freeze()
            missing = store.missing()
            if missing:
                logger.warning(
                    "Ticks are missing after loading: %s",
                    ", ".join(f"{n}: {r!r}" for n, r in missing.items()),
                )

    async def _get_ready(self) -> None:
        """Fetch data from peers as needed (module docstring, step 3)."""
        repl = self.replication
        store = self.store
        if repl is not None:
            if not self._had_data:
                await repl.join(self._nodes, authoritative=self._authoritative, force=self._force)
            elif self._nodes:
                await repl.fetch_from(self._nodes)
            repl.become_ready()
            return
        fetched = False
        for node in self._nodes:
            try:
                await fetch_state(store, self.cfg, node, apply=store.apply_update)
            except Exception as exc:
                logger.warning("Cannot fetch the state from %s: %s", node, exc)
            else:
                fetched = True
                break
        if fetched or self._had_data:
            if store.node.tick is None:
                store.node.tick = 0
        else:
            # No data and (standalone) no peer to fetch it from: this is the
            # first node of a new network.
            store.node.tick = 0
            logger.warning("%s has no data: started a new, empty network", self.name)

    def _bind_specs(self) -> list[dict]:
        scfg = self.cfg.server
        default = scfg.get("bind_default") or {}
        binds = scfg.get("bind") or [{}]
        if isinstance(binds, dict):
            binds = [binds]
        return [combine_dict(b or {}, default) for b in binds]

    async def _listeners(self) -> list[Listener[ByteStream]]:
        res: list[Listener[ByteStream]] = []
        try:
            for spec in self._bind_specs():
                host = spec.get("host") or None
                port = int(spec.get("port", 27586))
                try:
                    listener: Listener[Any] = await anyio.create_tcp_listener(
                        local_host=host, local_port=port
                    )
                except OSError as exc:
                    raise ServerError(
                        f"Cannot listen on {host or '*'}:{port}: {exc.strerror or exc}"
                    ) from None
                for sub in getattr(listener, "listeners", [listener]):
                    p = sub.extra(SocketAttribute.local_port)
                    if p not in self.ports:
                        self.ports.append(p)
                ctx = _ssl_context(spec.get("ssl"))
                if ctx is not None:
                    listener = TLSListener(listener, ctx, standard_compatible=False)
                res.append(listener)
                logger.info("Listening on %s:%s%s", host or "*", port, " (TLS)" if ctx else "")
        except BaseException:
            for lst in res:
                await lst.aclose()
            raise
        return res

    async def _handle(self, stream: ByteStream) -> None:
        try:
            peer = stream.extra(SocketAttribute.remote_address, "?")
        except Exception:
            peer = "?"
        try:
            await Session(self, stream, str(peer)).run()
        except Exception:
            logger.exception("%s: the connection failed", peer)

    async def serve(self, task_status: TaskStatus[Server] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run the server until cancelled (see the module docstring)."""
        backend = await connect_backend(self.cfg.server, self.name)
        try:
            async with AsyncExitStack() as stack:
                if hasattr(backend, "__aenter__"):
                    await stack.enter_async_context(backend)  # type: ignore[arg-type]
                self.backend = backend
                if getattr(self, "auth", None) is None:
                    install_security(self)  # before loading: loaded types must be noticed
                    stack.callback(close_security, self)
                if not backend.standalone:
                    self.replication = Replicator(self, backend)
                self._load_data()
                self._had_data = self.store.node.tick is not None
                async with anyio.create_task_group() as tg:
                    self._tg = tg
                    if self.replication is not None:
                        await tg.start(self.replication.run)
                    await self._get_ready()
                    self.types.check_replicated = True  # loaded and fetched data is done
                    if self._save:
                        await self.start_log(self._save, fetch=not self._incremental)
                    for listener in await self._listeners():
                        tg.start_soon(listener.serve, self._handle)
                    task_status.started(self)
                    systemd.notify("READY=1")
                    interval = systemd.watchdog_interval()
                    if interval:
                        tg.start_soon(systemd.run_watchdog, interval)
        finally:
            self._tg = None
            self.stop_log()


def _as_path(value: Any) -> Path:
    if isinstance(value, str):
        return P(value)
    return Path.build(value)


def _ssl_context(spec: Any) -> ssl.SSLContext | None:
    if not spec:
        return None
    if not isinstance(spec, dict) or not spec.get("cert") or not spec.get("key"):
        raise ServerError("server.bind…ssl must be false or a map with 'cert' and 'key' files")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(spec["cert"], spec["key"])
    return ctx
