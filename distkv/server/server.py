"""The server: owns the store, the listeners, change logs and the backend.

Startup (:meth:`Server.serve`):

1. ``-I`` (``init``): the root entry gets that value as this node's first
   event (tick 1). ``-l`` (``load``): the file is applied (10 §5); the node's
   own tick comes back from it, so a restart never reuses ticks.
2. The backend is chosen (:func:`~distkv.server.backend.connect_backend`):
   without a reachable broker the server runs standalone, or refuses to
   start if ``server.no_broker`` is ``fail``.
3. A server that still has no tick of its own (no data, no ``-I``/``-l``)
   would normally fetch the tree from a peer. Standalone there is no peer,
   so it starts a new, empty network instead: empty tree, tick 0, and says
   so in the log.
4. ``-s`` (``save``) starts a change log; then every ``server.bind`` entry
   (merged over ``server.bind_default``) gets a listener on its own host and
   port, with TLS if its ``ssl`` is a ``{cert, key}`` map.
5. ``task_status.started(server)``; systemd gets ``READY=1`` (and watchdog
   keep-alives) if it asked for them.

Cancelling :meth:`serve` closes the listeners and flushes and closes the logs.
"""

from __future__ import annotations

import gc
import logging
import ssl
from typing import Any

import anyio
from anyio.abc import ByteStream, Listener, SocketAttribute, TaskStatus
from anyio.streams.tls import TLSListener

from distkv.codec import packb
from distkv.core import Store
from distkv.exceptions import ServerError
from distkv.util import NotGiven, attrdict, combine_dict
from distkv.util.path import P, Path

from . import actions, systemd  # noqa: F401  (importing actions registers them)
from .backend import Backend, StandaloneBackend, connect_backend
from .persist import ChangeLog, load_file, snapshot_chunks
from .session import Session

__all__ = ["Server"]

logger = logging.getLogger(__name__)


class Server:
    """One distkv server node.

    ``cfg`` is the whole configuration (as :func:`distkv.config.load_config`
    returns it); ``init`` the root value of a new network (NotGiven: none);
    ``load`` a file to load first; ``save`` a change log to start
    (``incremental``: without the initial full state); ``authoritative``: the
    loaded data is complete; ``force``: serve even if ticks are missing (a
    standalone server always serves, so this matters only once servers sync
    from peers).
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
    ):
        self.name = name
        self.cfg = cfg if isinstance(cfg, attrdict) else attrdict(cfg)
        if not isinstance(self.cfg.get("server"), dict):
            raise ServerError("The configuration has no 'server' section")
        self.store = Store(name)
        self.ports: list[int] = []
        self.backend: Backend = StandaloneBackend()
        self.changelogs: list[ChangeLog] = []
        self._init = init
        self._load = load
        self._save = save
        self._incremental = incremental
        self._authoritative = authoritative
        self._force = force
        self._tg: anyio.abc.TaskGroup | None = None
        self._topic_root = _as_path(self.cfg.server.get("root", (":distkv",)))

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
        """Hand every buffered change-log record to the OS (before replies go out)."""
        for log in self.changelogs:
            log.sync()

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
        if self.backend.standalone:
            return
        msg.setdefault("node", self.name)
        msg.setdefault("tick", self.node_tick)
        msg.setdefault("tock", self.next_tock())
        await self.backend.publish((*self._topic_root, "info"), packb(msg))

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

    def _become_ready(self) -> None:
        node = self.store.node
        if node.tick is None:
            # No data and (standalone) no peer to fetch it from: this is the
            # first node of a new network.
            node.tick = 0
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
        self._load_data()
        self.backend = await connect_backend(self.cfg.server)
        self._become_ready()
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
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
            with anyio.CancelScope(shield=True):
                await self.backend.aclose()


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
