"""Save files, change logs and loading them (10).

A file is a concatenation of msgpack maps sharing one path shortener (empty
prefix): a *state* record (``nodes``, ``known``, ``deleted``, ``node``,
``tock``), *entry* records (``value``, full ``chain``, ``tock``, ``path``,
``depth``) and *update* records (``node``, ``tick``, ``prev``, ``path``,
``value`` — absent for a deletion — ``tock``, ``depth``).

* :func:`snapshot` (:func:`snapshot_chunks`) packs a state record plus every entry that has a value
  (the meta tree only if ``full``) — the ``save`` action and the start of a
  change log;
* :class:`ChangeLog` writes an update record for every change applied to the
  store. Records are buffered and written out by :meth:`ChangeLog.sync`,
  which the server calls before any reply leaves for a client, so every
  acknowledged write is in the file (in the OS, safe from ``kill -9``) before
  the client hears of it. A background task also syncs after 1 s, and writes
  a fresh state record every 60 s or 1000 records;
* :func:`load_file` applies a file to a store. Unlike upstream it applies
  deletion records and advances the path expander for every record (15 #18,
  #52), so deleted entries stay deleted and later paths stay right.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import anyio

from distkv.codec import make_unpacker, packb, packer
from distkv.core import ChainLink, Store, chain_from_wire
from distkv.util import NotGiven, attrdict
from distkv.util.path import Path

from .records import RelShortener, walk

__all__ = ["snapshot", "snapshot_chunks", "ChangeLog", "load_file", "LoadResult"]

logger = logging.getLogger(__name__)

SYNC_RECORDS = 100
STATE_RECORDS = 1000
STATE_INTERVAL = 60.0
SYNC_INTERVAL = 1.0
READ_CHUNK = 1024 * 1024
_STATE_KEYS = ("nodes", "known", "deleted", "tock")


@contextmanager
def _no_gc() -> Iterator[None]:
    """Bulk work that makes many acyclic objects: no cyclic GC passes meanwhile
    (each would walk the whole tree)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def state_record(store: Store) -> dict:
    """``{nodes, known, deleted, node, tock}`` of the store."""
    return store.get_state(nodes=True, known=True, deleted=True)


def snapshot(store: Store, full: bool, short: RelShortener | None = None) -> Iterator[bytes]:
    """Packed records in chunks: the state, then every entry with a value, pre-order.

    The meta tree is included only if ``full``. ``short`` continues an
    existing file's path shortening (and is left at the last path).
    """
    if short is None:
        short = RelShortener(True)
    yield packb(state_record(store))
    pk = packer()
    pack = pk.pack
    chunk: list[bytes] = []
    last: tuple = short.last
    for e, rel in walk(store.root, meta=full):
        v = e.value
        if v is NotGiven or e.chain is None:
            continue
        d = 0
        n = min(len(rel), len(last))
        while d < n and rel[d] == last[d]:
            d += 1
        last = rel
        chunk.append(pack({
            "value": v,
            "chain": e.chain.to_wire(-1),
            "tock": e.tock,
            # (a list packs like a tuple, without the codec's conversion hook)
            "path": Path.build(rel) if d == 0 else list(rel[d:]),
            "depth": d,
        }))
        if len(chunk) >= 1000:
            yield b"".join(chunk)
            chunk.clear()
    if chunk:
        yield b"".join(chunk)
    short.last = last


def snapshot_chunks(store: Store, full: bool, short: RelShortener | None = None) -> list[bytes]:
    """:func:`snapshot`, made in one go (a consistent snapshot)."""
    with _no_gc():
        return list(snapshot(store, full, short))


class ChangeLog:
    """A change log file being written (see the module docstring)."""

    def __init__(self, store: Store, path: str):
        self.store = store
        self.path = path
        self._fh: IO[bytes] | None = open(path, "wb")  # noqa: SIM115  (closed in close())
        self._short = RelShortener(True)
        self._buf: list[bytes] = []
        self._since_state = 0
        self._last_state = time.monotonic()

    @property
    def closed(self) -> bool:
        return self._fh is None

    def write_state(self) -> None:
        self._buf.append(packb(state_record(self.store)))
        self._since_state = 0
        self._last_state = time.monotonic()

    def write_snapshot(self) -> None:
        """A state record and every entry, meta tree included."""
        self._buf.extend(snapshot_chunks(self.store, True, self._short))
        self._since_state = 0
        self._last_state = time.monotonic()

    def observe(self, entry: Any, event: Any) -> None:
        """Store observer: one update record per applied change."""
        if self._fh is None:
            return
        rec = event.to_wire(-1)
        self._short(rec, rec["path"])
        self._buf.append(packb(rec))
        self._since_state += 1
        if len(self._buf) >= SYNC_RECORDS:
            self.sync()

    def sync(self) -> None:
        """Hand buffered records to the OS."""
        buf = self._buf
        if not buf or self._fh is None:
            return
        self._fh.writelines(buf)
        buf.clear()
        self._fh.flush()

    async def run(self) -> None:
        """Background upkeep: sync after a quiet second, state records now and then."""
        while self._fh is not None:
            await anyio.sleep(SYNC_INTERVAL)
            if self._since_state > STATE_RECORDS or (
                self._since_state and time.monotonic() - self._last_state > STATE_INTERVAL
            ):
                self.write_state()
            self.sync()

    def close(self) -> None:
        """Flush and close the file."""
        if self._fh is None:
            return
        try:
            self.sync()
        finally:
            self._fh.close()
            self._fh = None


class LoadResult:
    """What :func:`load_file` did."""

    __slots__ = ("records", "applied", "skipped")

    def __init__(self) -> None:
        self.records = 0
        self.applied = 0
        self.skipped = 0

    def __repr__(self) -> str:
        return (
            f"<LoadResult {self.records} records, {self.applied} applied,"
            f" {self.skipped} skipped>"
        )


def _records(fh: IO[bytes], name: str) -> Iterator[Any]:
    up = make_unpacker()
    fed = 0
    while True:
        data = fh.read(READ_CHUNK)
        if not data:
            break
        up.feed(data)
        fed += len(data)
        yield from up
    if up.tell() < fed:
        logger.warning(
            "%s ends with an incomplete record: %d bytes ignored", name, fed - up.tell()
        )


def load_file(store: Store, path: str, *, authoritative: bool = False) -> LoadResult:
    """Apply a save or log file (or several concatenated) to ``store`` (10 §5).

    Records that cannot be used are skipped with a warning. ``authoritative``:
    afterwards, every tick still missing counts as superseded (the file is
    declared complete).
    """
    res = LoadResult()
    last: tuple = ()  # the path expander: the previous record's full path
    with open(path, "rb") as fh, _no_gc():
        for rec in _records(fh, path):
            res.records += 1
            try:
                if rec.__class__ is not attrdict and not isinstance(rec, dict):
                    raise ValueError("not a map")
                if "path" in rec and "depth" in rec:
                    # every record with a path advances the expander, deletions too
                    d = rec.pop("depth")
                    if d.__class__ is not int or not 0 <= d <= len(last):
                        raise ValueError(f"bad depth {d!r}")
                    last = rec["path"] = last[:d] + tuple(rec["path"])
                if "path" in rec:
                    if _apply(store, rec):
                        res.applied += 1
                elif "info" in rec and isinstance(rec["info"], dict):
                    store.process_state(rec["info"])
                elif any(k in rec for k in _STATE_KEYS):
                    store.process_state(rec)
                else:
                    raise ValueError("not a state, entry or update record")
            except (ValueError, TypeError) as exc:
                logger.warning("%s: record %d skipped: %s", path, res.records, exc)
                res.skipped += 1
    if authoritative:
        for name, ticks in store.missing().items():
            store.nodes[name].report_superseded(ticks, local=True)
    return res


def _chain(rec: dict) -> ChainLink | None:
    """The record's chain; single-link chains (the usual case) take a short cut."""
    c = rec.get("chain", rec)
    if c.__class__ is attrdict and c.get("prev", 0) is None:
        node = c.get("node")
        tick = c.get("tick")
        if node.__class__ is str and tick.__class__ is int:
            return ChainLink(node, tick, None)
    return chain_from_wire(rec)


def _apply(store: Store, rec: dict) -> bool:
    if "value" in rec:
        value = rec["value"]
    elif "new_value" in rec:
        value = rec["new_value"]
    else:
        value = NotGiven
    chain = _chain(rec)
    if chain is None:
        logger.warning("record for %r has no chain; skipped", rec["path"])
        return False
    tock = rec.get("tock")
    if tock is None:
        tock = store.next_tock()
    return store.apply_update(rec["path"], chain, value, tock, loading=True).applied
