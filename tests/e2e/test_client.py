"""Client behaviour against a real server: lost sessions, offline queue, refusals, events."""

from __future__ import annotations

import asyncio

import pytest

from ladder import Client, LadderError
from ladder.client import (
    Connected,
    Disconnected,
    Presence,
    ProbeResult,
    Publication,
    Push,
    Resubscribed,
    ServerError,
    SessionLost,
)
from tests.support.server import LadderServer, free_port
from tests.support.subscriptions import take


async def test_a_dropped_session_is_replaced_and_channels_recovered(server: LadderServer) -> None:
    lost: list[SessionLost] = []
    resubscribed: list[Resubscribed] = []
    async with Client(server.url, transports=["websocket"]) as client:
        client.on("session_lost", lost.append)
        client.on("resubscribed", resubscribed.append)
        sub = client.subscribe("feed:lost")
        await sub.ready()
        await client.call("publish", {"channel": "feed:lost", "count": 5})
        first_session = client.session_id
        got = [p.offset async for p in _take(sub, 5)]
        async with Client(server.url) as admin:  # the server drops the session (as for a slow consumer)
            assert await admin.call("drop", first_session)
        await client.call("publish", {"channel": "feed:lost", "count": 5, "start": 5})
        got += [p.offset async for p in _take(sub, 5)]
        assert got == list(range(1, 11)), "the gap was recovered from channel history, once each"
        assert client.session_id != first_session
        assert [e.reason.split(":")[0] for e in lost] == ["slow_consumer"]
        assert [(e.channel, e.recovered) for e in resubscribed] == [("feed:lost", True)]


async def _take(sub, count: int):  # type: ignore[no-untyped-def]
    async with asyncio.timeout(15):
        n = 0
        async for pub in sub:
            yield pub
            n += 1
            if n == count:
                return


async def test_server_disconnect_is_final(server: LadderServer) -> None:
    events: asyncio.Queue[Disconnected] = asyncio.Queue()
    client = Client(server.url, transports=["websocket"])
    client.on("disconnected", events.put_nowait)
    await client.connect()
    async with Client(server.url) as admin:
        assert await admin.call("kick", client.session_id) is True
    event = await asyncio.wait_for(events.get(), 10)
    assert "kicked by the test" in event.reason
    assert client.state == "closed", "no reconnection after the server ended the session"
    with pytest.raises(LadderError) as closed:
        await client.emit("echo", 1)
    assert closed.value.code == "closed"
    await client.close()

    # Kicking oneself: the pending call is answered with the reason, not left hanging. On
    # short polling no request waits for the bye: the next poll is refused session_closed,
    # which is as final (it started a new session, carrying the call into it).
    for rung in ("longpoll", "poll"):
        async with Client(server.url, transports=[rung]) as itself:
            lost: list[object] = []
            itself.on("session_lost", lost.append)
            with pytest.raises(LadderError) as kicked:
                await itself.call("kick", None, timeout=10)
            assert kicked.value.code == "session_closed", rung
            assert kicked.value.reason in ("kicked by the test", "disconnected by the server"), kicked.value.reason
            assert itself.state == "closed" and lost == [], rung


async def test_offline_queue_is_sent_once_after_connecting() -> None:
    port = free_port()
    client = Client(
        f"http://127.0.0.1:{port}",
        transports=["websocket", "longpoll"],
        max_queue=50,
        backoff_base=0.05,
        backoff_max=0.2,
    )
    connecting = asyncio.create_task(client.connect())
    for n in range(50):
        await client.emit("record", {"key": "offline", "value": n})
    with pytest.raises(LadderError) as full:
        await client.emit("record", {"key": "offline", "value": 50})
    assert full.value.code == "queue_full" and "50 messages" in full.value.reason
    assert client.state != "connected"
    with LadderServer({"heartbeat": 1.0}, port=port):
        await asyncio.wait_for(connecting, 20)
        await client.flush(timeout=10)
        assert len(client.peer.outbox) == 0
        assert await client.call("records", "offline") == list(range(50)), "each applied once, in order"
        await client.close()


async def test_max_attempts_gives_up_with_a_clear_error() -> None:
    """Giving up is reported as an ``error`` and later calls say why (they said ``closed:
    this client was closed``, as if the app had closed it)."""
    client = Client(f"http://127.0.0.1:{free_port()}", max_attempts=2, backoff_base=0.01, open_timeout=1.0)
    errors: list[ServerError] = []
    client.on("error", errors.append)
    with pytest.raises(LadderError) as failed:
        await client.connect()
    assert failed.value.code == "timeout" and "after 2 attempts" in failed.value.reason
    assert client.state == "closed"
    assert [e.code for e in errors] == ["timeout"], errors
    with pytest.raises(LadderError) as later:
        await client.call("echo", 1)
    assert later.value.code == "timeout" and "after 2 attempts" in later.value.reason
    await client.close()


async def test_refused_credentials_fail_connect() -> None:
    with LadderServer({"require_token": True}) as server:
        with pytest.raises(LadderError) as refused:
            await Client(server.url, token="nobody").connect()
        assert refused.value.code == "unauthorized"
        async with Client(server.url, token="user:ada", transports=["sse"]) as client:
            assert (await client.call("echo", 1))["user"] == "ada"


async def test_pushes_and_presence_events(server: LadderServer) -> None:
    async with (
        Client(server.url, transports=["websocket"]) as alice,
        Client(server.url, transports=["longpoll"]) as bob,
    ):
        pushes: asyncio.Queue[Push] = asyncio.Queue()
        joins: asyncio.Queue[Presence] = asyncio.Queue()
        alice.on("push", pushes.put_nowait)
        alice.on("presence", joins.put_nowait)
        await alice.subscribe("chat:room").ready()
        await bob.subscribe("chat:room").ready()
        join = await asyncio.wait_for(joins.get(), 10)
        assert (join.kind, join.channel) == ("join", "chat:room")
        members = await alice.presence("chat:room")
        assert len(members) == 2
        assert await bob.call("push", {"event": "hey", "data": 1}) == 1
        assert await alice.call("push", {"event": "to-me", "data": [1, 2]}) == 1
        push = await asyncio.wait_for(pushes.get(), 10)
        assert (push.event, push.data) == ("to-me", [1, 2])
        await bob.close()
        leave = await asyncio.wait_for(joins.get(), 10)
        assert leave.kind == "leave", "closing sends bye: presence ends at once"


async def test_events_stream_and_connected_event(server: LadderServer) -> None:
    client = Client(server.url, transports=["sse"])
    stream = client.events()
    first = asyncio.ensure_future(anext(stream))
    await client.connect()
    event = await asyncio.wait_for(first, 10)
    assert isinstance(event, Connected) and event.transport == "sse" and not event.resumed
    await client.close()
    rest = [e async for e in stream]
    assert any(isinstance(e, Disconnected) for e in rest)


async def test_subscribing_again_adds_a_callback_to_the_subscription(server: LadderServer) -> None:
    """The second ``on_publication`` was dropped without a word. (Iterating a subscription
    made with a callback yields nothing and ends with it: a way to wait for its end.)"""
    async with Client(server.url) as client:
        first: list[int] = []
        second: list[int] = []
        sub = client.subscribe("feed:twice", on_publication=lambda p: first.append(p.data["n"]))
        again = client.subscribe("feed:twice", on_publication=lambda p: second.append(p.data["n"]))
        assert again is sub
        await sub.ready()
        iterated = client.subscribe("feed:iterated")  # made for async for: a callback adds to it
        heard: list[int] = []
        client.subscribe("feed:iterated", on_publication=lambda p: heard.append(p.data["n"]))
        await iterated.ready()
        await client.call("publish", {"channel": "feed:twice", "count": 3})
        await client.call("publish", {"channel": "feed:iterated", "count": 2})
        got = [pub.data["n"] for pub in await take(iterated, 2, timeout=10)]
        assert first == second == [0, 1, 2]
        assert got == heard == [0, 1]
        ending = asyncio.ensure_future(anext(aiter(sub), None))  # waits for the subscription's end
        await sub.unsubscribe()
        assert await asyncio.wait_for(ending, 5) is None, "nothing buffered: it ends with the subscription"


async def test_a_subscriptions_position_is_what_the_app_has_read(server: LadderServer) -> None:
    """``sub.position`` ran ahead to the last publication buffered: an app that saved it
    after reading one of three, and resumed from it later, never saw the other two."""
    async with Client(server.url) as client:
        sub = client.subscribe("feed:read")
        start = await sub.ready()
        buffered = asyncio.Event()
        heard: list[int] = []

        def note(pub: Publication) -> None:
            heard.append(pub.offset)
            if len(heard) == 3:
                buffered.set()

        sub.listen(note)
        await client.call("publish", {"channel": "feed:read", "count": 3})
        await asyncio.wait_for(buffered.wait(), 10)
        assert sub.position == (start.epoch, start.offset), "none read yet"
        [first] = await take(sub, 1, timeout=5)
        assert sub.position == (start.epoch, first.offset)
        saved = sub.position
    async with Client(server.url) as later:
        resumed = later.subscribe("feed:read", since=saved)
        rest = [pub.data["n"] for pub in await take(resumed, 2, timeout=10)]
        assert rest == [1, 2], "resumed from the saved position: nothing lost"
        await later.call("publish", {"channel": "feed:read", "count": 1, "start": 3})
        [next_one] = await take(resumed, 1, timeout=10)
        assert next_one.data["n"] == 3
        assert resumed.position == (start.epoch, next_one.offset), "all read: the last delivered"


async def test_a_subscription_whose_reader_falls_behind_ends_with_queue_full(server: LadderServer) -> None:
    """Past ``max_buffer`` the iterator yields what it holds, then raises ``queue_full``, and
    the subscription ends. It stayed half-alive: later publications were dropped without a
    ``resync``, and a second iteration yielded one and raised again."""
    async with Client(server.url, max_buffer=3) as client:
        sub = client.subscribe("feed:behind")
        await sub.ready()
        await client.call("publish", {"channel": "feed:behind", "count": 6})
        async with asyncio.timeout(10):
            while sub.active:  # noqa: ASYNC110 - nothing to await: the reader is the test itself
                await asyncio.sleep(0.01)
        got = []
        with pytest.raises(LadderError) as overflow:
            async for pub in sub:
                got.append(pub.data["n"])
        assert got == [0, 1, 2]
        assert overflow.value.code == "queue_full" and "max_buffer" in overflow.value.reason
        again = client.subscribe("feed:behind", sub.position)
        assert again is not sub
        caught_up = [pub.data["n"] for pub in await take(again, 3, timeout=10)]
        assert caught_up == [3, 4, 5], "subscribed again from its position: nothing lost"


async def test_rungs_the_server_does_not_offer_are_never_probed() -> None:
    """The welcome lists the rungs the server offers (``tr``); a client on SSE probed the
    WebSocket the server had refused with ``unsupported_transport``, every few seconds, for as
    long as it lived."""
    with LadderServer({"transports": ["sse", "longpoll", "poll"]}) as server:
        client = Client(server.url, probe_delay=0.01, probe_max_delay=0.02)
        probes: list[ProbeResult] = []
        client.on("probe", probes.append)
        async with client:
            assert client.transport == "sse"
            assert client.policy.above("sse") == [] and client.policy.above("poll") == ["sse", "longpoll"]
            for n in range(20):  # (longer, together, than the first few probe delays)
                assert (await client.call("echo", n))["data"] == n
            assert probes == [], probes
            assert client._probe_task is None, "no probe was started"
