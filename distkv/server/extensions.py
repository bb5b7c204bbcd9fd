"""Server features from extensions: ``distkv_ext.<name>.server`` modules.

An extension is a package ``distkv_ext.<name>`` (``distkv_ext`` is a
namespace package, so every installed extension adds to it). Besides CLI
commands (:mod:`distkv.command.util`) it may extend the server:

* ``distkv_ext.<name>.server`` defines ``register(registry)``, which adds the
  extension's actions with :meth:`~distkv.server.registry.Registry.register`
  (handlers get ``(session, msg)``; ``session.server`` is the
  :class:`~distkv.server.Server`);
* its configuration — ``CFG`` of ``distkv_ext.<name>.config`` or
  ``._config``, else the file ``_config.yaml`` in the package — is merged
  into the server's configuration without overriding what is set already.

A file ``.no_load`` in the extension's directory disables it. Each
extension's ``register`` runs once per registry, however many servers a
process starts; an action name that is taken already is an error.

What lives elsewhere: finding extensions and their configuration
(:mod:`distkv.util.extensions`); the registry itself (:mod:`.registry`).
"""

from __future__ import annotations

import importlib
import logging
from typing import Any
from weakref import WeakKeyDictionary

from distkv.exceptions import ServerError
from distkv.util.extensions import (
    EXT_PACKAGE,
    NO_LOAD,
    enabled_extensions,
    ext_config,
    merge_ext_config,
)

from .registry import REGISTRY, Registry

__all__ = ["EXT_PACKAGE", "NO_LOAD", "enabled_extensions", "ext_config", "load_extensions"]

logger = logging.getLogger(__name__)

#: registry -> the extension modules registered into it already
_registered: WeakKeyDictionary[Registry, set[str]] = WeakKeyDictionary()


def load_extensions(cfg: dict, registry: Registry = REGISTRY) -> list[str]:
    """Merge the configuration of every enabled server extension into ``cfg`` and
    register its actions into ``registry``; returns the extensions' names.

    Raises :class:`~distkv.exceptions.ServerError` naming the extension if its
    module fails to import or to register.
    """
    mods = enabled_extensions("server")
    if not mods:
        return []
    done = _registered.setdefault(registry, set())
    for name, modname in sorted(mods.items()):
        merge_ext_config(cfg, name)
        if modname in done:
            continue
        try:
            module: Any = importlib.import_module(modname)
            register = module.register
            register(registry)
        except Exception as exc:
            raise ServerError(f"Extension {name!r} ({modname}) failed to load: {exc!r}") from exc
        done.add(modname)
        logger.info("Extension %r loaded", name)
    return sorted(mods)
