"""Replication: how servers share one tree through a broadcast backend (spec 05).

* :mod:`.replicator` — :class:`Replicator`, the engine: broadcasting our
  events, applying peers' updates and ``info`` maps, asking for missing
  ticks and answering such requests, conflicts, joining;
* :mod:`.ping` — the ``ping`` actor (asyncactor), split recovery;
* :mod:`.deleter` — the ``del`` actor that lets tombstones be purged;
* :mod:`.sync` — fetching a peer's whole state over the client protocol;
* :mod:`.transport` — asyncactor's transport over our backends;
* :mod:`.wire` — reading and building the messages (pure).

The decisions themselves (what to apply, what is missing, what to re-send)
are pure functions of :mod:`distkv.core`.
"""

from __future__ import annotations

from .replicator import Replicator

__all__ = ["Replicator"]
