"""Job records and job states as mirrored entries: :class:`RunnerEntry`, :class:`StateEntry`.

A job record (below ``runner.prefix``) holds ``code`` (the procedure's path
below ``codes.prefix``), ``data`` (its keyword data), ``target`` (unix time
of the next start; unset/0: off), ``repeat``, ``delay``, ``backoff`` (the
retry factor) and ``ok_after``; other keys (``info`` …) are kept as they are.
Its state record (below ``runner.state``, written only by runners) holds
``started``, ``stopped``, ``node`` (who runs it now), ``backoff`` (the count
of consecutive failures), ``result``, ``error`` (the last failure),
``computed`` / ``reason`` (when and why it starts next), ``interrupted``
(its runner stopped while it ran: start it again at once).

Entries report changes to their runner root (:mod:`distkv.runner.root`),
which starts, stops and restarts jobs accordingly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from distkv.exceptions import ClientChainError
from distkv.obj import AttrClientEntry, ClientEntry, ClientRoot
from distkv.util import NotGiven
from distkv.util.path import P, Path

from .schedule import DEFAULT_BACKOFF, DEFAULT_DELAY

if TYPE_CHECKING:
    from .root import RunnerRoot

__all__ = ["RunnerEntry", "StateEntry", "StateRoot", "code_path"]

#: Retries when a state write meets a concurrent change.
SAVE_TRIES = 3


def code_path(value: Any) -> Path | None:
    """The procedure path a job record's ``code`` names (text, list or path)."""
    if isinstance(value, str):
        return P(value) if value else None
    if isinstance(value, (tuple, list)) and value:
        return Path.build(value)
    return None


class _SetAttrs(AttrClientEntry):
    """An attribute entry whose defaults (class attributes) are not written back."""

    def get_value(self, skip_none: bool = False, skip_empty: bool = False) -> Any:
        old = self.value
        res = {k: v for k, v in old.items() if k not in self.ATTRS} if isinstance(old, dict) else {}
        own = self.__dict__
        for k in self.ATTRS:
            v = own.get(k, NotGiven)
            if v is NotGiven or (skip_none and v is None):
                continue
            res[k] = v
        return res

    async def _adopt(self, value: Any, chain: Any) -> None:
        """Take the server's current ``value`` and ``chain`` (without notifying anyone)."""
        self.chain = chain
        await AttrClientEntry.set_value(self, value)


class RunnerEntry(_SetAttrs):
    """A job record (or, without a value, a node on the way to job records)."""

    ATTRS: ClassVar[tuple[str, ...]] = (
        "code", "data", "delay", "ok_after", "repeat", "backoff", "target",
    )
    code = None
    data = None
    delay = DEFAULT_DELAY
    ok_after = 0
    repeat = 0
    backoff = DEFAULT_BACKOFF
    target = None

    @classmethod
    def child_type(cls, name: Any) -> type[ClientEntry]:
        return RunnerEntry

    @property
    def is_job(self) -> bool:
        return isinstance(self.value, Mapping)

    @property
    def code_path(self) -> Path | None:
        """The path of the procedure below ``codes.prefix`` (``None``: none given)."""
        return code_path(self.__dict__.get("code"))

    @property
    def state(self) -> StateEntry | None:
        """This job's state entry on this runner (``None`` if there is none yet)."""
        root = self.root
        return root.state_of(self) if hasattr(root, "state_of") else None

    async def set_value(self, value: Any) -> None:
        await super().set_value(value)
        self._changed()

    async def seen_value(self) -> None:
        # our own change (e.g. run_at) came back
        self._changed()

    def _changed(self) -> None:
        root: RunnerRoot = self.root  # type: ignore[assignment]
        if hasattr(root, "job_changed"):
            root.job_changed(self)

    async def run_at(self, t: float | None) -> None:
        """Schedule the job to start at unix time ``t`` (``None``: switch it off)."""
        self.target = t
        await self.save()


class StateEntry(_SetAttrs):
    """The state of one job (as kept by the runner(s) of its group)."""

    ATTRS: ClassVar[tuple[str, ...]] = (
        "started", "stopped", "node", "backoff", "result", "error",
        "pinged", "computed", "reason", "interrupted",
    )
    started = None
    stopped = None
    node = None
    backoff = 0
    result = None
    error = None
    computed = None
    reason = None
    interrupted = False

    @classmethod
    def child_type(cls, name: Any) -> type[ClientEntry]:
        return StateEntry

    async def set_value(self, value: Any) -> None:
        await super().set_value(value)
        self._changed()

    async def seen_value(self) -> None:
        self._changed()

    def _changed(self) -> None:
        runner = getattr(self.root, "runner", None)
        if runner is not None:
            runner.state_changed(self)

    async def save_fields(self, owner: Any = NotGiven, wait: bool = False, **fields: Any) -> bool:
        """Set ``fields`` (``NotGiven`` removes one) and write the state.

        If somebody changed the record meanwhile, it is re-read and the
        fields are applied again — unless ``owner`` is given and the
        record's ``node`` is no longer ``owner``. Returns whether it was
        written.
        """
        for _ in range(SAVE_TRIES):
            if owner is not NotGiven and self.__dict__.get("node") != owner:
                return False
            self.assign(**fields)
            try:
                await self.save(wait=wait)
                return True
            except ClientChainError:
                cur = await self.client.get(self._path, nchain=3)
                await self._adopt(cur.get("value", NotGiven), cur.get("chain"))
        return False

    async def refresh(self) -> None:
        """Re-read the record from the server (after a failed write)."""
        cur = await self.client.get(self._path, nchain=3)
        await self._adopt(cur.get("value", NotGiven), cur.get("chain"))


class StateRoot(ClientRoot):
    """The mirrored state records of one runner (``runner`` is its :class:`RunnerRoot`)."""

    CFG = "runner"

    def __init__(self, client: Any, path: Any, *, runner: RunnerRoot | None = None, **kw: Any):
        super().__init__(client, path, **kw)
        self.runner = runner

    @classmethod
    def child_type(cls, name: Any) -> type[ClientEntry]:
        return StateEntry
