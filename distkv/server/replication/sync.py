"""Fetching the whole state from a peer over the client protocol (05 §6.2, §9).

* :func:`peer_address` — where node ``N`` listens: ``:n.hostmap.N``, then
  the config's ``hostmap``, else host ``N`` on ``connect.port`` (plus
  ``domain`` for bare names);
* :func:`fetch_state` — connect to one peer as a client named after this
  server, download its tree (``get_tree`` and ``get_tree_internal`` with
  full chains, tombstones included) and its tick bookkeeping (``get_state``),
  and apply all of it to the store.

Speed: the tree comes with a large stream window (:data:`FETCH_WINDOW`
records in flight) and is applied without cyclic garbage collection passes.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from typing import Any

from distkv.core import ChainLink, RangeSet, Store, chain_from_wire
from distkv.util import NotGiven, attrdict, combine_dict

__all__ = ["FETCH_WINDOW", "fetch_state", "peer_address"]

logger = logging.getLogger(__name__)

FETCH_WINDOW = 1000


def peer_address(store: Store, cfg: Any, node: str) -> tuple[str, int]:
    """``(host, port)`` of the client port of ``node`` (05 §9)."""
    port = int((cfg.get("connect") or {}).get("port", 27586))
    host: Any = node
    entry = store.follow((None, "hostmap", node))
    if entry is not None and entry.value is not NotGiven:
        host, port = entry.value
    else:
        hostmap = cfg.get("hostmap") or {}
        if node in hostmap:
            host = hostmap[node]
            if isinstance(host, str):
                h, sep, p = host.rpartition(":")
                if sep and p.isdigit():
                    host, port = h, int(p)
            else:
                host, port = host
    domain = cfg.get("domain")
    if domain and "." not in host and host != "localhost":
        host = f"{host}.{domain}"
    return str(host), int(port)


def _chain(rec: dict) -> ChainLink | None:
    c = rec.get("chain")
    if c.__class__ is attrdict and c.get("prev", 0) is None:
        node = c.get("node")
        tick = c.get("tick")
        if node.__class__ is str and tick.__class__ is int:
            return ChainLink(node, tick, None)
    return chain_from_wire(c)


async def fetch_state(
    store: Store,
    cfg: Any,
    node: str,
    *,
    apply: Callable[[tuple, ChainLink, Any, int | None], Any],
) -> int:
    """Download ``node``'s state into ``store``; returns the number of records applied.

    ``apply(path, chain, value, tock)`` applies one entry (the caller's
    wrapper around :meth:`Store.apply_update`). Connection problems raise
    :class:`~distkv.exceptions.ServerConnectionError` (or ``OSError``/
    ``TimeoutError``); the caller tries the next peer.
    """
    from distkv.client import open_client  # the server imports the client only to sync

    host, port = peer_address(store, cfg, node)
    me = {"host": host, "port": port, "name": store.name}
    connect = combine_dict(me, cfg.get("connect") or {})
    logger.info("Fetching the state from %s at %s:%d", node, host, port)
    n = 0
    async with open_client(connect=connect) as client:
        was = gc.isenabled()
        gc.disable()  # bulk work on acyclic objects: no cyclic GC passes meanwhile
        try:
            for prefix, action in (((), "get_tree"), ((None,), "get_tree_internal")):
                async with client._open_stream(
                    action,
                    {"path": (), "nchain": -1, "empty": True, "qlen": FETCH_WINDOW,
                     "from_server": store.name},
                    long_path=True,
                    number=False,
                ) as req:
                    async for rec in req:
                        chain = _chain(rec)
                        if chain is None:
                            continue  # an intermediate entry
                        path = prefix + tuple(rec["path"]) if prefix else rec["path"]
                        if "value" in rec:
                            value = rec["value"]
                        else:
                            value = NotGiven
                        apply(path, chain, value, rec.get("tock"))
                        n += 1
                    if req.end_msg is not None:
                        store.raise_tock(req.end_msg.get("tock"))
            state = await client._request(
                "get_state", nodes=True, known=True, deleted=True, from_server=store.name,
                iter=False,
            )
            store.process_state(_without_held(store, state))
        finally:
            if was:
                gc.enable()
    gc.freeze()  # the fetched tree lives long: keep later GC passes from walking it
    logger.info("Fetched %d entries from %s", n, node)
    return n


def _without_held(store: Store, state: dict) -> dict:
    """The peer's state minus the deletion records we just received as tombstones.

    A peer's ``deleted`` ticks include its tombstones, which we now hold too;
    taken as "deleted elsewhere" they would purge those tombstones here.
    """
    deleted = state.get("deleted")
    if not deleted:
        return state
    res = dict(state)
    res["deleted"] = out = {}
    for name, ticks in deleted.items():
        ticks = RangeSet.from_wire(ticks)
        rec = store.nodes.get(name)
        if rec is not None:
            ticks = ticks - rec.present
        if ticks:
            out[name] = ticks.to_wire()
    return res
