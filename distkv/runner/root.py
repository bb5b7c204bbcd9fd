"""Runner roots: the processes that start jobs (09 §4).

:class:`AnyRunnerRoot`, :class:`SingleRunnerRoot` and :class:`AllRunnerRoot`
mirror the job records of one group (:mod:`distkv.runner.paths`), mirror
their states, and start each job when :func:`~distkv.runner.schedule.next_start`
says so. The runners of a group coordinate with an asyncactor
(:class:`~distkv.actor.ClientActor`) on the group's topic.

Any-node groups
    A runner starts jobs only while it is *in charge*: from its actor's
    ``TagEvent`` until ``gap`` seconds after another member's ping (or a
    ``DetagEvent``) showed that the turn passes on. The next runner is
    tagged ``gap`` after its ping, so the turn is handed over without a
    pause in which nobody starts due jobs. Around a hand-over two runners
    may briefly be in charge; the state write that claims a job
    (conditional on the state's chain) lets only one of them start it.

    A runner that is not heard of for ``(cycle + 2.5·gap) · (members + 2.5)``
    seconds is dead (``members``: the runners the actor has seen). The runner
    in charge then clears the ``node`` of the jobs the dead one ran, records
    an error "Runner killed: NAME" for each and counts two failures, so such
    a job starts again ``delay · backoff²`` seconds later.

    **Failover time**: after a runner dies, its jobs run again elsewhere
    within ``(cycle + 2.5·gap) · (members + 2.5)`` seconds after its last
    message, plus up to ``2 · (cycle + 2.5·gap)`` until another runner is in
    charge (if the dead one was), plus the job's ``delay · backoff²``. With
    the default actor (``runner.actor``: cycle 20, gap 1.5) and three runners
    that is at most about 130 + 48 s plus the retry delay (121 s for a job
    with the default delay and backoff); with cycle 1 and gap 0.3 (as in the
    tests) about 10 + 3.5 s plus the retry delay.

Single-node groups (``-n NODE``)
    The runner for NODE starts NODE's jobs on time, by itself.

All-node groups (``-n -``)
    Every runner of the group runs every job, with a state subtree of its own.

Jobs start on time (plus ``runner.start_delay`` between two starts), except
that a new any-node group's first runner is in charge only after its first
turn, about ``2 · cycle + 2.5 · gap`` after it started.

A runner that stops (SIGTERM) marks its running jobs as interrupted, which
makes the next runner in charge start them at once. On start, a runner
resets the states that still name it (left over from a crash) with an
error "Runner restarted: NAME" and two failures.

Without a broadcast backend (a standalone server) there is no actor: each
runner considers itself alone and in charge, and the conditional claims
keep a job from starting twice; dead runners are not detected then.
"""

from __future__ import annotations

import logging
import math
import os
import time
from typing import TYPE_CHECKING, Any, ClassVar

import anyio
from asyncactor import DetagEvent, PingEvent, TagEvent

from distkv.actor import (
    ActorState,
    ClientActor,
    DetachedState,
    NoMessageBackend,
    group_state,
)
from distkv.config import to_attrdict
from distkv.exceptions import DistKVError, ServerError
from distkv.obj import ClientEntry, ClientRoot
from distkv.obj.handlers import serve_root
from distkv.util import NotGiven, combine_dict
from distkv.util.path import P, Path

from .entry import RunnerEntry, StateEntry, StateRoot
from .execute import JobRun
from .paths import DEFAULT_GROUP, actor_topic, kind_of, state_prefix
from .schedule import KILLED_PENALTY, MAX_FAILURES, next_start

if TYPE_CHECKING:
    from distkv.client import Client
    from distkv.code import CodeEntry, CodeRoot
    from distkv.errors import ErrorRoot

__all__ = ["RunnerRoot", "AnyRunnerRoot", "SingleRunnerRoot", "AllRunnerRoot", "runner_class"]

logger = logging.getLogger(__name__)

#: Actor parameters that asyncactor understands (other keys stay out of its messages).
ACTOR_KEYS = ("cycle", "gap", "nodes", "splits", "n_hosts", "version", "force_in", "override")
#: Used when the configuration has no ``runner.actor.gap``.
DEFAULT_GAP = 1.5


def _has_leaf(exc: BaseException, cls: type[BaseException]) -> BaseException | None:
    """The first exception of class ``cls`` in ``exc`` (which may be a group)."""
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            found = _has_leaf(sub, cls)
            if found is not None:
                return found
        return None
    return exc if isinstance(exc, cls) else None


class RunnerRoot(ClientRoot):
    """The job records of one runner group, and the machinery that runs them.

    ``path`` is ``runner.prefix`` + the group's sub-path; ``code`` the
    :class:`~distkv.code.CodeRoot` to take procedures from (default: the
    client's), ``err`` the :class:`~distkv.errors.ErrorRoot` for failures,
    ``nodes`` the expected group size (for :class:`~distkv.actor.CompleteState`),
    ``name`` this runner's name (default: the client's name).
    """

    CFG = "runner"
    #: ``any``, ``single`` or ``all``.
    KIND: ClassVar[str] = ""

    def __init__(
        self,
        client: Client,
        path: Any,
        *,
        code: CodeRoot | None = None,
        err: ErrorRoot | None = None,
        nodes: int = 0,
        name: str | None = None,
        **kw: Any,
    ):
        super().__init__(client, path, **kw)
        if "prefix" not in self._cfg or "state" not in self._cfg:
            section = client.config.get("runner") or {}
            self._cfg = to_attrdict(combine_dict(dict(self._cfg), section))
        self.runner_name: str = name or client.client_name
        self.code: CodeRoot = code  # type: ignore[assignment]  (set in run_starting)
        self.err = err
        self.nodes = nodes
        self.states: StateRoot | None = None
        self.actor: ClientActor | None = None
        #: The group's connectivity (pushed to running jobs when it changes).
        self.group_state: ActorState | None = None
        #: Whether this runner starts jobs now.
        self.in_charge = False
        self._running: dict[Path, JobRun] = {}
        self._wake = anyio.Event()
        self._born = time.monotonic()
        rel = self._path[len(P(self._cfg.get("prefix", ()))):]
        #: The group's path below ``runner.prefix``, e.g. ``any.default``.
        self.group_path: Path = rel
        #: The group's name.
        self.group: Any = rel[-1] if rel else DEFAULT_GROUP
        #: For single-node groups: the node they are for.
        self.node: Any = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._path} as {self.runner_name}>"

    @classmethod
    def child_type(cls, name: Any) -> type[ClientEntry]:
        return RunnerEntry

    @classmethod
    async def as_handler(  # type: ignore[override]
        cls, client: Client, subpath: Any = (), cfg: dict | None = None,
        code: CodeRoot | None = None, nodes: int = 0, **kw: Any,
    ) -> RunnerRoot:
        """The client's runner for ``subpath`` (below ``runner.prefix``, e.g.
        ``("any", "default")``), started and loaded."""
        return await super().as_handler(  # type: ignore[return-value]
            client, cfg=cfg, subpath=subpath, code=code, nodes=nodes, **kw
        )

    # --- the group ---------------------------------------------------------------------

    @property
    def cli_node(self) -> str | None:
        """The CLI's ``-n`` value for this group."""
        return None

    def _state_path(self) -> Path:
        return state_prefix(self._cfg, self.cli_node, self.group, self.runner_name)

    def _actor_cfg(self) -> dict:
        acfg = self._cfg.get("actor") or {}
        res = {k: acfg[k] for k in ACTOR_KEYS if k in acfg}
        res.setdefault("gap", DEFAULT_GAP)
        return res

    def _actor_value(self) -> float:
        return 0

    def state_of(self, job: RunnerEntry, create: bool = False) -> StateEntry | None:
        """The state entry of ``job`` (created locally if ``create``)."""
        states = self.states
        if states is None:
            return None
        st = states.follow(job.subpath, create=create, empty_ok=True)
        return st if isinstance(st, StateEntry) else None

    # --- starting and stopping -----------------------------------------------------------

    async def run_starting(self) -> None:
        from distkv.code import CodeRoot
        from distkv.errors import ErrorRoot

        if self.err is None:
            self.err = await self.helper_root(ErrorRoot)  # type: ignore[assignment]
        if self.code is None:
            self.code = await self.helper_root(CodeRoot)  # type: ignore[assignment]
        self.code.add_listener(self._code_changed)
        self.states = StateRoot(self.client, self._state_path(), runner=self, cfg=self._cfg)
        assert self._tg is not None
        await self._tg.start(serve_root, self.states, self._fail)

    async def running(self) -> None:
        await self.spawn(self._run_actor)
        await self.spawn(self._scheduler)
        ping = self._cfg.get("ping")
        if isinstance(ping, (int, float)) and ping:
            await self.spawn(self._keepalive, float(ping))

    # --- hooks from the entries ---------------------------------------------------------------

    def job_changed(self, job: RunnerEntry) -> None:
        """A job record changed: stop a run that must not go on, rethink the schedule."""
        run = self._running.get(job.subpath)
        if run is not None:
            value = job.value
            if value is NotGiven:
                run.stop("deleted")
            elif not job.__dict__.get("target"):
                run.stop("off")
            elif job.code_path != run.code_path:
                run.stop("code")
        self.wake()

    def state_changed(self, state: StateEntry) -> None:
        """A state record changed: a run whose state names someone else stops."""
        rel = state.subpath
        run = self._running.get(rel)
        if run is not None and run.started and state.__dict__.get("node") != self.runner_name:
            run.stop("taken")
        self.wake()

    def _code_changed(self, code: CodeEntry) -> None:
        for run in list(self._running.values()):
            if run.code_path == code.subpath and run.generation not in (-1, code.generation):
                run.stop("code")
        self.wake()

    def job_ended(self, run: JobRun) -> None:
        rel = run.entry.subpath
        if self._running.get(rel) is run:
            del self._running[rel]
        self.wake()

    def wake(self) -> None:
        """Look at the schedule again (soon)."""
        self._wake.set()

    def may_start(self) -> bool:
        """Whether this runner starts due jobs now."""
        return self.in_charge

    # --- errors -----------------------------------------------------------------------------

    async def record_error(self, path: Path, **kw: Any) -> None:
        """Record a problem of job ``path`` (subsystem ``run``); never raises."""
        try:
            assert self.err is not None
            await self.err.record_error("run", path, **kw)
        except (DistKVError, AssertionError) as exc:
            logger.warning("Could not record an error of %s: %r", path, exc)

    async def record_working(self, path: Path) -> None:
        """Job ``path`` works: resolve its open error record; never raises."""
        try:
            if self.err is not None:
                await self.err.record_working("run", path)
        except DistKVError as exc:
            logger.warning("Could not resolve the error of %s: %r", path, exc)

    # --- the actor ---------------------------------------------------------------------------

    async def _run_actor(self) -> None:
        topic = actor_topic(self.client.config, self.cli_node, self.group)
        try:
            async with ClientActor(self.client, self.runner_name, topic,
                                   self._actor_cfg()) as act:
                self.actor = act
                act.transport.listeners.append(self._actor_msg)
                await act.set_value(self._actor_value())
                act.set_ready()
                self._set_group_state(group_state(act.history, self.runner_name, self.nodes))
                async for event in act:
                    await self._actor_event(act, event)
        except Exception as exc:
            if not _has_leaf(exc, NoMessageBackend):
                raise
            logger.warning(
                "%s: no message backend (%s): running alone, without coordination",
                self, _has_leaf(exc, NoMessageBackend),
            )
            self.actor = None
            self._set_group_state(DetachedState())
            self._alone()
            await anyio.sleep_forever()
        finally:
            self.actor = None

    def _alone(self) -> None:
        """There is no actor: act as the only member of the group."""

    def _actor_msg(self, msg: dict) -> None:
        """Every actor message, as it arrives (before the actor looks at it)."""

    async def _actor_event(self, act: ClientActor, event: Any) -> None:
        self._set_group_state(group_state(act.history, self.runner_name, self.nodes, event))

    def _set_group_state(self, state: ActorState) -> None:
        if state == self.group_state:
            self.group_state = state
            return
        self.group_state = state
        for run in list(self._running.values()):
            run.push(state)

    def dead_after(self) -> float:
        """Seconds of silence after which a member of the group counts as dead."""
        act = self.actor
        if act is None:
            return math.inf
        members = max(len(act.history), 1)
        return act.cycle_time_max * (members + 2.5)

    def is_dead(self, node: Any) -> bool:
        """Whether runner ``node`` has not been heard of for too long."""
        act = self.actor
        if act is None or node == self.runner_name:
            return False
        seen = act.last_seen.get(node, self._born)
        return time.monotonic() - seen > self.dead_after()

    async def _keepalive(self, interval: float) -> None:
        """Tell the world that this runner lives: on topic ``run`` (interval < 0)
        or as ``alive`` in the state root's value (interval > 0)."""
        topic = actor_topic(self.client.config, self.cli_node, self.group)
        while True:
            now = time.time()
            try:
                if interval < 0:
                    await self.client.msg_send(
                        "run", {"group": topic, "time": now, "node": self.runner_name}
                    )
                elif self.states is not None:
                    old = self.states.value
                    val = dict(old) if isinstance(old, dict) else {}
                    val["alive"] = now
                    await self.states.update(val)
            except ServerError as exc:
                if not str(exc).startswith("NoBackendError"):
                    logger.warning("%s: keepalive failed: %r", self, exc)
            await anyio.sleep(abs(interval))

    # --- scheduling ------------------------------------------------------------------------

    async def _scheduler(self) -> None:
        try:
            await self._reset_leftovers()
            while True:
                self._wake = anyio.Event()
                wait = math.inf
                if self.may_start():
                    wait = await self._scan()
                    if wait == 0:
                        # one start per start_delay: what the start itself changes
                        # (the claim's echo, …) must not cut this short
                        await anyio.sleep(float(self._cfg.get("start_delay") or 0))
                        continue
                with anyio.move_on_after(wait):
                    await self._wake.wait()
        finally:
            self.code.remove_listener(self._code_changed)

    def jobs(self) -> list[RunnerEntry]:
        """The job records of the group."""
        return [e for e in self.all_children if isinstance(e, RunnerEntry) and e.is_job]

    async def _scan(self) -> float:
        """Start the first due job (returns 0) or return the seconds until one is due."""
        now = time.time()
        soonest = math.inf
        for job in self.jobs():
            rel = job.subpath
            if rel in self._running:
                continue
            state = self.state_of(job)
            sval = state.value if state is not None and isinstance(state.value, dict) else None
            if sval is not None and sval.get("node") is not None and self.is_dead(sval["node"]):
                await self._runner_died(job, state, sval["node"], "Runner killed")  # type: ignore[arg-type]
                continue
            t, reason = next_start(job.value, sval)
            await self._note_schedule(job, state, t, reason)
            if t is None:
                continue
            if t <= now:
                await self._start(job)
                return 0
            soonest = min(soonest, t - now)
        return soonest

    async def _note_schedule(self, job: RunnerEntry, state: StateEntry | None,
                             t: float | None, reason: str) -> None:
        """Store when the job starts next (``computed``) and why (``reason``)."""
        if reason == "running" or (t is None and state is None):
            return
        if state is None:
            state = self.state_of(job, create=True)
        assert state is not None
        own = state.__dict__
        if own.get("computed") == t and own.get("reason") == reason:
            return
        try:
            await state.save_fields(owner=None, computed=t, reason=reason)
        except DistKVError as exc:
            logger.warning("%s: could not note the schedule of %s: %r", self, job.subpath, exc)

    async def _start(self, job: RunnerEntry) -> None:
        state = self.state_of(job, create=True)
        assert state is not None
        run = JobRun(self, job, state)
        rel = job.subpath
        self._running[rel] = run
        try:
            claimed = await run.claim()
        except BaseException:
            del self._running[rel]
            raise
        if not claimed:
            if self._running.get(rel) is run:
                del self._running[rel]
            return
        logger.info("%s: starting %s", self, rel)
        await self.spawn(run.run)

    async def _runner_died(self, job: RunnerEntry, state: StateEntry, node: Any,
                           why: str) -> None:
        """``node`` stopped without telling: clear its claim on ``job``, count two failures."""
        text = f"{why}: {node}"
        logger.warning("%s: job %s: %s", self, job.subpath, text)
        failures = state.__dict__.get("backoff") or 0
        if await state.save_fields(
            owner=node, node=None, stopped=time.time(), error=text,
            backoff=min(failures + KILLED_PENALTY, MAX_FAILURES),
        ):
            await self.record_error(job._path, comment=text, message=text)

    async def _reset_leftovers(self) -> None:
        """States that name this runner but aren't running here: a previous life of it."""
        for job in self.jobs():
            if job.subpath in self._running:
                continue
            state = self.state_of(job)
            if state is not None and state.__dict__.get("node") == self.runner_name:
                await self._runner_died(job, state, self.runner_name, "Runner restarted")


class AnyRunnerRoot(RunnerRoot):
    """Jobs that run on any one runner of a group (started by the one in charge)."""

    KIND = "any"

    def __init__(self, client: Client, path: Any, **kw: Any):
        super().__init__(client, path, **kw)
        #: While handing over: the (monotonic) time the turn ends.
        self._release_at: float | None = None

    def may_start(self) -> bool:
        release = self._release_at
        if release is not None and time.monotonic() >= release:
            self._release_at = None
            self.in_charge = False
            logger.debug("%s: handed over", self)
        return self.in_charge

    def _hand_over(self) -> None:
        """Another runner's turn begins: stay in charge until it is tagged."""
        if not self.in_charge or self._release_at is not None:
            return
        act = self.actor
        gap = act._gap if act is not None else 0.0  # noqa: SLF001 (the agreed tag delay)
        self._release_at = time.monotonic() + gap

    def _actor_value(self) -> float:
        # the load headroom: of colliding pings, the less busy runner wins
        try:
            load = os.getloadavg()[0] / (os.cpu_count() or 1)
        except OSError:
            return 50.0
        return round(max(0.0, 100.0 * (1.0 - min(load, 1.0))), 1)

    def _alone(self) -> None:
        self.in_charge = True
        self.wake()

    def _actor_msg(self, msg: dict) -> None:
        # another runner's ping that follows the last one we saw: the turn passed on
        if msg.get("t") != "ping" or msg.get("node") == self.runner_name or not self.in_charge:
            return
        act = self.actor
        hist = msg.get("history") or ()
        if act is not None and list(hist[1:2]) == act.history[0:1]:
            self._hand_over()

    async def _actor_event(self, act: ClientActor, event: Any) -> None:
        if isinstance(event, TagEvent):
            if not self.in_charge:
                logger.debug("%s: in charge", self)
            self.in_charge = True
            self._release_at = None
            await act.set_value(self._actor_value())
            self.wake()
        elif isinstance(event, DetagEvent) or (
            isinstance(event, PingEvent) and event.node != self.runner_name
        ):
            self._hand_over()
        await super()._actor_event(act, event)


class SingleRunnerRoot(RunnerRoot):
    """The jobs of one node (``-n NODE``), started on time by that node's runner."""

    KIND = "single"

    def __init__(self, client: Client, path: Any, **kw: Any):
        super().__init__(client, path, **kw)
        rel = self.group_path
        self.node = rel[-2] if len(rel) >= 2 else self.runner_name
        self.in_charge = True

    @property
    def cli_node(self) -> str | None:
        return self.node

    def is_dead(self, node: Any) -> bool:
        return False  # only runners for this node run its jobs: no one else to take over


class AllRunnerRoot(RunnerRoot):
    """Jobs that every runner of a group runs, each with its own states."""

    KIND = "all"

    def __init__(self, client: Client, path: Any, **kw: Any):
        super().__init__(client, path, **kw)
        self.in_charge = True

    @property
    def cli_node(self) -> str | None:
        return "-"

    def is_dead(self, node: Any) -> bool:
        return False  # the states are ours alone


def runner_class(node: str | None) -> type[RunnerRoot]:
    """The root class for the CLI's ``-n`` value (``None``: any, ``-``: all, else single)."""
    return {"any": AnyRunnerRoot, "all": AllRunnerRoot, "single": SingleRunnerRoot}[kind_of(node)]
