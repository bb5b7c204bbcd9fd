"""The explicit registry of client actions.

Every action a client may send is registered here with its name, its handler,
whether it replies with a stream, whether it may run before login, and the
fields it takes (with types; some required). The session validates a request
against that declaration before the handler runs, so handlers see normalised
fields (paths are :class:`~distkv.util.path.Path`, flags are bools) and never
have to guess. There is no ``getattr``-based dispatch.

Handlers:

* single reply, synchronous: ``handler(session, msg) -> result`` — run inline
  by the connection's reader (the fast path);
* single reply, ``async def``: run as its own task;
* stream: ``async def handler(session, msg, stream)`` — run as its own task,
  sends items with ``await stream.send(map)``. An action may have both
  kinds; the stream variant's ``when(msg)`` predicate picks it (e.g.
  ``delete_tree`` streams only when ``nchain`` is set).

A result that is a map is sent as the reply's fields, ``None`` as an empty
map, anything else as ``{result: value}``.

Access: ``before_login`` actions may run before a required login;
``privileged`` ones are refused to users with an ACL because they bypass
ACLs (applying raw updates, the backend pass-through that carries
replication traffic, files on the server's host, node bookkeeping). Actions
registered without saying are privileged if their name is in
:data:`PRIVILEGED`. The ACL letters that data actions check are listed in
:mod:`distkv.server.actions.data` and :mod:`.tree`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from distkv.exceptions import ClientError
from distkv.util import attrdict
from distkv.util.path import Path

__all__ = [
    "ANY",
    "BOOL",
    "INT",
    "MAP",
    "OPT_PATH",
    "OPT_STR",
    "PATH",
    "PRIVILEGED",
    "REGISTRY",
    "STR",
    "TOPIC",
    "Command",
    "FieldType",
    "Registry",
    "action",
]


class FieldType:
    """A field's type: ``convert(value)`` returns the normalised value or raises.

    Values whose class is in ``accept`` are taken as they are (the fast path).
    """

    __slots__ = ("name", "convert", "keeps_none", "accept")

    def __init__(
        self,
        name: str,
        convert: Callable[[Any], Any],
        keeps_none: bool = False,
        accept: tuple[type, ...] = (),
    ):
        self.name = name
        self.convert = convert
        # If false, an explicit None counts as "not given".
        self.keeps_none = keeps_none
        self.accept = frozenset(accept)

    def __repr__(self) -> str:
        return f"<field type {self.name}>"


def _path(v: Any) -> Path:
    if isinstance(v, Path):
        return v
    if isinstance(v, (tuple, list)):
        for e in v:
            hash(e)  # TypeError for unhashable elements (maps, …)
        return Path.build(v)
    raise TypeError


def _int(v: Any) -> int:
    if isinstance(v, int):
        return v
    raise TypeError


def _bool(v: Any) -> bool:
    if v is None or isinstance(v, (bool, int)):
        return bool(v)
    raise TypeError


def _str(v: Any) -> str:
    if isinstance(v, str):
        return v
    raise TypeError


def _opt_str(v: Any) -> str | None:
    if v is None or isinstance(v, str):
        return v
    raise TypeError


def _opt_path(v: Any) -> Path | None:
    return None if v is None else _path(v)


def _map(v: Any) -> dict:
    if isinstance(v, dict):
        return v
    raise TypeError


def _topic(v: Any) -> Any:
    if isinstance(v, str):
        return v
    return _path(v)


PATH = FieldType("a path", _path, accept=(Path,))
OPT_PATH = FieldType("a path or None", _opt_path, keeps_none=True, accept=(Path,))
INT = FieldType("an integer", _int, accept=(int,))
BOOL = FieldType("a boolean", _bool, accept=(bool,))
STR = FieldType("a string", _str, accept=(str,))
OPT_STR = FieldType("a string or None", _opt_str, keeps_none=True, accept=(str,))
MAP = FieldType("a map", _map, accept=(attrdict, dict))
TOPIC = FieldType("a topic (a string or a path)", _topic, accept=(str, Path))
ANY = FieldType("any value", lambda v: v, keeps_none=True)


@dataclass(slots=True, eq=False)
class Command:
    """One registered action."""

    name: str
    handler: Callable[..., Any]
    stream: bool
    before_login: bool
    fields: dict[str, FieldType]
    required: frozenset[str]
    is_async: bool
    when: Callable[[dict], Any] | None = None
    privileged: bool = False
    #: runs inline, before the handler's task starts and before the next
    #: request of the connection is read (a watch attaches its listener here)
    prepare: Callable[[Any, dict], None] | None = None
    #: a synchronous single-reply handler: the session runs it inline
    inline: bool = field(init=False, repr=False)
    _checks: tuple[tuple[str, frozenset[type] | None, bool], ...] = field(
        init=False, repr=False
    )

    def validate(self, msg: dict) -> None:
        """Check and normalise the request's fields in place; raise ClientError."""
        for name, ok, required in self._checks:
            if name in msg:
                if ok is not None and msg[name].__class__ not in ok:
                    self._normalise(msg)  # (rare: something to convert or to refuse)
                    return
            elif required:
                raise ClientError(f"{self.name}: the field {name!r} is required")

    def _normalise(self, msg: dict) -> None:
        for name in self.required:  # (missing ones are reported first)
            if name not in msg:
                raise ClientError(f"{self.name}: the field {name!r} is required")
        fields = self.fields
        gone = None
        for name, v in msg.items():
            ftype = fields.get(name)
            if ftype is None or v.__class__ in ftype.accept or ftype is ANY:
                continue
            if v is None and not ftype.keeps_none:
                if name in self.required:
                    raise ClientError(f"{self.name}: the field {name!r} is required")
                gone = [name] if gone is None else [*gone, name]
                continue
            try:
                msg[name] = ftype.convert(v)  # replaces a value: no resizing
            except (TypeError, ValueError):
                raise ClientError(
                    f"{self.name}: the field {name!r} must be {ftype.name}, not {v!r}"
                ) from None
        if gone is not None:
            for name in gone:
                del msg[name]

    def __post_init__(self) -> None:
        # (field name, the classes taken as they are or None for ANY, required) of
        # the required and the typed fields, required ones first: a valid request
        # costs one lookup per field here (untyped optional ones are not checked)
        self._checks = tuple(
            (n, None if t is ANY else t.accept, n in self.required)
            for n, t in sorted(self.fields.items(), key=lambda f: f[0] not in self.required)
            if t is not ANY or n in self.required
        )
        self.inline = not (self.stream or self.is_async)


class Registry:
    """Action name -> :class:`Command` (single-reply and stream handlers apart)."""

    def __init__(self) -> None:
        self.single: dict[str, Command] = {}
        self.streams: dict[str, Command] = {}
        #: Names with only a single-reply handler (the dispatcher's one-lookup path).
        self.plain: dict[str, Command] = {}

    def register(
        self,
        name: str,
        handler: Callable[..., Any],
        *,
        stream: bool = False,
        before_login: bool = False,
        fields: Mapping[str, FieldType] | None = None,
        required: Iterable[str] = (),
        aliases: Iterable[str] = (),
        when: Callable[[dict], Any] | None = None,
        privileged: bool | None = None,
        prepare: Callable[[Any, dict], None] | None = None,
    ) -> Command:
        fields = dict(fields or {})
        required = frozenset(required)
        unknown = required - fields.keys()
        if unknown:
            raise ValueError(f"{name}: required fields {sorted(unknown)} are not declared")
        is_async = inspect.iscoroutinefunction(handler)
        if stream and not is_async:
            raise ValueError(f"{name}: a stream handler must be async")
        table = self.streams if stream else self.single
        cmd = None
        for n in (name, *aliases):
            if n in table:
                raise ValueError(f"action {n!r} is registered twice")
            priv = n in PRIVILEGED if privileged is None else privileged
            cmd = Command(
                n, handler, stream, before_login, fields, required, is_async, when, priv,
                prepare,
            )
            table[n] = cmd
            if stream:
                self.plain.pop(n, None)
            elif n not in self.streams:
                self.plain[n] = cmd
        assert cmd is not None
        return cmd

    def lookup(self, name: Any, msg: dict) -> Command | None:
        """The handler for a new request (04 §6.1).

        The stream handler if the client opens a stream (``state: start``), if
        the stream variant's ``when(msg)`` says so, or if there is no
        single-reply handler; otherwise the single-reply handler.
        """
        if name.__class__ is not str:
            return None
        stream = self.streams.get(name)
        if stream is None:
            return self.single.get(name)
        if msg.get("state") == "start" or (stream.when is not None and stream.when(msg)):
            return stream
        cmd = self.single.get(name)
        return cmd if cmd is not None else stream

    def names(self) -> list[str]:
        return sorted(self.single.keys() | self.streams.keys())


PRIVILEGED = frozenset({
    "update", "kill_node", "check_deleted", "fake_info", "fake_info_send",
    "msg_send", "msg_monitor", "save", "log",
})
"""Actions refused to users with an ACL unless registered otherwise."""

REGISTRY = Registry()


def action(
    name: str,
    *,
    stream: bool = False,
    before_login: bool = False,
    fields: Mapping[str, FieldType] | None = None,
    required: Iterable[str] = (),
    aliases: Iterable[str] = (),
    when: Callable[[dict], Any] | None = None,
    privileged: bool | None = None,
    prepare: Callable[[Any, dict], None] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register ``handler`` in :data:`REGISTRY`."""

    def deco(handler: Callable[..., Any]) -> Callable[..., Any]:
        REGISTRY.register(
            name,
            handler,
            stream=stream,
            before_login=before_login,
            fields=fields,
            required=required,
            aliases=aliases,
            when=when,
            privileged=privileged,
            prepare=prepare,
        )
        return handler

    return deco
