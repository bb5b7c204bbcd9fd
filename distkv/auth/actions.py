"""The auth actions of the client protocol (04 §6.12, §6.23-6.25; 06 §5-6).

``diffie_hellman``, ``auth``, ``auth_get``, ``auth_set``, ``auth_list``,
``set_auth_typ`` and ``test_acl``. :func:`register` adds them to the
server's command registry. Handlers take the server session (``sess.store``,
``sess.root``, ``sess.server``) and keep their per-connection state in
``sess.auth`` (a :class:`~distkv.auth.server.SessionAuth`, made by the
server's :class:`~distkv.auth.server.ServerAuth`); after a login the session
takes over the user's ACL and converter (``sess.logged_in()``). Records are
written with the data actions' ``write`` (``set_value`` semantics and reply).

Deviations from 0.65.0, on purpose:

* a failed login never tells whether the user exists (unknown users of
  methods with secrets get the wrong-secret answer, after the same work);
* failed logins are slowed per connection and per user (:class:`LoginThrottle`);
* changing a password user without a new password keeps the old one;
* ``auth_get``/``auth_list`` replies carry ``ident`` and ``name``, so
  upstream's ``auth user get`` works; single ``auth_list`` sends one reply;
* only users without an ACL may read or write auth data or switch methods.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from distkv.acl import acl_access, acl_for_user
from distkv.exceptions import AuthFailedError, ClientError
from distkv.types import converter_for_user
from distkv.util import NotGiven
from distkv.util.path import Path

from . import loader
from .dh import DEFAULT_LENGTH, DiffieHellman
from .server import LoginContext, SessionAuth, auth_methods

if TYPE_CHECKING:
    from distkv.server.registry import Registry
    from distkv.server.session import Session, Stream

__all__ = ["MAX_DH_LENGTH", "register"]

MAX_DH_LENGTH = 4096  # bounds the work one request can cause


def _write(sess: Session, path: tuple, value: Any, msg: dict) -> dict:
    from distkv.server.actions.data import write

    return write(sess, path, value, msg)


def _auth_root(sess: Session, st: SessionAuth, msg: dict) -> tuple:
    """``<connection root> + <msg root> + :n.auth``."""
    root = tuple(msg.get("root") or ())
    if None in root:
        raise ValueError("Null path element")
    return (*sess.root, *root, None, "auth")


# --- logging in ---------------------------------------------------------------------


async def diffie_hellman(sess: Session, msg: dict) -> dict:
    """Key exchange (once per connection); reply ``{pubkey}``."""
    st = sess.auth
    if st.dh_key is not None:
        raise ClientError("Can't call dh twice")
    pubkey = msg["pubkey"]
    length = msg.get("length", DEFAULT_LENGTH)
    if not isinstance(pubkey, (bytes, bytearray)):
        raise ClientError("diffie_hellman: 'pubkey' must be bytes")
    if not 0 < length <= MAX_DH_LENGTH:
        raise ClientError(f"diffie_hellman: 'length' must be between 1 and {MAX_DH_LENGTH}")

    def exchange() -> tuple[bytes, bytes]:
        dh = DiffieHellman(length)
        return dh.public_bytes, dh.shared_key(bytes(pubkey))

    st.dh_key = b""  # taken: a second request fails even while this one computes
    try:
        public, key = await st.server.run_crypto(exchange)
    except BaseException:
        st.dh_key = None
        raise
    st.dh_key = key
    return {"pubkey": public}


async def auth(sess: Session, msg: dict, stream: Stream) -> None:
    """Log in (stream with no items); when logged in already, only check the credentials."""
    st = sess.auth
    if st.busy:
        raise ClientError("Another login is in progress on this connection")
    st.busy = True
    try:
        await _login(sess, st, msg)
    finally:
        st.busy = False


async def _login(sess: Session, st: SessionAuth, msg: dict) -> None:
    store = sess.store
    typ, ident = msg["typ"], msg["ident"]
    apath = _auth_root(sess, st, msg)
    base = apath[:-2]
    methods = auth_methods(store, base)
    if methods is None:
        raise ClientError("Auth is not set up here")
    switch = st.user is None and st.need_login
    if switch and typ != methods[0]:
        raise RuntimeError("Wrong auth type", methods[0])
    if typ not in methods:
        raise ClientError(f"The auth method {typ!r} is not configured")
    cls = loader(typ, "user", server=True)

    srv = st.server
    throttle = srv.throttle
    key = f"{Path.build(base)}/{typ}/{ident}"
    wait = throttle.delay(key, st.failures)
    if wait > 0:
        await srv.sleep(wait)
    upath = (*apath, typ, "user", ident)
    rec = store.follow(upath)
    ctx = LoginContext(st)
    try:
        if rec is None or rec.value is NotGiven:
            await cls.unknown_user(ident, msg, ctx)
            raise AuthFailedError("Unknown user", ident)  # (a method that forgot to raise)
        user = cls(ident, rec.value)
        await user.check(msg, ctx)
    except AuthFailedError:
        st.failures += 1
        throttle.failed(key)
        raise
    throttle.succeeded(key)
    if not switch:
        return
    st.user = user
    st.base = base
    if base != tuple(sess.root):
        sess.root = Path.build(base)
    st.acl = acl_for_user(store, upath, base)
    types = srv.types
    st.conv = None if types is None else converter_for_user(types, upath, base)
    sess.logged_in()


# --- managing users --------------------------------------------------------------------


def _info(sess: Session, apath: tuple, typ: str, kind: str, ident: str, nchain: int) -> dict:
    entry = sess.store.follow((*apath, typ, kind, ident))
    if entry is None or entry.value is NotGiven:
        raise ClientError(f"There is no {kind} {ident!r} for the auth method {typ!r}")
    cls = loader(typ, kind, server=True)
    res = cls(ident, entry.value).info()
    res.update(typ=typ, kind=kind, ident=ident)
    if nchain and entry.chain is not None:
        res["chain"] = entry.chain.to_wire(nchain)
    return res


def auth_get(sess: Session, msg: dict) -> dict:
    """A user's public information (``{ident, name?, chain?}``)."""
    st = sess.auth
    st.require_auth_read()
    return _info(
        sess, _auth_root(sess, st, msg), msg["typ"], msg.get("kind", "user"), msg["ident"],
        msg.get("nchain", 0),
    )


def auth_list(sess: Session, msg: dict) -> dict:
    """One record ``{typ, kind, ident, chain?}`` (the single-reply form, with ``ident``)."""
    return auth_get(sess, msg)


async def auth_list_stream(sess: Session, msg: dict, stream: Stream) -> None:
    """Every record of a method and kind, one per message."""
    st = sess.auth
    st.require_auth_read()
    apath = _auth_root(sess, st, msg)
    typ, kind, nchain = msg["typ"], msg.get("kind", "user"), msg.get("nchain", 0)
    if "ident" in msg:
        await stream.send(_info(sess, apath, typ, kind, msg["ident"], nchain))
        return
    parent = sess.store.follow((*apath, typ, kind))
    if parent is None or not parent.children:
        return
    for ident, entry in list(parent.children.items()):
        if entry.value is not NotGiven and isinstance(ident, str):
            await stream.send(_info(sess, apath, typ, kind, ident, nchain))


def _drop(record: dict, drop: Any) -> dict:
    if not drop:
        return record
    if not isinstance(drop, (list, tuple)):
        drop = (drop,)
    for item in drop:
        path = tuple(item) if isinstance(item, (list, tuple)) else (item,)
        d = record
        for key in path[:-1]:
            d = d.get(key) if isinstance(d, dict) else None
        if isinstance(d, dict) and path:
            d.pop(path[-1], None)
    return record


async def _auth_set(sess: Session, msg: dict, stream: Stream | None) -> dict:
    st = sess.auth
    st.require_auth_write()
    typ, kind = msg["typ"], msg.get("kind", "user")
    cls = loader(typ, kind, make=True, server=True)
    apath = _auth_root(sess, st, msg)
    old: Any = NotGiven
    ident = msg.get("ident")
    if isinstance(ident, str):
        entry = sess.store.follow((*apath, typ, kind, ident))
        if entry is not None and entry.value is not NotGiven:
            old = _drop(dict(entry.value) if isinstance(entry.value, dict) else {},
                        msg.get("drop"))
    ctx = LoginContext(st, stream, chain=msg.get("chain", NotGiven))
    maker = await cls.recv(msg, old, ctx)
    wmsg: dict = {"nchain": msg.get("nchain", 1)}
    if ctx.chain is not NotGiven:
        wmsg["chain"] = ctx.chain
    return _write(sess, (*apath, typ, kind, maker.ident), maker.save(), wmsg)


async def auth_set(sess: Session, msg: dict) -> dict:
    """Create or change a user record; the reply is ``set_value``'s."""
    return await _auth_set(sess, msg, None)


async def auth_set_stream(sess: Session, msg: dict, stream: Stream) -> None:
    """:func:`auth_set` as a client stream (methods with a dialogue, e.g. ``_test``)."""
    await stream.send(await _auth_set(sess, msg, stream))


def set_auth_typ(sess: Session, msg: dict) -> dict:
    """Switch the active method (``typ`` None: auth off) for new connections."""
    st = sess.auth
    st.require_auth_write()
    typ = msg.get("typ")
    path = (*sess.root, None, "auth")
    store = sess.store
    entry = store.follow(path)
    value = dict(entry.value) if entry is not None and isinstance(entry.value, dict) else {}
    if typ is None:
        value.pop("current", None)
    else:
        users = store.follow((*path, typ, "user"))
        if users is None or not any(
            u.value is not NotGiven for u in (users.children or {}).values()
        ):
            raise ClientError(f"You didn't configure this method yet: {typ}")
        loader(typ, "user", server=True)
        value["current"] = typ
    return _write(sess, path, value, {"nchain": msg.get("nchain", 1)})


# --- ACL queries ------------------------------------------------------------------------


def acl_test(sess: Session, msg: dict) -> dict:
    """``{access}``: what the user's ACL (or the named ``acl``) says about ``path``."""
    from distkv.server.actions.data import data_path

    st = sess.auth
    path = data_path(sess, msg.get("path", ()))
    mode = msg.get("mode") or "x"
    return {"access": acl_access(sess.store, st.acl, path, mode, msg.get("acl"), st.base)}


# --- registration -----------------------------------------------------------------------


def _table(registry: Registry, stream: bool) -> dict:
    return registry.streams if stream else registry.single


def register(registry: Registry, *, replace: bool = False) -> Callable[[], None]:
    """Add the auth actions to ``registry``; returns a function that removes them again.

    With ``replace``, actions of the same names (e.g. a ``test_acl`` stub)
    are replaced and come back on removal.
    """
    from distkv.server.registry import ANY, INT, OPT_STR, PATH, STR

    who = {"typ": STR, "kind": STR, "ident": STR, "nchain": INT, "root": PATH}
    specs: Sequence[tuple[str, Callable[..., Any], dict]] = (
        ("diffie_hellman", diffie_hellman, dict(
            before_login=True, fields={"pubkey": ANY, "length": INT}, required=("pubkey",))),
        ("auth", auth, dict(
            stream=True, before_login=True,
            fields={"typ": STR, "ident": STR, "root": PATH, "password": ANY, "data": ANY,
                    "chroot": ANY},
            required=("typ", "ident"))),
        ("auth_get", auth_get, dict(fields=who, required=("typ", "ident"))),
        ("auth_list", auth_list, dict(fields=who, required=("typ", "ident"))),
        ("auth_list", auth_list_stream, dict(
            stream=True, fields=who, required=("typ",), when=lambda m: "ident" not in m)),
        ("auth_set", auth_set, dict(
            fields={**who, "chain": ANY, "drop": ANY, "password": ANY, "aux": ANY, "data": ANY},
            required=("typ",))),
        ("auth_set", auth_set_stream, dict(
            stream=True,
            fields={**who, "chain": ANY, "drop": ANY, "password": ANY, "aux": ANY, "data": ANY},
            required=("typ",))),
        ("set_auth_typ", set_auth_typ, dict(fields={"typ": OPT_STR, "nchain": INT})),
        ("test_acl", acl_test, dict(fields={"path": PATH, "mode": STR, "acl": STR})),
    )
    saved: list[tuple[dict, str, Any]] = []
    for name, handler, kw in specs:
        table = _table(registry, bool(kw.get("stream")))
        prev = table.get(name)
        if prev is not None and replace:
            del table[name]
        saved.append((table, name, prev))
        registry.register(name, handler, **kw)

    def undo() -> None:
        for table, name, prev in reversed(saved):
            table.pop(name, None)
            if prev is not None:
                table[name] = prev

    return undo
