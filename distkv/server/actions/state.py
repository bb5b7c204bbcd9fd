"""Bookkeeping actions: ``get_state``, ``get_tock``, ``enum_node``, ``kill_node``,
``update``, ``check_deleted``, ``fake_info`` and ``fake_info_send``.

These serve debugging tools, server synchronisation and the deleter; the
tick/tock rules themselves live in :class:`distkv.core.Store`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from distkv.core import Conflict, RangeSet, chain_from_wire
from distkv.exceptions import ClientError
from distkv.util import NotGiven
from distkv.util.path import Path

from ..registry import ANY, BOOL, INT, MAP, PATH, STR, action

if TYPE_CHECKING:
    from ..session import Session

_STATE_FLAGS = (
    "nodes", "known", "superseded", "present", "deleted", "missing", "remote_missing",
    "node_drop", "debug", "debugger",
)


@action("get_state", fields=dict.fromkeys((*_STATE_FLAGS, "conflicts", "backend"), BOOL))
def get_state(sess: Session, msg: dict) -> dict:
    """Node ticks and tick sets, as requested by the flags (04 §6.14).

    Two flags are ours: ``conflicts`` adds the conflict log, a list of
    ``{path, winner: {node, tick}, loser: {node, tick}, winner_tock,
    loser_tock}`` (oldest losing change first; the same on every server once
    they have exchanged their records), and ``backend`` adds the broadcast
    medium's state (``{backend, address, state, connects, …}``).
    """
    flags = {k: True for k in _STATE_FLAGS if msg.get(k)}
    flags.pop("debugger", None)  # never start a debugger on request
    res = sess.store.get_state(**flags)
    if msg.get("conflicts"):
        res["conflicts"] = [_conflict(c) for c in sess.store.conflicts]
    if msg.get("backend"):
        backend = sess.server.backend
        status = getattr(backend, "status", None)
        res["backend"] = status() if status is not None else {"backend": backend.name}
    return res


def _conflict(c: Conflict) -> dict:
    rec = c.to_wire()
    rec["path"] = Path.build(rec["path"])
    return rec


@action("get_tock")
def get_tock(sess: Session, msg: dict) -> dict:
    """A fresh tock."""
    return {"tock": sess.server.next_tock()}


@action("enum_node", fields={"node": STR, "max": INT, "current": BOOL}, required=("node",))
def enum_node(sess: Session, msg: dict) -> list:
    """The ticks of ``node`` that some entry still holds."""
    return sess.store.enum_node(msg["node"], msg.get("max", 0), msg.get("current", False))


@action("kill_node", fields={"node": STR}, required=("node",))
async def kill_node(sess: Session, msg: dict) -> None:
    """Forget a node that heads no entry, and tell the others."""
    name = msg["node"]
    sess.store.kill_node(name)
    await sess.server.publish_info({"node_drop": [name]})


@action(
    "update",
    fields={"path": PATH, "value": ANY, "new_value": ANY, "chain": ANY, "tock": INT},
    required=("path",),
)
def update(sess: Session, msg: dict) -> bool:
    """Apply a serialized update event below the connection's root.

    A data value is decoded with the user's converter first, as ``set_value`` does (08 §5).
    """
    chain = chain_from_wire(msg)
    if chain is None:
        raise ClientError("An update needs a chain ('chain', or 'node'/'tick'/'prev')")
    if "value" in msg:
        value = msg["value"]
    else:
        value = msg.get("new_value", NotGiven)
    root = sess.root
    path = root + msg["path"] if root else msg["path"]
    conv = sess.conv
    if conv is not None and value is not NotGiven and None not in path:
        value = conv.decode(path, value, sess.store.follow(path))
    sess.store.apply_update(path, chain, value, msg.get("tock"))
    return False


@action("check_deleted", fields={"nodes": MAP}, required=("nodes",))
async def check_deleted(sess: Session, msg: dict) -> None:
    """Announce as deleted every listed tick that this server does not hold."""
    store = sess.store
    gone = {}
    for name, ticks in msg["nodes"].items():
        ticks = RangeSet.from_wire(ticks)
        node = store.nodes.get(name)
        if node is not None:
            ticks -= node.present
        if ticks:
            gone[name] = ticks.to_wire()
    if gone:
        await sess.server.publish_info({"deleted": gone})


def _fake(msg: dict) -> dict:
    info = dict(msg)
    info["node"] = ""
    info["tick"] = 0
    return info


@action("fake_info")
def fake_info(sess: Session, msg: dict) -> None:
    """Process an ``info`` message as if a peer had sent it."""
    sess.store.process_info(_fake(msg))


@action("fake_info_send")
async def fake_info_send(sess: Session, msg: dict) -> None:
    """:func:`fake_info`, and broadcast it on the ``info`` topic."""
    info = _fake(msg)
    info.pop("tock", None)
    sess.store.process_info(info)
    await sess.server.publish_info(info)
