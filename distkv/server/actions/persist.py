"""Persistence actions: ``save`` (a snapshot file) and ``log`` (a change log).

Both name a file on the *server's* host. ``log`` without a path (or with
``path: None``) stops change logging and replies ``{result: true}`` (upstream
failed here, 15 #2).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..registry import BOOL, OPT_STR, STR, action

if TYPE_CHECKING:
    from ..session import Session


@action("save", fields={"path": STR, "full": BOOL}, required=("path",))
async def save(sess: Session, msg: dict) -> bool:
    """Write a snapshot (state and entries; the meta tree too if ``full``)."""
    await sess.server.save(msg["path"], full=msg.get("full", False))
    return True


@action("log", fields={"path": OPT_STR, "fetch": BOOL})
async def log(sess: Session, msg: dict) -> bool:
    """Start a change log (``fetch``: beginning with the full state), replacing
    the current one; no path: stop logging."""
    path = msg.get("path")
    if path is None:
        sess.server.stop_log()
    else:
        await sess.server.start_log(path, fetch=msg.get("fetch", False))
    return True
