"""Subtree actions: ``get_tree`` (and ``get_tree_internal``), ``delete_tree``, ``watch``.

Streamed entry records are ``{value?, chain?, tock, path, depth}`` with the
path shortened relative to the requested path (04 §5).

Deviations from upstream, on purpose:

* ``get_tree`` of a path that does not exist is an empty stream (``start``,
  ``end``), not an error (15 #21);
* ``delete_tree`` only makes deletion events for entries that have a value
  and does not create a missing start path; ``changed`` counts those events;
  no spurious message follows the stream's ``end`` (15 #4).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from distkv.exceptions import ClientError
from distkv.util import NotGiven

from ..records import RelShortener, entry_record, walk
from ..registry import BOOL, INT, PATH, action
from ..watch import run_watch
from .data import META, data_path

if TYPE_CHECKING:
    from ..session import Session, Stream

_TREE = {"path": PATH, "nchain": INT, "min_depth": INT, "max_depth": INT, "empty": BOOL}


async def _get_tree(
    sess: Session, msg: dict, stream: Stream, full: tuple, top: bool, meta_top: bool
) -> None:
    entry = sess.store.follow(full)
    if entry is None:
        return
    nchain = msg.get("nchain", 0)
    min_depth = msg.get("min_depth", 0)
    max_depth = msg.get("max_depth", -1)
    empty = msg.get("empty", False)
    short = RelShortener(top)
    send = stream.send
    for e, rel in walk(entry, max_depth=max_depth, meta_top=empty and meta_top):
        if len(rel) < min_depth:
            continue
        if e.value is NotGiven and not empty:
            continue
        await send(short(entry_record(e, nchain), rel))


@action("get_tree", stream=True, fields=_TREE)
async def get_tree(sess: Session, msg: dict, stream: Stream) -> None:
    """Every entry (with a value, unless ``empty``) of a subtree, pre-order."""
    path = msg.get("path", ())
    await _get_tree(sess, msg, stream, data_path(sess, path), not path, True)


@action("get_tree_internal", stream=True, fields=_TREE)
async def get_tree_internal(sess: Session, msg: dict, stream: Stream) -> None:
    """:func:`get_tree` below the meta root."""
    path = msg.get("path", ())
    await _get_tree(sess, msg, stream, META + path, not path, False)


# --- delete_tree ------------------------------------------------------------------------


def _tree_path(sess: Session, msg: dict) -> tuple:
    path = msg.get("path", ())
    if not path:
        raise ClientError("You can't delete the root node")
    return data_path(sess, path)


def _doomed(sess: Session, full: tuple) -> list:
    """The entries with a value in the subtree, pre-order (meta subtrees excluded)."""
    entry = sess.store.follow(full)
    if entry is None:
        return []
    return [(e, rel) for e, rel in walk(entry) if e.value is not NotGiven]


@action("delete_tree", fields={"path": PATH, "nchain": INT})
def delete_tree(sess: Session, msg: dict) -> dict:
    """Delete every value in a subtree; reply ``{changed: <number deleted>}``."""
    full = _tree_path(sess, msg)
    store = sess.store
    n = 0
    for e, _rel in _doomed(sess, full):
        if e.value is not NotGiven:
            store.local_change(e, NotGiven)
            n += 1
    return {"changed": n}


@action(
    "delete_tree", stream=True, fields={"path": PATH, "nchain": INT},
    when=lambda msg: msg.get("nchain"),
)
async def delete_tree_stream(sess: Session, msg: dict, stream: Stream) -> None:
    """:func:`delete_tree` reporting each deletion: ``{node, tick, prev…, path,
    old_value, tock, depth}``."""
    full = _tree_path(sess, msg)
    nchain = msg["nchain"]
    store = sess.store
    short = RelShortener(False)
    for e, rel in _doomed(sess, full):
        old = e.value
        if old is NotGiven:  # deleted meanwhile
            continue
        event = store.local_change(e, NotGiven)
        rec = event.chain.to_wire(nchain) or {}
        rec["path"] = rel  # (replaced by the shortened form, keeping its position)
        rec["old_value"] = old
        rec["tock"] = event.tock
        await stream.send(short(rec, rel))


# --- watch ----------------------------------------------------------------------------


@action(
    "watch", stream=True,
    fields={**_TREE, "fetch": BOOL},
)
async def watch(sess: Session, msg: dict, stream: Stream) -> None:
    """Report changes in a subtree (``fetch``: the current state first, then
    ``{state: uptodate}``). Runs until stopped; see :mod:`distkv.server.watch`."""
    path = msg.get("path", ())
    await run_watch(
        sess, stream, data_path(sess, path),
        top=not path,
        nchain=msg.get("nchain", 0),
        fetch=msg.get("fetch", False),
        min_depth=msg.get("min_depth", 0),
        max_depth=msg.get("max_depth", -1),
        empty=msg.get("empty", False),
    )
