"""The in-process bus: delivery, wildcards, queues, and the faults tests can inject."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from distkv.server.backend.memory import MemoryBackend, MemoryBus, get_bus
from distkv.server.backend.topic import SLOW_GRACE, Message

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param


def pending(messages: AsyncIterator[Message]) -> list[tuple[tuple[str, ...], bytes]]:
    """Everything queued for a subscription right now."""
    out = []
    while True:
        try:
            out.append(tuple(messages.receive_nowait()))  # type: ignore[attr-defined]
        except anyio.WouldBlock:
            return out


async def test_everyone_hears_everyone_including_themselves() -> None:
    bus = MemoryBus()
    async with MemoryBackend(bus, "a") as a, MemoryBackend(bus, "b") as b:
        async with a.subscribe(("r", "update")) as ra, b.subscribe(["r", "update"]) as rb:
            await a.publish(("r", "update"), b"one")
            await b.publish(("r", "info"), b"not subscribed")
            await b.publish(["r", "update"], b"two")
            expected = [(("r", "update"), b"one"), (("r", "update"), b"two")]
            assert pending(ra) == expected
            assert pending(rb) == expected
            msg = Message(("r", "update"), b"x")
            assert (msg.topic, msg.payload) == (("r", "update"), b"x")


async def test_echo_false_subscribers_skip_their_own_backends_messages() -> None:
    bus = MemoryBus()
    async with MemoryBackend(bus, "a") as a, MemoryBackend(bus, "b") as b:
        async with a.subscribe(("t",), echo=False) as quiet, a.subscribe(("t",)) as echoed:
            await a.publish(("t",), b"mine")
            assert a.publish_nowait(("t",), b"mine too")
            await b.publish(("t",), b"theirs")
            await a.flush()  # nothing to wait for: delivery is immediate
            assert pending(quiet) == [(("t",), b"theirs")]
            assert pending(echoed) == [(("t",), b"mine"), (("t",), b"mine too"),
                                       (("t",), b"theirs")]
            bus.hold()
            await a.publish(("t",), b"held")
            bus.release()  # released messages reach everyone
            assert pending(quiet) == pending(echoed) == [(("t",), b"held")]


async def test_standalone_has_nothing_to_flush_and_refuses_to_publish() -> None:
    from distkv.server.backend.base import NoBackendError, StandaloneBackend

    alone = StandaloneBackend("no medium here")
    await alone.flush()
    with pytest.raises(NoBackendError, match="no medium here"):
        await alone.publish(("t",), b"x")
    with pytest.raises(NoBackendError, match="no medium here"):
        alone.subscribe(("t",), echo=False)


async def test_topic_elements_are_strings_and_wildcards_match() -> None:
    bus = MemoryBus()
    async with MemoryBackend(bus, "a") as a:
        async with a.subscribe(("r", "+", 1)) as one, a.subscribe(("r", "#")) as rest:
            await a.publish(("r", 5, 1), b"x")
            await a.publish(("r", "q", "1", "deeper"), b"y")
            assert pending(one) == [(("r", "5", "1"), b"x")]
            assert pending(rest) == [(("r", "5", "1"), b"x"), (("r", "q", "1", "deeper"), b"y")]


async def test_iterating_a_subscription() -> None:
    bus = MemoryBus()
    async with MemoryBackend(bus, "a") as a, a.subscribe(("t",)) as msgs:
        for i in range(3):
            await a.publish(("t",), bytes([i]))
        got = []
        with anyio.fail_after(5):
            async for _topic, payload in msgs:
                got.append(payload)
                if len(got) == 3:
                    break
        assert got == [b"\x00", b"\x01", b"\x02"]


async def test_leaving_the_subscription_stops_delivery() -> None:
    bus = MemoryBus()
    async with MemoryBackend(bus, "a") as a:
        async with a.subscribe(("t",)) as msgs:
            pass
        await a.publish(("t",), b"x")
        with pytest.raises(anyio.ClosedResourceError):
            msgs.receive_nowait()  # type: ignore[attr-defined]
        assert bus.stats.delivered == 1  # delivered to the backend, which had no taker


async def test_a_stuck_subscriber_loses_the_newest_messages_after_a_grace_period() -> None:
    bus = MemoryBus()
    async with MemoryBackend(bus, "a", queue_len=3) as a:
        async with a.subscribe(("t",)) as stuck:
            for i in range(3):
                await a.publish(("t",), bytes([i]))
            with anyio.fail_after(5):
                before = anyio.current_time()
                await a.publish(("t",), b"3")  # waits SLOW_GRACE for room, then drops
                assert anyio.current_time() - before >= SLOW_GRACE * 0.9
                before = anyio.current_time()
                await a.publish(("t",), b"4")  # dropped at once: it is known to be stuck
                assert anyio.current_time() - before < SLOW_GRACE / 2
            assert [p for _, p in pending(stuck)] == [b"\x00", b"\x01", b"\x02"]
            await a.publish(("t",), b"later")
            assert pending(stuck) == [(("t",), b"later")]


async def test_a_busy_subscriber_loses_nothing_in_a_burst() -> None:
    bus = MemoryBus()
    async with MemoryBackend(bus, "a", queue_len=3) as a, a.subscribe(("t",)) as busy:
        got = []

        async def consume() -> None:
            async for _, p in busy:
                await anyio.sleep(0.001)
                got.append(p)
                if len(got) == 50:
                    return

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                for i in range(50):
                    await a.publish(("t",), bytes([i]))
        assert got == [bytes([i]) for i in range(50)]


async def test_named_buses_are_shared_and_separate() -> None:
    name = f"test-{id(object())}"
    async with MemoryBackend(name, "a") as a, MemoryBackend(name, "b") as b, \
            MemoryBackend(name + "-other", "c") as c:
        assert get_bus(name) is a.bus is b.bus is not c.bus
        async with b.subscribe(("t",)) as rb, c.subscribe(("t",)) as rc:
            await a.publish(("t",), b"x")
            assert pending(rb) == [(("t",), b"x")]
            assert pending(rc) == []
    assert get_bus(name).members == []


async def test_partition_and_heal() -> None:
    bus = MemoryBus()
    async with MemoryBackend(bus, "a") as a, MemoryBackend(bus, "b") as b, \
            MemoryBackend(bus, "c") as c:
        async with a.subscribe(("t",)) as ra, b.subscribe(("t",)) as rb, \
                c.subscribe(("t",)) as rc:
            bus.partition(["a", "b"])  # c is on its own
            await a.publish(("t",), b"ab")
            await c.publish(("t",), b"c")
            assert pending(ra) == pending(rb) == [(("t",), b"ab")]
            assert pending(rc) == [(("t",), b"c")]
            assert bus.stats.cut == 3
            bus.heal()
            await c.publish(("t",), b"all")
            assert pending(ra) == pending(rb) == pending(rc) == [(("t",), b"all")]


async def test_drop_and_duplicate_by_rule() -> None:
    bus = MemoryBus()
    async with MemoryBackend(bus, "a") as a, MemoryBackend(bus, "b") as b:
        async with a.subscribe(("t",)) as ra, b.subscribe(("t",)) as rb:
            bus.drop_if = lambda d: d.receiver == "b" and d.payload == b"lost"
            await a.publish(("t",), b"lost")
            await a.publish(("t",), b"kept")
            assert [p for _, p in pending(ra)] == [b"lost", b"kept"]
            assert [p for _, p in pending(rb)] == [b"kept"]
            bus.drop_if = None
            bus.duplicate_rate = 1.0
            await a.publish(("t",), b"twice")
            assert [p for _, p in pending(rb)] == [b"twice", b"twice"]
            assert (bus.stats.dropped, bus.stats.duplicated) == (1, 2)


async def test_random_faults_are_reproducible_with_a_seed() -> None:
    async def run(seed: int) -> list[bytes]:
        bus = MemoryBus(seed=seed)
        bus.drop_rate = 0.3
        bus.duplicate_rate = 0.3
        async with MemoryBackend(bus, "a") as a, a.subscribe(("t",)) as ra:
            for i in range(50):
                await a.publish(("t",), bytes([i]))
            return [p for _, p in pending(ra)]

    first = await run(7)
    assert first == await run(7)
    assert first != await run(8)
    assert 20 < len(first) < 80 and len(set(first)) < 50


async def test_hold_and_release_reordered() -> None:
    bus = MemoryBus(seed=1)
    async with MemoryBackend(bus, "a") as a, MemoryBackend(bus, "b") as b:
        async with b.subscribe(("t",)) as rb:
            bus.hold()
            for p in (b"1", b"2", b"3"):
                await a.publish(("t",), p)
            assert pending(rb) == []
            assert [(d.sender, d.receiver, d.payload) for d in bus.held if d.receiver == "b"] == \
                [("a", "b", b"1"), ("a", "b", b"2"), ("a", "b", b"3")]
            to_b = [i for i, d in enumerate(bus.held) if d.receiver == "b"]
            assert bus.release([to_b[2], to_b[0]]) == 2
            assert [p for _, p in pending(rb)] == [b"3", b"1"]
            bus.hold(False)
            await a.publish(("t",), b"4")  # not held any more
            assert [p for _, p in pending(rb)] == [b"4"]
            assert bus.release() == 4  # the rest: 1, 2, 3 to a and 2 to b
            assert [p for _, p in pending(rb)] == [b"2"]


async def test_held_messages_respect_a_partition_made_meanwhile_and_can_be_lost() -> None:
    bus = MemoryBus()
    async with MemoryBackend(bus, "a") as a, MemoryBackend(bus, "b") as b:
        async with b.subscribe(("t",)) as rb:
            bus.hold()
            await a.publish(("t",), b"x")
            bus.partition(["a"], ["b"])
            bus.release()
            assert pending(rb) == []
            bus.heal()
            await a.publish(("t",), b"y")
            assert bus.discard_held() == 2
            bus.release()
            assert pending(rb) == []


async def test_shuffled_release_delivers_everything_once() -> None:
    bus = MemoryBus(seed=5)
    async with MemoryBackend(bus, "a") as a, a.subscribe(("t",)) as ra:
        bus.hold()
        for i in range(20):
            await a.publish(("t",), bytes([i]))
        bus.release(shuffle=True)
        got = [p[0] for _, p in pending(ra)]
        assert sorted(got) == list(range(20))
        assert got != list(range(20))


async def test_a_closed_backend_leaves_the_bus() -> None:
    bus = MemoryBus()
    a = MemoryBackend(bus, "a")
    async with MemoryBackend(bus, "b") as b, b.subscribe(("t",)) as rb:
        await a.aclose()
        assert [m.node for m in bus.members] == ["b"]
        await a.publish(("t",), b"x")  # ignored
        assert pending(rb) == []
