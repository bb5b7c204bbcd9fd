"""The ``distkv`` command line (asyncclick).

:mod:`distkv.command.main` holds the top group and ``cmd()``, the entry
point; ``server``, ``dump``, ``pdb`` and the ``client`` package hold the
subcommands; :mod:`distkv.command.util` the helpers they share.
"""

from __future__ import annotations

from typing import Any

__all__ = ["cmd"]


def __getattr__(name: str) -> Any:
    # Lazy, so that importing a subcommand module doesn't drag in the top group.
    if name == "cmd":
        from distkv.command.main import cmd

        return cmd
    raise AttributeError(name)
