"""Publishing without a hub: what a worker process meets, on a real Redis."""

from __future__ import annotations

import asyncio
import datetime
import logging
import multiprocessing
import socket
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from ladder import BlockingPublisher, ChannelOptions, ConfigurationError, Ladder, LadderError, Publisher
from ladder.server.hub import internals
from tests.server.harness import Peer
from tests.support.redis import RedisServer
from tests.support.server import free_port
from tests.support.waiting import until


async def test_a_publisher_and_a_hub_share_channels_offsets_and_history() -> None:
    with RedisServer() as redis:
        channels = {"jobs:*": ChannelOptions(history_size=3)}
        hub = Ladder(engine=redis.url, channels=channels)
        try:
            async with Publisher(redis.url, channels=channels) as publisher:
                first = await publisher.publish("jobs:1", {"n": 1})
                by_hub = await hub.publish("jobs:1", {"n": 2})
                for n in (3, 4):
                    await publisher.publish("jobs:1", {"n": n})
            assert (first.offset, by_hub.offset) == (1, 2)
            assert first.epoch == by_hub.epoch
            kept = await hub.history("jobs:1")
            assert [p.data for p in kept] == [{"n": 2}, {"n": 3}, {"n": 4}], "the hub's history size applies"
        finally:
            await hub.stop()


async def test_a_publisher_is_not_a_node_that_hubs_wait_for(redis_server: RedisServer) -> None:
    """A publisher listened for messages to every node without answering them: while one was
    connected (a Celery worker, a WSGI app), every ``hub.send_user`` and ``disconnect_user``
    counted it and waited out the whole 3 s for its answer."""
    hub = Ladder(engine=redis_server.url)
    try:
        await hub.start()
        async with Publisher(redis_server.url) as publisher:
            await publisher.start()
            assert await internals(hub).engine.broadcast(b"to every other node") == 0, "no other node"
            async with asyncio.timeout(2.0):  # (the 3 s it waited before: not a measure of speed)
                assert await hub.send_user("nobody", "hello") == 0
                assert await hub.disconnect_user("nobody", "signed out") == 0
    finally:
        await hub.stop()


def test_a_blocking_publisher_is_shared_by_threads_and_closes_once() -> None:
    with RedisServer() as redis:
        publisher = BlockingPublisher(redis.url)
        with ThreadPoolExecutor(4) as pool:
            offsets = sorted(pool.map(lambda n: publisher.publish("tasks", n).offset, range(20)))
        assert offsets == list(range(1, 21))
        publisher.close()
        publisher.close()
        with pytest.raises(RuntimeError, match="closed"):
            publisher.publish("tasks", 21)


def test_an_unreachable_redis_is_engine_unavailable_not_a_hang(caplog: pytest.LogCaptureFixture) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    with BlockingPublisher(url) as publisher, pytest.raises(LadderError) as caught:
        publisher.publish("tasks", 1)
    assert caught.value.code == "engine_unavailable"
    # Its log says what it means for a publisher (it spoke of sessions and /health, which it has not).
    said = [r.getMessage() for r in caplog.records if "unhealthy" in r.getMessage()]
    assert said and all("publish raises engine_unavailable" in line and "/health" not in line for line in said), said

    async def publish() -> None:
        async with Publisher(url) as pub:
            await pub.publish("tasks", 1)

    with pytest.raises(LadderError, match="engine_unavailable"):
        asyncio.run(publish())


def test_a_publish_that_gets_no_answer_in_time_says_what_where_and_how_long() -> None:
    """A Redis that accepts and never answers: ``TimeoutError`` after ``timeout``, whose
    message a task queue's log shows (it was empty: "TimeoutError" and nothing else); and
    closing the publisher ends the engine whose start the timeout cut short (its tasks were
    left behind, destroyed pending when the loop closed)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # connections complete in the kernel's backlog; nothing is read
        url = f"redis://:secret@127.0.0.1:{silent.getsockname()[1]}/0"
        with BlockingPublisher(url, timeout=0.5) as publisher, pytest.raises(TimeoutError) as caught:
            publisher.publish("jobs:7", 1)
        engine = publisher._publisher.engine
        assert not engine._tasks, "the engine's tasks (listener, heartbeat...) were ended"  # type: ignore[attr-defined]
    said = str(caught.value)
    assert "'jobs:7'" in said and "0.5 s" in said and "127.0.0.1" in said, said
    assert "secret" not in said, "the password is not shown"


def test_data_no_encoding_can_carry_raises_type_error_as_hub_publish_does() -> None:
    """It raised ``LadderError`` ``bad_frame`` (the message of a client's malformed frame),
    and only after connecting: here it fails first, with no Redis even reachable."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    with BlockingPublisher(url) as publisher, pytest.raises(TypeError, match="datetime"):
        publisher.publish("tasks", datetime.datetime.now())


def _publish_in_child(publisher: BlockingPublisher, results: Any) -> None:
    try:
        results.put(publisher.publish("tasks", "from the child").offset)
    except BaseException as exc:  # the parent asserts on what happened
        results.put(repr(exc))


def test_a_blocking_publisher_works_in_a_process_forked_after_it_was_made() -> None:
    """As under gunicorn --preload, Celery's prefork pool or RQ's work horses."""
    context = multiprocessing.get_context("fork")
    with RedisServer() as redis, BlockingPublisher(redis.url, timeout=5) as publisher:
        assert publisher.publish("tasks", "from the parent").offset == 1
        results = context.Queue()
        child = context.Process(target=_publish_in_child, args=(publisher, results))
        child.start()
        child.join(30)
        assert results.get(timeout=5) == 2
        assert child.exitcode == 0
        assert publisher.publish("tasks", "the parent again").offset == 3


async def test_a_publisher_sends_to_a_user_and_ends_their_sessions_on_every_hub(redis_server: RedisServer) -> None:
    """From a process without a hub (a WSGI view signing the user out, a task queue's worker):
    before, only ``hub.send_user`` and ``hub.disconnect_user`` could, in the hub's process."""
    hubs = [Ladder(engine=redis_server.url, authenticate=lambda request: request.token) for _ in range(2)]
    try:
        ada_here, ada_there, bob = (
            await Peer.open(hubs[0], token="ada"), await Peer.open(hubs[1], token="ada"), await Peer.open(hubs[1], token="bob")
        )
        async with Publisher(redis_server.url) as publisher:
            assert await publisher.send_user("ada", "export-ready", {"url": "/x"}) == 2
            assert await publisher.send_user("nobody", "export-ready") == 0
            with pytest.raises(TypeError, match="user must be the str"):
                await publisher.send_user(None, "x")  # type: ignore[arg-type]
            with pytest.raises(ValueError, match="event"):
                await publisher.send_user("ada", "")
        for peer in (ada_here, ada_there):
            pushes = [frame for frame in peer.read() if frame["t"] == "push"]
            assert [(p["ev"], p["d"]) for p in pushes] == [("export-ready", {"url": "/x"})]
        assert not [frame for frame in bob.read() if frame["t"] == "push"]

        def sign_out() -> int:  # (a synchronous view)
            with BlockingPublisher(redis_server.url) as blocking:
                return blocking.disconnect_user("ada", "signed out")

        assert await asyncio.to_thread(sign_out) == 2
        for peer in (ada_here, ada_there):
            await until(lambda peer=peer: peer.session.sid not in internals(peer.hub).sessions, "ended on its hub")
            byes = [frame for frame in peer.read() if frame["t"] == "bye"]
            assert byes and (byes[0]["code"], byes[0]["reason"]) == ("session_closed", "signed out")
        assert bob.session.sid in internals(hubs[1]).sessions, "another user's session stays"
    finally:
        for hub in hubs:
            await hub.stop()


def test_a_publisher_asking_hubs_through_an_unreachable_redis_is_engine_unavailable() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    with BlockingPublisher(url) as publisher, pytest.raises(LadderError) as caught:
        publisher.disconnect_user("ada", "signed out")
    assert caught.value.code == "engine_unavailable"


async def test_a_publisher_with_other_history_options_is_logged_once_per_channel(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A Publisher given no ``channels=`` cut a hub's history of 5,000 to its default 100
    (the stream is trimmed by whichever process publishes), and a client back after a node
    failure got a resync instead of its messages, with nothing said anywhere."""
    caplog.set_level(logging.WARNING, logger="ladder.redis")
    kept = {"room:*": ChannelOptions(history_size=5000)}
    hub = Ladder(engine=redis_server.url, channels=kept)
    try:
        await hub.publish("room:a", 1)
        async with Publisher(redis_server.url) as publisher:
            await publisher.publish("room:a", 2)
            await publisher.publish("room:a", 3)
        await hub.publish("room:a", 4)
        await hub.publish("room:a", 5)
        async with Publisher(redis_server.url, channels=kept) as alike:
            await alike.publish("room:a", 6)
        said = [r.getMessage() for r in caplog.records if "other history options" in r.getMessage()]
        assert said == [
            "channel room:a: its previous publication was made with other history options "
            "(history_size, history_ttl: 5000, 600 there, 100, 600 here): the history is cut by "
            "whichever process publishes, so a client may recover less than a node keeps; give "
            "every Ladder and Publisher on this engine the same channels=",
            "channel room:a: its previous publication was made with other history options "
            "(history_size, history_ttl: 100, 600 there, 5000, 600 here): the history is cut by "
            "whichever process publishes, so a client may recover less than a node keeps; give "
            "every Ladder and Publisher on this engine the same channels=",
        ], "once by the publisher, once by the hub; a publisher given the hub's options says nothing"
    finally:
        await hub.stop()


def test_a_publisher_used_in_a_second_event_loop_is_refused_naming_the_fix(redis_server: RedisServer) -> None:
    """A module-level Publisher used from successive ``asyncio.run()`` calls (or behind
    asgiref's ``async_to_sync``) stored each publication of the second loop twice: its
    connections belonged to the first, closed loop, redis-py's write went out, its read
    failed, and the retry sent the script again (offsets 1, 3, 5; subscribers got both)."""
    publisher = Publisher(redis_server.url)

    async def publish(n: int) -> int:
        return (await publisher.publish("jobs:loops", n)).offset

    assert asyncio.run(publish(1)) == 1
    with pytest.raises(RuntimeError, match=r"another event loop.*async with Publisher\(url\).*BlockingPublisher"):
        asyncio.run(publish(2))

    async def check() -> None:
        async with Publisher(redis_server.url) as again:
            kept = await again.engine.history("jobs:loops", since=None, limit=10, options=ChannelOptions())
            assert [p.data for p in kept.publications] == [1], "nothing stored twice, nothing more"

    asyncio.run(check())

    kept = Publisher(redis_server.url)

    async def within_each_loop(n: int) -> int:
        async with kept:  # (stopped in its loop: the next loop starts it again)
            return (await kept.publish("jobs:loops", n)).offset

    assert [asyncio.run(within_each_loop(n)) for n in (2, 3)] == [2, 3]


def test_a_blocking_publisher_made_from_an_engine_object_follows_a_fork(redis_server: RedisServer) -> None:
    """An engine object (the way to give a key prefix) used by the parent went into the child
    as it was, connections and node id included: ``close()`` in the child raised "attached
    to a different loop" (exit status 1), and ``send_user`` answers crossed between parent and
    children. The child now makes an engine of its own with the same settings."""
    from ladder.engine.redis import RedisEngine  # noqa: PLC0415

    context = multiprocessing.get_context("fork")
    publisher = BlockingPublisher(RedisEngine(redis_server.url, prefix="forked"), timeout=5)
    try:
        assert publisher.publish("tasks", "from the parent").offset == 1
        results = context.Queue()
        child = context.Process(target=_publish_and_close_in_child, args=(publisher, results))
        child.start()
        child.join(30)
        assert results.get(timeout=5) == (2, "closed")
        assert child.exitcode == 0
        assert publisher.publish("tasks", "the parent again").offset == 3
    finally:
        publisher.close()


def _publish_and_close_in_child(publisher: BlockingPublisher, results: Any) -> None:
    try:
        offset = publisher.publish("tasks", "from the child").offset
        engine = publisher._publisher.engine
        assert engine.prefix == "forked", "the same settings"  # type: ignore[attr-defined]
        publisher.close()
        results.put((offset, "closed"))
    except BaseException as exc:  # the parent asserts on what happened
        results.put(repr(exc))


async def test_a_publisher_leaves_no_trace_of_a_node(redis_server: RedisServer) -> None:
    """Every publisher wrote ``{prefix}:node:{id}`` (kept 10 minutes), which ops.md says it
    does not: a per-request ``with BlockingPublisher(...)`` left one key per request."""
    from redis.asyncio import Redis  # noqa: PLC0415

    for n in range(3):
        async with Publisher(redis_server.url) as publisher:
            await publisher.publish("jobs:trace", n)
    redis = Redis.from_url(redis_server.url)
    try:
        assert await redis.keys("ladder:node:*") == []
    finally:
        await redis.aclose()


def test_a_memory_engine_object_is_refused_as_the_url_is() -> None:
    from ladder.engine.memory import MemoryEngine  # noqa: PLC0415

    for make in (Publisher, BlockingPublisher):
        with pytest.raises(ConfigurationError, match="reaches nobody"):
            make(MemoryEngine())


async def test_a_publisher_on_a_redis_refusing_connections_fails_at_once() -> None:
    """Its first publish waited 2 s for a pub/sub subscription that could not come (the
    engine's start waits that long for one when Redis answers) before ``engine_unavailable``:
    2 s per task for a worker making a publisher per task."""
    loop = asyncio.get_running_loop()
    publisher = Publisher(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    began = loop.time()
    with pytest.raises(LadderError) as caught:
        await publisher.publish("jobs:down", 1)
    assert caught.value.code == "engine_unavailable"
    assert loop.time() - began < 1.5, "not the 2 s wait for a subscription"
    await publisher.stop()


async def test_a_blocking_publisher_called_inside_a_running_loop_says_so_once(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """It blocked the caller's loop (every other task waited for Redis) without a word: an
    async view calling it looked fine until it was under load."""
    with BlockingPublisher(redis_server.url) as publisher:
        assert publisher.publish("tasks", 1).offset == 1
        assert publisher.publish("tasks", 2).offset == 2
    said = [r.getMessage() for r in caplog.records if "inside a running event loop" in r.getMessage()]
    assert len(said) == 1 and "use ladder.Publisher and await it" in said[0], said


def test_a_blocking_publisher_in_plain_code_says_nothing_of_loops(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    with BlockingPublisher(redis_server.url) as publisher:
        assert publisher.publish("tasks", 1).offset == 1
    assert "running event loop" not in caplog.text
