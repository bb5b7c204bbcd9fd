"""The server-to-server messages: reading ``update``/``info`` payloads, building updates.

* :class:`Inbox` — received payloads of one topic to complete message maps
  (unpack, join ``_p0`` parts, undo the escaping); malformed input raises
  :class:`BadMessage`;
* :func:`parse_update` — an ``update`` map (05 §3, shape A or B) to
  ``(path, chain, value, tock)``;
* :func:`update_message` — a local event as shape A, with a :class:`Path`
  path as upstream sends it.

Pure and synchronous; the I/O lives in :mod:`.replicator`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from distkv.codec import packb, unpackb
from distkv.core import ChainLink, Event, chain_from_wire
from distkv.server.backend.split import BadChunkError, Joiner
from distkv.util import NotGiven, attrdict
from distkv.util.path import Path

__all__ = ["BadMessage", "Inbox", "own_payload_test", "parse_update", "update_message"]

_new_path = tuple.__new__


class BadMessage(ValueError):
    """A peer's message that can't be used."""


class Inbox:
    """Reassembles the messages of one topic (any number of senders)."""

    __slots__ = ("joiner",)

    def __init__(self) -> None:
        self.joiner = Joiner()

    def feed(self, payload: bytes) -> dict | None:
        """The complete message for one payload, or None while parts are missing."""
        try:
            msg = unpackb(payload)
        except Exception as exc:
            raise BadMessage(f"undecodable payload ({len(payload)} bytes): {exc}") from None
        if msg.__class__ is not attrdict and not isinstance(msg, dict):
            raise BadMessage(f"not a map: {msg!r:.80}")
        if "_p0" in msg:
            try:
                msg = self.joiner.feed(msg)
            except BadChunkError as exc:
                raise BadMessage(str(exc)) from None
        return msg


def parse_update(msg: Mapping[str, Any]) -> tuple[tuple, ChainLink, Any, int | None]:
    """``(path, chain, value, tock)`` of an ``update`` map; ``value`` NotGiven deletes.

    The chain is taken from ``chain`` if present, else from the top-level
    ``node``/``tick``/``prev``; ``value`` may also come as ``new_value``.
    """
    path = msg.get("path")
    if not isinstance(path, tuple):
        raise BadMessage(f"update without a path: {path!r:.80}")
    try:
        hash(path)
    except TypeError:
        raise BadMessage(f"update with an unusable path: {path!r:.80}") from None
    c = msg.get("chain", msg)
    # the usual case, a one-link chain, without the general parser
    if c.__class__ is attrdict and c.get("prev", 0) is None:
        node = c.get("node")
        tick = c.get("tick")
        if node.__class__ is str and tick.__class__ is int:
            chain: ChainLink | None = ChainLink(node, tick, None)
        else:
            chain = _chain(msg)
    else:
        chain = _chain(msg)
    if chain is None:
        raise BadMessage("update without a chain")
    for _n, t in chain:
        if t is None:
            raise BadMessage("update with a chain link without tick")
    if "value" in msg:
        value = msg["value"]
    elif "new_value" in msg:
        value = msg["new_value"]
    else:
        value = NotGiven
    tock = msg.get("tock")
    if tock is not None and (tock.__class__ is not int):
        raise BadMessage(f"update with a bad tock: {tock!r:.40}")
    return path, chain, value, tock


def _chain(msg: Mapping[str, Any]) -> ChainLink | None:
    try:
        return chain_from_wire(msg)
    except ValueError as exc:
        raise BadMessage(str(exc)) from None


def own_payload_test(node: str) -> Callable[[bytes], bool]:
    """A test for payloads that are ``node``'s own shape A updates or ``_p0`` parts.

    Those start (after a small map's header) with ``node: <name>`` or
    ``_p0: [<name>, …``; nothing else does. Echoes of our own broadcasts are
    dropped with it before any decoding.
    """
    name = packb(node)
    update = b"\xa4node" + name
    part = b"\xa3_p0\x94" + name
    n_update = len(update) + 1
    n_part = len(part) + 1

    def own(payload: bytes) -> bool:
        if not payload or not 0x80 <= payload[0] <= 0x8F:
            return False
        return payload[1:n_update] == update or payload[1:n_part] == part

    return own


def update_message(event: Event, nchain: int) -> dict[str, Any]:
    """``{node, tick, prev, path, value?, tock}`` for a local event (shape A)."""
    msg = event.to_wire(nchain)
    msg["path"] = _new_path(Path, msg["path"])
    return msg


def as_path(path: tuple) -> Path:
    """``path`` as a :class:`Path` (what upstream expects in ``path`` fields)."""
    return path if path.__class__ is Path else _new_path(Path, path)
