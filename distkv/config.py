"""Configuration: built-in defaults, config files, ``-C`` overrides.

The defaults ship as ``distkv/default.yaml``. :func:`load_config` merges a
config file over them and applies ``key.path=value`` overrides; the result is
a plain nested dict (mappings are :class:`~distkv.util.attrdict`).
Dynamic in-tree configuration (for clients) is handled by the client.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable
from functools import cache
from importlib.resources import files
from pathlib import Path as FSPath
from typing import Any

from distkv.util import attrdict, combine_dict

__all__ = ["CONFIG_FILES", "default_config", "load_config", "apply_override", "to_attrdict"]

CONFIG_FILES = (
    "~/config/distkv.cfg",
    "~/.config/distkv.cfg",
    "~/.distkv.cfg",
    "/etc/distkv/distkv.cfg",
    "/etc/distkv.cfg",
)


class ConfigError(ValueError):
    """A configuration file or override is not usable."""


def to_attrdict(d: Any) -> Any:
    """Recursively turn dicts into attrdicts (lists are kept, items converted)."""
    if isinstance(d, dict):
        return attrdict((k, to_attrdict(v)) for k, v in d.items())
    if isinstance(d, list):
        return [to_attrdict(v) for v in d]
    return d


@cache
def _defaults() -> dict:
    from distkv.util.yaml import yload

    return yload(files("distkv").joinpath("default.yaml").read_text())


def default_config() -> attrdict:
    """A fresh copy of the built-in defaults."""
    return to_attrdict(copy.deepcopy(_defaults()))


def find_config_file() -> str | None:
    """The first existing, readable file of the documented search order."""
    for name in CONFIG_FILES:
        fn = os.path.expanduser(name)
        if os.path.isfile(fn) and os.access(fn, os.R_OK):
            return fn
    return None


def read_config_file(fn: str) -> dict:
    """Read one YAML config file; an empty file is an empty mapping."""
    from distkv.util.yaml import yload

    try:
        text = FSPath(fn).read_text()
    except OSError as exc:
        raise ConfigError(f"Cannot read config file {fn}: {exc.strerror}") from None
    try:
        data = yload(text)
    except Exception as exc:  # yaml errors have long multi-line texts
        raise ConfigError(f"Config file {fn} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {fn} must contain a mapping")
    return data


def apply_override(cfg: dict, spec: str) -> None:
    """Apply one ``key.path=value`` (set) or ``key.path`` (delete) override in place.

    The key is a path in distkv path syntax; the value is evaluated as a
    restricted Python literal, falling back to the plain string.
    """
    from distkv.util.evaluate import literal_eval
    from distkv.util.path import P

    key, eq, raw = spec.partition("=")
    try:
        path = P(key)
    except ValueError as exc:
        raise ConfigError(f"Bad config key {key!r}: {exc}") from None
    if not path:
        raise ConfigError("A config override needs a key")
    if eq:
        try:
            value: Any = literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
    d = cfg
    for elem in path[:-1]:
        nxt = d.get(elem)
        if not isinstance(nxt, dict):
            if not eq:
                return
            nxt = d[elem] = attrdict()
        d = nxt
    if eq:
        d[path[-1]] = to_attrdict(value)
    else:
        d.pop(path[-1], None)


def load_config(
    cfg_file: str | None = None, overrides: Iterable[str] = (), *, search: bool = True
) -> attrdict:
    """Build the effective configuration.

    ``cfg_file`` names a file explicitly (``/dev/null`` = none); otherwise the
    search order of :data:`CONFIG_FILES` applies if ``search`` is true.
    """
    cfg = default_config()
    if cfg_file is None and search:
        cfg_file = find_config_file()
    if cfg_file is not None:
        cfg = to_attrdict(combine_dict(read_config_file(cfg_file), cfg))
    for spec in overrides:
        apply_override(cfg, spec)
    return cfg
