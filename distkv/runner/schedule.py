"""When a job should start next: the pure scheduling rules of the runner.

:func:`next_start` looks at a job record and its state record (plain maps)
and returns ``(time, reason)``; ``time`` is ``None`` if the job is not to be
started at all. The rules, first match wins:

1. no ``code`` → never (``"no code"``);
2. the state names a ``node`` → it runs there (``"running"``);
3. ``target`` unset, ``None`` or 0 → not scheduled (``"off"``);
4. never started, or ``target`` later than the last start → at ``target``
   (``"target"``);
5. the last run was interrupted because its runner stopped → at once
   (``"interrupted"``);
6. failures (state ``backoff`` = n > 0) → at ``stopped + delay · backoff^n``
   with the job's ``delay`` and ``backoff`` factor (``"retry"``);
7. ``repeat`` > 0 → at ``stopped + repeat`` (``"repeat"``);
8. otherwise → done (``"done"``).

Defaults of job records: ``delay`` 100 s, ``backoff`` factor 1.1,
``repeat`` 0, ``ok_after`` 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "DEFAULT_DELAY",
    "DEFAULT_BACKOFF",
    "MAX_FAILURES",
    "KILLED_PENALTY",
    "next_start",
    "retry_delay",
]

DEFAULT_DELAY = 100.0
DEFAULT_BACKOFF = 1.1
#: The failure count (state ``backoff``) stops growing here.
MAX_FAILURES = 20
#: Failures counted when a job's runner died while running it.
KILLED_PENALTY = 2


def _num(value: Any, default: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return default
    return float(value)


def retry_delay(job: Mapping, failures: int) -> float:
    """Seconds after a failed run until the next try: ``delay · backoff^failures``."""
    delay = _num(job.get("delay"), DEFAULT_DELAY)
    factor = _num(job.get("backoff"), DEFAULT_BACKOFF)
    try:
        return delay * factor ** min(failures, MAX_FAILURES)
    except OverflowError:
        return float("inf")


def next_start(job: Mapping, state: Mapping | None) -> tuple[float | None, str]:
    """``(unix time, reason)`` of the job's next start, or ``(None, reason)``.

    ``job`` is the job record, ``state`` its state record (``None`` or ``{}``
    if there is none). See the module docstring for the rules.
    """
    if not job.get("code"):
        return None, "no code"
    state = state or {}
    if state.get("node") is not None:
        return None, "running"
    target = job.get("target")
    if not target or isinstance(target, bool) or not isinstance(target, (int, float)):
        return None, "off"
    started = state.get("started")
    if not isinstance(started, (int, float)) or target > started:
        return float(target), "target"
    stopped = _num(state.get("stopped"), float(started))
    if state.get("interrupted"):
        return stopped, "interrupted"
    failures = state.get("backoff")
    if isinstance(failures, int) and not isinstance(failures, bool) and failures > 0:
        return stopped + retry_delay(job, failures), "retry"
    repeat = _num(job.get("repeat"), 0.0)
    if repeat > 0:
        return stopped + repeat, "repeat"
    return None, "done"
