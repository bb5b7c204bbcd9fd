"""The Serf backend against two real, joined ``serf agent`` processes."""

from __future__ import annotations

import anyio
import pytest
from brokers import SerfAgent, nothing_more, serf_pair_fixture, take  # noqa: F401  (fixture)

from distkv.server.backend.link import BackendError
from distkv.server.backend.serf import SerfBackend

pytestmark = pytest.mark.anyio
TIMEOUT = 15


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param


def backend(agent: SerfAgent, **kw: object) -> SerfBackend:
    kw.setdefault("retry_max", 0.5)
    return SerfBackend("127.0.0.1", agent.rpc_port, **kw)  # type: ignore[arg-type]


async def connected(*bs: SerfBackend) -> None:
    with anyio.fail_after(TIMEOUT):
        for b in bs:
            await b.wait_connected()


async def test_events_cross_between_agents(serf_pair: tuple[SerfAgent, SerfAgent]) -> None:
    one, two = serf_pair
    async with backend(one) as a, backend(two) as b:
        await connected(a, b)
        async with a.subscribe((":distkv", "update")) as ra, \
                b.subscribe([":distkv", "update"]) as rb:
            await a.publish((":distkv", "update"), b"\x81\xa1x\x01")
            await a.publish((":distkv", "info"), b"not subscribed")
            assert await take(rb) == [((":distkv", "update"), b"\x81\xa1x\x01")]
            assert await take(ra) == [((":distkv", "update"), b"\x81\xa1x\x01")]  # own events too
            await b.publish((":distkv", "update", 3), b"")
            await b.publish((":distkv", "update"), b"from b")
            assert await take(ra) == [((":distkv", "update"), b"from b")]
            assert await nothing_more(ra)
        assert a.status() == {
            "backend": "serf", "address": f"serf://127.0.0.1:{one.rpc_port}",
            "state": "connected", "connects": 1, "queued": 0, "lost": 0, "dropped": 0,
            "error": None,
        }


async def test_wildcard_filters(serf_pair: tuple[SerfAgent, SerfAgent]) -> None:
    one, two = serf_pair
    async with backend(one) as a, backend(two) as b:
        await connected(a, b)
        async with b.subscribe(("r", "+")) as plus, b.subscribe(("r", "#")) as rest:
            for t in (("r", "1"), ("r", "1", "deep"), ("q", "1")):
                await a.publish(t, ".".join(t).encode())
            assert await take(plus) == [(("r", "1"), b"r.1")]
            assert sorted(await take(rest, 2)) == [(("r", "1"), b"r.1"),
                                                  (("r", "1", "deep"), b"r.1.deep")]
            assert await nothing_more(plus)


async def test_leaving_a_subscription_stops_its_stream(
        serf_pair: tuple[SerfAgent, SerfAgent]) -> None:
    one, _ = serf_pair
    async with backend(one) as a:
        await connected(a)
        async with a.subscribe(("t",)) as keep:
            async with a.subscribe(("u",)) as gone:
                await a.publish(("u",), b"1")
                assert await take(gone) == [(("u",), b"1")]
            await a.publish(("u",), b"2")
            await a.publish(("t",), b"3")
            assert await take(keep) == [(("t",), b"3")]
        assert a.refused == 0


async def test_oversized_events_are_refused_at_once(
        serf_pair: tuple[SerfAgent, SerfAgent]) -> None:
    one, _ = serf_pair
    async with backend(one) as a:
        await connected(a)
        too_big = r"too big: 473 bytes \(name \+ payload\), at most 472 fit"
        with pytest.raises(BackendError, match=too_big):
            await a.publish(("ab", "c"), b"x" * 469)
        async with a.subscribe(("ab", "c")) as ra:
            await a.publish(("ab", "c"), b"x" * 468)  # the most we send: serf takes it
            assert await take(ra) == [(("ab", "c"), b"x" * 468)]
        assert a.refused == 0


async def test_agent_restart_reconnects_and_resubscribes(
        serf_pair: tuple[SerfAgent, SerfAgent]) -> None:
    one, two = serf_pair
    async with backend(one) as a, backend(two) as b:
        await connected(a, b)
        async with b.subscribe(("t",)) as rb:
            down = b.changed()
            two.restart()  # a fresh agent that is not in the cluster any more
            with anyio.fail_after(TIMEOUT):
                await down.wait()
            await connected(b)
            assert b.connects == 2
            await b.publish(("t",), b"to myself")
            assert await take(rb) == [(("t",), b"to myself")]


async def test_events_sent_while_the_agent_is_down_are_queued(
        serf_pair: tuple[SerfAgent, SerfAgent]) -> None:
    one, _ = serf_pair
    async with backend(one, queue_len=2) as a:
        await connected(a)
        async with a.subscribe(("t",)) as ra:
            one.stop()
            with anyio.fail_after(TIMEOUT):
                while a.connected:  # noqa: ASYNC110
                    await anyio.sleep(0.02)
            for p in (b"1", b"2", b"3"):
                await a.publish(("t",), p)
            assert (a.status()["queued"], a.lost) == (2, 1)
            one.start()
            assert await take(ra, 2) == [(("t",), b"2"), (("t",), b"3")]


async def test_rpc_auth() -> None:
    with SerfAgent("secret", auth_key="s3cr3t") as agent:
        async with backend(agent, auth="wrong", retry_min=0.05) as bad:
            with anyio.fail_after(TIMEOUT):
                while bad.last_error is None:  # noqa: ASYNC110
                    await anyio.sleep(0.02)
            assert "serf auth failed" in bad.last_error
            assert not bad.connected
        async with backend(agent, auth="s3cr3t") as good:
            await connected(good)
            async with good.subscribe(("t",)) as rt:
                await good.publish(("t",), b"ok")
                assert await take(rt) == [(("t",), b"ok")]


async def test_from_config_ignores_unknown_keys() -> None:
    b = SerfBackend.from_config({"host": "127.0.0.1", "port": "7999", "codec": "x"})
    assert (b.where, b.max_event) == ("serf://127.0.0.1:7999", 512)
