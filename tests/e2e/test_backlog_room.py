"""A subscription's past is sent only as far as the session may leave unacknowledged.

The missed publications follow the reply at once, faster than any acknowledgement: past
``lim.queue`` (or ``lim.qbytes``) they ended the session as a slow consumer before its reply,
and the client's successor session, asking for as much, was ended too, several times a
second, receiving nothing.
"""

from __future__ import annotations

import asyncio

from ladder import Client
from ladder.client import ResyncNeeded, SessionLost
from tests.support.server import LadderServer
from tests.support.subscriptions import take

CONFIG = {"limits": {"max_queue": 100}, "channels": {"feed:*": {"history_size": 1000}}}


async def test_a_recovery_past_the_queue_bound_is_a_resync_not_a_session_lost_again_and_again() -> None:
    with LadderServer(CONFIG) as server:
        async with Client(server.url, transports=["websocket"]) as client:
            lost: list[SessionLost] = []
            resyncs: list[ResyncNeeded] = []
            client.on("session_lost", lost.append)
            client.on("resync", resyncs.append)
            await client.connect()
            start = client.subscribe("feed:big")
            began = await start.ready()
            await client.unsubscribe("feed:big")
            await client.call("publish", {"channel": "feed:big", "count": 150})

            # 150 missed, one frame each after the reply: more than the 100 it may hold.
            sub = client.subscribe("feed:big", since=(began.epoch, began.offset))
            result = await asyncio.wait_for(sub.ready(), 10)
            assert (result.recovered, result.missed, result.offset) == (False, 0, 150)
            await client.call("publish", {"channel": "feed:big", "count": 2, "start": 150})
            assert [p.data["n"] for p in await take(sub, 2)] == [150, 151], "live from where it stands"
            assert [(e.channel, e.offset) for e in resyncs] == [("feed:big", 150)]

            # Within half the bound it is recovered whole (the other half for what comes meanwhile).
            await client.unsubscribe("feed:big")
            again = client.subscribe("feed:big", since=(began.epoch, 130))
            assert (await again.ready()).recovered is True
            assert [p.offset for p in await take(again, 22)] == list(range(131, 153))

            # recent: the newest that fit with the reply in half the bound (49 of the 152 asked,
            # less half of any frame still unacknowledged: the client acknowledges every 25-50
            # frames, or after 1 s quiet).
            await client.unsubscribe("feed:big")
            newest = client.subscribe("feed:big", recent=152)
            sent = (await newest.ready()).missed
            assert 20 <= sent <= 49, sent
            assert [p.offset for p in await take(newest, sent)] == list(range(153 - sent, 153))
            assert lost == [], "one session throughout"
