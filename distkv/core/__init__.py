"""The causal core of distkv: pure, synchronous, no I/O and no clock.

* :class:`RangeSet` (:mod:`.ranges`): tick sets and their wire form;
* :class:`ChainLink` (:mod:`.chain`): change chains, their order and wire form;
* :class:`Node` (:mod:`.nodes`): per-node tick bookkeeping;
* :class:`Entry` (:mod:`.tree`): the data tree;
* :class:`Event`, :class:`Outcome`, :class:`Conflict` (:mod:`.events`): what changes report;
* :class:`Store` (:mod:`.store`): all of the above plus the rules that change them.

The server owns a Store and feeds it client writes, peers' updates and
``info`` maps; sockets, timers, codecs and ACLs stay outside.
"""

from __future__ import annotations

from .chain import ChainLink, chain_from_wire, chain_text
from .events import Conflict, Event, InfoResult, Outcome
from .nodes import Node
from .ranges import RangeSet
from .store import Observer, Store, Validator
from .tree import Entry

__all__ = [
    "ChainLink",
    "Conflict",
    "Entry",
    "Event",
    "InfoResult",
    "Node",
    "Observer",
    "Outcome",
    "RangeSet",
    "Store",
    "Validator",
    "chain_from_wire",
    "chain_text",
]
