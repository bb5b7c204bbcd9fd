"""The client's dynamic configuration: the static config plus ``:.distkv.config``.

Every client watches the subtree at ``config.prefix`` (default
``:.distkv.config``). Each direct child ``<section>`` holds a map that is
deep-merged over the static ``<section>``, the tree's values winning; when
the entry is deleted the static section is back in force. Deeper entries and
non-map values are ignored with a warning. :attr:`DynConfig.live` is what
``client.config`` returns; sections are replaced (not mutated), so code that
reads ``client.config.<section>`` each time sees updates at once.

Code that must act on a change subscribes with :meth:`DynConfig.changes`
(``client.config_changes()``) and iterates over :class:`ConfigChanges`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio

from distkv.config import to_attrdict
from distkv.exceptions import ACLError, DistKVError, ServerClosedError
from distkv.util import NotGiven, attrdict, combine_dict
from distkv.util.path import P

if TYPE_CHECKING:
    from .client import Client

__all__ = ["ConfigChanges", "DynConfig"]

logger = logging.getLogger(__name__)


class ConfigChanges:
    """The sections of the live configuration that changed, as ``(name, value)`` pairs.

    ``value`` is the section as it is when the pair is read (``None`` if the
    section is gone). Changes coalesce: a section that changes again before
    it is read is reported once, with its latest value, so a slow reader
    never falls behind by more than one pair per section. Iteration ends at
    once when the subscription is left, and after the pending pairs when the
    configuration stops being mirrored (the connection ended).
    """

    __slots__ = ("_dyn", "_sections", "_pending", "_wake", "_closed")

    def __init__(self, dyn: DynConfig, sections: tuple[str, ...]):
        self._dyn = dyn
        self._sections = frozenset(sections)
        self._pending: dict[str, None] = {}  # an ordered set of section names
        self._wake: anyio.Event | None = None
        self._closed = False

    def _changed(self, name: str) -> None:
        if self._sections and name not in self._sections:
            return
        self._pending[name] = None
        if self._wake is not None:
            self._wake.set()

    def _close(self, *, drop: bool = False) -> None:
        self._closed = True
        if drop:
            self._pending.clear()
        if self._wake is not None:
            self._wake.set()

    def __aiter__(self) -> ConfigChanges:
        return self

    async def __anext__(self) -> tuple[str, Any]:
        while not self._pending:
            if self._closed:
                raise StopAsyncIteration
            self._wake = anyio.Event()
            await self._wake.wait()
        name = next(iter(self._pending))
        del self._pending[name]
        return name, self._dyn.live.get(name)


class DynConfig:
    """The live configuration of one client."""

    def __init__(self, static: attrdict):
        self.static = static
        #: The merged configuration (``client.config``).
        self.live = attrdict(static)
        self.prefix = P(static.get("config", {}).get("prefix", ":.distkv.config"))
        self._ready: anyio.Event | None = None
        self._subscribers: list[ConfigChanges] = []
        self._ended = False

    def apply(self, record: dict) -> None:
        """Apply one watch record (``path`` relative to the prefix)."""
        path = record.get("path")
        if path is None or len(path) == 0:
            return
        if len(path) > 1:
            logger.warning("Config: ignoring nested entry %s", self.prefix + path)
            return
        name = path[0]
        value = record.get("value", NotGiven)
        base = self.static.get(name, NotGiven)
        live = self.live
        old = live.get(name, NotGiven)
        if value is NotGiven:
            if base is NotGiven:
                live.pop(name, None)
            else:
                live[name] = base
        elif not isinstance(value, dict):
            logger.warning("Config: %s is not a map, ignored", self.prefix + path)
            return
        elif isinstance(base, dict):
            live[name] = to_attrdict(combine_dict(value, base))
        else:
            live[name] = to_attrdict(value)
        if self._subscribers and live.get(name, NotGiven) != old:
            for sub in self._subscribers:
                sub._changed(name)

    @asynccontextmanager
    async def changes(self, *sections: str) -> AsyncIterator[ConfigChanges]:
        """Subscribe to changes of the named sections (none named: of all of them).

        ``async with dyn.changes("runner") as changes: async for name, value in
        changes: …`` — see :class:`ConfigChanges`. Only changes after
        subscribing are reported; the current state is :attr:`live`.
        """
        sub = ConfigChanges(self, sections)
        if self._ended:
            sub._close()
        self._subscribers.append(sub)
        try:
            yield sub
        finally:
            self._subscribers.remove(sub)
            sub._close(drop=True)

    async def run(self, client: Client) -> None:
        """Mirror the config subtree until the connection ends; never raises."""
        ready = self.ready_event()
        try:
            async with client.watch(self.prefix, nchain=3, fetch=True) as records:
                async for rec in records:
                    if "path" in rec:
                        self.apply(rec)
                    elif rec.get("state") == "uptodate":
                        ready.set()
        except ServerClosedError:
            pass
        except ACLError as exc:
            logger.debug("Config: not readable: %s", exc)
        except DistKVError as exc:
            logger.warning("Config: cannot watch %s: %r", self.prefix, exc)
        finally:
            ready.set()
            self._ended = True
            for sub in self._subscribers:
                sub._close()

    def ready_event(self) -> anyio.Event:
        """Set once the initial dump is complete (or the watch ended)."""
        if self._ready is None:
            self._ready = anyio.Event()
        return self._ready
