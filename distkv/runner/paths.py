"""Where the jobs, states and actor topics of a runner group live (09 §1, §4).

A group is named by its kind and name: ``node=None`` → the any-node group
``<group>``; ``node="-"`` → the all-node group; any other ``node`` → the
group of jobs for that single node. With the default configuration:

===========  ==================================  =====================================
kind         jobs                                actor topic
===========  ==================================  =====================================
any          ``:.distkv.run.any.<group>``        ``:distkv/run/any/<group>``
single       ``:.distkv.run.at.<node>.<group>``  ``:distkv/run/single/<node>/<group>``
all          ``:.distkv.run.all.<group>``        ``:distkv/run/all/<group>``
===========  ==================================  =====================================

States mirror the job paths below ``runner.state``; all-node groups keep
one state subtree per runner: ``:.distkv.state.all.<group>.<runner>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from distkv.util.path import P, Path

__all__ = ["DEFAULT_GROUP", "kind_of", "group_subpath", "job_prefix", "state_prefix",
           "actor_topic"]

#: The group the CLI uses when none is given.
DEFAULT_GROUP = "default"


def kind_of(node: str | None) -> str:
    """``any``, ``all`` or ``single`` for the CLI's ``-n`` value."""
    if node is None:
        return "any"
    if node == "-":
        return "all"
    return "single"


def group_subpath(rcfg: Mapping, node: str | None, group: str) -> Path:
    """The group's path below ``runner.prefix`` (and ``runner.state``)."""
    sub = rcfg.get("sub") or {}
    kind = kind_of(node)
    if kind == "any":
        return Path(sub.get("group", "any"), group)
    if kind == "all":
        return Path(sub.get("all", "all"), group)
    return Path(sub.get("single", "at"), node, group)


def job_prefix(rcfg: Mapping, node: str | None, group: str) -> Path:
    """Where the group's job records are."""
    return P(rcfg["prefix"]) + group_subpath(rcfg, node, group)


def state_prefix(rcfg: Mapping, node: str | None, group: str, runner: Any = None) -> Path:
    """Where the group's job states are (for all-node groups: those of ``runner``)."""
    path = P(rcfg["state"]) + group_subpath(rcfg, node, group)
    if kind_of(node) == "all" and runner is not None:
        path = path | runner
    return path


def actor_topic(cfg: Mapping, node: str | None, group: str) -> Path:
    """The backend topic of the group's actor (``server.root`` + ``runner.name`` + …)."""
    root = (cfg.get("server") or {}).get("root", ":distkv")
    base = P(root) if isinstance(root, str) else Path.build(root)
    base = base | (cfg.get("runner") or {}).get("name", "run")
    kind = kind_of(node)
    if kind == "single":
        return base + ("single", node, group)
    return base + (kind, group)
