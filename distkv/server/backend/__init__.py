"""Broadcast media between servers, and choosing one at startup.

:func:`connect_backend` looks at ``server.backend``:

* ``memory`` — the in-process bus named by ``server.memory.bus`` (tests);
* ``mqtt`` (default) and ``serf`` — an external broker or agent, probed once
  with a short TCP connect. If it answers, the server uses
  :class:`~.mqtt.MQTTBackend` / :class:`~.serf.SerfBackend`, which keep the
  connection alive (reconnecting after broker restarts). If nothing answers,
  ``server.no_broker`` decides:

  ``standalone`` (the default configuration)
      serve clients without replication: a single-node network;
  ``fail``
      refuse to start (:class:`ServerConnectionError`);
  ``host`` (MQTT on a local address only)
      host an embedded broker there and use it, so other servers can join;
  ``wait``
      use the broker anyway and keep trying to reach it.

  ``server.mqtt.host_broker: true`` also hosts a broker when none answers.

The returned backend may be an async context manager (the broker/agent
media are: they run their connection tasks inside it); the server enters it.
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
POLICIES = ("standalone", "fail", "host", "wait")
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


def _make(kind: str, server_cfg: dict, node: str, host_broker: bool = False) -> Backend:
    opts = dict(server_cfg.get(kind) or server_cfg.get("connect") or {})
    if kind == "serf":
        from .serf import SerfBackend

        return SerfBackend.from_config(opts)
    if kind != "mqtt":
        raise ServerConnectionError(f"server.backend: unknown backend {kind!r}")
    from .mqtt import MQTTBackend

    if host_broker:
        opts["host_broker"] = True
    return MQTTBackend.from_config(opts, node=node)


async def connect_backend(
    server_cfg: dict, node: str = "", *, probe_time: float = PROBE_TIMEOUT
) -> Backend:
    """Pick the broadcast medium for server ``node`` (see the module docstring).

    Raises :class:`ServerConnectionError` if no broker answers and
    ``server.no_broker`` is ``fail``.
    """
    kind = server_cfg.get("backend", "mqtt")
    if kind == "memory":
        return MemoryBackend((server_cfg.get("memory") or {}).get("bus", "default"), node)
    where, host, port = broker_address(server_cfg)
    policy = server_cfg.get("no_broker", "standalone")
    if policy not in POLICIES:
        raise ServerConnectionError(
            f"server.no_broker must be one of {', '.join(POLICIES)}, not {policy!r}"
        )
    if await _answers(host, port, probe_time):
        return _make(kind, server_cfg, node)
    if policy == "fail":
        raise ServerConnectionError(f"no broker at {where} (server.no_broker is 'fail')")
    opts = server_cfg.get(kind) or {}
    if kind == "mqtt" and (policy == "host" or opts.get("host_broker")):
        return _make(kind, server_cfg, node, host_broker=True)
    if policy == "wait":
        logger.warning("no broker at %s yet: replication starts once it answers", where)
        return _make(kind, server_cfg, node)
    logger.warning("no broker at %s: running standalone (no replication)", where)
    return StandaloneBackend(f"no backend: no broker at {where}, this server runs standalone")
