"""ChainLink: wire form (02 §3), head equality and causal order (02 §3.1)."""

from __future__ import annotations

import pytest

from distkv.core import ChainLink, chain_from_wire, chain_text


def chain(*links: tuple[str, int]) -> ChainLink:
    """Build a chain from (node, tick) pairs, newest first."""
    res = None
    for node, tick in reversed(links):
        res = ChainLink(node, tick, res)
    assert res is not None
    return res


# --- wire -------------------------------------------------------------------


def test_single_link_wire_form():
    assert chain(("a", 5)).to_wire(1) == {"node": "a", "tick": 5, "prev": None}
    assert chain(("a", 5)).to_wire(-1) == {"node": "a", "tick": 5, "prev": None}


def test_truncated_chain_has_no_prev_key():
    c = chain(("b", 7), ("a", 3), ("c", 1))
    assert c.to_wire(1) == {"node": "b", "tick": 7}
    assert c.to_wire(2) == {"node": "b", "tick": 7, "prev": {"node": "a", "tick": 3}}
    full = {
        "node": "b",
        "tick": 7,
        "prev": {"node": "a", "tick": 3, "prev": {"node": "c", "tick": 1, "prev": None}},
    }
    assert c.to_wire(3) == full
    assert c.to_wire(5) == full
    assert c.to_wire(-1) == full
    assert c.to_wire(0) is None


def test_from_wire():
    assert chain_from_wire(None) is None
    assert chain_from_wire({}) is None
    assert chain_from_wire({"tick": 3}) is None
    assert chain_from_wire("a") is None
    c = chain_from_wire({"node": "b", "tick": 7, "prev": {"node": "a", "tick": 3, "prev": None}})
    assert list(c) == [("b", 7), ("a", 3)]
    truncated = chain_from_wire({"node": "b", "tick": 7})
    assert list(truncated) == [("b", 7)]


def test_from_wire_takes_update_messages_of_both_shapes():
    shape_a = {"node": "a", "tick": 1, "prev": None, "path": ("x",), "value": 1, "tock": 9}
    shape_b = {
        "value": 1,
        "chain": {"node": "a", "tick": 1, "prev": None},
        "tock": 9,
        "path": ("x",),
    }
    assert list(chain_from_wire(shape_a)) == [("a", 1)]
    assert list(chain_from_wire(shape_b)) == [("a", 1)]
    assert chain_from_wire({"chain": None, "path": ("x",)}) is None


@pytest.mark.parametrize(
    "bad",
    [
        {"node": "a", "tick": "1"},
        {"node": "a", "tick": 1, "prev": {"node": "a", "tick": 0}},
        {"node": ["unhashable"], "tick": 1},
    ],
)
def test_from_wire_rejects_malformed_chains(bad):
    with pytest.raises(ValueError):
        chain_from_wire(bad)


# --- identity ------------------------------------------------------------------


def test_equality_looks_at_the_head_only():
    assert chain(("a", 5), ("b", 1)) == chain(("a", 5))
    assert chain(("a", 5)) != chain(("a", 6))
    assert chain(("a", 5)) != chain(("b", 5))
    assert chain(("a", 5)) != None  # noqa: E711
    assert hash(chain(("a", 5), ("b", 1))) == hash(chain(("a", 5)))


def test_links_are_read_only():
    c = chain(("a", 5))
    with pytest.raises(AttributeError):
        c.tick = 6  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del c.node
    assert c.tick == 5


def test_chain_text_matches_upstream_error_style():
    assert chain_text(chain(("test_0", 7))) == "<NodeEvent test_0:7 (7,)>"
    assert chain_text(chain(("b", 7), ("a", 3))) == "<NodeEvent b:7 a:3 (7,)>"
    assert chain_text(None) == "None"


# --- order ------------------------------------------------------------------------


def test_supersedes():
    cur = chain(("b", 4), ("a", 3))
    assert cur.supersedes(None)
    assert cur.supersedes(chain(("a", 3)))  # same event further down
    assert cur.supersedes(chain(("a", 2)))  # older event of a
    assert not cur.supersedes(chain(("a", 4)))  # newer event of a
    assert not cur.supersedes(chain(("c", 1)))  # unknown node
    assert not cur.supersedes(chain(("b", 4)))  # equal heads


def test_precedes():
    cur = chain(("a", 3))
    assert cur.precedes(chain(("b", 1), ("a", 3)))  # built on top of us
    assert cur.precedes(chain(("a", 4)))  # a's own next event
    assert not cur.precedes(chain(("a", 2)))
    assert not cur.precedes(chain(("b", 1), ("a", 2)))  # based on an older a event
    assert not cur.precedes(chain(("b", 1)))  # concurrent
    assert not cur.precedes(chain(("a", 3)))  # equal heads
    assert not cur.precedes(None)


def test_advance_moves_the_node_to_the_head():
    c = chain(("b", 4), ("a", 3), ("c", 1))
    n = c.advance("a", 9)
    assert list(n) == [("a", 9), ("b", 4), ("c", 1)]
    assert list(c) == [("b", 4), ("a", 3), ("c", 1)]  # unchanged
    assert list(n.advance("a", 10)) == [("a", 10), ("b", 4), ("c", 1)]
    assert list(c.advance("d", 1)) == [("d", 1), ("b", 4), ("a", 3), ("c", 1)]


def test_without_shares_the_tail_and_returns_self_when_absent():
    c = chain(("b", 4), ("a", 3), ("c", 1))
    assert c.without("x") is c
    w = c.without("a")
    assert list(w) == [("b", 4), ("c", 1)]
    assert w.prev is c.prev.prev
    assert c.without("b") is c.prev


def test_lookups():
    c = chain(("b", 4), ("a", 3))
    assert len(c) == 2
    assert c.tick_of("a") == 3 and c.tick_of("x") is None
    assert c.contains("a", 3) and not c.contains("a", 2)
    assert c.position("a", 3) == 1 and c.position("b", 4) == 0 and c.position("a", 1) is None
