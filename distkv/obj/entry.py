"""The entries of a mirrored subtree: :class:`ClientEntry` and :class:`AttrClientEntry`.

An entry holds the last value and chain seen for one path, its children,
and the hooks a subclass overrides (:meth:`ClientEntry.set_value`,
:meth:`~ClientEntry.seen_value`, :meth:`~ClientEntry.mark_inconsistent`,
:meth:`~ClientEntry.child_type`). Writes go to the server with the entry's
chain, so they fail instead of overwriting a change this mirror has not
seen yet. The root of a mirror, which runs the ``watch`` that feeds the
entries, is :class:`distkv.obj.root.ClientRoot`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

import anyio

from distkv.util import NotGiven
from distkv.util.path import Path

if TYPE_CHECKING:
    from distkv.client import Client

    from .root import ClientRoot

__all__ = ["ClientEntry", "AttrClientEntry"]

logger = logging.getLogger(__name__)


class ClientEntry:
    """One entry of a mirrored subtree.

    ``value`` is ``NotGiven`` while the entry has none; ``chain`` is the
    chain (``{node, tick, prev}``) of the value, ``None`` if there is none.
    Children are reached with ``entry[name]``, :meth:`get`, iteration and
    :meth:`follow`.
    """

    __slots__ = ("_name", "_path", "_parent", "_root", "_children", "value", "chain", "_lock")

    def __init__(self, parent: ClientEntry, name: Any):
        self._name = name
        self._path: Path = parent._path | name
        self._parent: ClientEntry | None = parent
        self._root: ClientRoot = parent._root
        self._children: dict[Any, ClientEntry] = {}
        self.value: Any = NotGiven
        self.chain: Any = None
        self._lock: anyio.Lock | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._path} = {self.value!r}>"

    # --- subclass hooks ------------------------------------------------------------

    @classmethod
    def child_type(cls, name: Any) -> type[ClientEntry] | None:
        """The class for a child called ``name``; ``None``: don't track it.

        The default is the parent's own class.
        """
        return cls

    async def set_value(self, value: Any) -> None:
        """Called when a value arrives from the server (``NotGiven``: deleted).

        Override to react to changes; call ``super().set_value(value)`` to store it.
        """
        self.value = value

    async def seen_value(self) -> None:
        """Called when the echo of this entry's own :meth:`update` arrives."""

    def mark_inconsistent(self, record: dict) -> None:
        """Called when a change arrives that neither follows nor precedes the
        local chain (a conflicting write won elsewhere). The record is applied
        afterwards, since it is what the server now holds."""
        logger.warning(
            "Inconsistent change at %s: have %r, got %r",
            self._path, self.chain, record.get("chain"),
        )

    # --- navigation --------------------------------------------------------------

    @property
    def name(self) -> Any:
        """The last element of this entry's path."""
        return self._name

    @property
    def parent(self) -> ClientEntry | None:
        return self._parent

    @property
    def root(self) -> ClientRoot:
        return self._root

    @property
    def client(self) -> Client:
        return self._root.client

    @property
    def subpath(self) -> Path:
        """This entry's path relative to the root of the mirror."""
        return self._path[len(self._root._path) :]

    def __getitem__(self, name: Any) -> ClientEntry:
        return self._children[name]

    def get(self, name: Any) -> ClientEntry | None:
        """The child called ``name``, or ``None``."""
        return self._children.get(name)

    def __contains__(self, name: Any) -> bool:
        return name in self._children

    def __iter__(self) -> Iterator[ClientEntry]:
        # a copy: hooks may add or remove children while the caller iterates
        return iter(list(self._children.values()))

    def __len__(self) -> int:
        return len(self._children)

    def __bool__(self) -> bool:
        # an entry is an object, not a container: never false because it is empty
        return True

    @property
    def all_children(self) -> Iterator[ClientEntry]:
        """All entries below this one that have a value (depth first)."""
        for child in list(self._children.values()):
            if child.value is not NotGiven:
                yield child
            yield from child.all_children

    def allocate(self, name: Any, exists: bool = False) -> ClientEntry:
        """Create the local child ``name`` (of :meth:`child_type`).

        If it exists already, return it when ``exists`` is true, else raise
        ``RuntimeError``. Raises ``KeyError`` if :meth:`child_type` refuses it.
        """
        child = self._children.get(name)
        if child is not None:
            if exists:
                return child
            raise RuntimeError(f"{self._path | name} exists already")
        cls = self.child_type(name)
        if cls is None:
            raise KeyError(name)
        child = self._children[name] = cls(self, name)
        return child

    def follow(self, path: Any, *, create: bool | None = None, empty_ok: bool = False
               ) -> ClientEntry | None:
        """The entry at ``path`` below this one (``path``: elements or a Path).

        Missing entries are created locally if ``create`` is true (``KeyError``
        if :meth:`child_type` refuses one), else the result is ``None``. An
        existing entry without a value is returned only with ``empty_ok`` (or
        ``create``); otherwise the result is ``None``.
        """
        entry: ClientEntry = self
        for elem in path:
            child = entry._children.get(elem)
            if child is None:
                if not create:
                    return None
                child = entry.allocate(elem)
            entry = child
        if entry.value is NotGiven and not (empty_ok or create) and entry is not self:
            return None
        return entry

    def _remove_if_empty(self) -> None:
        """Drop this entry (and emptied ancestors) if it has neither value nor children."""
        entry: ClientEntry = self
        while (
            entry._parent is not None
            and entry.value is NotGiven
            and not entry._children
        ):
            parent = entry._parent
            if parent._children.get(entry._name) is entry:
                del parent._children[entry._name]
            entry = parent

    # --- reading the value ----------------------------------------------------------

    def value_or(self, default: Any, typ: type | tuple[type, ...] | None = None) -> Any:
        """The value, or ``default`` if there is none (or it isn't a ``typ``)."""
        v = self.value
        if v is NotGiven or (typ is not None and not isinstance(v, typ)):
            return default
        return v

    def val(self, *keys: Any) -> Any:
        """The value, or the item at ``keys`` inside it; ``ValueError`` if missing."""
        v = self.value
        if v is NotGiven:
            raise ValueError(f"{self._path} has no value")
        for k in keys:
            try:
                v = v[k]
            except (KeyError, IndexError, TypeError):
                raise ValueError(f"{self._path} has no item {keys!r}") from None
        return v

    def val_d(self, default: Any, *keys: Any) -> Any:
        """Like :meth:`val`, but ``default`` instead of an error."""
        v = self.value
        if v is NotGiven:
            return default
        for k in keys:
            try:
                v = v[k]
            except (KeyError, IndexError, TypeError):
                return default
        return v

    def find_cfg(self, *keys: Any, default: Any = NotGiven) -> Any:
        """Look ``keys`` up in the root's value, then in its config (see the root)."""
        return self._root.find_cfg(*keys, default=default)

    # --- writing ---------------------------------------------------------------------

    def _get_lock(self) -> anyio.Lock:
        lock = self._lock
        if lock is None:
            lock = self._lock = anyio.Lock()
        return lock

    async def update(self, value: Any, wait: bool = False) -> Any:
        """Store ``value`` at this entry's path, conditional on this entry's chain.

        Sends ``set_value`` with ``nchain: 3`` and ``idem: true`` (an unchanged
        value makes no new change). A change this mirror has not seen yet
        makes it fail with :class:`~distkv.exceptions.ClientChainError`. With
        ``wait``, returns only after the change came back through the mirror.
        Returns the server's reply.
        """
        async with self._get_lock():
            res = await self._root.client.set(
                self._path, value, chain=self.chain, nchain=3, idem=True
            )
            self.value = value
            self.chain = res.get("chain")
        if wait:
            await self._root.wait_chain(res.get("chain"))
        return res

    async def delete(
        self, nchain: int = 0, chain: Any = True, wait: bool = False, recursive: bool = False
    ) -> Any:
        """Delete this entry's value on the server.

        ``chain`` is the precondition: ``True`` (default) this entry's own
        chain (none if it has no value), a chain map, or ``None``/``False``
        for an unconditional delete. ``recursive`` deletes the whole subtree
        (no precondition, no ``wait``). With ``wait``, returns only after the
        deletion came back through the mirror. Returns the server's reply.
        """
        if recursive:
            if wait:
                raise ValueError("'wait' does not work with 'recursive'")
            return await self._root.client.delete(self._path, recursive=True, nchain=nchain)
        async with self._get_lock():
            if chain is True:
                chain = self.chain
            kw: dict[str, Any] = {}
            if chain:
                kw["chain"] = chain
            res = await self._root.client.delete(
                self._path, nchain=max(nchain, 1) if wait else nchain, **kw
            )
            self.chain = None
        if wait:
            await self._root.wait_chain(res.get("chain"))
        return res


class AttrClientEntry(ClientEntry):
    """An entry whose value is a map; the keys named in ``ATTRS`` are attributes.

    Incoming values set (or delete) those attributes; :meth:`save` writes
    them back. Keys not in ``ATTRS`` are kept as they were (upstream dropped
    them). Use :meth:`save` instead of :meth:`update`.
    """

    ATTRS: ClassVar[tuple[str, ...]] = ()

    async def set_value(self, value: Any) -> None:
        await super().set_value(value)
        have = value if isinstance(value, dict) else {}
        for k in self.ATTRS:
            v = have.get(k, NotGiven)
            if v is NotGiven:
                self.__dict__.pop(k, None)
            else:
                setattr(self, k, v)

    def assign(self, **values: Any) -> None:
        """Set attributes; ``NotGiven`` removes one (it is then not saved)."""
        for k, v in values.items():
            if v is NotGiven:
                self.__dict__.pop(k, None)
            else:
                setattr(self, k, v)

    def get_value(self, skip_none: bool = False, skip_empty: bool = False) -> Any:
        """The value to store: the last value's other keys plus the ``ATTRS``.

        Attributes that are unset or ``NotGiven`` are left out, as are
        ``None`` (``skip_none``) and empty containers (``skip_empty``).
        """
        old = self.value
        res = {k: v for k, v in old.items() if k not in self.ATTRS} if isinstance(old, dict) else {}
        for k in self.ATTRS:
            v = getattr(self, k, NotGiven)
            if v is NotGiven or (skip_none and v is None):
                continue
            if skip_empty and isinstance(v, (list, tuple, dict, set, str, bytes)) and not v:
                continue
            res[k] = v
        return res

    async def save(self, wait: bool = False) -> Any:
        """Write the attributes to the server (see :meth:`ClientEntry.update`)."""
        return await ClientEntry.update(self, self.get_value(), wait=wait)

    async def update(self, value: Any, wait: bool = False) -> Any:
        raise RuntimeError(f"{type(self).__name__}: set the attributes and call save()")
