"""Access control lists (07): matching ACL trees and deciding per path and mode letter.

An ACL is the tree below ``:n.acl.<name>``; it mirrors the data tree, path
elements may be the wildcards ``+`` (one level) and ``#`` (one or more), and
each entry's value is a string of mode letters (:data:`MODES`).

Matching (07 §3, shared with type matches and converters): the lookup state
is a tuple of candidate nodes, initially the ACL's root. A step by ``name``
collects, per candidate in order, its child ``name``, its ``+`` child, its
``#`` child (which stays "sticky") and, for a sticky candidate, the candidate
itself. The effective entry is the first candidate with a value: exact names
beat ``+``, which beats ``#``, which beats an inherited ``#``, and shallower
exact matches beat deeper wildcards. Wildcards never match a ``None`` element.
Lookup states are immutable tuples, so walking siblings in a dump cannot
disturb each other (upstream's 15 #13).

Decisions — this is where we deliberately differ from 0.65.0 (15 #26, #29):

* **Access letters are strict**: the action's letter at the target (``r``,
  ``w``/``c`` (``W``), ``d``, ``a``, ``e`` for ``enum``/the start of a dump,
  ``x`` for ``watch``) is granted only by an effective entry that contains
  it. No matching entry means no access, as the tutorial promises.
* **Traversal letters are lenient**: passing through an existing entry
  (``x``), creating an intermediate entry (``n``) and descending inside a
  dump (``e``) are refused only by an effective entry that lacks the letter;
  where no entry matches, the walk goes on (the ACL root normally has no
  value). Without this an ACL would have to grant letters on every ancestor.
  A ``#`` entry that grants ``c`` also lets the walk create the entries
  between it and the target (the tutorial's write-only ``wom.#`` = ``xc``
  accepts ``wom.foo.bar``), while an exact entry lacking ``n`` still stops
  it (``one.two`` = ``rc`` refuses ``one.two.three``).
* In dumps an entry whose effective entry lacks ``x`` blocks ``r`` for
  everything below it.
* A user whose ``acl`` names an ACL that does not exist, or whose ``acl``
  record is malformed, gets no access at all (fail closed).
* The meta tree (below a ``None`` element: auth records, ACLs, types) is off
  limits for restricted users unless their ACL names it explicitly: since
  wildcards never match ``None``, only an ACL entry below an explicit ``None``
  element (e.g. ``:n.acl.ops.:n.type.#`` = ``"rwc"``) grants anything there.
  The server checks the ``*_internal`` actions against the ACL with their
  absolute meta paths (15 #27); the ``auth_*`` actions and ``set_auth_typ``
  stay reserved to users without an ACL (:attr:`UserACL.restricted`, 15 #28).

ACL entries are looked up live in the store on every check (a few dict
lookups), so changed ACL entries take effect immediately; which ACL a user
has is resolved at login (:func:`acl_for_user`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from distkv.exceptions import ACLError, ClientError
from distkv.util import NotGiven
from distkv.util.path import Path

if TYPE_CHECKING:
    from distkv.core import Entry, Store

__all__ = [
    "CLI_MODES",
    "MODES",
    "UNRESTRICTED",
    "AclCursor",
    "Unrestricted",
    "UserACL",
    "acl_access",
    "acl_for_user",
    "effective",
    "find_match",
    "step",
]

MODES = "arwcdxen"
"""The mode letters an ACL entry may contain (``W`` is a check-only pseudo letter)."""
CLI_MODES = "rwdcxena"
"""The letters ``acl set`` accepts."""

Candidates = tuple[tuple[Any, bool], ...]


def step(cands: Candidates, name: Any) -> Candidates:
    """The lookup state after stepping by path element ``name`` (07 §3)."""
    out: list[tuple[Any, bool]] = []
    add = out.append
    for node, sticky in cands:
        children = node.children
        if children:
            child = children.get(name)
            if child is not None:
                add((child, False))
            if name is not None:
                child = children.get("+")
                if child is not None:
                    add((child, False))
                child = children.get("#")
                if child is not None:
                    add((child, True))
        if sticky and name is not None:
            add((node, True))
    return tuple(out)


def effective(cands: Candidates) -> Any:
    """The first candidate that has a value, or ``None``."""
    for node, _sticky in cands:
        if node.value is not NotGiven:
            return node
    return None


def _effective_sticky(cands: Candidates) -> tuple[Any, bool]:
    """The first candidate with a value and whether it is a ``#`` match, or ``(None, False)``."""
    for node, sticky in cands:
        if node.value is not NotGiven:
            return node, sticky
    return None, False


def find_match(root: Any, path: Sequence[Any]) -> Any:
    """The most specific entry with a value below ``root`` that matches ``path``."""
    cands: Candidates = ((root, False),)
    for name in path:
        cands = step(cands, name)
        if not cands:
            return None
    return effective(cands)


def _modes(node: Any) -> str:
    v = node.value
    return v if isinstance(v, str) else ""


class AclCursor:
    """The ACL state at one entry of a dump (``get_tree``, ``watch``, ``enum``).

    :meth:`grants` is the strict check for this entry (``r`` before sending a
    value, ``d`` before deleting it); :meth:`descends` says whether its
    children are visited; :meth:`child` gives the cursor for a child.
    """

    __slots__ = ("cands", "blocked")

    def __init__(self, cands: Candidates, blocked: str = ""):
        self.cands = cands
        self.blocked = blocked

    def grants(self, letter: str) -> bool:
        if letter in self.blocked:
            return False
        node = effective(self.cands)
        return node is not None and letter in _modes(node)

    def passes(self, letter: str) -> bool:
        """The lenient check: refused only by an effective entry that lacks ``letter``."""
        node = effective(self.cands)
        return node is None or letter in _modes(node)

    def descends(self) -> bool:
        """May the dump visit this entry's children? (lenient ``e``; never where no
        ACL entry can match any more)"""
        return bool(self.cands) and self.passes("e")

    def child(self, name: Any) -> AclCursor:
        """The cursor for child ``name``; ``r`` is blocked below an entry lacking ``x``."""
        blocked = self.blocked
        if "r" not in blocked and not self.passes("x"):
            blocked += "r"
        return AclCursor(step(self.cands, name), blocked)

    def at(self, rel: Sequence[Any]) -> AclCursor | None:
        """The cursor for the descendant at relative path ``rel``, or None if a
        dump would not descend that far (for a watcher's change notifications)."""
        cur = self
        for name in rel:
            if not cur.descends():
                return None
            cur = cur.child(name)
        return cur


class _OpenCursor:
    """The cursor of an unrestricted user: everything is allowed."""

    __slots__ = ()

    def grants(self, letter: str) -> bool:
        return True

    def passes(self, letter: str) -> bool:
        return True

    def descends(self) -> bool:
        return True

    def child(self, name: Any) -> _OpenCursor:
        return self

    def at(self, rel: Sequence[Any]) -> _OpenCursor:
        return self


_OPEN_CURSOR = _OpenCursor()


class Unrestricted:
    """The ACL of a user without restrictions (and of connections when auth is off)."""

    __slots__ = ()
    restricted = False
    name = None

    def __repr__(self) -> str:
        return "<ACL unrestricted>"

    def allows(self, path: Sequence[Any], mode: str) -> bool:
        return True

    def check(self, path: Sequence[Any], mode: str) -> None:
        return None

    def cursor(self, path: Sequence[Any], mode: str) -> _OpenCursor:
        return _OPEN_CURSOR

    def grant_string(self, path: Sequence[Any], mode: str) -> str | bool:
        return True


UNRESTRICTED = Unrestricted()
"""The shared :class:`Unrestricted` instance."""


class UserACL:
    """The named ACL ``name`` as applied to one connection.

    ``base`` is the data path the user logged in at (``()`` normally, a
    sub-root otherwise): ACL paths are relative to it, and the ACL tree is
    ``base + :n.acl.<name>``. All ``path`` arguments are absolute store
    paths. ``name`` ``None`` is an ACL that refuses everything (a malformed
    user record).
    """

    __slots__ = ("store", "name", "base", "_acl_path")
    restricted = True

    def __init__(self, store: Store, name: str | None, base: Sequence[Any] = ()):
        self.store = store
        self.name = name
        self.base = tuple(base)
        self._acl_path = (*self.base, None, "acl", name)

    def __repr__(self) -> str:
        return f"<ACL {self.name!r}>"

    def _root(self) -> Entry | None:
        if self.name is None:
            return None
        return self.store.follow(self._acl_path)

    # --- the path walk ------------------------------------------------------------

    def _walk(self, path: Sequence[Any], mode: str) -> tuple[Candidates, str] | ACLError:
        """Check the traversal letters along ``path`` and ``mode`` at its end.

        Returns ``(lookup state at the target, letter checked)`` or the
        :class:`ACLError` to raise.
        """
        base = self.base
        n = len(base)
        if n and tuple(path[:n]) != base:
            return ACLError(
                f"ACL {self.name} does not cover paths outside {Path.build(base)}, needed:", mode
            )
        rel = path[n:] if n else path
        root = self._root()
        if root is None:
            return ACLError(f"ACL {self.name} does not exist, needed:", mode)
        cands: Candidates = ((root, False),)
        data = self.store.follow(base)
        for name in rel:
            child = None
            if data is not None:
                ch = data.children
                child = None if ch is None else ch.get(name)
            letter = "x" if child is not None else "n"
            node, sticky = _effective_sticky(cands)
            if node is not None:
                modes = _modes(node)
                # a '#' entry with 'c' covers creating entries at any depth below it
                if letter not in modes and not (sticky and letter == "n" and "c" in modes):
                    return self._error(node, rel, letter)
            cands = step(cands, name)
            data = child
        if mode == "W":
            mode = "w" if data is not None and data.value is not NotGiven else "c"
        node = effective(cands)
        if node is None:
            return ACLError(f"ACL {self.name} has no entry for {Path.build(rel)}, needed:", mode)
        if mode not in _modes(node):
            return self._error(node, rel, mode)
        return cands, mode

    def _error(self, node: Any, rel: Sequence[Any], letter: str) -> ACLError:
        root = self._root()
        where = Path.build(node.path[len(root.path):]) if root is not None else Path.build(rel)
        return ACLError(f"ACL {self.name} at {where} grants {_modes(node)!r}, needed:", letter)

    # --- what the server asks ----------------------------------------------------------

    def allows(self, path: Sequence[Any], mode: str) -> bool:
        """May this user do ``mode`` (a letter or ``W``) at the absolute ``path``?"""
        return not isinstance(self._walk(path, mode), ACLError)

    def check(self, path: Sequence[Any], mode: str) -> None:
        """Like :meth:`allows`, but raise :class:`ACLError` on refusal."""
        res = self._walk(path, mode)
        if isinstance(res, ACLError):
            raise res

    def cursor(self, path: Sequence[Any], mode: str) -> AclCursor:
        """Check ``mode`` at ``path`` (raising :class:`ACLError`) and return the
        :class:`AclCursor` for a dump starting there."""
        res = self._walk(path, mode)
        if isinstance(res, ACLError):
            raise res
        return AclCursor(res[0])

    def grant_string(self, path: Sequence[Any], mode: str) -> str | bool:
        """The effective entry's letters if ``mode`` is granted at ``path``, else False."""
        res = self._walk(path, mode)
        if isinstance(res, ACLError):
            return False
        node = effective(res[0])
        return _modes(node) if node is not None else False


def acl_for_user(store: Store, user_path: Sequence[Any], base: Sequence[Any] = ()) -> Any:
    """The ACL of the user whose record is at ``user_path`` (resolved at login).

    Its child ``acl`` = ``{key: NAME}`` names the ACL; no such child, or
    ``key: "*"``, means :data:`UNRESTRICTED`. A malformed record gives an ACL
    that refuses everything, a name without an ACL tree likewise (checked live).
    """
    entry = store.follow((*user_path, "acl"))
    if entry is None or entry.value is NotGiven:
        return UNRESTRICTED
    value = entry.value
    name = value.get("key") if isinstance(value, dict) else None
    if name == "*":
        return UNRESTRICTED
    if not isinstance(name, str) or not name:
        return UserACL(store, None, base)
    return UserACL(store, name, base)


def acl_access(
    store: Store, user_acl: Any, path: Sequence[Any], mode: str = "x", acl: str | None = None,
    base: Sequence[Any] = (),
) -> str | bool:
    """The ``test_acl`` action's ``access`` result (04 §6.12).

    Without ``acl``: False if the user's ACL refuses ``a`` at ``path``, else
    its letters there (``True`` for unrestricted users). With ``acl`` (a
    named ACL to test): False if the user's ACL refuses ``mode`` or the named
    ACL refuses ``mode``; else the named ACL's letters if the user may read
    ACL information (``a``) at ``path``, else ``True``.
    """
    if acl is None:
        return user_acl.grant_string(path, "a")
    named = UserACL(store, acl, base)
    if named._root() is None:
        raise ClientError(f"The ACL {acl!r} does not exist")
    if not user_acl.allows(path, mode):
        return False
    res = named.grant_string(path, mode)
    if res is False:
        return False
    return res if user_acl.allows(path, "a") else True
