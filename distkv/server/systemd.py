"""Telling systemd about the server: ``READY=1`` and watchdog keep-alives.

This is the sd_notify protocol, a datagram on the unix socket named by
``NOTIFY_SOCKET`` (a leading ``@`` means the abstract namespace). Without that
variable nothing happens.
"""

from __future__ import annotations

import os
import socket

import anyio

__all__ = ["notify", "watchdog_interval", "run_watchdog"]


def _address() -> str | None:
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return None
    if addr[0] == "@":
        addr = "\0" + addr[1:]
    return addr


def notify(state: str) -> bool:
    """Send one sd_notify message (e.g. ``"READY=1"``); False if not under systemd."""
    addr = _address()
    if addr is None:
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto(state.encode(), addr)
        except OSError:
            return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between keep-alives (half of ``WATCHDOG_USEC``), or None."""
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec or _address() is None:
        return None
    pid = os.environ.get("WATCHDOG_PID")
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    try:
        return int(usec) / 2_000_000
    except ValueError:
        return None


async def run_watchdog(interval: float) -> None:
    """Send ``WATCHDOG=1`` every ``interval`` seconds, forever."""
    while True:
        notify("WATCHDOG=1")
        await anyio.sleep(interval)
