"""Small shared helpers: the ``NotGiven`` sentinel and ``attrdict``.

Path handling lives in :mod:`distkv.util.path`, YAML in :mod:`distkv.util.yaml`,
restricted literal evaluation in :mod:`distkv.util.evaluate`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["NotGiven", "NotGivenType", "attrdict", "combine_dict"]


class NotGivenType:
    """Type of :data:`NotGiven`: "no value here", distinct from ``None``."""

    __slots__ = ()
    _instance: NotGivenType | None = None

    def __new__(cls) -> NotGivenType:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NotGiven"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "NotGiven"


NotGiven = NotGivenType()


class attrdict(dict):  # noqa: N801  (upstream's name; user code expects it)
    """A dict whose keys can also be read and written as attributes."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None


def combine_dict(*dicts: dict, replace: bool = False) -> dict:
    """Deep-merge mappings; the first one wins unless ``replace`` is set.

    Maps are merged key by key; any other value is taken whole.
    """
    if replace:
        dicts = tuple(reversed(dicts))
    res: dict = {}
    for d in reversed(dicts):
        if d is None:
            continue
        for k, v in d.items():
            if isinstance(v, dict) and isinstance(res.get(k), dict):
                res[k] = combine_dict(v, res[k])
            elif isinstance(v, dict):
                res[k] = combine_dict(v)
            else:
                res[k] = v
    return res
