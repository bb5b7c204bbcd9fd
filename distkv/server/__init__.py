"""The distkv server daemon (anyio).

* :mod:`.server` — :class:`Server`: store, listeners, logs, backend, startup;
* :mod:`.session` — one client connection: dispatch, streams, stop, errors;
* :mod:`.registry` — the explicit action registry; :mod:`.actions` — the handlers;
* :mod:`.watch` — watchers with bounded queues; :mod:`.records` — tree walks and records;
* :mod:`.persist` — save files, change logs, loading;
* :mod:`.backend` — broadcast media; :mod:`.systemd` — sd_notify.
"""

from __future__ import annotations

from .server import Server

__all__ = ["Server"]
