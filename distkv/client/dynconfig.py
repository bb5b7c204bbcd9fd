"""The client's dynamic configuration: the static config plus ``:.distkv.config``.

Every client watches the subtree at ``config.prefix`` (default
``:.distkv.config``). Each direct child ``<section>`` holds a map that is
deep-merged over the static ``<section>``, the tree's values winning; when
the entry is deleted the static section is back in force. Deeper entries and
non-map values are ignored with a warning. :attr:`DynConfig.live` is what
``client.config`` returns; sections are replaced (not mutated), so code that
reads ``client.config.<section>`` each time sees updates at once.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio

from distkv.config import to_attrdict
from distkv.exceptions import ACLError, DistKVError, ServerClosedError
from distkv.util import NotGiven, attrdict, combine_dict
from distkv.util.path import P

if TYPE_CHECKING:
    from .client import Client

__all__ = ["DynConfig"]

logger = logging.getLogger(__name__)


class DynConfig:
    """The live configuration of one client."""

    def __init__(self, static: attrdict):
        self.static = static
        #: The merged configuration (``client.config``).
        self.live = attrdict(static)
        self.prefix = P(static.get("config", {}).get("prefix", ":.distkv.config"))
        self._ready: anyio.Event | None = None

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
        if value is NotGiven:
            if base is NotGiven:
                self.live.pop(name, None)
            else:
                self.live[name] = base
        elif not isinstance(value, dict):
            logger.warning("Config: %s is not a map, ignored", self.prefix + path)
        elif isinstance(base, dict):
            self.live[name] = to_attrdict(combine_dict(value, base))
        else:
            self.live[name] = to_attrdict(value)

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

    def ready_event(self) -> anyio.Event:
        """Set once the initial dump is complete (or the watch ended)."""
        if self._ready is None:
            self._ready = anyio.Event()
        return self._ready
