"""RangeSet: a set of ints kept as sorted half-open intervals.

Tick sets (present / superseded / deleted / missing ticks of a node) are
mostly long runs, so they are stored as one flat sorted list of interval
boundaries ``[a0, b0, a1, b1, …]`` meaning ``[a0, b0) ∪ [a1, b1) ∪ …``. An
int ``x`` is in the set iff the number of boundaries ``<= x`` is odd, so
membership, insertion and removal are a bisect plus a small slice edit.
Appending the next tick to the last run only touches the last boundary.

The wire form (02 §5) lists each interval as a bare int when it holds one
element, else as the pair ``[a, b]``: ``{1, 3, 4, 5, 9}`` → ``[1, [3, 6], 9]``.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["RangeSet"]

# In-place set operations with an operand of at most this many boundaries
# edit interval by interval; larger operands use one merge sweep.
_SMALL = 8


class RangeSet:
    """A mutable set of ints stored as sorted, disjoint, non-touching intervals."""

    __slots__ = ("_b",)

    def __init__(self, ticks: Iterable[int] = ()):
        self._b: list[int] = []
        for t in ticks:
            self.add(t)

    @classmethod
    def span(cls, start: int, stop: int) -> RangeSet:
        """The interval ``[start, stop)`` (empty if ``stop <= start``)."""
        res = cls()
        if start < stop:
            res._b = [start, stop]
        return res

    @classmethod
    def _from_bounds(cls, bounds: list[int]) -> RangeSet:
        res = cls()
        res._b = bounds
        return res

    # --- single elements ---------------------------------------------------

    def __contains__(self, x: object) -> bool:
        return bisect_right(self._b, x) & 1 == 1

    def add(self, x: int) -> None:
        """Add one element."""
        b = self._b
        n = len(b)
        if n and b[-1] == x:  # the common case: the next tick after the last run
            b[-1] = x + 1
            return
        if not n or b[-1] < x:
            b.append(x)
            b.append(x + 1)
            return
        i = bisect_right(b, x)
        if i & 1:
            return  # already inside
        joins_prev = i > 0 and b[i - 1] == x
        joins_next = i < n and b[i] == x + 1
        if joins_prev and joins_next:
            del b[i - 1 : i + 1]
        elif joins_prev:
            b[i - 1] = x + 1
        elif joins_next:
            b[i] = x
        else:
            b[i:i] = (x, x + 1)

    def discard(self, x: int) -> None:
        """Remove one element if present."""
        b = self._b
        i = bisect_right(b, x)
        if not i & 1:
            return
        lo, hi = b[i - 1], b[i]
        if lo == x:
            if hi == x + 1:
                del b[i - 1 : i + 1]
            else:
                b[i - 1] = x + 1
        elif hi == x + 1:
            b[i] = x
        else:
            b[i:i] = (x, x + 1)

    # --- intervals ---------------------------------------------------------

    def add_range(self, start: int, stop: int) -> None:
        """Add every element of ``[start, stop)``."""
        if stop <= start:
            return
        b = self._b
        i = bisect_left(b, start)  # an odd i: start lies in (or at the end of) a run
        j = bisect_right(b, stop)  # an odd j: stop lies in (or at the start of) a run
        new = []
        if not i & 1:
            new.append(start)
        if not j & 1:
            new.append(stop)
        b[i:j] = new

    def discard_range(self, start: int, stop: int) -> None:
        """Remove every element of ``[start, stop)``."""
        if stop <= start:
            return
        b = self._b
        i = bisect_left(b, start)
        j = bisect_right(b, stop)
        new = []
        if i & 1:
            new.append(start)  # keep the part of the run before ``start``
        if j & 1:
            new.append(stop)  # keep the part of the run after ``stop``
        b[i:j] = new

    def intervals(self) -> Iterator[tuple[int, int]]:
        """The runs as ``(start, stop)`` half-open pairs, ascending."""
        b = self._b
        return zip(b[0::2], b[1::2], strict=True)

    def first(self) -> int | None:
        """The smallest element, or ``None`` if empty."""
        return self._b[0] if self._b else None

    def last(self) -> int | None:
        """The largest element, or ``None`` if empty."""
        return self._b[-1] - 1 if self._b else None

    # --- whole-set operations ----------------------------------------------

    def _sweep(self, other: RangeSet, op: int) -> list[int]:
        """Merge the boundary lists; ``op``: 0 union, 1 intersection, 2 difference."""
        a, b = self._b, other._b
        na, nb = len(a), len(b)
        i = j = 0
        in_a = in_b = inside = False
        res: list[int] = []
        while i < na or j < nb:
            x = a[i] if j >= nb or (i < na and a[i] <= b[j]) else b[j]
            if i < na and a[i] == x:
                in_a = not in_a
                i += 1
            if j < nb and b[j] == x:
                in_b = not in_b
                j += 1
            if op == 0:
                now = in_a or in_b
            elif op == 1:
                now = in_a and in_b
            else:
                now = in_a and not in_b
            if now != inside:
                res.append(x)
                inside = now
        return res

    def __or__(self, other: RangeSet) -> RangeSet:
        return RangeSet._from_bounds(self._sweep(other, 0))

    def __and__(self, other: RangeSet) -> RangeSet:
        return RangeSet._from_bounds(self._sweep(other, 1))

    def __sub__(self, other: RangeSet) -> RangeSet:
        return RangeSet._from_bounds(self._sweep(other, 2))

    def __ior__(self, other: RangeSet) -> RangeSet:
        if len(other._b) <= _SMALL:
            for a, b in other.intervals():
                self.add_range(a, b)
        else:
            self._b = self._sweep(other, 0)
        return self

    def __isub__(self, other: RangeSet) -> RangeSet:
        if len(other._b) <= _SMALL:
            for a, b in other.intervals():
                self.discard_range(a, b)
        else:
            self._b = self._sweep(other, 2)
        return self

    def __iand__(self, other: RangeSet) -> RangeSet:
        self._b = self._sweep(other, 1)
        return self

    union = __or__
    intersection = __and__
    difference = __sub__

    def isdisjoint(self, other: RangeSet) -> bool:
        return not self._sweep(other, 1)

    # --- container protocol ------------------------------------------------

    def __iter__(self) -> Iterator[int]:
        b = self._b
        for k in range(0, len(b), 2):
            yield from range(b[k], b[k + 1])

    def __len__(self) -> int:
        b = self._b
        return sum(b[k + 1] - b[k] for k in range(0, len(b), 2))

    def __bool__(self) -> bool:
        return bool(self._b)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RangeSet):
            return self._b == other._b
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable

    def copy(self) -> RangeSet:
        return RangeSet._from_bounds(self._b[:])

    def clear(self) -> None:
        self._b.clear()

    def __repr__(self) -> str:
        return f"RangeSet({self.to_wire()!r})"

    # --- wire form ---------------------------------------------------------

    def to_wire(self) -> list[Any]:
        """``[1, [3, 6], 9]``: single elements bare, longer runs as ``[start, stop]``."""
        b = self._b
        return [b[k] if b[k + 1] == b[k] + 1 else [b[k], b[k + 1]] for k in range(0, len(b), 2)]

    @classmethod
    def from_wire(cls, obj: Any) -> RangeSet:
        """Parse the wire form; pairs may be lists or tuples, a bare int is one element.

        Overlapping or unsorted input is accepted. Anything else raises ``ValueError``.
        """
        res = cls()
        if isinstance(obj, RangeSet):
            return obj.copy()
        if _is_int(obj):
            res.add(obj)
            return res
        if not isinstance(obj, list | tuple):
            raise ValueError(f"not a range set: {obj!r}")
        for item in obj:
            if _is_int(item):
                res.add(item)
            elif (
                isinstance(item, list | tuple)
                and len(item) == 2
                and _is_int(item[0])
                and _is_int(item[1])
            ):
                res.add_range(item[0], item[1])
            else:
                raise ValueError(f"not a range set element: {item!r}")
        return res


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)
