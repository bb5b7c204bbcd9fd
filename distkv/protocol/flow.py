"""Stream flow control (``qlen`` / ``wseq`` / ``ack``), both directions.

The sender numbers every message of a stream (``wseq`` 1, 2, …) and may have
at most ``window`` unacknowledged ones; the receiver acknowledges once more
than ``window // 3`` messages arrived since its last ack. A window of 0 means
no flow control.
"""

from __future__ import annotations

__all__ = ["SendWindow", "RecvWindow", "check_window"]


def check_window(window: int) -> int:
    """Upstream receivers refuse windows 1..3; clamp to 0 or >= 4."""
    if window < 0:
        return 0
    if 0 < window < 4:
        return 4
    return window


class SendWindow:
    """Sender side of one stream."""

    __slots__ = ("window", "wseq", "acked")

    def __init__(self, window: int):
        self.window = window
        self.wseq = 0
        self.acked = 0

    def can_send(self) -> bool:
        """May the next message go out now?"""
        return self.window <= 0 or (self.wseq + 1) - self.acked < self.window

    def next_wseq(self) -> int:
        """Number the next message."""
        self.wseq += 1
        return self.wseq

    def ack(self, n: int) -> None:
        """The peer has consumed messages up to ``n``."""
        if isinstance(n, int) and n > self.acked:
            self.acked = n


class RecvWindow:
    """Receiver side of one stream."""

    __slots__ = ("window", "acked")

    def __init__(self, window: int):
        self.window = window
        self.acked = 0

    def received(self, wseq: int | None) -> int | None:
        """A message numbered ``wseq`` was consumed; returns the ack to send, if any."""
        if not self.window or not isinstance(wseq, int):
            return None
        if wseq - self.acked > self.window // 3:
            self.acked = wseq
            return wseq
        return None
