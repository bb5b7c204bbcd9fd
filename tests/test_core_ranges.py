"""RangeSet: tick sets as sorted half-open intervals, and their wire form (02 §5)."""

from __future__ import annotations

import pytest

from distkv.core import RangeSet


def test_wire_example_from_the_spec():
    r = RangeSet([1, 3, 4, 5, 9])
    assert r.to_wire() == [1, [3, 6], 9]
    assert list(r) == [1, 3, 4, 5, 9]
    assert len(r) == 5
    assert list(r.intervals()) == [(1, 2), (3, 6), (9, 10)]


def test_empty():
    r = RangeSet()
    assert not r
    assert len(r) == 0
    assert r.to_wire() == []
    assert 1 not in r
    assert r.first() is None and r.last() is None


def test_appending_increasing_ticks_keeps_one_run():
    r = RangeSet()
    for t in range(1, 1001):
        r.add(t)
    assert r.to_wire() == [[1, 1001]]
    assert (r.first(), r.last()) == (1, 1000)


def test_add_joins_neighbours():
    r = RangeSet([1, 2, 4, 5])
    assert r.to_wire() == [[1, 3], [4, 6]]
    r.add(3)
    assert r.to_wire() == [[1, 6]]
    r.add(3)  # already there
    assert r.to_wire() == [[1, 6]]
    r.add(0)
    r.add(8)
    assert r.to_wire() == [[0, 6], 8]
    r.add(7)
    assert r.to_wire() == [[0, 6], [7, 9]]


def test_discard_splits_and_trims():
    r = RangeSet.span(1, 10)
    r.discard(5)
    assert r.to_wire() == [[1, 5], [6, 10]]
    r.discard(1)
    r.discard(9)
    assert r.to_wire() == [[2, 5], [6, 9]]
    r.discard(42)
    r.discard(5)
    assert r.to_wire() == [[2, 5], [6, 9]]
    r.discard(6)
    r.discard(7)
    r.discard(8)
    assert r.to_wire() == [[2, 5]]
    assert 4 in r and 5 not in r and 1 not in r


def test_superseding_old_ticks():
    """The pattern of a key overwritten again and again: discard the last, add the next."""
    present, superseded = RangeSet(), RangeSet()
    for t in range(1, 6):
        if t > 1:
            present.discard(t - 1)
            superseded.add(t - 1)
        present.add(t)
    assert present.to_wire() == [5]
    assert superseded.to_wire() == [[1, 5]]


def test_add_range_merges_touching_runs():
    r = RangeSet([1, 10, 20])
    r.add_range(2, 10)
    assert r.to_wire() == [[1, 11], 20]
    r.add_range(11, 20)
    assert r.to_wire() == [[1, 21]]
    r.add_range(30, 30)  # empty
    assert r.to_wire() == [[1, 21]]
    r.add_range(25, 27)
    r.add_range(0, 40)
    assert r.to_wire() == [[0, 40]]


def test_discard_range():
    r = RangeSet.span(1, 20)
    r.discard_range(5, 8)
    assert r.to_wire() == [[1, 5], [8, 20]]
    r.discard_range(1, 5)
    assert r.to_wire() == [[8, 20]]
    r.discard_range(19, 30)
    assert r.to_wire() == [[8, 19]]
    r.discard_range(0, 100)
    assert r.to_wire() == []


def test_set_operations_small_and_large():
    a = RangeSet(range(0, 100, 3))  # many runs: the merge sweep
    b = RangeSet(range(0, 100, 2))
    sa, sb = set(a), set(b)
    assert set(a | b) == sa | sb
    assert set(a & b) == sa & sb
    assert set(a - b) == sa - sb
    small = RangeSet([3, 4, 5, 50])  # few runs: edited in place
    c = a.copy()
    c -= small
    assert set(c) == sa - {3, 4, 5, 50}
    c |= small
    assert set(c) == sa | {3, 4, 5, 50}
    c &= b
    assert set(c) == (sa | {3, 4, 5, 50}) & sb
    assert set(a) == sa  # the copy was independent
    assert a.isdisjoint(RangeSet([1, 2]))
    assert not a.isdisjoint(RangeSet([3]))


def test_equality_and_repr():
    assert RangeSet([1, 2, 3]) == RangeSet.span(1, 4)
    assert RangeSet([1, 3]) != RangeSet([1, 2])
    assert repr(RangeSet([1, 2, 5])) == "RangeSet([[1, 3], 5])"


def test_from_wire_accepts_lists_tuples_ints_and_overlaps():
    assert RangeSet.from_wire([1, [3, 6], 9]).to_wire() == [1, [3, 6], 9]
    assert RangeSet.from_wire((1, (3, 6), 9)).to_wire() == [1, [3, 6], 9]
    assert RangeSet.from_wire(7).to_wire() == [7]
    assert RangeSet.from_wire([[5, 8], 1, [2, 6]]).to_wire() == [[1, 8]]
    assert RangeSet.from_wire(()).to_wire() == []


@pytest.mark.parametrize("bad", [None, "1-3", [[1, 2, 3]], [["a", 2]], [1.5], {1: 2}, [True]])
def test_from_wire_rejects_garbage(bad):
    with pytest.raises(ValueError):
        RangeSet.from_wire(bad)
