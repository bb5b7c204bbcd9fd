"""Data actions: read, write, delete and list single entries; change the root.

``get_value``, ``set_value``, ``delete_value``, ``enum`` (alias
``enumerate``), ``root`` and their ``*_internal`` variants (paths relative to
the meta root ``:n``), plus ``auth_info`` (the value of ``:n.auth``).

Paths are relative to the connection's root. A ``None`` element (the meta
root) is accepted as the first element (and anywhere in writes) while the
connection is not chrooted; after ``root`` it is refused.

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

__all__ = ["data_path", "META"]

META: tuple = (None,)

_READ = {"path": PATH, "nchain": INT}
_WRITE = {"path": PATH, "value": ANY, "nchain": INT, "chain": ANY, "prev": ANY, "idem": BOOL}
_ENUM = {"path": PATH, "with_data": BOOL, "empty": BOOL}


def data_path(sess: Session, path: tuple, *, anywhere: bool = False) -> tuple:
    """The absolute path for a client path (see the module docstring)."""
    if None in path:
        if sess.root or (not anywhere and any(e is None for e in path[1:])):
            raise ValueError("Null path element")
    root = sess.root
    return root + path if root else path


# --- reading ----------------------------------------------------------------------


def _get(sess: Session, full: tuple, nchain: int) -> dict:
    entry = sess.store.follow(full)
    if entry is None:
        return {"chain": None} if nchain else {}
    return entry_record(entry, nchain)


@action("get_value", fields={**_READ, "node": STR, "tick": INT})
def get_value(sess: Session, msg: dict) -> dict:
    """One entry, by ``path`` or by the event ``node``/``tick`` it holds."""
    nchain = msg.get("nchain", 0)
    if "path" not in msg:
        if "node" not in msg or "tick" not in msg:
            raise ClientError("get_value needs a 'path', or a 'node' and a 'tick'")
        return _get_by_event(sess, msg["node"], msg["tick"], nchain)
    return _get(sess, data_path(sess, msg["path"]), nchain)


def _get_by_event(sess: Session, node: str, tick: int, nchain: int) -> dict:
    entry = sess.store.find_event(node, tick)
    if entry is None:
        raise KeyError(tick)
    path = entry.path
    root = sess.root
    if root:
        if path[: len(root)] != root:
            raise KeyError(tick)
        path = path[len(root) :]
    res = entry_record(entry, nchain)
    res["path"] = Path.build(path)
    return res


@action("get_internal", fields=_READ)
def get_internal(sess: Session, msg: dict) -> dict:
    """One entry below the meta root."""
    return _get(sess, META + msg.get("path", ()), msg.get("nchain", 0))


@action("auth_info", fields={"nchain": INT})
def auth_info(sess: Session, msg: dict) -> dict:
    """The value of ``:n.auth`` (upstream looked in the wrong place, 15 #3)."""
    return _get(sess, (None, "auth"), msg.get("nchain", 0))


# --- writing ----------------------------------------------------------------------


def write(sess: Session, full: tuple, value: Any, msg: dict) -> dict:
    """Set (or, with ``value`` NotGiven, delete) the entry at ``full`` (04 §6.4)."""
    store = sess.store
    entry = store.follow(full, create=True)
    nchain = msg.get("nchain", 1)
    if msg.get("idem") and value is not NotGiven:
        old = entry.value
        if old.__class__ is value.__class__ and old == value:
            res: dict = {"tock": entry.tock, "changed": False}
            if nchain > 0 and entry.chain is not None:
                res["chain"] = entry.chain.to_wire(nchain)
            return res
    chain = msg.get("chain", NotGiven)
    prev = msg.get("prev", NotGiven)
    store.check_write(entry, chain=chain, prev=prev)
    old = entry.value
    event = store.local_change(entry, value)
    res = {"changed": old != value}
    if old is not NotGiven and prev is NotGiven and chain is NotGiven:
        res["prev"] = old
    if nchain:
        res["chain"] = event.chain.to_wire(nchain)
    res["tock"] = event.tock
    return res


@action("set_value", fields=_WRITE, required=("path",))
def set_value(sess: Session, msg: dict) -> dict:
    """Write one entry."""
    if "value" not in msg:
        raise ClientError("Call 'delete_value' if you want to clear the value")
    return write(sess, data_path(sess, msg["path"], anywhere=True), msg["value"], msg)


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
    return write(sess, META + msg["path"], msg["value"], msg)


@action("delete_internal", fields=_WRITE, required=("path",))
def delete_internal(sess: Session, msg: dict) -> dict:
    """Delete one entry's value below the meta root."""
    if "value" in msg:
        raise ClientError("A deleted entry can't have a value")
    return write(sess, META + msg["path"], NotGiven, msg)


# --- listing ----------------------------------------------------------------------


def _enum(sess: Session, full: tuple, msg: dict) -> dict:
    entry = sess.store.follow(full)
    with_data = msg.get("with_data", False)
    empty = msg.get("empty", False)
    children = entry.children if entry is not None else None
    if with_data:
        data: dict = {}
        if children:
            for name, child in children.items():
                v = child.value
                if v is not NotGiven:
                    data[name] = v
                elif empty:
                    data[name] = None
        return {"result": data}
    if not children:
        return {"result": []}
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
    return _enum(sess, META + msg.get("path", ()), msg)


# --- the connection's root ------------------------------------------------------------


@action("root", fields={"path": PATH}, required=("path",))
def root(sess: Session, msg: dict) -> dict:
    """Make ``path`` the connection's root, for good ("chroot")."""
    full = data_path(sess, msg["path"])
    if any(e is None for e in full):
        raise ValueError("Null path element")
    entry = sess.store.follow(full, create=True)
    sess.root = Path.build(full)
    res = entry_record(entry, 2)
    res["path"] = ()
    return res


# --- ACL queries ---------------------------------------------------------------------------


@action("test_acl", fields={"path": PATH, "mode": STR, "acl": STR})
def test_acl(sess: Session, msg: dict) -> dict:
    """Would the user's ACL allow access to ``path``? (04 §6.12)

    This server has no user ACLs yet, so every user is unrestricted:
    ``{access: true}``. Checking a *named* ACL (``acl``) needs the ACL engine
    and is refused with a clear error until it exists.
    """
    if "acl" in msg:
        name = msg["acl"]
        if sess.store.follow((None, "acl", name)) is None:
            raise KeyError(name)
        raise ClientError("Checking a named ACL is not supported by this server version")
    return {"access": True}
