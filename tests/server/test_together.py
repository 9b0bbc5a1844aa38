"""A session's consecutive publications, applied together on the Redis engine (a real
redis-server): one pipeline, one record, every answer as it would have been alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ladder import Ladder
from ladder.engine.redis import RedisEngine
from ladder.engine.redis.applied import RedisAppliedRecords
from ladder.server.hub import internals
from tests.server.harness import Peer
from tests.support.redis import RedisServer, count_pipelines


@pytest.fixture
def pipelines(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of publications in every pipeline sent to Redis."""
    return count_pipelines(monkeypatch)


@pytest.fixture
def records(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every record write: its ``done`` and the ids of the answers it keeps."""
    writes: list[dict[str, Any]] = []
    record = RedisAppliedRecords.record_applied

    async def counted(self: RedisAppliedRecords, sid: str, token: str, **fields: Any) -> None:
        writes.append({"done": fields["done"], "replies": sorted(fields["replies"])})
        await record(self, sid, token, **fields)

    monkeypatch.setattr(RedisAppliedRecords, "record_applied", counted)
    return writes


@pytest.fixture
async def hub(redis_server: RedisServer) -> AsyncIterator[Ladder]:
    refuse = {"secret"}

    def permissions(identity: Any, action: str, channel: str, options: Any) -> bool:
        return channel not in refuse

    hub = Ladder(engine=RedisEngine(redis_server.url), permissions=permissions)
    await hub.start()
    yield hub
    await hub.stop()


async def _subscriber(hub: Ladder, channel: str) -> tuple[Peer, asyncio.Event]:
    peer = await Peer.open(hub)
    woken = asyncio.Event()
    peer.att.wake_with(woken.set)
    reply = await peer.request({"t": "sub", "ch": channel})
    assert reply["t"] == "reply", reply
    return peer, woken


async def _publications(peer: Peer, woken: asyncio.Event, count: int) -> list[dict[str, Any]]:
    """The next ``count`` publications ``peer`` receives (read each time it is woken)."""
    got: list[dict[str, Any]] = []
    async with asyncio.timeout(10):
        while len(got) < count:
            await woken.wait()
            woken.clear()
            got.extend(f for f in peer.read() if f.get("t") == "pub")
    return got


async def _room(hub: Ladder, records: list[dict[str, Any]]) -> tuple[Peer, asyncio.Event, Peer]:
    """A subscriber of ``room`` (and its wake-ups), and a publisher; no record written yet."""
    subscriber, woken = await _subscriber(hub, "room")
    publisher = await Peer.open(hub)
    records.clear()
    return subscriber, woken, publisher


def _answers(peer: Peer, ids: list[int], *, ack: bool = True) -> dict[int, dict[str, Any]]:
    """The answers ``peer`` got, by message id: exactly one to each of ``ids``."""
    answers = {f["re"]: f for f in peer.read(ack=ack) if f.get("t") in ("reply", "err")}
    assert sorted(answers) == ids
    return answers


async def test_a_burst_of_publications_goes_to_redis_as_one_pipeline_and_one_record(
    hub: Ladder, pipelines: list[int], records: list[dict[str, Any]]
) -> None:
    subscriber, woken, publisher = await _room(hub, records)
    ids = await publisher.send(*({"t": "pub", "ch": "room", "d": n} for n in range(30)))
    answers = [f for f in publisher.read(ack=False) if f.get("t") in ("reply", "err")]
    assert [(f["t"], f["re"]) for f in answers] == [("reply", i) for i in ids], "each answered, in order"
    offsets = [f["d"]["off"] for f in answers]
    assert offsets == list(range(offsets[0], offsets[0] + 30)), "offsets in the order they were sent"
    assert pipelines == [30], "the 30 publications went to Redis as one pipeline"
    assert records == [{"done": 30, "replies": ids}], "recorded in one write, with every answer"
    state = publisher.session.state
    record = await internals(hub).engine.applied_record(state.sid, state.token)
    assert record is not None and record.done == 30 and sorted(record.replies) == ids
    got = await _publications(subscriber, woken, 30)
    assert [(p["o"], p["d"]) for p in got] == [(o, n) for n, o in enumerate(offsets)]


async def test_a_refused_publication_among_others_gets_its_error_and_the_rest_are_published(
    hub: Ladder, pipelines: list[int], records: list[dict[str, Any]]
) -> None:
    subscriber, woken, publisher = await _room(hub, records)
    frames = [
        {"t": "pub", "ch": "room", "d": "a"},
        {"t": "pub", "ch": "secret", "d": "no"},
        {"t": "pub", "ch": "room", "d": "b"},
        {"t": "pub", "ch": "secret", "d": "no"},
        {"t": "pub", "ch": "room", "d": "c"},
    ]
    ids = await publisher.send(*frames)
    answers = _answers(publisher, ids, ack=False)
    assert [answers[i]["t"] for i in ids] == ["reply", "err", "reply", "err", "reply"]
    assert answers[2]["code"] == answers[4]["code"] == "forbidden", answers
    assert pipelines == [3], "the three allowed went out together"
    assert records == [{"done": 5, "replies": ids}], "the errors are kept as answers too"
    got = await _publications(subscriber, woken, 3)
    assert [p["d"] for p in got] == ["a", "b", "c"]


async def test_publications_between_other_messages_keep_their_place(
    hub: Ladder, pipelines: list[int]
) -> None:
    """A message that is not a publication ends a run: what comes after it is applied after
    it (here a history query sees exactly the publications before it)."""
    publisher = await Peer.open(hub)
    ids = await publisher.send(
        {"t": "pub", "ch": "log", "d": 1},
        {"t": "pub", "ch": "log", "d": 2},
        {"t": "history", "ch": "log", "limit": 10},
        {"t": "pub", "ch": "log", "d": 3},
        {"t": "pub", "ch": "log", "d": 4},
    )
    answers = _answers(publisher, ids)
    assert [p["d"] for p in answers[3]["d"]["pubs"]] == [1, 2]
    assert pipelines == [2, 2]


async def test_a_driver_cancelled_while_a_run_is_on_its_way_finishes_it_in_order(
    hub: Ladder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection's task goes away while the run is at Redis: every publication in it
    is answered once (as interrupted), recorded, and what came after is applied after it."""
    entered, release = asyncio.Event(), asyncio.Event()
    engine = internals(hub).engine
    publish_many = engine.publish_many
    assert publish_many is not None

    async def held(items: Any) -> Any:
        entered.set()
        await release.wait()
        return await publish_many(items)

    monkeypatch.setattr(internals(hub).inbound.dispatch, "_publish_many", held)
    publisher = await Peer.open(hub)
    driver = asyncio.create_task(publisher.send(*({"t": "pub", "ch": "room", "d": n} for n in range(3))))
    await entered.wait()
    driver.cancel()
    await publisher.send({"t": "history", "ch": "room", "limit": 10})  # must wait its turn
    release.set()
    assert await publisher.session.settle(5.0), "the hub finished the queue by itself"
    out = publisher.read()
    answers = [(f["t"], f["re"], f.get("code")) for f in out if f.get("re")]
    assert answers[:3] == [("err", n, "handler_error") for n in (1, 2, 3)], answers
    assert answers[3][:2] == ("reply", 4) and len(answers) == 4, "each answered once, in order"
    assert {"t": "ack", "i": 4} in out
    state = publisher.session.state
    record = await engine.applied_record(state.sid, state.token)
    assert record is not None and record.done == 4 and {1, 2, 3} <= set(record.replies)
