"""A node whose pub/sub link to Redis is reconnecting is not dead: its sessions live on.

Two ``ladder serve`` nodes on a real Redis. Redis closes only the owner's pub/sub connection
(``CLIENT KILL ID``, as it does to a pub/sub client past its output buffer limit), several
times in a row, so the owner's listener comes back later each time (its backoff doubles).
Meanwhile the session is asked for on the other node, which used to call it
``unknown_session`` once the owner had been unsubscribed for 0.15 s on a Redis up for more
than 3 s: the client then started a new session and the old one's pushes were lost.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from redis import Redis as SyncRedis

from ladder.engine.redis.routing import AWAY_TTL, RESUBSCRIBE_GRACE
from tests.support.redis import RedisServer, pubsub_clients_of
from tests.support.server import LadderServer
from tests.support.waiting import until

KILLS = 5


@dataclass
class Pair:
    """Two nodes on one Redis, a session held by ``owner`` and how to ask for it."""

    redis: RedisServer
    admin: SyncRedis
    owner: LadderServer
    other: LadderServer
    http: httpx.AsyncClient
    welcome: dict[str, Any]
    params: dict[str, Any]
    headers: dict[str, str]
    pid: int


@asynccontextmanager
async def owner_and_other() -> AsyncIterator[Pair]:
    with RedisServer() as redis, SyncRedis(port=redis.port) as admin:
        config = {"session_ttl": 60.0, "poll_timeout": 5.0}
        owner, other = (LadderServer(config, engine=redis.url) for _ in range(2))
        with owner, other:
            assert owner.proc is not None
            async with httpx.AsyncClient(timeout=20) as http:
                opened = await http.get(f"{owner.url}/poll", params={"v": 1})
                welcome = orjson.loads(opened.content.split(b"\n")[0])
                params, headers = {"sid": welcome["sid"], "ack": 0}, {"x-ladder-rt": welcome["rt"]}
                # Past the grace a just-restarted Redis gives every node to subscribe again.
                await until(
                    lambda: int(admin.info("server")["uptime_in_seconds"]) > RESUBSCRIBE_GRACE,
                    "Redis up past the restart grace",
                )
                yield Pair(redis, admin, owner, other, http, welcome, params, headers, owner.proc.pid)


def kill_pubsub(pair: Pair) -> None:
    """Close the owner's pub/sub connections, as Redis does to a client over its limits."""
    for client_id in pubsub_clients_of(pair.redis, pair.pid):
        pair.admin.client_kill_filter(_id=client_id)


async def test_a_session_is_not_called_unknown_while_its_node_reconnects_its_pubsub_link() -> None:
    async with owner_and_other() as pair:
        answers: Counter[str] = Counter()
        for _ in range(KILLS):
            await until(lambda: pubsub_clients_of(pair.redis, pair.pid), "the owner subscribed")
            kill_pubsub(pair)
            # Ask for the session on the other node until the owner answers again.
            deadline = time.monotonic() + 15
            while True:
                answer = await pair.http.get(f"{pair.other.url}/poll", params=pair.params, headers=pair.headers)
                said = "200" if answer.status_code == 200 else f"{answer.status_code} {answer.json()['code']}"
                answers[said] += 1
                if answer.status_code == 200 or "unknown_session" in said:
                    break
                assert time.monotonic() < deadline, f"the owner never came back: {answers}"
                await asyncio.sleep(0.05)
            if "unknown_session" in said:
                break
        held = await pair.http.get(f"{pair.owner.url}/poll", params=pair.params, headers=pair.headers)
    print(f"the other node's answers for the session over {KILLS} kills: {dict(answers)}")
    assert not [said for said in answers if "unknown_session" in said], dict(answers)
    assert answers["503 engine_unavailable"] > 0, f"the owner was never away when asked: {dict(answers)}"
    assert held.status_code == 200, held.text


async def test_a_node_killed_while_reconnecting_is_known_dead_when_its_mark_expires() -> None:
    """The mark of a node killed while its listener was away outlives it by at most
    ``AWAY_TTL``: then its sessions are ``unknown_session``, not ``engine_unavailable`` forever."""
    async with owner_and_other() as pair:
        marked = f"ladder:away:{pair.welcome['sid'].split('.', 1)[0]}"
        for _ in range(4):  # (each kill doubles the listener's backoff)
            await until(lambda: pubsub_clients_of(pair.redis, pair.pid), "the owner subscribed")
            kill_pubsub(pair)
        await until(lambda: pair.admin.exists(marked), "the owner marked as reconnecting")
        pair.owner.kill()
        killed = time.monotonic()
        answers: list[str] = []
        while not answers or answers[-1] != "404 unknown_session":
            assert time.monotonic() - killed < 15, answers
            answer = await pair.http.get(f"{pair.other.url}/poll", params=pair.params, headers=pair.headers)
            answers.append(f"{answer.status_code} {answer.json()['code']}")
            await asyncio.sleep(0.1)
        took = time.monotonic() - killed
    print(f"answers after the kill: {sorted(set(answers))}, unknown_session after {took:.2f} s")
    assert set(answers) <= {"503 engine_unavailable", "404 unknown_session"}, answers
    assert took < AWAY_TTL + 2, f"known dead {took:.1f} s after the kill (the mark lasts {AWAY_TTL} s)"
