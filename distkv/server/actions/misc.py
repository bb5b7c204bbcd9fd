"""Connection and pass-through actions: ``stop``, ``msg_send``, ``msg_monitor``.

``msg_send``/``msg_monitor`` hand messages to the server's broadcast backend
unchanged. A topic whose first element starts with ``:`` is prefixed with the
top-level config key ``root`` (a path), as upstream does; when that key is
absent (upstream failed then, 15 #8) the server's topic root ``server.root``
is used instead, so such topics stay apart from other networks on the same
broker. A standalone server has no backend: both actions fail with
``NoBackendError('no backend: …')``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from distkv.codec import packb, unpackb
from distkv.exceptions import ClientError
from distkv.util.path import P, Path

from ..registry import ANY, BOOL, INT, TOPIC, action

if TYPE_CHECKING:
    from ..server import Server
    from ..session import Session, Stream


@action("stop", fields={"task": INT}, required=("task",))
def stop(sess: Session, msg: dict) -> bool:
    """Cancel the running request ``task``; ``{result: false}`` if none runs."""
    return sess.stop_request(msg["task"])


def backend_topic(server: Server, topic: Any, *, parse: bool) -> tuple:
    """The backend topic for a client's ``topic`` (str: one element, or parsed if ``parse``)."""
    if isinstance(topic, str):
        topic = P(topic) if parse else (topic,)
    if not topic:
        raise ClientError("The topic must not be empty")
    first = topic[0]
    if isinstance(first, str) and first.startswith(":"):
        root = server.cfg.get("root")
        if root is None:
            prefix = server.topic_root
        else:
            prefix = P(root) if isinstance(root, str) else Path.build(root)
        topic = prefix + tuple(topic)
    return tuple(topic)


@action("msg_send", fields={"topic": TOPIC, "data": ANY, "raw": ANY}, required=("topic",))
async def msg_send(sess: Session, msg: dict) -> None:
    """Publish ``data`` (packed) or ``raw`` (bytes, as is) on a backend topic."""
    if ("data" in msg) == ("raw" in msg):
        raise ClientError("msg_send needs exactly one of 'data' and 'raw'")
    if "raw" in msg:
        payload = msg["raw"]
        if not isinstance(payload, (bytes, bytearray)):
            raise ClientError(f"msg_send: 'raw' must be bytes, not {type(payload).__name__}")
    else:
        payload = packb(msg["data"])
    server = sess.server
    await server.backend.publish(backend_topic(server, msg["topic"], parse=False), bytes(payload))


@action("msg_monitor", stream=True, fields={"topic": TOPIC, "raw": BOOL}, required=("topic",))
async def msg_monitor(sess: Session, msg: dict, stream: Stream) -> None:
    """Stream every message on a backend topic (MQTT wildcards allowed)."""
    server = sess.server
    topic = backend_topic(server, msg["topic"], parse=True)
    raw = msg.get("raw", False)
    async with server.backend.subscribe(topic) as messages:
        async for t, payload in messages:
            if raw:
                item = {"topic": t, "raw": payload}
            else:
                try:
                    item = {"topic": t, "data": unpackb(payload)}
                except Exception as exc:
                    item = {"topic": t, "raw": payload, "error": repr(exc)}
            await stream.send(item)
