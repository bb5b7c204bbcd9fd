"""The demo extension's server actions: ``demo_greet`` and ``demo_count``."""

from __future__ import annotations

from typing import Any

from distkv.server.registry import PATH, STR, Registry
from distkv.util import NotGiven


def greet(session: Any, msg: dict) -> str:
    """A greeting from the configuration (``demo.greeting``), naming the server."""
    server = session.server
    return f"{server.cfg.demo.greeting}, {msg['name']}! This is {server.name}."


def count(session: Any, msg: dict) -> dict:
    """How many entries below ``path`` have a value (the entry itself included)."""
    entry = session.server.store.follow(msg["path"])
    if entry is None:
        return {"entries": 0}
    n = sum(1 for e, _ in entry.walk() if e.value is not NotGiven)
    return {"entries": n}


def register(registry: Registry) -> None:
    registry.register("demo_greet", greet, fields={"name": STR}, required=["name"])
    # reads any data, bypassing ACLs: only for users without one
    registry.register("demo_count", count, fields={"path": PATH}, required=["path"],
                      privileged=True)
