"""What a running job receives on its ``_info`` queue, and the queue itself.

* :class:`ChangeMsg` — an entry watched with ``_self.watch(path)`` changed;
* :class:`MQTTmsg` — a message arrived on a topic of ``_self.monitor(topic)``;
* :class:`TimerMsg` — a timer of ``_self.timer(delay)`` fired;
* :class:`ReadyMsg` — every watch that fetches the current data has sent it;
* the group states of :mod:`distkv.actor` (``CompleteState`` …), whenever the
  runner group's connectivity changes.

:class:`InfoQueue` holds at most :data:`INFO_QUEUE_SIZE` messages. A job that
doesn't keep up is told so with a ``None`` item (and gets nothing more); it
should end, so that it can be restarted with fresh data.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import anyio

from distkv.util.path import P, Path

__all__ = [
    "RunnerMsg",
    "ChangeMsg",
    "MQTTmsg",
    "TimerMsg",
    "ReadyMsg",
    "ErrorRecorded",
    "InfoQueue",
    "InfoOverflowError",
    "INFO_QUEUE_SIZE",
]

INFO_QUEUE_SIZE = 10


class ErrorRecorded(Exception):
    """Raised by ``_self.error(…)`` after it recorded the problem: the job fails
    without a second error record."""


class InfoOverflowError(RuntimeError):
    """A job iterating over ``_info`` fell more than :data:`INFO_QUEUE_SIZE` messages behind."""


class RunnerMsg:
    """Base class of the messages on a job's ``_info`` queue."""

    __slots__ = ()


class ChangeMsg(RunnerMsg):
    """An entry below a watched path changed.

    ``msg`` is the watch record, ``path`` the entry's full path; ``value``
    exists only if the entry has one (a deleted entry's message has none).
    """

    __slots__ = ("msg", "path", "value")

    def __init__(self, msg: dict, base: Path | None = None):
        self.msg = msg
        path = P(msg.get("path", ()))
        self.path = path if base is None else base + path
        if "value" in msg:
            self.value = msg["value"]

    def __repr__(self) -> str:
        value = getattr(self, "value", "<deleted>")
        return f"<{type(self).__name__} {self.path} {value!r}>"


class MQTTmsg(RunnerMsg):
    """A message on a monitored backend topic.

    ``path`` is the topic; ``value`` the decoded data, or ``msg`` the raw
    record if it could not be decoded.
    """

    __slots__ = ("msg", "path", "value")

    def __init__(self, msg: dict):
        self.msg = msg
        self.path = P(msg.get("topic", ()))
        if "data" in msg:
            self.value = msg["data"]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path} {getattr(self, 'value', self.msg)!r}>"


class TimerMsg(RunnerMsg):
    """A timer fired; ``timer`` is the timer object (``timer.run(delay)`` restarts it)."""

    __slots__ = ("timer",)

    def __init__(self, timer: Any):
        self.timer = timer

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.timer!r}>"


class ReadyMsg(RunnerMsg):
    """All ``n`` watches that fetch current data have delivered it."""

    __slots__ = ("n",)

    def __init__(self, n: int):
        self.n = n

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.n}>"


class InfoQueue:
    """A job's ``_info``: ``await _info.get()`` or ``async for msg in _info``.

    Holds at most ``size`` messages. When a message arrives while it is
    full, the waiting messages are dropped and a single ``None`` takes their
    place; nothing is queued after that. ``get()`` returns that ``None``;
    iterating raises :class:`InfoOverflowError` instead.
    """

    __slots__ = ("_items", "_size", "_wake", "overflowed")

    def __init__(self, size: int = INFO_QUEUE_SIZE):
        self._items: deque[Any] = deque()
        self._size = size
        self._wake: anyio.Event | None = None
        #: Whether the job fell behind.
        self.overflowed = False

    def put(self, item: Any) -> None:
        """Queue ``item`` (never blocks)."""
        if self.overflowed:
            return
        if len(self._items) >= self._size:
            self.overflowed = True
            self._items.clear()
            item = None
        self._items.append(item)
        wake = self._wake
        if wake is not None:
            self._wake = None
            wake.set()

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def get_nowait(self) -> Any:
        """The next message; ``anyio.WouldBlock`` if there is none."""
        if not self._items:
            raise anyio.WouldBlock
        return self._items.popleft()

    async def get(self) -> Any:
        """The next message (``None``: the job fell behind and should end)."""
        while not self._items:
            if self._wake is None:
                self._wake = anyio.Event()
            await self._wake.wait()
        return self._items.popleft()

    def __aiter__(self) -> InfoQueue:
        return self

    async def __anext__(self) -> Any:
        item = await self.get()
        if item is None and self.overflowed:
            raise InfoOverflowError(
                f"The job fell more than {self._size} messages behind on its _info queue"
            )
        return item
