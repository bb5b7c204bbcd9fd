"""The job runner: stored procedures run on one, any or all nodes (09).

A job is a record below ``runner.prefix`` that names a procedure (below
``codes.prefix``, see :mod:`distkv.code`) and when to run it; runner
processes (``distkv client run all``) start jobs, keep each job's state in
the tree below ``runner.state``, and record failures as error records
(:mod:`distkv.errors`). From Python::

    async with open_client() as client:
        runner = await AnyRunnerRoot.as_handler(client, subpath=("any", "default"))
        await anyio.sleep_forever()     # runs the group's jobs

The parts:

* :mod:`.paths` — where a group's jobs, states and actor topic are;
* :mod:`.schedule` — when a job starts next (pure rules);
* :mod:`.entry` — job records and states as mirrored entries;
* :mod:`.execute` — one run of a job: claim, call, record the outcome;
* :mod:`.admin` — ``_self``, the :class:`CallAdmin` of a running job;
* :mod:`.messages` — what a job finds on its ``_info`` queue;
* :mod:`.root` — the runner roots and how they coordinate (with failover times).

The group states (``CompleteState`` …) live in :mod:`distkv.actor`.
"""

from __future__ import annotations

from .admin import CallAdmin, Timer
from .entry import RunnerEntry, StateEntry, StateRoot
from .execute import CLASSES, JobRun
from .messages import (
    ChangeMsg,
    ErrorRecorded,
    InfoOverflowError,
    InfoQueue,
    MQTTmsg,
    ReadyMsg,
    RunnerMsg,
    TimerMsg,
)
from .paths import DEFAULT_GROUP, actor_topic, group_subpath, job_prefix, kind_of, state_prefix
from .root import AllRunnerRoot, AnyRunnerRoot, RunnerRoot, SingleRunnerRoot, runner_class
from .schedule import next_start, retry_delay

__all__ = [
    "AllRunnerRoot",
    "AnyRunnerRoot",
    "CLASSES",
    "CallAdmin",
    "ChangeMsg",
    "DEFAULT_GROUP",
    "ErrorRecorded",
    "InfoOverflowError",
    "InfoQueue",
    "JobRun",
    "MQTTmsg",
    "ReadyMsg",
    "RunnerEntry",
    "RunnerMsg",
    "RunnerRoot",
    "SingleRunnerRoot",
    "StateEntry",
    "StateRoot",
    "Timer",
    "TimerMsg",
    "actor_topic",
    "group_subpath",
    "job_prefix",
    "kind_of",
    "next_start",
    "retry_delay",
    "runner_class",
    "state_prefix",
]
