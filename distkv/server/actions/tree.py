"""Subtree actions: ``get_tree`` (and ``get_tree_internal``), ``delete_tree``, ``watch``.

Streamed entry records are ``{value?, chain?, tock, path, depth}`` with the
path shortened relative to the requested path (04 §5).

ACLs (07): ``get_tree`` needs ``e`` at the start node, ``delete_tree`` ``d``,
``watch`` ``x``. Inside the subtree an entry's record is sent only if the
ACL grants ``r`` there (upstream sent it without the value: names leaked),
an entry is deleted only if it grants ``d``, and children are visited only
where the ACL allows descending (``e``; for deletions ``x`` too). Values
sent to a user with a converter are encoded. ``get_tree_internal`` applies
the same rules to the meta path.

Deviations from upstream, on purpose:

* ``get_tree`` of a path that does not exist is an empty stream (``start``,
  ``end``), not an error (15 #21);
* ``delete_tree`` only makes deletion events for entries that have a value
  and does not create a missing start path; ``changed`` counts those events;
  no spurious message follows the stream's ``end`` (15 #4).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from distkv.acl import UNRESTRICTED
from distkv.exceptions import ClientError
from distkv.util import NotGiven

from ..records import RelShortener, entry_record, walk, walk_acl
from ..registry import BOOL, INT, PATH, action
from ..watch import PREPARED, prepare_watch, run_watch
from .data import data_path, meta_path

if TYPE_CHECKING:
    from ..session import Session, Stream

_TREE = {"path": PATH, "nchain": INT, "min_depth": INT, "max_depth": INT, "empty": BOOL}


async def _get_tree(
    sess: Session, msg: dict, stream: Stream, full: tuple, top: bool, meta_top: bool
) -> None:
    acl = sess.acl
    cursor = None if acl is None else acl.cursor(full, "e")
    entry = sess.store.follow(full)
    if entry is None:
        return
    nchain = msg.get("nchain", 0)
    min_depth = msg.get("min_depth", 0)
    max_depth = msg.get("max_depth", -1)
    empty = msg.get("empty", False)
    short = RelShortener(top)
    send = stream.send
    conv = sess.conv
    if cursor is None and conv is None:  # the fast path
        for e, rel in walk(entry, max_depth=max_depth, meta_top=empty and meta_top):
            if len(rel) < min_depth:
                continue
            if e.value is NotGiven and not empty:
                continue
            await send(short(entry_record(e, nchain), rel))
        return
    if cursor is None:
        cursor = UNRESTRICTED.cursor(full, "e")
    for e, rel, cur in walk_acl(
        entry, cursor, max_depth=max_depth, meta_top=empty and meta_top
    ):
        if len(rel) < min_depth or (e.value is NotGiven and not empty) or not cur.grants("r"):
            continue
        rec = entry_record(e, nchain)
        if conv is not None and "value" in rec:
            rec["value"] = conv.encode((*full, *rel), rec["value"], e)
        await send(short(rec, rel))


@action("get_tree", stream=True, fields=_TREE)
async def get_tree(sess: Session, msg: dict, stream: Stream) -> None:
    """Every entry (with a value, unless ``empty``) of a subtree, pre-order."""
    path = msg.get("path", ())
    await _get_tree(sess, msg, stream, data_path(sess, path), not path, True)


@action("get_tree_internal", stream=True, fields=_TREE)
async def get_tree_internal(sess: Session, msg: dict, stream: Stream) -> None:
    """:func:`get_tree` below the meta root."""
    path = msg.get("path", ())
    await _get_tree(sess, msg, stream, meta_path(sess, path), not path, False)


# --- delete_tree ------------------------------------------------------------------------


def _tree_path(sess: Session, msg: dict) -> tuple:
    path = msg.get("path", ())
    if not path:
        raise ClientError("You can't delete the root node")
    return data_path(sess, path)


def _doomed(sess: Session, full: tuple) -> list:
    """The entries with a value in the subtree that the user may delete, pre-order
    (meta subtrees excluded)."""
    acl = sess.acl
    cursor = None if acl is None else acl.cursor(full, "d")
    entry = sess.store.follow(full)
    if entry is None:
        return []
    if cursor is None:
        return [(e, rel) for e, rel in walk(entry) if e.value is not NotGiven]
    return [
        (e, rel)
        for e, rel, cur in walk_acl(entry, cursor, through="x")
        if e.value is not NotGiven and cur.grants("d")
    ]


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
    old_value, tock, depth}`` (``old_value`` only where the user may read it)."""
    full = _tree_path(sess, msg)
    nchain = msg["nchain"]
    store = sess.store
    short = RelShortener(False)
    acl = sess.acl
    conv = sess.conv
    for e, rel in _doomed(sess, full):
        old = e.value
        if old is NotGiven:  # deleted meanwhile
            continue
        event = store.local_change(e, NotGiven)
        rec = event.chain.to_wire(nchain) or {}
        rec["path"] = rel  # (replaced by the shortened form, keeping its position)
        epath = (*full, *rel)
        if acl is None or acl.allows(epath, "r"):
            rec["old_value"] = old if conv is None else conv.encode(epath, old, e)
        rec["tock"] = event.tock
        await stream.send(short(rec, rel))


# --- watch ----------------------------------------------------------------------------


def _prepare_watch(sess: Session, msg: dict) -> None:
    msg[PREPARED] = prepare_watch(
        sess, data_path(sess, msg.get("path", ())),
        min_depth=msg.get("min_depth", 0), max_depth=msg.get("max_depth", -1),
    )


@action(
    "watch", stream=True,
    fields={**_TREE, "fetch": BOOL},
    prepare=_prepare_watch,
)
async def watch(sess: Session, msg: dict, stream: Stream) -> None:
    """Report changes in a subtree (``fetch``: the current state first, then
    ``{state: uptodate}``). Runs until stopped; see :mod:`distkv.server.watch`."""
    path = msg.get("path", ())
    await run_watch(
        sess, stream, data_path(sess, path), prepared=msg.get(PREPARED),
        top=not path,
        nchain=msg.get("nchain", 0),
        fetch=msg.get("fetch", False),
        min_depth=msg.get("min_depth", 0),
        max_depth=msg.get("max_depth", -1),
        empty=msg.get("empty", False),
    )
