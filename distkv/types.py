"""Types, matches, codecs and converters (08): meta records that check and convert values.

Records live below a meta root (``:n`` of the store root, or of a sub-root):

* ``:n.type.<t1>.<t2>…`` — a type: ``code`` (a snippet with parameter
  ``value`` that raises to reject) and/or ``schema`` (JSON Schema), plus
  ``good``/``bad`` examples. A value of type ``t1.t2`` must pass ``t1``'s
  checks, then ``t1.t2``'s (schema first, then code);
* ``:n.match.<pattern>`` = ``{type: <type path>}`` — which type applies where
  (``+``/``#`` wildcards, most specific match wins, as for ACLs);
* ``:n.codec.<c1>…`` — a codec: ``encode``/``decode`` snippets with
  ``out``/``in`` example pairs;
* ``:n.conv.<name>.<pattern>`` = ``{codec: <codec path>}`` — converter group
  ``name``, given to users by their record's ``conv`` child;
* ``:n.acl.<name>…`` — ACL entries (strings; see :mod:`distkv.acl`).

:class:`TypeSystem` is the server's entry point: :meth:`TypeSystem.validator`
validates such records when they are written, :meth:`TypeSystem.check_value`
type-checks a data write, :meth:`TypeSystem.converter` gives a user's
:class:`Converter`. All user code runs through a
:class:`~distkv.snippet.CodeRunner`, so a snippet that loops forever costs a
bounded wait and a clear error. Compiled records are cached per record path
and recompiled when the stored value object changes.

Deviations from 0.65.0, on purpose: deleting type, match and codec records
works (15 #7); example values compare lists and tuples alike (msgpack turns
lists into tuples); schema violations read as ``ValueError(<message>)``
instead of a jsonschema object dump.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import jsonschema
from jsonschema.validators import validator_for

from distkv.acl import find_match
from distkv.codec import packb
from distkv.exceptions import ClientError
from distkv.snippet import CodeRunner, Snippet
from distkv.util import NotGiven
from distkv.util.path import P, Path

if TYPE_CHECKING:
    from distkv.core import Entry, Store

__all__ = ["Converter", "TypeSystem", "converter_for_user", "meta_position"]

logger = logging.getLogger(__name__)

NO_DATA = "This node can't have data."


def _path_of(value: Any, what: str) -> Path:
    """A type/codec reference: a Path, list or tuple, or a string in path syntax."""
    if isinstance(value, Path):
        return value
    if isinstance(value, str):
        return P(value)
    if isinstance(value, (list, tuple)):
        return Path.build(value)
    raise ValueError(f"The {what} must be a path, not {value!r}")


def _link(record: Any, key: str, what: str) -> Path:
    """The path that a ``{key: PATH}`` record (a match or converter) points to."""
    if not isinstance(record, dict) or key not in record:
        raise ValueError(f"A {what} record needs a '{key}': {record!r}")
    return _path_of(record[key], key)


def _same(a: Any, b: Any) -> bool:
    """Equality that treats lists and tuples alike (msgpack returns tuples)."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(v, b[k]) for k, v in a.items())
    return a == b


def meta_position(entry: Entry) -> tuple[tuple, tuple] | None:
    """``(base, rel)`` if ``entry`` is inside a meta tree (``base + (None,) + rel``).

    The outermost ``None`` counts: an ACL may name meta paths
    (``:n.acl.ops.:n.type``), and that entry is an ACL entry, not a type.
    """
    path = entry.path
    if None not in path:
        return None
    i = path.index(None)
    return path[:i], path[i + 1 :]


# --- compiled records -----------------------------------------------------------------------


class _TypeLevel:
    """One type record's checks."""

    __slots__ = ("path", "record", "schema", "code")

    def __init__(self, path: Path, record: dict):
        self.path = path
        self.record = record
        schema = record.get("schema")
        self.schema = None
        if schema is not None:
            cls = validator_for(schema)
            try:
                cls.check_schema(schema)
            except jsonschema.SchemaError as exc:
                raise ValueError(f"{path}: bad schema: {exc.message}") from None
            self.schema = cls(schema)
        code = record.get("code")
        self.code = None if code is None else Snippet(code, ("value",), path)

    @property
    def checks(self) -> bool:
        return self.schema is not None or self.code is not None

    def check(self, value: Any, entry: Any = None, match: Any = None) -> None:
        """Raise if ``value`` is not acceptable at this level."""
        if self.schema is not None:
            err = jsonschema.exceptions.best_match(self.schema.iter_errors(value))
            if err is not None:
                raise ValueError(err.message)
        if self.code is not None:
            self.code(value, entry=entry, data=self.record, match=match)


class _Codec:
    """One codec record's encoder and decoder."""

    __slots__ = ("path", "record", "encoder", "decoder")

    def __init__(self, path: Path, record: dict):
        self.path = path
        self.record = record
        enc, dec = record.get("encode"), record.get("decode")
        self.encoder = None if enc is None else Snippet(enc, ("value",), path)
        self.decoder = None if dec is None else Snippet(dec, ("value",), path)

    def apply(self, fn: Snippet | None, value: Any, entry: Any, conv: Any) -> Any:
        if fn is None:
            return value
        try:
            res = fn(value, entry=entry, data=self.record, conv=conv)
        except TypeError:
            if value is None:  # codecs need not handle "no value" (08 §4)
                return None
            raise
        try:
            packb(res)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(
                f"The codec {self.path} returned a {type(res).__name__}, which can't be stored"
            ) from None
        return res


def _check_levels(levels: Sequence[_TypeLevel], value: Any, entry: Any, match: Any) -> None:
    for level in levels:
        level.check(value, entry, match)


def _try_examples(ancestors: Sequence[_TypeLevel], level: _TypeLevel, good: Any, bad: Any) -> None:
    for v in (*good, *bad):
        _check_levels(ancestors, v, None, None)
    for v in good:
        try:
            level.check(v)
        except Exception as exc:
            raise ValueError(f"failed on good value {v!r}: {exc!r}") from None
    for v in bad:
        try:
            level.check(v)
        except Exception:  # noqa: S112  (a bad value must fail)
            continue
        raise ValueError(f"did not fail on {v!r}")


_WORDS = {"decode": ("decoder", "Decoding"), "encode": ("encoder", "Encoding")}


def _try_pairs(codec: _Codec, what: str, fn: Snippet, pairs: Sequence[Any]) -> None:
    doer, doing = _WORDS[what]
    for pair in pairs:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ValueError(f"{doing} tests must be pairs, not {pair!r}")
        v, want = pair
        try:
            got = codec.apply(fn, v, None, None)
        except Exception as exc:
            raise ValueError(f"failed {doer} at {codec.path} on {v!r} with {exc!r}") from None
        if not _same(got, want):
            raise ValueError(f"{doing} at {codec.path}: {v!r} got {got!r}, not {want!r}")


# --- the server's entry point ------------------------------------------------------------------


class TypeSystem:
    """Types, matches, codecs and converters of one store.

    ``runner`` runs the snippets (a default :class:`CodeRunner` if not given).
    """

    def __init__(self, store: Store, runner: CodeRunner | None = None, *, cache_size: int = 4096):
        self.store = store
        self.runner = runner if runner is not None else CodeRunner()
        self._cache: dict[tuple, tuple[Any, Any]] = {}
        self._cache_size = cache_size
        #: Has any match record been stored? Until then no data write needs a type
        #: check. (A store that holds data already might have some.)
        self.any_matches = store.tock > 0
        #: warn about replicated data that fails its type (set once the server
        #: serves: loading and the initial fetch are not checked)
        self.check_replicated = False

    def _compiled(self, path: tuple, value: Any, cls: type) -> Any:
        hit = self._cache.get(path)
        if hit is not None and hit[0] is value:
            return hit[1]
        obj = cls(Path.build(path), value)
        if len(self._cache) >= self._cache_size:
            self._cache.clear()
        self._cache[path] = (value, obj)
        return obj

    # --- validating meta records --------------------------------------------------------

    def validator(self, entry: Entry, value: Any, local: bool) -> None:
        """The store validator: refuse invalid meta records (local writes only).

        Replicated and loaded records are accepted as they are — their origin
        validated them, and refusing them here would make servers diverge; a
        broken one shows up as an error where it is used. A replicated data
        value that fails its type (a peer without that type, or an older
        one) is kept for the same reason, with a warning in the log.
        """
        e = entry
        while True:  # the cheap test first: most writes are data, not meta records
            parent = e.parent
            if parent is None:
                if (not local and self.check_replicated and self.any_matches
                        and value is not NotGiven):
                    self._warn_if_mistyped(entry, value)
                return
            if e.name is None:
                break
            e = parent
        pos = meta_position(entry)
        if pos is None:
            return
        if pos[1][:1] == ("match",) and value is not NotGiven:
            self.any_matches = True
        if local:
            self.validate_record(pos[0], pos[1], value)

    def _warn_if_mistyped(self, entry: Entry, value: Any) -> None:
        path = entry.path
        try:
            self.check_value(path, value, entry=entry)
        except ClientError as exc:
            logger.warning("A peer's value at %s fails its type check (%s); kept, so that "
                           "every server holds the same data", Path.build(path), exc)

    def validate_record(self, base: tuple, rel: tuple, value: Any) -> None:
        """Check ``value`` for the meta record at ``base + (None,) + rel``.

        ``value`` ``NotGiven`` (a deletion) is always fine.
        """
        if value is NotGiven or not rel:
            return
        kind, rest = rel[0], rel[1:]
        if kind == "type":
            if not rest:
                raise ValueError(NO_DATA)
            self._validate_type(base, rest, value)
        elif kind == "match":
            if not rest:
                _container(value)
            else:
                self._validate_match(base, value)
        elif kind == "codec":
            if not rest:
                _container(value)
            else:
                self._validate_codec(base, rest, value)
        elif kind == "conv":
            if len(rest) < 2:
                _container(value)
            else:
                self._validate_conv(base, value)
        elif kind == "acl":
            if not rest:
                _container(value)
            elif not isinstance(value, str):
                raise ValueError("ACL is not a string")

    def _validate_type(self, base: tuple, tpath: tuple, value: Any) -> None:
        if not isinstance(value, dict):
            raise ValueError(f"A type record must be a map, not {value!r}")
        full = (*base, None, "type", *tpath)
        level = _TypeLevel(Path.build(full), value)
        if not level.checks:
            return
        good, bad = value.get("good"), value.get("bad")
        if not isinstance(good, (list, tuple)) or len(good) < 2:
            raise RuntimeError("Must have check-good values")
        if not isinstance(bad, (list, tuple)) or not bad:
            raise RuntimeError("Must have check-bad values")
        ancestors = self._type_levels(base, tpath[:-1], missing_ok=True)
        self.runner.run(_try_examples, ancestors, level, good, bad, what=f"checking {level.path}")
        self._cache[full] = (value, level)

    def _validate_match(self, base: tuple, value: Any) -> None:
        tpath = _link(value, "type", "match")
        if not tpath or self.store.follow((*base, None, "type", *tpath)) is None:
            raise ClientError("This type does not exist")

    def _validate_codec(self, base: tuple, cpath: tuple, value: Any) -> None:
        if not isinstance(value, dict) or "encode" not in value or "decode" not in value:
            raise ValueError("A codec record needs the keys 'encode' and 'decode' (may be null)")
        full = (*base, None, "codec", *cpath)
        codec = _Codec(Path.build(full), value)
        checks = []
        for what, fn, key in (("decode", codec.decoder, "in"), ("encode", codec.encoder, "out")):
            if fn is None:
                continue
            tests = value.get(key)
            if not isinstance(tests, (list, tuple)) or not tests:
                raise RuntimeError(f"Must have tests for {_WORDS[what][1].lower()}")
            checks.append((what, fn, tests))
        for what, fn, tests in checks:
            self.runner.run(_try_pairs, codec, what, fn, tests, what=f"testing {codec.path}")
        self._cache[full] = (value, codec)

    def _validate_conv(self, base: tuple, value: Any) -> None:
        cpath = _link(value, "codec", "converter")
        if self.store.follow((*base, None, "codec", *cpath)) is None:
            logger.warning("Codec %s does not exist (yet?)", cpath)

    # --- checking values ------------------------------------------------------------------

    def _type_levels(self, base: tuple, tpath: Sequence[Any], *, missing_ok: bool = False
                     ) -> list[_TypeLevel]:
        """The checking levels of type ``tpath`` and its ancestors, outermost first."""
        store = self.store
        levels = []
        troot = store.follow((*base, None, "type"))
        e = troot
        for i, name in enumerate(tpath):
            e = None if e is None else e.get(name)
            if e is None:
                if missing_ok:
                    break
                raise ClientError(f"The type {Path.build(tpath)} does not exist")
            v = e.value
            if isinstance(v, dict) and (v.get("code") is not None or v.get("schema") is not None):
                levels.append(self._compiled((*base, None, "type", *tpath[: i + 1]), v, _TypeLevel))
        return levels

    def check_value(
        self, path: Sequence[Any], value: Any, *, entry: Any = None, base: Sequence[Any] = ()
    ) -> None:
        """Type-check a data write of ``value`` at the absolute ``path``.

        ``base`` is the data root whose meta tree applies (``()`` normally).
        A rejection raises ``ClientError(repr(<the check's exception>))``, e.g.
        ``ClientError("ValueError('not a percentage')")``.
        """
        base = tuple(base)
        mroot = self.store.follow((*base, None, "match"))
        if mroot is None or not mroot.children:
            return
        match = find_match(mroot, path[len(base):])
        if match is None or not isinstance(match.value, dict):
            return
        try:
            tpath = _path_of(match.value.get("type"), "type")
        except ValueError as exc:
            raise ClientError(repr(exc)) from None
        try:
            levels = self._type_levels(base, tpath)
        except ValueError as exc:  # a record that doesn't compile
            raise ClientError(repr(exc)) from None
        if not levels:
            return
        try:
            self.runner.run(_check_levels, levels, value, entry, match, what=f"the type {tpath}")
        except Exception as exc:  # the check's exception, or CodeTimeoutError
            raise ClientError(repr(exc)) from None

    def converter(self, name: str, base: Sequence[Any] = ()) -> Converter:
        """The converter group ``name`` (looked up live on every use)."""
        return Converter(self, name, base)


def _container(value: Any) -> None:
    if value is not None:
        raise ValueError(NO_DATA)


class Converter:
    """Converter group ``name``: encodes values sent to a user, decodes what they write."""

    __slots__ = ("types", "name", "base", "_group")

    def __init__(self, types: TypeSystem, name: str, base: Sequence[Any] = ()):
        self.types = types
        self.name = name
        self.base = tuple(base)
        self._group = (*self.base, None, "conv", name)

    def __repr__(self) -> str:
        return f"<Converter {self.name!r}>"

    def _codec(self, path: Sequence[Any]) -> tuple[_Codec, Any] | None:
        ts = self.types
        group = ts.store.follow(self._group)
        if group is None or not group.children:
            return None
        conv = find_match(group, path[len(self.base):])
        if conv is None or not isinstance(conv.value, dict):
            return None
        try:
            cpath = _path_of(conv.value.get("codec"), "codec")
        except ValueError as exc:
            raise ClientError(repr(exc)) from None
        full = (*self.base, None, "codec", *cpath)
        rec = ts.store.follow(full)
        if rec is None or not isinstance(rec.value, dict):
            raise ClientError(f"The codec {cpath} does not exist")
        try:
            return ts._compiled(full, rec.value, _Codec), conv
        except ValueError as exc:
            raise ClientError(repr(exc)) from None

    def _apply(self, which: str, path: Sequence[Any], value: Any, entry: Any) -> Any:
        """Run the ``which`` (``encoder``/``decoder``) snippet of the codec for ``path``."""
        found = self._codec(path)
        if found is None:
            return value
        codec, conv = found
        fn = getattr(codec, which)
        if fn is None:
            return value
        return self.types.runner.run(
            codec.apply, fn, value, entry, conv, what=f"the {which} {codec.path}"
        )

    def encode(self, path: Sequence[Any], value: Any, entry: Any = None) -> Any:
        """The client's view of the stored ``value`` at the absolute ``path``."""
        return self._apply("encoder", path, value, entry)

    def decode(self, path: Sequence[Any], value: Any, entry: Any = None) -> Any:
        """The value to store for ``value`` written by the client at the absolute ``path``."""
        return self._apply("decoder", path, value, entry)


def converter_for_user(
    types: TypeSystem, user_path: Sequence[Any], base: Sequence[Any] = ()
) -> Converter | None:
    """The converter of the user whose record is at ``user_path`` (child ``conv`` =
    ``{key: NAME}``), or None."""
    entry = types.store.follow((*user_path, "conv"))
    if entry is None or not isinstance(entry.value, dict):
        return None
    name = entry.value.get("key")
    if not isinstance(name, str) or not name:
        return None
    return types.converter(name, base)
