"""The action handlers, grouped by topic; importing this package registers them.

* :mod:`.data` — single entries: get/set/delete/enum, ``root``, ``*_internal``, ``auth_info``;
* :mod:`.tree` — subtrees: ``get_tree``, ``delete_tree``, ``watch``;
* :mod:`.state` — tick/tock bookkeeping: ``get_state``, ``get_tock``, ``enum_node``, …;
* :mod:`.persist` — ``save`` and ``log``;
* :mod:`.misc` — ``stop``, ``msg_send``, ``msg_monitor``;
* :mod:`distkv.auth.actions` — logging in, users, ``set_auth_typ``, ``test_acl``.
"""

from __future__ import annotations

from distkv.auth import actions as auth

from ..registry import REGISTRY
from . import data, misc, persist, state, tree

auth.register(REGISTRY)

__all__ = ["auth", "data", "misc", "persist", "state", "tree"]
