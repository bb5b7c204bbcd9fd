"""Finding ``distkv_ext.<name>`` extensions and the configuration they ship.

An extension is a package ``distkv_ext.<name>`` (``distkv_ext`` is a namespace
package, so every installed extension adds to it). A file ``.no_load`` in its
directory disables it. Its modules add to distkv: ``main`` and ``client``
commands (:mod:`distkv.command.util`), ``server`` actions
(:mod:`distkv.server.extensions`). Its configuration is ``CFG`` of its
``config`` or ``_config`` module, else its ``_config.yaml`` file; it is merged
under what the configuration sets already.

Both the CLI and the server use this module; it imports neither.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from importlib.resources import files
from pathlib import Path

from distkv.util import combine_dict

__all__ = ["EXT_PACKAGE", "NO_LOAD", "enabled_extensions", "ext_config", "merge_ext_config"]

EXT_PACKAGE = "distkv_ext"
#: An extension whose directory holds this file is not loaded.
NO_LOAD = ".no_load"


def _find(modname: str) -> importlib.machinery.ModuleSpec | None:
    try:
        return importlib.util.find_spec(modname)
    except ImportError:
        return None


def enabled_extensions(sub: str | None = None) -> dict[str, str]:
    """Installed, enabled extensions: name -> package, or ``<package>.<sub>`` if
    ``sub`` is given (then only extensions that have that module count)."""
    try:
        ns = importlib.import_module(EXT_PACKAGE)
    except ImportError:
        return {}
    found: dict[str, str] = {}
    for info in pkgutil.iter_modules(getattr(ns, "__path__", ())):
        if not info.ispkg or info.name in found:
            continue
        pkg = f"{EXT_PACKAGE}.{info.name}"
        spec = _find(pkg)
        if spec is None or any(
            (Path(loc) / NO_LOAD).exists() for loc in spec.submodule_search_locations or ()
        ):
            continue
        if sub is None:
            found[info.name] = pkg
        elif _find(f"{pkg}.{sub}") is not None:
            found[info.name] = f"{pkg}.{sub}"
    return found


def ext_config(name: str) -> dict | None:
    """The configuration that extension ``name`` ships, or None."""
    pkg = f"{EXT_PACKAGE}.{name}"
    for mod in ("config", "_config"):
        if _find(f"{pkg}.{mod}") is not None:
            cfg = getattr(importlib.import_module(f"{pkg}.{mod}"), "CFG", None)
            return cfg if isinstance(cfg, dict) else None
    try:
        res = files(pkg).joinpath("_config.yaml")
    except (ImportError, TypeError):
        return None
    if not res.is_file():
        return None
    from distkv.util.yaml import yload

    data = yload(res.read_text())
    return data if isinstance(data, dict) else None


def merge_ext_config(cfg: dict, name: str) -> None:
    """Merge the configuration of extension ``name`` into ``cfg`` in place; what
    ``cfg`` sets already wins."""
    extra = ext_config(name)
    if not extra:
        return
    from distkv.config import to_attrdict

    merged = to_attrdict(combine_dict(cfg, extra))
    cfg.clear()
    cfg.update(merged)
