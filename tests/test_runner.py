"""The job runner (``distkv.runner``, ``distkv client run|job …``) with real processes.

A server on a real mosquitto broker, runner processes (``distkv client run
all``) with short actor cycles, and the CLI the way the tutorial uses it.
The pure parts (scheduling rules, the ``_info`` queue, group states) are
tested directly first.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path as FSPath
from typing import Any

import anyio
import pytest
from brokers import Mosquitto
from procs import ServerProc, base_config, distkv_cmd

from distkv.actor import BrokenState, CompleteState, DetachedState, PartialState, group_state
from distkv.client import Client, open_client
from distkv.runner import InfoOverflowError, InfoQueue, next_start, retry_delay
from distkv.util.path import P
from distkv.util.yaml import yload

# Short actor cycles: a lone runner is in charge after about 2.5 s, a dead one
# is noticed after (cycle + 2.5·gap)·(members + 2.5) = 1.75·5.5 ≈ 10 s.
ACTOR = ["-C", "runner.actor.cycle=1", "-C", "runner.actor.gap=0.3",
         "-C", "runner.start_delay=0.1"]
JOBS = P(":.distkv.run")
STATES = P(":.distkv.state")

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# --- the pure parts --------------------------------------------------------------------------


def test_next_start_rules() -> None:
    job = {"code": ("x",), "target": 100.0}
    assert next_start({"target": 100}, None) == (None, "no code")
    assert next_start(job, None) == (100.0, "target")
    assert next_start(job, {"node": "n1", "started": 1}) == (None, "running")
    assert next_start({**job, "target": None}, None) == (None, "off")
    assert next_start({**job, "target": 0}, {"started": 5}) == (None, "off")
    done = {"started": 100.0, "stopped": 101.0}
    assert next_start(job, done) == (None, "done")
    assert next_start({**job, "target": 150.0}, done) == (150.0, "target")
    assert next_start({**job, "repeat": 5}, done) == (106.0, "repeat")
    assert next_start(job, {**done, "interrupted": True}) == (101.0, "interrupted")
    # failures: stopped + delay * backoff^n, before repeat
    failed = {**done, "backoff": 3}
    assert next_start({**job, "delay": 2, "backoff": 2, "repeat": 5}, failed) == (117.0, "retry")
    assert next_start(job, failed) == (101.0 + 100 * 1.1**3, "retry")
    assert retry_delay({"delay": 1, "backoff": 10}, 400) == 1e20  # capped at 20 failures


def test_info_queue_overflow() -> None:
    async def main() -> None:
        q = InfoQueue(3)
        for i in range(3):
            q.put(i)
        assert [await q.get() for _ in range(2)] == [0, 1]
        q.put(3)
        q.put(4)
        assert q.qsize() == 3
        q.put(5)  # one too many: the job fell behind
        assert q.overflowed
        assert await q.get() is None
        q.put(6)
        assert q.empty()
        q2 = InfoQueue(1)
        q2.put("a")
        q2.put("b")
        with pytest.raises(InfoOverflowError, match="more than 1 messages behind"):
            async for _ in q2:
                pass

    anyio.run(main)


def test_group_state() -> None:
    assert isinstance(group_state([], "a", 3), BrokenState)
    assert isinstance(group_state(["a"], "a", 3), DetachedState)
    assert isinstance(group_state(["b", "a"], "a", 3), PartialState)
    assert isinstance(group_state(["c", "b", "a"], "a", 3), CompleteState)
    assert isinstance(group_state(["c", "b", "a"], "a", 0), PartialState)


# --- processes -------------------------------------------------------------------------------


class Runner:
    """A ``distkv client [-C connect.name=NAME] run ARGS… all`` process, output in a file."""

    def __init__(self, server: ServerProc, name: str, *args: str, directory: FSPath,
                 verb: tuple[str, ...] = ("run",), run: str = "all",
                 conf: tuple[str, ...] = ()):
        self.name = name
        self.log = directory / f"runner-{name}-{time.monotonic_ns()}.log"
        overrides = [f"connect.name={name}", *conf]
        cmd = distkv_cmd(*base_config(server.port, [*server.global_args,
                                                    *(a for o in overrides for a in ("-C", o))]),
                         "client", *verb, *args, run)
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                         env=dict(os.environ, PYTHONUNBUFFERED="1"))

    @property
    def output(self) -> str:
        return self.log.read_text()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


@pytest.fixture(scope="module")
def broker() -> Iterator[Mosquitto]:
    with Mosquitto() as b:
        yield b


@pytest.fixture
def server(broker: Mosquitto) -> Iterator[ServerProc]:
    """A fresh server on the broker: job records, states and errors are global."""
    with ServerProc(["-I", "x", "test_0"],
                    global_args=["-C", f"server.mqtt.uri={broker.uri}", *ACTOR]) as srv:
        yield srv


@pytest.fixture
def runners(server: ServerProc, tmp_path: FSPath) -> Iterator[Callable[..., Runner]]:
    """``runners(name, *args)`` starts a runner; all are stopped after the test."""
    started: list[Runner] = []

    def start(name: str, *args: str, **kw: Any) -> Runner:
        r = Runner(server, name, *args, directory=tmp_path, **kw)
        started.append(r)
        return r

    yield start
    for r in started:
        r.stop(signal.SIGKILL)


def cli(server: ServerProc, *args: str, input: str | None = None, rc: int = 0) -> str:
    res = server.client(*args, input=input)
    assert res.returncode == rc, (res.stdout, res.stderr)
    return res.stdout if rc == 0 else res.stderr


@asynccontextmanager
async def connect(server: ServerProc) -> AsyncIterator[Client]:
    async with open_client(connect={"host": "127.0.0.1", "port": server.port}) as client:
        yield client


async def wait_value(client: Client, path: Any, pred: Callable[[Any], bool],
                     within: float = 15) -> Any:
    """Poll ``path`` until its value satisfies ``pred``; returns the value."""
    value = None
    with anyio.move_on_after(within):
        while True:
            value = (await client.get(P(path))).get("value")
            if value is not None and pred(value):
                return value
            await anyio.sleep(0.05)
    raise AssertionError(f"{path}: still {value!r} after {within} s")


# --- the tutorial ------------------------------------------------------------------------------


async def test_tutorial_answer(server: ServerProc, runners: Callable[..., Runner]) -> None:
    cli(server, "code", "set", "the.answer", input='print("Forty-Two!")\nreturn 42\n')
    cli(server, "run", "set", "-c", "the.answer", "-t", "0", "-i", "the question",
        "a.question")
    runner = runners("r1")
    async with connect(server) as client:
        state = await wait_value(client, STATES + ("any", "default", "a", "question"),
                                 lambda v: v.get("result") == 42)
        assert state["node"] is None
        assert state["backoff"] == 0
        assert state["stopped"] >= state["started"]
        await anyio.sleep(1.5)  # a one-shot job does not run again
        again = (await client.get(STATES + ("any", "default", "a", "question"))).value
        assert again["started"] == state["started"]
        job = (await client.get(JOBS + ("any", "default", "a", "question"))).value
    assert job["info"] == "the question"  # the runner keeps keys it doesn't know (15 #43)
    assert runner.stop() == 0
    assert runner.output.count("Forty-Two!") == 1

    listed = [d for d in yload(cli(server, "run", "list", "-s"), multi=True) if d]
    assert len(listed) == 1
    assert listed[0]["path"] == P("a.question")
    assert listed[0]["value"]["code"] == P("the.answer")
    assert listed[0]["state"]["result"] == 42
    assert cli(server, "run", "list", "-t") == "a.question the.answer done\n"
    assert cli(server, "run", "state", "-r", "a.question") == "42\n"
    # 0.65's spelling
    assert yload(cli(server, "job", "at", "a.question", "state"))["result"] == 42
    assert yload(cli(server, "job", "at", "a.question", "path")) == {
        "command": P(":.distkv.run.any.default.a.question"),
        "state": P(":.distkv.state.any.default.a.question"),
    }
    assert cli(server, "run", "info") == "default\n"


async def test_repeat_timing(server: ServerProc, runners: Callable[..., Runner]) -> None:
    cli(server, "code", "set", "count.up", input=(
        "res = await _client.get(_P('counter'))\n"
        "n = res.get('value', 0) + 1\n"
        "await _client.set(_P('counter'), n)\n"
        "return n\n"))
    cli(server, "run", "set", "-c", "count.up", "-t", "0", "-r", "1", "counter")
    runners("r1")
    spath = STATES + ("any", "default", "counter")
    starts: list[float] = []
    async with connect(server) as client:
        with anyio.fail_after(20):
            async with client.watch(spath, fetch=True, max_depth=0) as w:
                async for rec in w:
                    st = rec.get("value")
                    if not st or st.get("node") is None:
                        continue
                    if not starts or st["started"] != starts[-1]:
                        starts.append(st["started"])
                    if len(starts) == 4:
                        break
        # (the next start is noted a moment after the run ended: up to start_delay)
        state = await wait_value(client, spath,
                                 lambda v: v.get("result", 0) >= 4 and "reason" in v)
        assert (await client.get(P("counter"))).value >= 4
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    # the next run starts 'repeat' seconds after the last one stopped
    assert all(0.99 <= g <= 2.0 for g in gaps), gaps
    assert state["reason"] == "repeat"


async def test_failure_backoff_and_errors(server: ServerProc,
                                          runners: Callable[..., Runner]) -> None:
    cli(server, "code", "set", "the.error", input='raise RuntimeError("Owch")\n')
    cli(server, "run", "set", "-c", "the.error", "-t", "0", "-d", "0.5", "-b", "2",
        "what.me.worry")
    runner = runners("r1")
    spath = STATES + ("any", "default", "what", "me", "worry")
    starts: dict[int, float] = {}
    async with connect(server) as client:
        with anyio.fail_after(20):
            async with client.watch(spath, fetch=True, max_depth=0) as w:
                async for rec in w:
                    st = rec.get("value")
                    if st and st.get("node") is None and st.get("backoff"):
                        starts.setdefault(st["backoff"], st["started"])
                        if len(starts) == 3:
                            break
        # retries after 0.5·2¹ = 1 s, then 0.5·2² = 2 s
        assert 0.99 <= starts[2] - starts[1] <= 2.0
        assert 1.99 <= starts[3] - starts[2] <= 3.0
        assert "RuntimeError('Owch')" in (await client.get(spath)).value["error"]

        errors = [d for d in yload(cli(server, "error", "dump"), multi=True) if d]
        assert len(errors) == 1
        assert errors[0]["subsystem"] == "run"
        assert errors[0]["path"] == P(":.distkv.run.any.default.what.me.worry")
        assert errors[0]["resolved"] is False
        assert errors[0]["count"] >= 3
        # the tutorial's view: below the runner's subtree, as one mapping
        tree = yload(cli(server, "error", "list", "-d_", ":.distkv.run.any"))
        assert tree["run"]["default"]["what"]["me"]["worry"]["_"]["resolved"] is False
        detail = next(yload(cli(server, "error", "dump", "-vv"), multi=True))["details"]
        assert "RuntimeError: Owch" in detail["r1"]["trace"]

        # fixed code: the next retry succeeds and the error is resolved
        cli(server, "code", "set", "the.error", input='return "fine"\n')
        state = await wait_value(client, spath, lambda v: v.get("result") == "fine")
        assert state["backoff"] == 0
        assert "error" not in state
    assert cli(server, "error", "dump").strip() == ""
    solved = [d for d in yload(cli(server, "error", "dump", "-a"), multi=True) if d]
    assert solved[0]["resolved"] is True
    runner.stop()
    assert "Error :.distkv.error.r1" in runner.output
    assert "RuntimeError('Owch')" in runner.output


# --- placements ----------------------------------------------------------------------------------

FOREVER = (
    "await _client.set(_P('where'), _client.client_name)\n"
    "import anyio\n"
    "await anyio.sleep(1000)\n"
)


async def test_any_runner_failover(server: ServerProc, runners: Callable[..., Runner]) -> None:
    cli(server, "code", "set", "forever", input=FOREVER)
    cli(server, "run", "set", "-c", "forever", "-t", "0", "-d", "0.5", "-b", "1", "-k", "0.5",
        "job")
    procs = {n: runners(n) for n in ("r1", "r2", "r3")}
    spath = STATES + ("any", "default", "job")
    async with connect(server) as client:
        first = (await wait_value(client, spath, lambda v: v.get("node") is not None))["node"]
        await wait_value(client, P("where"), lambda v: v == first)
        procs[first].stop(signal.SIGKILL)
        killed = time.monotonic()
        # documented bound: (1 + 2.5·0.3)·(3 + 2.5) ≈ 9.6 s after its last message the
        # silence counts, up to 2 cycles until another runner is in charge, then
        # delay·backoff² = 0.5 s: about 13.5 s. Its last ping may have been ~3 cycles ago.
        state = await wait_value(client, spath,
                                 lambda v: v.get("node") not in (None, first), within=20)
        took = time.monotonic() - killed
        second = state["node"]
        assert 5 < took < 18, took
        await wait_value(client, P("where"), lambda v: v == second)
        errors = [d for d in yload(cli(server, "error", "dump", "-a", "-v"), multi=True) if d]
        assert len(errors) == 1
        # recorded by whichever runner was in charge then
        assert [d["comment"] for d in errors[0]["details"].values()] == [
            f"Runner killed: {first}"
        ]
        # having run for ok_after (0.5 s), the job counts as healthy again
        await anyio.sleep(1)
        assert cli(server, "error", "dump").strip() == ""

        # a runner that is stopped hands its job over at once
        out = cli(server, "run", "delete", "job", rc=1)
        assert f"Job job is running on {second}. Use --force" in out
        assert procs[second].stop() == 0
        stopped = time.monotonic()
        state = await wait_value(client, spath,
                                 lambda v: v.get("node") not in (None, first, second))
        assert time.monotonic() - stopped < 6
        third = state["node"]
        await wait_value(client, P("where"), lambda v: v == third)
        cli(server, "run", "delete", "-f", "job")
        await anyio.sleep(0.5)
        assert (await client.get(spath)).get("value") is None  # the runner didn't rewrite it
    assert cli(server, "run", "list", "-s") == ""


async def states_started(client: Client, path: Any) -> dict[str, float]:
    """The ``started`` time of every job state below ``path``, by the job's last name."""
    found = {}
    async for rec in client.get_tree(P(path)):
        value = rec.get("value")
        if isinstance(value, dict) and value.get("started"):
            found[rec["path"][-1]] = value["started"]
    return found


async def test_start_delay_between_starts(server: ServerProc,
                                          runners: Callable[..., Runner]) -> None:
    cli(server, "code", "set", "noop", input="return 1\n")
    for i in range(4):
        cli(server, "run", "-n", "s1", "set", "-c", "noop", "-t", "0", f"j{i}")
    runners("s1", "-n", "s1", conf=("runner.start_delay=0.5",))
    async with connect(server) as client:
        with anyio.fail_after(20):
            while len(started := await states_started(client, STATES + ("at", "s1"))) < 4:  # noqa: ASYNC110
                await anyio.sleep(0.1)
    times = sorted(started.values())
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    # every job was due at once; one starts per start_delay
    assert all(g >= 0.45 for g in gaps), gaps


async def test_any_group_hands_over_without_a_pause(
    server: ServerProc, runners: Callable[..., Runner]
) -> None:
    # Long gaps: the next runner is tagged 0.8 s after its ping. The runner in charge
    # keeps starting jobs until then, so no job waits for the hand-over.
    slow = ("runner.actor.cycle=2.5", "runner.actor.gap=0.8", "runner.start_delay=0.01")
    cli(server, "code", "set", "noop", input="return 1\n")
    cli(server, "run", "set", "-c", "noop", "-t", "0", "warm")
    for name in ("r1", "r2", "r3"):
        runners(name, conf=slow)
    async with connect(server) as client:
        await wait_value(client, STATES + ("any", "default", "warm"),
                         lambda v: v.get("result") == 1, within=20)
        base = time.time() + 1
        targets = {f"j{i}": base + 0.25 * i for i in range(32)}  # 8 s: several hand-overs
        for name, t in targets.items():
            await client.set(JOBS + ("any", "default", "lat", name),
                             {"code": P("noop"), "target": t})
        with anyio.fail_after(30):
            while True:
                started = await states_started(client, STATES + ("any", "default", "lat"))
                if len(started) == len(targets):
                    break
                await anyio.sleep(0.2)
    late = sorted(started[name] - t for name, t in targets.items())
    assert late[0] >= 0, late
    assert late[-1] < 0.5, late  # (jobs due in a hand-over used to wait up to 0.8 s)


async def test_single_and_all_runners(server: ServerProc,
                                      runners: Callable[..., Runner]) -> None:
    cli(server, "code", "set", "who", "-A", input="return _client.client_name\n")
    for node in ("a1", "a2", "-"):
        cli(server, "run", "-n", node, "set", "-c", "who", "-t", "0", "j")
    cli(server, "run", "set", "-c", "who", "-t", "0", "j")  # for any runner: none is there
    for name in ("a1", "a2"):
        runners(name, "-n", name)
        runners(name, "-n", "-")
    async with connect(server) as client:
        for name in ("a1", "a2"):
            # a single-node job runs on its node only
            await wait_value(client, STATES + ("at", name, "default", "j"),
                             lambda v, name=name: v.get("result") == name)
            # an all-node job runs on every runner, with a state of its own
            await wait_value(client, STATES + ("all", "default", name, "j"),
                             lambda v, name=name: v.get("result") == name)
        assert (await client.get(STATES + ("any", "default", "j"))).get("value") is None
    assert yload(cli(server, "run", "-n", "-", "state", "-r", "j")) == {"a1": "a1", "a2": "a2"}
    assert cli(server, "run", "-g", "-", "info") == "a1\na2\n"
    assert cli(server, "job", "-n", "a2", "at", "j", "list", "-t") == "j who done\n"
    table = cli(server, "run", "-n", "-", "list", "-t")
    assert table == "j who a1:done a2:done\n"


def start_monitor(server: ServerProc, log: FSPath) -> subprocess.Popen:
    """``distkv client run monitor``, its output to ``log``."""
    with log.open("w") as out:
        return subprocess.Popen(
            distkv_cmd(*base_config(server.port, server.global_args), "client", "run",
                       "monitor"),
            stdout=out, stderr=subprocess.STDOUT)


WATCHER = """\
await _self.watch(_P('sensor'), fetch=True)
await _self.timer(0.2)
async for msg in _info:
    if isinstance(msg, _cls.ReadyMsg):
        await _client.set(_P('seen.ready'), msg.n)
    elif isinstance(msg, _cls.TimerMsg):
        await _client.set(_P('seen.timer'), msg.timer.delay)
    elif isinstance(msg, _cls.ActorState):
        await _client.set(_P('seen.group'), type(msg).__name__)
    elif isinstance(msg, _cls.ChangeMsg) and hasattr(msg, 'value'):
        if msg.value == 'stop':
            return 'stopped ' + str(msg.path)
        await _client.set(_P('seen.value'), msg.value)
"""


async def test_job_messages_code_change_and_monitor(
    server: ServerProc, runners: Callable[..., Runner], tmp_path: FSPath
) -> None:
    monitor_log = tmp_path / "monitor.log"
    monitor = start_monitor(server, monitor_log)
    try:
        cli(server, "data", "sensor", "set", "-v", ":", "one")
        cli(server, "code", "set", "watcher", input=WATCHER)
        cli(server, "job", "-n", "w1", "at", "watch", "set", "-c", "watcher", "-t", "0")
        runner = runners("w1", "-n", "w1")
        spath = STATES + ("at", "w1", "default", "watch")
        async with connect(server) as client:
            await wait_value(client, P("seen.value"), lambda v: v == "one")
            assert await wait_value(client, P("seen.ready"), lambda v: True) == 1
            assert await wait_value(client, P("seen.timer"), lambda v: True) == 0.2
            # the group's state: broken until the actor has pinged, then detached (alone)
            await wait_value(client, P("seen.group"), lambda v: v == "DetachedState")
            await client.set(P("sensor"), "two")
            await wait_value(client, P("seen.value"), lambda v: v == "two")
            started = (await client.get(spath)).value["started"]

            # changed code restarts the job
            cli(server, "code", "set", "watcher",
                input=WATCHER.replace("'seen.value'", "'seen.other'"))
            await wait_value(client, P("seen.other"), lambda v: v == "two")
            assert (await client.get(spath)).value["started"] > started

            await client.set(P("sensor"), "stop")
            state = await wait_value(client, spath, lambda v: "result" in v)
            assert state["result"] == "stopped sensor"
            assert state["node"] is None
        runner.stop()
    finally:
        monitor.send_signal(signal.SIGTERM)
        monitor.wait(10)
    keepalive = next(d for d in yload(monitor_log.read_text(), multi=True) if d)
    assert keepalive["node"] == "w1"
    assert keepalive["group"] == P("::distkv.run.single.w1.default")


async def test_python_api(server: ServerProc) -> None:
    from distkv.code import CodeRoot
    from distkv.runner import RunnerEntry, SingleRunnerRoot

    async with connect(server) as client:
        code = await CodeRoot.as_handler(client)
        await code.add("api.hello", "return 'hi ' + who", variables=["who"])
        await client.set(JOBS + ("at", "me", "default", "greet"),
                         {"code": P("api.hello"), "data": {"who": "you"}, "info": "say hi"})
        runner = await SingleRunnerRoot.as_handler(client, subpath=("at", "me", "default"))
        assert runner.node == "me" and runner.group == "default"
        job = runner.follow(P("greet"))
        assert isinstance(job, RunnerEntry)
        assert job.code_path == P("api.hello")
        assert (job.delay, job.backoff, job.repeat, job.target) == (100, 1.1, 0, None)
        await job.run_at(time.time())
        await wait_value(client, STATES + ("at", "me", "default", "greet"),
                         lambda v: v.get("result") == "hi you")
        assert job.state is not None and job.state.result == "hi you"
        stored = (await client.get(JOBS + ("at", "me", "default", "greet"))).value
        # run_at wrote the target, nothing else
        assert set(stored) == {"code", "data", "info", "target"}


def test_job_records_cli(server: ServerProc) -> None:
    out = cli(server, "run", "set", "-t", "0", "x", rc=2)
    assert "A new job needs its code (-c PATH)." in out
    cli(server, "run", "set", "-c", "some.code", "-t", "-", "-r", "60", "-d", "5", "-b", "2",
        "-k", "10", "-i", "a template", "-v", "name", "joe", "-e", "n", "3", "tmpl")
    tmpl = yload(cli(server, "run", "get", "tmpl"))
    assert tmpl == {"code": P("some.code"), "target": None, "repeat": 60.0, "delay": 5.0,
                    "backoff": 2.0, "ok_after": 10.0, "info": "a template",
                    "data": {"name": "joe", "n": 3}}
    # a copy with changes; -e NAME - drops a data item
    cli(server, "job", "at", "sub.copy", "set", "-C", "tmpl", "-e", "n", "-", "-i", "",
        "-t", "100")
    copy = yload(cli(server, "job", "at", "sub.copy"))
    assert copy["data"] == {"name": "joe"}
    assert "info" not in copy
    assert 90 < copy["target"] - time.time() <= 100
    assert "_target" in copy  # dates are shown as such
    table = sorted(cli(server, "run", "list", "-t").splitlines())
    assert table[0].startswith("sub.copy some.code target@")
    assert table[1] == "tmpl some.code off"
    assert cli(server, "run", "list", "-t", "sub").splitlines() == table[:1]
    folded = yload(cli(server, "run", "list", "-d", "_"))
    assert folded["sub"]["copy"]["_"]["value"]["code"] == P("some.code")
    assert yload(cli(server, "run", "get", "-s", "tmpl"))["state"] is None
    assert "No state for tmpl" in cli(server, "run", "state", "tmpl", rc=1)
    assert "'-g -' only works with 'info'" in cli(server, "run", "-g", "-", "list", rc=2)
    cli(server, "run", "delete", "tmpl")
    assert "No job at tmpl" in cli(server, "run", "get", "tmpl", rc=1)
    assert cli(server, "run", "list", "-t") == table[0] + "\n"


async def test_runner_restart_after_crash(server: ServerProc,
                                          runners: Callable[..., Runner]) -> None:
    cli(server, "code", "set", "forever", input=FOREVER)
    cli(server, "run", "-n", "s1", "set", "-c", "forever", "-t", "0", "-d", "0.5", "-b", "1",
        "job")
    spath = STATES + ("at", "s1", "default", "job")
    async with connect(server) as client:
        first = runners("s1", "-n", "s1")
        state = await wait_value(client, spath, lambda v: v.get("node") == "s1")
        first.stop(signal.SIGKILL)
        runners("s1", "-n", "s1")
        # the new runner finds its old claim, records why, and starts the job again
        again = await wait_value(client, spath, lambda v: v.get("node") == "s1"
                                 and v["started"] > state["started"])
        assert again["backoff"] == 2
        assert again["error"] == "Runner restarted: s1"
    errors = [d for d in yload(cli(server, "error", "dump", "-v"), multi=True) if d]
    assert [e["details"]["s1"]["comment"] for e in errors] == ["Runner restarted: s1"]
