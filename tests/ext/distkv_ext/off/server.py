"""Would add the action ``off_ping``; the extension's ``.no_load`` file disables it."""

from __future__ import annotations

from distkv.server.registry import Registry


def register(registry: Registry) -> None:
    registry.register("off_ping", lambda session, msg: "pong")
