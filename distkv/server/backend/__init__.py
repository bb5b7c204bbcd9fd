"""Broadcast media between servers, and choosing one at startup.

:func:`connect_backend` looks at ``server.backend``:

* ``memory`` — the in-process bus named by ``server.memory.bus`` (tests);
* ``mqtt`` (default) and ``serf`` — an external broker or agent, probed once
  with a short connect. If it answers, the server uses
  :class:`~.mqtt.MQTTBackend` / :class:`~.serf.SerfBackend`, which keep the
  connection alive (reconnecting after broker restarts). If nothing answers,
  ``server.no_broker`` decides:

  ``host`` (the default configuration)
      host an embedded MQTT broker (:mod:`.broker`) at that address and use
      it, so that other servers can join; possible for ``mqtt://`` URIs on a
      local address (``localhost``, ``127.0.0.1``, ``::1``). Elsewhere (a
      remote or TLS address, a Serf agent) nothing can be hosted and the
      server behaves as with ``wait``;
  ``standalone``
      serve clients without replication: a single-node network;
  ``fail``
      refuse to start (:class:`ServerConnectionError`);
  ``wait``
      use the broker anyway and keep trying to reach it.

When the server that hosts the broker goes away, the other servers lose
their connection and reconnect (with back-off); with ``host``, the first of
them to try binds the address and hosts the broker from then on, and the
others connect to it. A server only ever takes the place of a broker that a
distkv server hosted (its CONNACK says so, see :data:`.broker.HOSTED_BY`):
if what answered at startup was some other broker, such as mosquitto, the
server waits for that one to come back instead of taking its port.
``server.mqtt.host_broker: true`` forces hosting and taking over.

The returned backend may be an async context manager (the broker/agent
media are: they run their connection tasks inside it); the server enters it.
"""

from __future__ import annotations

import logging
import uuid
from typing import Literal
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
    "probe_broker",
]

logger = logging.getLogger(__name__)

PROBE_TIMEOUT = 1.0
POLICIES = ("host", "standalone", "fail", "wait")
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


def _can_host(server_cfg: dict) -> bool:
    """Whether an embedded broker could serve the configured address."""
    if server_cfg.get("backend", "mqtt") != "mqtt":
        return False
    from .mqtt import LOCAL_HOSTS

    uri = (server_cfg.get("mqtt") or {}).get("uri", "mqtt://localhost:1883")
    parts = urlsplit(uri)
    return parts.scheme == "mqtt" and (parts.hostname or "localhost") in LOCAL_HOSTS


async def _answers(host: str, port: int, wait: float) -> bool:
    try:
        with anyio.fail_after(wait):
            stream = await anyio.connect_tcp(host, port)
    except (OSError, TimeoutError):
        return False
    await stream.aclose()
    return True


async def probe_broker(
    host: str, port: int, wait: float = PROBE_TIMEOUT
) -> Literal["distkv", "other"] | None:
    """What answers at ``host:port``: ``None`` (nothing), ``"distkv"`` (a broker a
    distkv server hosts) or ``"other"`` (any other broker, or not MQTT at all)."""
    from moat.lib.mqtt import MQTTConnAckPacket, ReasonCode
    from moat.lib.mqtt.client_state_machine import MQTTClientStateMachine

    from .broker import HOSTED_BY

    try:
        with anyio.fail_after(wait):
            stream = await anyio.connect_tcp(host, port)
    except (OSError, TimeoutError):
        return None
    sm = MQTTClientStateMachine(client_id=f"distkv-probe-{uuid.uuid4().hex[:12]}")
    sm.connect(clean_start=True)
    answer: Literal["distkv", "other"] = "other"
    async with stream:
        with anyio.move_on_after(wait):
            try:
                await stream.send(bytes(sm.get_outbound_data()))
                while True:
                    for packet in sm.feed_bytes(await stream.receive()):
                        if isinstance(packet, MQTTConnAckPacket):
                            key, value = HOSTED_BY
                            if packet.user_properties.get(key) == value:
                                answer = "distkv"
                            if packet.reason_code is ReasonCode.SUCCESS:
                                sm.disconnect()
                                await stream.send(bytes(sm.get_outbound_data()))
                            return answer
            except Exception:  # closed on us, garbage, an MQTT 3 answer: not ours
                pass
    return answer


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
    policy = server_cfg.get("no_broker", "host")
    if policy not in POLICIES:
        raise ServerConnectionError(
            f"server.no_broker must be one of {', '.join(POLICIES)}, not {policy!r}"
        )
    may_host = policy == "host" and _can_host(server_cfg)
    if may_host:
        found = await probe_broker(host, port, probe_time)
        if found == "distkv":
            logger.info("%s is hosted by a distkv server: one of us takes over if it goes", where)
            return _make(kind, server_cfg, node, host_broker=True)
        if found == "other":
            return _make(kind, server_cfg, node)
    elif await _answers(host, port, probe_time):
        return _make(kind, server_cfg, node)
    if policy == "fail":
        raise ServerConnectionError(f"no broker at {where} (server.no_broker is 'fail')")
    if may_host or (kind == "mqtt" and (server_cfg.get("mqtt") or {}).get("host_broker")):
        # the backend's first connection attempt binds the address and says so
        return _make(kind, server_cfg, node, host_broker=True)
    if policy == "host":
        logger.warning(
            "no broker at %s, and this server cannot host one there (only mqtt:// on a"
            " local address): replication starts once it answers", where,
        )
        return _make(kind, server_cfg, node)
    if policy == "wait":
        logger.warning("no broker at %s yet: replication starts once it answers", where)
        return _make(kind, server_cfg, node)
    logger.warning("no broker at %s: running standalone (no replication)", where)
    return StandaloneBackend(f"no backend: no broker at {where}, this server runs standalone")
