"""The pure recovery decisions (distkv.core.recovery) and the mergeable conflict log."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from distkv.core import ChainLink, Conflict, RangeSet, Store, chain_from_wire
from distkv.core.conflicts import ConflictLog, conflict_from_wire
from distkv.core.recovery import (
    missing_request,
    plan_resend,
    resend_message,
    settle_chain,
    ticks_map,
)
from distkv.util import NotGiven


def chain(*links: tuple[str, int]) -> ChainLink:
    res = None
    for n, t in reversed(links):
        res = ChainLink(n, t, res)
    assert res is not None
    return res


def test_a_tick_deep_in_a_chain_is_resent_with_the_whole_chain() -> None:
    # upstream 15 #11: re-sends carried two links, so a deeper tick never arrived
    s = Store("a")
    s.apply_update(("k",), chain(("d", 1), ("c", 1), ("b", 1)), "v", 10)
    s.nodes["b"].report_missing(RangeSet([1]))
    plan = plan_resend(s)
    assert [e.path for e in plan.entries] == [("k",)]
    msg = resend_message(plan.entries[0])
    assert msg == {
        "value": "v",
        "chain": {"node": "d", "tick": 1, "prev": {"node": "c", "tick": 1,
                                                 "prev": {"node": "b", "tick": 1, "prev": None}}},
        "tock": 10,
        "path": ("k",),
    }
    assert not s.nodes["b"].remote_missing  # answered

    # the asking server gets b:1 from it, though its chain for k ends earlier
    t = Store("x")
    t.apply_update(("k",), chain(("d", 1)), "v", 10)
    t.nodes["b"] = t.nodes.get("b") or type(t.nodes["d"])("b", 1)
    assert t.missing() == {"b": RangeSet([1])}
    c = chain_from_wire(msg)
    assert c is not None
    t.apply_update(msg["path"], c, msg["value"], msg["tock"])  # a duplicate: same head
    settle_chain(t, c)
    assert t.missing() == {}


def test_resolved_ticks_are_announced_as_known_or_deleted() -> None:
    s = Store("a")
    e = s.follow(("k",), create=True)
    s.local_change(e, 1)  # a:1, superseded by a:2
    s.local_change(e, 2)
    f = s.follow(("gone",), create=True)
    s.local_change(f, 1)  # a:3
    s.local_change(f, NotGiven)  # a:4, a tombstone
    s.purge("a", RangeSet([4]))  # tombstone gone: a:4 superseded too
    s.process_info({"node": "b", "deleted": {"c": [5]}})  # c:5 was deleted elsewhere
    s.node.report_missing(RangeSet([1, 2, 3, 4, 7]))
    s.nodes["c"].report_missing(RangeSet([5]))
    plan = plan_resend(s)
    assert [x.path for x in plan.entries] == [("k",)]  # a:2 is held
    assert plan.info() == {"known": {"a": [1, [3, 5]]}, "deleted": {"c": [5]}}
    assert s.node.remote_missing == RangeSet([7])  # nobody here knows a:7


def test_plan_resend_for_some_nodes_only() -> None:
    s = Store("a")
    s.apply_update(("x",), chain(("b", 1)), 1, 5)
    s.local_change(s.follow(("y",), create=True), 2)
    s.nodes["b"].report_missing(RangeSet([1]))
    s.node.report_missing(RangeSet([1]))
    assert [e.path for e in plan_resend(s, ("a",)).entries] == [("y",)]
    assert s.nodes["b"].remote_missing == RangeSet([1])
    assert [e.path for e in plan_resend(s).entries] == [("x",)]


def test_missing_request_leaves_out_what_others_asked_for() -> None:
    s = Store("a")
    s.apply_update(("x",), chain(("b", 5)), 1, 5)
    assert missing_request(s) == {"b": RangeSet([1, 2, 3, 4])}
    assert missing_request(s, {"b": RangeSet([1, 2])}) == {"b": RangeSet([3, 4])}
    assert missing_request(s, {"b": RangeSet([1, 2, 3, 4])}) == {}
    assert ticks_map(s) == {"a": None, "b": 5}


# --- the conflict log -------------------------------------------------------------------


def conflict(path: str, winner: tuple, loser: tuple, wt: int, lt: int) -> Conflict:
    return Conflict((path,), ChainLink(*winner), ChainLink(*loser), wt, lt)


def test_conflict_records_round_trip_and_refuse_garbage() -> None:
    c = conflict("p", ("a", 3), ("b", 2), 20, 10)
    back = conflict_from_wire(c.to_wire())
    assert (back.path, back.winner.head, back.loser.head, back.winner_tock, back.loser_tock) == \
        (("p",), ("a", 3), ("b", 2), 20, 10)
    for bad in (5, {"path": ("p",)}, {**c.to_wire(), "winner_tock": "x"}):
        try:
            conflict_from_wire(bad)
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad!r}")


def test_fresh_records_are_the_ones_resolved_here() -> None:
    log = ConflictLog()
    log.append(conflict("p", ("a", 3), ("b", 2), 20, 10))
    log.merge([conflict("q", ("a", 4), ("c", 1), 30, 10)])
    assert [c.path for c in log.take_fresh()] == [("p",)]
    assert log.take_fresh() == []
    assert len(log) == 2


def event_tock(node: str, tick: int) -> int:
    """Every event has one tock (records of one event agree on it)."""
    return 7 * tick + ord(node) % 5


@st.composite
def a_conflict(draw: st.DrawFn) -> Conflict:
    winner = (draw(st.sampled_from("abc")), draw(st.integers(1, 5)))
    loser = (draw(st.sampled_from("def")), draw(st.integers(1, 5)))
    # one event changes one entry: the path follows from the loser
    path = f"p{loser[0]}{loser[1]}"
    return conflict(path, winner, loser, event_tock(*winner), event_tock(*loser))


records = st.lists(a_conflict(), max_size=30)


@given(records, st.randoms(use_true_random=False), st.integers(1, 10))
def test_merged_logs_are_equal_whatever_the_order(recs: list, rnd, maxlen: int) -> None:
    one, two = ConflictLog(maxlen), ConflictLog(maxlen)
    one.merge(recs)
    shuffled = list(recs)
    rnd.shuffle(shuffled)
    half = len(shuffled) // 2
    two.merge(shuffled[half:])
    two.merge(shuffled[:half])
    assert one.digest() == two.digest()
    assert [(c.loser.head, c.winner.head) for c in one] == \
        [(c.loser.head, c.winner.head) for c in two]
    assert len(one) <= maxlen
