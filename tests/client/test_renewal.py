"""A subscription the client renews in a new session, refused by the server: sent again while
the refusal says "later" (``engine_unavailable``: the channel's Redis server is briefly down),
ended and told when it says "never" (protocol §9.6). Before, every refused renewal ended its
subscription for good, silently: a lost session during a one-second Redis outage stopped the
app's subscriptions with no event and no publication ever again."""

from __future__ import annotations

import asyncio

import pytest

from ladder.client import Connected, Resubscribed, ServerError, Subscription
from ladder.protocol.errors import LadderError
from ladder.protocol.peer import Frame
from tests.client.fakes import FakeClient, FakeServer, connected_client
from tests.support.subscriptions import take


async def subscribed(server: FakeServer, client: FakeClient, channel: str) -> Subscription:
    """``channel`` subscribed and confirmed at epoch ``E``, offset 0, with one publication delivered."""
    sub = client.subscribe(channel)
    (ask,) = await sub_written(server, 0)
    server.push({"t": "reply", "re": ask["i"], "d": {"ch": channel, "ep": "E", "off": 0, "rec": True, "n": 0}})
    await asyncio.wait_for(sub.ready(), 5)
    server.push({"t": "pub", "ch": channel, "o": 1, "d": "before"})
    assert [pub.data for pub in await take(sub, 1, 5)] == ["before"]
    return sub


async def sub_written(server: FakeServer, seen: int) -> list[Frame]:
    """Wait until more than ``seen`` ``sub`` frames were written; returns the new ones."""
    async with asyncio.timeout(5):
        while len(server.ups("sub")) <= seen:
            server.wrote.clear()
            await server.wrote.wait()
    return server.ups("sub")[seen:]


async def lose_session(server: FakeServer, connected: asyncio.Queue[Connected]) -> None:
    """The server forgets the session (it expired); the client's next hello starts a new one."""
    server.sessions += 1
    server.current.interrupt("cut by the test")
    again = await asyncio.wait_for(connected.get(), 5)
    assert not again.resumed, again


Watched = tuple[list[ServerError], asyncio.Queue[ServerError], asyncio.Queue[Resubscribed]]


def watch(client: FakeClient) -> Watched:
    """The client's ``error`` events (all, and as they come) and ``resubscribed`` events."""
    errors: list[ServerError] = []
    told: asyncio.Queue[ServerError] = asyncio.Queue()
    resubscribed: asyncio.Queue[Resubscribed] = asyncio.Queue()
    client.on("error", errors.append)
    client.on("error", told.put_nowait)
    client.on("resubscribed", resubscribed.put_nowait)
    return errors, told, resubscribed


async def test_a_renewal_refused_for_now_is_sent_again_until_the_server_takes_it() -> None:
    server = FakeServer()
    client, connected = await connected_client(
        server, transports=["websocket"], backoff_base=0.01, backoff_max=0.02
    )
    errors, told, resubscribed = watch(client)
    sub = await subscribed(server, client, "room")
    seen = len(server.ups("sub"))
    await lose_session(server, connected)
    for attempt in range(2):
        (renewal,) = await sub_written(server, seen)
        seen += 1
        assert (renewal["ch"], renewal["ep"], renewal["off"]) == ("room", "E", 1), "from where it was"
        server.refuse(renewal["i"], "engine_unavailable", "shard 127.0.0.1:1, which holds this channel, is down")
        if attempt == 0:
            await asyncio.wait_for(told.get(), 5)
        assert sub.active, "still followed while the renewal is retried"
    (renewal,) = await sub_written(server, seen)
    assert (renewal["ep"], renewal["off"]) == ("E", 1)
    server.push(
        {"t": "reply", "re": renewal["i"], "d": {"ch": "room", "ep": "E", "off": 2, "rec": True, "n": 1}},
        {"t": "pub", "ch": "room", "o": 2, "d": "missed"},
    )
    assert await asyncio.wait_for(resubscribed.get(), 5) == Resubscribed("room", True)
    server.push({"t": "pub", "ch": "room", "o": 3, "d": "after"})
    assert [pub.data for pub in await take(sub, 2, 5)] == ["missed", "after"]
    assert len(errors) == 1, "told once, not once per retry"
    assert errors[0].code == "engine_unavailable"
    assert errors[0].reason == (
        "renewing the subscription to 'room' in a new session was refused (engine_unavailable: shard "
        "127.0.0.1:1, which holds this channel, is down): it is sent again, from where it was, until "
        "the server takes it"
    )
    assert sub.active and client.subscribe("room") is sub
    await client.close()


async def test_a_renewal_refused_for_good_ends_the_subscription_and_says_so() -> None:
    server = FakeServer()
    client, connected = await connected_client(server, transports=["websocket"], backoff_base=0.01)
    errors, told, _ = watch(client)
    sub = await subscribed(server, client, "room")
    seen = len(server.ups("sub"))
    await lose_session(server, connected)
    (renewal,) = await sub_written(server, seen)
    server.refuse(renewal["i"], "forbidden", "permission denied")
    error = await asyncio.wait_for(told.get(), 5)
    assert error == ServerError(
        "forbidden",
        "renewing the subscription to 'room' in a new session was refused (forbidden: permission denied): "
        "it ended; subscribe again to follow the channel",
    )
    assert not sub.active
    with pytest.raises(LadderError, match="forbidden"):
        await take(sub, 1, 5)
    assert client.subscribe("room") is not sub, "the client forgot it"
    assert len(errors) == 1
    await client.close()


async def test_unsubscribing_while_a_renewal_waits_stops_the_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    server = FakeServer()
    client, connected = await connected_client(
        server, transports=["websocket"], backoff_base=0.2, backoff_max=0.2
    )
    _, told, _ = watch(client)
    sub = await subscribed(server, client, "room")
    seen = len(server.ups("sub"))
    await lose_session(server, connected)
    (renewal,) = await sub_written(server, seen)
    subs = len(server.ups("sub"))
    monkeypatch.setattr("random.random", lambda: 0.5)  # the retry is due in 0.1 s
    server.refuse(renewal["i"], "engine_unavailable", "redis down")
    await asyncio.wait_for(told.get(), 5)
    assert sub.waiting_to_renew
    await sub.unsubscribe()
    assert not sub.active and not sub.waiting_to_renew
    await asyncio.sleep(0.4)  # (past the retry's time: nothing may come, so no event to await)
    assert len(server.ups("sub")) == subs, "not sent again"
    assert server.ups("unsub") == [], "the server holds no subscription of this session to end"
    await client.close()


async def test_a_fresh_subscribe_refused_for_now_is_not_retried_its_caller_decides() -> None:
    """Not a renewal: ``ready()`` raises, the subscription ends, no event (as before)."""
    server = FakeServer()
    client, _ = await connected_client(server, transports=["websocket"], backoff_base=0.01)
    errors, _, _ = watch(client)
    sub = client.subscribe("room")
    (ask,) = await sub_written(server, 0)
    server.refuse(ask["i"], "engine_unavailable", "redis down")
    with pytest.raises(LadderError, match="engine_unavailable"):
        await asyncio.wait_for(sub.ready(), 5)
    assert not sub.active and not sub.waiting_to_renew
    assert errors == []
    await client.flush(timeout=5)
    assert len(server.ups("sub")) == 1
    await client.close()
