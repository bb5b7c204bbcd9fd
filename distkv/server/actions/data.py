"""Data actions: read, write, delete and list single entries; change the root.

``get_value``, ``set_value``, ``delete_value``, ``enum`` (alias
``enumerate``), ``root`` and their ``*_internal`` variants (paths relative to
the connection's meta root ``:n``), plus ``auth_info`` (the value of ``:n.auth``).

Paths are relative to the connection's root. A ``None`` element (the meta
root) is accepted as the first element (and anywhere in writes) while the
connection is not chrooted and no ACL restricts it; otherwise it is refused.

ACL letters, checked on the absolute path (07; :mod:`distkv.acl` walks it,
checking ``x`` through existing and ``n`` for new entries): ``get_value``
``r``; ``set_value``/``delete_value`` ``W`` (``c`` for an entry without a
value, else ``w``); ``enum`` ``e`` at the node, then per child ``e`` (names)
or ``r`` (``with_data``); ``root`` ``x``. The ``*_internal`` variants check the
same letters on the meta path, so a restricted user reaches system data only
where the ACL names it explicitly (upstream let every user rewrite it, 15 #27).

Types and converters (08): a user's converter decodes the values they write
(and ``prev``) and encodes every value they are sent. A data write is then
type-checked, before any precondition and before a tick is allocated — so a
refused value costs nothing and the check sees the stored form (15 #25).
Deletions are neither converted nor type-checked (15 #6).

Deviation from upstream (15 #21): ``enum`` of a path that does not exist
returns an empty result instead of a ``KeyError``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from distkv.exceptions import ClientError
from distkv.util import NotGiven
from distkv.util.path import Path

from ..records import entry_record
from ..registry import ANY, BOOL, INT, PATH, STR, action

if TYPE_CHECKING:
    from ..session import Session

__all__ = ["data_path", "meta_path", "write"]

# Requests are attrdicts, whose ``__getattr__`` makes every method lookup slow:
# the hot paths call dict.get directly.
_msg_get = dict.get

_READ = {"path": PATH, "nchain": INT}
_WRITE = {"path": PATH, "value": ANY, "nchain": INT, "chain": ANY, "prev": ANY, "idem": BOOL}
_ENUM = {"path": PATH, "with_data": BOOL, "empty": BOOL}


def data_path(sess: Session, path: tuple, *, anywhere: bool = False) -> tuple:
    """The absolute path for a client path (see the module docstring)."""
    if None in path:
        if (
            sess.root
            or sess.acl is not None
            or (not anywhere and any(e is None for e in path[1:]))
        ):
            raise ValueError("Null path element")
    root = sess.root
    return root + path if root else path


def meta_path(sess: Session, path: tuple) -> tuple:
    """The absolute path for a path relative to the connection's meta root."""
    return (*sess.root, None, *path)


# --- reading ----------------------------------------------------------------------


def _get(sess: Session, full: tuple, nchain: int) -> dict:
    acl = sess.acl
    if acl is not None:
        acl.check(full, "r")
    entry = sess.store.root.follow(full)
    if entry is None:
        return {"chain": None} if nchain else {}
    res = entry_record(entry, nchain)
    conv = sess.conv
    if conv is not None and "value" in res:
        res["value"] = conv.encode(full, res["value"], entry)
    return res


@action("get_value", fields={**_READ, "node": STR, "tick": INT})
def get_value(sess: Session, msg: dict) -> dict:
    """One entry, by ``path`` or by the event ``node``/``tick`` it holds."""
    nchain = _msg_get(msg, "nchain", 0)
    if "path" not in msg:
        if "node" not in msg or "tick" not in msg:
            raise ClientError("get_value needs a 'path', or a 'node' and a 'tick'")
        return _get_by_event(sess, msg["node"], msg["tick"], nchain)
    path = msg["path"]
    if sess.root or None in path:
        path = data_path(sess, path)
    return _get(sess, path, nchain)


def _get_by_event(sess: Session, node: str, tick: int, nchain: int) -> dict:
    entry = sess.store.find_event(node, tick)
    if entry is None:
        raise KeyError(tick)
    full = entry.path
    path = full
    root = sess.root
    if root:
        if path[: len(root)] != root:
            raise KeyError(tick)
        path = path[len(root) :]
    if sess.acl is not None and not sess.acl.allows(full, "r"):
        raise KeyError(tick)  # (what the user may not read does not exist for them)
    res = _get(sess, full, nchain)
    res["path"] = Path.build(path)
    return res


@action("get_internal", fields=_READ)
def get_internal(sess: Session, msg: dict) -> dict:
    """One entry below the meta root."""
    return _get(sess, meta_path(sess, msg.get("path", ())), msg.get("nchain", 0))


@action("auth_info", fields={"nchain": INT})
def auth_info(sess: Session, msg: dict) -> dict:
    """The value of ``:n.auth`` (upstream looked in the wrong place, 15 #3); without
    ``value`` while no method is active. Like the other auth actions, only for users
    without an ACL."""
    sess.auth.require_auth_read()
    res = _get(sess, meta_path(sess, ("auth",)), msg.get("nchain", 0))
    v = res.get("value")
    if not isinstance(v, dict) or v.get("current") is None:
        res.pop("value", None)
    return res


# --- writing ----------------------------------------------------------------------


def write(sess: Session, full: tuple, value: Any, msg: dict) -> dict:
    """Set (or, with ``value`` NotGiven, delete) the entry at ``full`` (04 §6.4).

    Checks the user's ACL (``W``); for a data (not meta) value also applies the
    user's converter and the type check (see the module docstring).
    """
    store = sess.store
    acl = sess.acl
    if acl is not None:
        acl.check(full, "W")
    prev = _msg_get(msg, "prev", NotGiven)
    conv = sess.conv
    types = sess.server.types
    if (conv is not None or types.any_matches) and value is not NotGiven and None not in full:
        entry = store.follow(full)  # (None if new: refused writes create nothing)
        if conv is not None:
            value = conv.decode(full, value, entry)
            if prev is not NotGiven:
                prev = conv.decode(full, prev, entry)
        if types.any_matches:
            types.check_value(full, value, entry=entry, base=sess.auth.base)
    entry = store.root.follow(full, True)
    nchain = _msg_get(msg, "nchain", 1)
    if "idem" in msg and msg["idem"] and value is not NotGiven:
        old = entry.value
        if old.__class__ is value.__class__ and old == value:
            res: dict = {"tock": entry.tock, "changed": False}
            if nchain > 0 and entry.chain is not None:
                res["chain"] = entry.chain.to_wire(nchain)
            return res
    chain = _msg_get(msg, "chain", NotGiven)
    if prev is not NotGiven or chain is not NotGiven:
        store.check_write(entry, chain=chain, prev=prev)
    old = entry.value
    event = store.local_change(entry, value)
    res = {"changed": old != value}
    if old is not NotGiven and prev is NotGiven and chain is NotGiven:
        res["prev"] = old if conv is None else conv.encode(full, old, entry)
    if nchain:
        res["chain"] = event.chain.to_wire(nchain)
    res["tock"] = event.tock
    return res


@action("set_value", fields=_WRITE, required=("path",))
def set_value(sess: Session, msg: dict) -> dict:
    """Write one entry."""
    if "value" not in msg:
        raise ClientError("Call 'delete_value' if you want to clear the value")
    path = msg["path"]
    if sess.root or None in path:
        path = data_path(sess, path, anywhere=True)
    return write(sess, path, msg["value"], msg)


@action("delete_value", fields=_WRITE, required=("path",))
def delete_value(sess: Session, msg: dict) -> dict:
    """Delete one entry's value (a deletion event is made even if it had none)."""
    if "value" in msg:
        raise ClientError("A deleted entry can't have a value")
    return write(sess, data_path(sess, msg["path"], anywhere=True), NotGiven, msg)


@action("set_internal", fields=_WRITE, required=("path",))
def set_internal(sess: Session, msg: dict) -> dict:
    """Write one entry below the meta root."""
    if "value" not in msg:
        raise ClientError("Call 'delete_internal' if you want to clear the value")
    return write(sess, meta_path(sess, msg["path"]), msg["value"], msg)


@action("delete_internal", fields=_WRITE, required=("path",))
def delete_internal(sess: Session, msg: dict) -> dict:
    """Delete one entry's value below the meta root."""
    if "value" in msg:
        raise ClientError("A deleted entry can't have a value")
    return write(sess, meta_path(sess, msg["path"]), NotGiven, msg)


# --- listing ----------------------------------------------------------------------


def _enum(sess: Session, full: tuple, msg: dict) -> dict:
    acl = sess.acl
    cur = None if acl is None else acl.cursor(full, "e")
    entry = sess.store.follow(full)
    with_data = msg.get("with_data", False)
    empty = msg.get("empty", False)
    children = entry.children if entry is not None else None
    if not children:
        return {"result": {} if with_data else []}
    if cur is not None:
        letter = "r" if with_data else "e"
        children = {n: c for n, c in children.items() if cur.child(n).grants(letter)}
    if with_data:
        conv = sess.conv
        data: dict = {}
        for name, child in children.items():
            v = child.value
            if v is not NotGiven:
                data[name] = v if conv is None else conv.encode((*full, name), v, child)
            elif empty:
                data[name] = None
        return {"result": data}
    if empty:
        return {"result": list(children)}
    return {"result": [n for n, c in children.items() if c.value is not NotGiven]}


@action("enum", fields=_ENUM, aliases=("enumerate",))
def enum(sess: Session, msg: dict) -> dict:
    """The names (``with_data``: and values) of an entry's children."""
    return _enum(sess, data_path(sess, msg.get("path", ())), msg)


@action("enum_internal", fields=_ENUM)
def enum_internal(sess: Session, msg: dict) -> dict:
    """:func:`enum` below the meta root."""
    return _enum(sess, meta_path(sess, msg.get("path", ())), msg)


# --- the connection's root ------------------------------------------------------------


@action("root", fields={"path": PATH}, required=("path",))
def root(sess: Session, msg: dict) -> dict:
    """Make ``path`` the connection's root, for good ("chroot")."""
    full = data_path(sess, msg["path"])
    if any(e is None for e in full):
        raise ValueError("Null path element")
    if sess.acl is not None:
        sess.acl.check(full, "x")
    entry = sess.store.follow(full, create=True)
    sess.root = Path.build(full)
    res = entry_record(entry, 2)
    if sess.conv is not None and "value" in res:
        res["value"] = sess.conv.encode(full, res["value"], entry)
    res["path"] = ()
    return res
