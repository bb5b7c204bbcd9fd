"""Broadcast media between servers, and choosing one at startup.

:func:`connect_backend` looks at ``server.backend``: ``memory`` is the
in-process bus; ``mqtt`` and ``serf`` name an external broker/agent, which is
probed once with a short TCP connect. Replication over a broker is not part of
this server yet, so in every case except ``memory`` the server runs
standalone (:class:`StandaloneBackend`); when nothing answers and
``server.no_broker`` is ``fail`` it refuses to start instead.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import anyio

from distkv.exceptions import ServerConnectionError

from .base import Backend, NoBackendError, StandaloneBackend
from .memory import MemoryBackend

__all__ = [
    "Backend",
    "MemoryBackend",
    "NoBackendError",
    "StandaloneBackend",
    "broker_address",
    "connect_backend",
]

logger = logging.getLogger(__name__)

PROBE_TIMEOUT = 1.0
_DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883, "ws": 80, "wss": 443}


def broker_address(server_cfg: dict) -> tuple[str, str, int]:
    """``(description, host, port)`` of the configured broker or agent."""
    kind = server_cfg.get("backend", "mqtt")
    if kind == "serf":
        opts = server_cfg.get("serf") or server_cfg.get("connect") or {}
        host = opts.get("host", "localhost")
        port = int(opts.get("port", 7373))
        return f"serf://{host}:{port}", host, port
    opts = server_cfg.get(kind) or server_cfg.get("connect") or {}
    uri = opts.get("uri", "mqtt://localhost:1883")
    parts = urlsplit(uri)
    host = parts.hostname or "localhost"
    port = parts.port or _DEFAULT_PORTS.get(parts.scheme, 1883)
    return uri, host, port


async def _answers(host: str, port: int, wait: float) -> bool:
    try:
        with anyio.fail_after(wait):
            stream = await anyio.connect_tcp(host, port)
    except (OSError, TimeoutError):
        return False
    await stream.aclose()
    return True


async def connect_backend(server_cfg: dict, *, probe_time: float = PROBE_TIMEOUT) -> Backend:
    """Pick the broadcast medium for a server (see the module docstring).

    Raises :class:`ServerConnectionError` if no broker answers and
    ``server.no_broker`` is ``fail``.
    """
    kind = server_cfg.get("backend", "mqtt")
    if kind == "memory":
        return MemoryBackend((server_cfg.get("memory") or {}).get("bus", "default"))
    where, host, port = broker_address(server_cfg)
    policy = server_cfg.get("no_broker", "standalone")
    if policy not in ("standalone", "fail"):
        raise ServerConnectionError(
            f"server.no_broker must be 'standalone' or 'fail', not {policy!r}"
        )
    if await _answers(host, port, probe_time):
        logger.warning(
            "broker at %s answers, but replication is not available in this version: "
            "running standalone (no replication)",
            where,
        )
        return StandaloneBackend()
    if policy == "fail":
        raise ServerConnectionError(f"no broker at {where} (server.no_broker is 'fail')")
    logger.warning("no broker at %s: running standalone (no replication)", where)
    return StandaloneBackend(f"no backend: no broker at {where}, this server runs standalone")
