"""An in-process ``Server`` for tests, running in a background event-loop thread.

``inproc_server(...)`` builds the default config (127.0.0.1, a port the OS
picks, a broker address where nothing listens and ``server.no_broker:
standalone``, so the server runs standalone), applies ``conf`` overrides
(``{"server.watch_queue": 5}``), starts
:meth:`Server.serve` through an anyio blocking portal and yields the server;
tests talk to ``server.ports[0]`` with :class:`wire.WireClient`. Leaving the
context cancels the server and waits for it to finish.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from anyio.from_thread import start_blocking_portal
from procs import free_port

from distkv.config import apply_override, default_config
from distkv.server import Server
from distkv.util import NotGiven

__all__ = ["inproc_server", "make_config"]


def make_config(conf: Mapping[str, Any] | None = None) -> Any:
    """Default config for an in-process test server, with ``conf`` overrides."""
    cfg = default_config()
    cfg.server.bind_default.host = "127.0.0.1"
    cfg.server.bind_default.port = 0
    cfg.server.mqtt.uri = f"mqtt://127.0.0.1:{free_port()}"
    cfg.server.no_broker = "standalone"  # (the default would host a broker there)
    for key, value in (conf or {}).items():
        apply_override(cfg, f"{key}={value!r}")
    return cfg


@contextmanager
def inproc_server(
    name: str = "test_0",
    *,
    init: Any = NotGiven,
    conf: Mapping[str, Any] | None = None,
    cfg: Any = None,
    **kw: Any,
) -> Iterator[Server]:
    server = Server(name, cfg if cfg is not None else make_config(conf), init=init, **kw)
    with start_blocking_portal() as portal:
        future, _ = portal.start_task(server.serve)
        try:
            yield server
        finally:
            future.cancel()  # cancels serve(); leaving the portal waits for it
