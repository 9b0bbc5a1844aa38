"""The Redis engine against a real redis-server: channels, history, presence, failures."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, Self

import pytest
import redis.asyncio as aioredis
from redis.exceptions import OutOfMemoryError, ResponseError

from ladder import Ladder
from ladder.engine.base import ChannelOptions, Member, Position, Publication
from ladder.engine.redis import RedisEngine
from ladder.engine.redis.link import unavailable
from ladder.protocol.codec import Payload
from ladder.protocol.errors import LadderError
from tests.support.redis import RedisServer

OPTIONS = ChannelOptions(history_size=100, history_ttl=600)


class Sink:
    def __init__(self) -> None:
        self.pubs: asyncio.Queue[Publication] = asyncio.Queue()
        self.presence: asyncio.Queue[tuple[str, str, Member]] = asyncio.Queue()
        self.resets: asyncio.Queue[tuple[str, Position]] = asyncio.Queue()
        self.node: list[bytes] = []

    def on_publication(self, pub: Publication) -> None:
        self.pubs.put_nowait(pub)

    def on_presence(self, channel: str, kind: str, member: Member) -> None:
        self.presence.put_nowait((channel, kind, member))

    def on_reset(self, channel: str, position: Position) -> None:
        self.resets.put_nowait((channel, position))

    def on_node_message(self, message: bytes) -> None:
        self.node.append(message)

    def on_route_lost(self) -> None:
        pass


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
async def engine(redis_server: RedisServer) -> AsyncIterator[tuple[RedisEngine, Sink]]:
    engine, sink = RedisEngine(redis_server.url), Sink()
    await engine.start(sink)
    assert engine.healthy
    yield engine, sink
    await engine.stop()


async def next_pub(sink: Sink, timeout: float = 5.0) -> Publication:
    return await asyncio.wait_for(sink.pubs.get(), timeout)


async def test_presence_across_nodes_with_join_and_leave(redis_server: RedisServer) -> None:
    a, b = RedisEngine(redis_server.url), RedisEngine(redis_server.url)
    sink_a, sink_b = Sink(), Sink()
    await a.start(sink_a)
    await b.start(sink_b)
    try:
        await b.listen("lobby")
        alice = Member("c1", "alice", {"nick": "Al"})
        await a.presence_add("lobby", alice, ttl=30)
        assert await asyncio.wait_for(sink_b.presence.get(), 5) == ("lobby", "join", alice)
        await a.presence_add("lobby", alice, ttl=30)  # a refresh is not a second join
        await b.presence_add("lobby", Member("c2", "bob"), ttl=30)
        assert sorted(m.user or "" for m in await a.presence("lobby")) == ["alice", "bob"]
        await a.presence_remove("lobby", alice)
        events = [await asyncio.wait_for(sink_b.presence.get(), 5) for _ in range(2)]
        assert [(kind, m.user) for _, kind, m in events] == [("join", "bob"), ("leave", "alice")]
        # A member whose node died (no refresh) expires, and its leave is announced.
        await a.presence_add("lobby", Member("c3", "carol"), ttl=0.5)
        await asyncio.wait_for(sink_b.presence.get(), 5)
        await asyncio.sleep(0.6)  # let the 0.5 s presence TTL pass
        assert [m.user for m in await b.presence("lobby")] == ["bob"]
        assert (await asyncio.wait_for(sink_b.presence.get(), 5))[1:] == ("leave", Member("c3", "carol"))
    finally:
        await a.stop()
        await b.stop()


async def test_a_dead_nodes_member_leaves_without_anyone_asking(redis_server: RedisServer) -> None:
    """Node A dies with a member present: node B, listening, hears its leave once its ttl
    ran out, from B's own sweep (no presence query anywhere)."""
    a = RedisEngine(redis_server.url, sweep_every=0.2)
    b = RedisEngine(redis_server.url, sweep_every=0.2)
    sink_b = Sink()
    await a.start(Sink())
    await b.start(sink_b)
    try:
        await b.listen("lobby")
        dave = Member("c4", "dave")
        await a.presence_add("lobby", dave, ttl=0.5)
        assert await asyncio.wait_for(sink_b.presence.get(), 5) == ("lobby", "join", dave)
        await a.stop()  # A is gone: nobody refreshes dave, and A's own sweep is stopped too
        assert await asyncio.wait_for(sink_b.presence.get(), 3) == ("lobby", "leave", dave)
        assert sink_b.presence.empty()
    finally:
        await a.stop()
        await b.stop()


async def test_a_leave_is_announced_even_when_the_sweep_comes_after_the_members_ttl(
    redis_server: RedisServer,
) -> None:
    """The presence keys outlive their last member until a sweep has announced its leave
    (they once expired one second after it, taking the leave with them)."""
    a, b = RedisEngine(redis_server.url, sweep_every=1.5), RedisEngine(redis_server.url, sweep_every=1.5)
    sink_b = Sink()
    await a.start(Sink())
    await b.start(sink_b)
    try:
        await b.listen("lobby")
        erin = Member("c5", "erin")
        await a.presence_add("lobby", erin, ttl=0.5)
        assert await asyncio.wait_for(sink_b.presence.get(), 5) == ("lobby", "join", erin)
        await a.stop()
        assert await asyncio.wait_for(sink_b.presence.get(), 0.5 + 1.5 + 2.0) == ("lobby", "leave", erin)
    finally:
        await a.stop()
        await b.stop()


async def _evalsha_calls(client: Any) -> int:
    stats = (await client.info("commandstats")).get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0)) - int(stats.get("failed_calls", 0))  # (not NOSCRIPT)


async def test_a_sweep_visits_only_the_channels_that_fell_due(redis_server: RedisServer) -> None:
    """2,000 channels with a live member and 3 whose member's time ran out: a sweep runs the
    sweep script for those 3 only (it ran it for all 2,003, on every node, every 5 s), and
    the next finds nothing due. Each channel stays in the due set at its earliest expiry."""
    node, sink = RedisEngine(redis_server.url, sweep_every=3600), Sink()
    await node.start(sink)
    client = aioredis.from_url(redis_server.url)
    try:
        presence = node._presence
        live = [f"room{n}" for n in range(2000)]
        for start in range(0, len(live), 200):
            await asyncio.gather(
                *(node.presence_add(ch, Member(f"c-{ch}", "u"), ttl=60) for ch in live[start : start + 200])
            )
        gone = {f"gone{n}": Member(f"g{n}", "ghost") for n in range(3)}
        for channel, member in gone.items():
            await node.listen(channel)
            await node.presence_add(channel, member, ttl=-1)  # its time has already run out
            assert await asyncio.wait_for(sink.presence.get(), 5) == (channel, "join", member)
        before = await _evalsha_calls(client)
        await presence.sweep()
        assert await _evalsha_calls(client) - before == 3
        leaves = sorted([await asyncio.wait_for(sink.presence.get(), 5) for _ in gone])
        assert leaves == sorted((channel, "leave", member) for channel, member in gone.items())
        for channel in gone:
            assert await client.zscore(presence.due_key, channel) is None, "no member left: not due"
        expires = await client.zscore(f"ladder:pe:{live[0]}", f"c-{live[0]}")
        assert await client.zscore(presence.due_key, live[0]) == expires
        before = await _evalsha_calls(client)
        await presence.sweep()
        assert await _evalsha_calls(client) == before
        assert sink.presence.empty()
    finally:
        await client.aclose()
        await node.stop()


async def test_the_due_set_holds_each_channels_earliest_expiry_through_refresh_and_remove(
    redis_server: RedisServer,
) -> None:
    """A refresh moves its channel's due time with it, a removal too, and the last member
    gone takes its channel out: a channel whose members are refreshed never falls due."""
    node, sink = RedisEngine(redis_server.url, sweep_every=3600), Sink()
    await node.start(sink)
    client = aioredis.from_url(redis_server.url)
    due = node._presence.due_key

    async def expiry(client_id: str) -> float | None:
        found: float | None = await client.zscore("ladder:pe:lobby", client_id)
        return found

    try:
        ann, ben = Member("c1", "ann"), Member("c2", "ben")
        await node.presence_add("lobby", ann, ttl=30)
        await node.presence_add("lobby", ben, ttl=60)
        assert await client.zscore(due, "lobby") == await expiry("c1")
        await node.presence_add("lobby", ann, ttl=90)  # refreshed: ben is now the earliest
        assert await client.zscore(due, "lobby") == await expiry("c2")
        await node.presence_remove("lobby", ben)
        assert await client.zscore(due, "lobby") == await expiry("c1")
        await node.presence_remove("lobby", ann)
        assert await client.zscore(due, "lobby") is None
    finally:
        await client.aclose()
        await node.stop()


async def test_redis_down_means_a_clear_error_fast_and_recovery_by_itself(
    redis_server: RedisServer, engine: tuple[RedisEngine, Sink]
) -> None:
    node, sink = engine
    await node.listen("x")
    await node.publish("x", Payload.of(1), OPTIONS)
    await next_pub(sink)
    redis_server.stop()
    started = time.perf_counter()
    with pytest.raises(LadderError) as refused:
        await node.publish("x", Payload.of(2), OPTIONS)
    assert refused.value.code == "engine_unavailable"
    assert time.perf_counter() - started < 1.0, "the error comes within a second"
    redis_server.start()  # same port, empty data: a new epoch
    async with asyncio.timeout(15):
        channel, position = await sink.resets.get()
    assert channel == "x" and position.offset == 0, "the lost stream is reported, not silently skipped"
    async with asyncio.timeout(15):
        while not node.healthy:  # noqa: ASYNC110 - engine flag set by its own reconnect loop
            await asyncio.sleep(0.05)
    pub = await node.publish("x", Payload.of(3), OPTIONS)
    assert pub.offset == 1 and (await next_pub(sink)).data == 3


async def test_the_listener_is_back_as_soon_as_redis_answers_not_after_its_backoff(
    redis_server: RedisServer, engine: tuple[RedisEngine, Sink]
) -> None:
    """A Redis down for a few seconds has grown the listener's backoff to 2.5-5 s; the
    heartbeat hearing Redis again wakes it: the node is listening (and resyncing) within
    moments of Redis's first answer, not seconds of undelivered publications later."""
    node, _ = engine
    await node.listen("x")
    redis_server.stop()
    async with asyncio.timeout(15):
        while node._listener.reconnects < 7 or node._commands_ok:  # noqa: ASYNC110 - its backoff is now 5 s
            await asyncio.sleep(0.02)
    redis_server.start()
    async with asyncio.timeout(5):
        while not node._commands_ok:  # noqa: ASYNC110 - set by the engine's own heartbeat
            await asyncio.sleep(0.01)
    answered = time.perf_counter()
    async with asyncio.timeout(5):
        await node._listener.subscribed.wait()
    waited = time.perf_counter() - answered
    # (under its least backoff, 2.5 s, with room for a stalled loop: the suite's first run
    # shares two cores with the compiler and Chromium, where a command once waited 1 s)
    assert waited < 2.0, f"the listener came back {waited:.2f} s after Redis answered"


async def test_after_a_flush_a_node_resyncs_its_subscribers_at_the_new_epochs_first_publication(
    engine: tuple[RedisEngine, Sink],
) -> None:
    """What docs/ops.md ("Persistence") says, against a restart (above: a resync at offset 0
    once the link is back): a flush leaves the link up, so the node learns of the new epoch
    from its first publication and resyncs at its offset, instead of delivering it."""
    node, sink = engine
    await node.listen("f")
    first = await node.publish("f", Payload.of(1), OPTIONS)
    await next_pub(sink)
    await node.redis.flushall()
    assert sink.resets.empty() and sink.pubs.empty(), "nothing is heard before a publication"
    pub = await node.publish("f", Payload.of(2), OPTIONS)
    assert pub.epoch != first.epoch and pub.offset == 1
    async with asyncio.timeout(5):
        channel, position = await sink.resets.get()
    assert (channel, position) == ("f", Position(pub.epoch, 1))
    assert sink.pubs.empty(), "the publication the resync stands for is not delivered too"
    await node.publish("f", Payload.of(3), OPTIONS)
    later = await next_pub(sink)
    assert (later.offset, later.data) == (2, 3), "later ones arrive as usual"


async def test_a_read_never_shortens_a_position_kept_as_long_as_its_history(redis_server: RedisServer) -> None:
    """A channel whose history outlives ``meta_ttl``: its publication keeps the position as
    long as the history; a read (a subscribe, a history query) set it back to ``meta_ttl``,
    so the position could expire first and a new epoch start over publications still kept
    (every client back after that told ``rec`` false for history that was there)."""
    node, sink = RedisEngine(redis_server.url, meta_ttl=100), Sink()
    await node.start(sink)
    try:
        options = ChannelOptions(history_ttl=5000)
        await node.publish("long", Payload.of(1), options)
        key = node._link.k("m", "long")
        assert 4900 < await node.redis.ttl(key) <= 5000
        await node.position("long")
        assert 4900 < await node.redis.ttl(key) <= 5000, "the read kept the longer life"
        await node.redis.expire(key, 10)
        await node.position("long")
        assert 90 < await node.redis.ttl(key) <= 100, "a read still extends it to meta_ttl"
    finally:
        await node.stop()


async def test_a_meta_ttl_under_a_second_keeps_the_position_for_a_second(redis_server: RedisServer) -> None:
    """``int(0.5)`` is 0, and ``EXPIRE key 0`` deletes the key: every read of a quiet channel
    started a new epoch (every subscriber's recovery told ``rec`` false). Rounded up: 1 s."""
    node, sink = RedisEngine(redis_server.url, meta_ttl=0.5), Sink()
    await node.start(sink)
    try:
        first = await node.position("brief")
        again = await node.position("brief")
        assert again.epoch == first.epoch
        assert 0 < await node.redis.pttl(node._link.k("m", "brief")) <= 1000
    finally:
        await node.stop()


async def test_a_listener_that_missed_messages_catches_up_from_history(
    engine: tuple[RedisEngine, Sink],
) -> None:
    node, sink = engine
    await node.listen("gap")
    for n in range(3):
        await node.publish("gap", Payload.of(n), OPTIONS)
    assert [(await next_pub(sink)).offset for _ in range(3)] == [1, 2, 3]
    # Kill the listener's connection from the server side: messages published meanwhile
    # never reach it over pub/sub and must come from the stream.
    admin = node.redis
    clients = await admin.client_list()
    subscribers = [c for c in clients if int(c.get("sub", 0)) > 0]
    for c in subscribers:
        await admin.client_kill_filter(_id=c["id"])
    for n in range(3, 10):
        await node.publish("gap", Payload.of(n), OPTIONS)
    got = [(await next_pub(sink, 15)).offset for _ in range(7)]
    assert got == list(range(4, 11))
    assert node.reconnects >= 1


async def test_a_stream_that_went_back_is_reported_not_skipped(engine: tuple[RedisEngine, Sink]) -> None:
    """Redis lost its newest publications but kept the epoch (a replica took over before
    they reached it): the offsets will be reused by other publications, which a listener
    would drop as already delivered. It is reported as a reset instead."""
    node, sink = engine
    await node.listen("back")
    for n in range(5):
        await node.publish("back", Payload.of(n), OPTIONS)
    delivered = [await next_pub(sink) for _ in range(5)]
    assert [p.offset for p in delivered] == [1, 2, 3, 4, 5]
    admin = node.redis
    # What a replica three publications behind holds: offsets 1 and 2 only.
    kept = await admin.xrange("ladder:s:back", "0-1", "0-2")
    await admin.delete("ladder:s:back")
    for entry_id, fields in kept:
        await admin.xadd("ladder:s:back", fields, id=entry_id)
    await admin.hset("ladder:m:back", "o", 2)
    for c in [c for c in await admin.client_list() if int(c.get("sub", 0)) > 0]:
        await admin.client_kill_filter(_id=c["id"])  # the listener reconnects and catches up
    async with asyncio.timeout(15):
        channel, position = await sink.resets.get()
    assert channel == "back" and position.offset == 2
    assert position.epoch != delivered[-1].epoch, "a fork: the channel moved to a new epoch"
    pub = await node.publish("back", Payload.of("new"), OPTIONS)
    assert pub.offset == 3 and (await next_pub(sink)).data == "new", "the reused offset is delivered"
    for n in range(2):
        await node.publish("back", Payload.of(n), OPTIONS)
    # Offsets 3..5 name other publications now: a client that received the lost ones must
    # not recover from its position 5 as if it had these.
    since = await node.history("back", since=Position(delivered[-1].epoch, 5), limit=100, options=OPTIONS)
    assert not since.complete


async def test_a_catch_up_racing_live_messages_neither_resyncs_nor_doubles(
    engine: tuple[RedisEngine, Sink], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The double around a cluster failover: a catch-up (after a channel was subscribed on
    another connection) reads the channel's position while live messages keep arriving; one
    delivered meanwhile is newer than the position read, not a sign that Redis went back.
    Judged as one, the channel was reset, and the next gap read that publication again."""
    node, sink = engine
    await node.listen("race")
    for n in range(3):
        await node.publish("race", Payload.of(n), OPTIONS)
    assert [(await next_pub(sink)).offset for _ in range(3)] == [1, 2, 3]
    channels = node._channels
    read = channels._read_position

    async def read_then_live(channel: str) -> Position:
        position = await read(channel)
        await node.publish("race", Payload.of(3), OPTIONS)  # arrives live before the answer
        assert (await next_pub(sink)).offset == 4
        return position

    monkeypatch.setattr(channels, "_read_position", read_then_live)
    await channels.catch_up(["race"])
    monkeypatch.setattr(channels, "_read_position", read)
    await node.publish("race", Payload.of(4), OPTIONS)
    assert (await next_pub(sink)).offset == 5, "offset 4 came again"
    assert sink.resets.empty() and sink.pubs.empty()


async def _fork(
    node: RedisEngine, channel: str, kept: int, taken: list[str]
) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """Make Redis hold what a replica promoted ``kept`` publications in holds: the first
    ``kept`` entries, then ``taken`` (new publications given the following offsets)."""
    admin, stream = node.redis, f"ladder:s:{channel}"
    entries = list(await admin.xrange(stream, "0-1", f"0-{kept}"))
    for n, value in enumerate(taken, start=kept + 1):
        fields = {b"t": repr(time.time()).encode(), b"d": Payload.of(value).msgpack}
        entries.append((f"0-{n}".encode(), fields))
    await admin.delete(stream)
    for entry_id, fields in entries:
        await admin.xadd(stream, fields, id=entry_id)
    await admin.hset(f"ladder:m:{channel}", "o", len(entries))
    return entries


async def test_offsets_given_again_to_other_publications_are_a_fork_not_a_silent_loss(
    engine: tuple[RedisEngine, Sink],
) -> None:
    """A replica promoted three publications behind, that took new ones at once: by the time
    the listener catches up the channel is *past* what it delivered, but offsets 3..5 name
    other publications. Comparing offsets alone would deliver 6 and lose 3..5 silently; it
    is a fork: the channel moves to a new epoch, every subscriber resyncs, and a client
    recovering from a position of the old epoch is told to resync too."""
    node, sink = engine
    await node.listen("fork")
    for n in range(5):
        await node.publish("fork", Payload.of(n), OPTIONS)
    delivered = [await next_pub(sink) for _ in range(5)]
    assert [p.offset for p in delivered] == [1, 2, 3, 4, 5]
    epoch = delivered[-1].epoch
    await _fork(node, "fork", 2, ["x3", "x4", "x5", "x6"])
    for c in [c for c in await node.redis.client_list() if int(c.get("sub", 0)) > 0]:
        await node.redis.client_kill_filter(_id=c["id"])  # the listener reconnects and catches up
    async with asyncio.timeout(15):
        channel, position = await sink.resets.get()
    assert channel == "fork" and position.epoch != epoch and position.offset == 6
    assert sink.pubs.empty(), "nothing of the other stream delivered as if it continued this one"
    since = await node.history("fork", since=Position(epoch, 5), limit=100, options=OPTIONS)
    assert not since.complete and since.position == position
    pub = await node.publish("fork", Payload.of("new"), OPTIONS)
    assert (pub.epoch, pub.offset) == (position.epoch, 7)
    assert (await next_pub(sink)).data == "new"


async def test_a_fork_is_found_even_when_the_new_connection_delivers_first(
    engine: tuple[RedisEngine, Sink],
) -> None:
    """(The cluster listener moves a channel to another primary's connection, whose first
    messages can be handed on before the catch-up runs.) The catch-up checks what was
    delivered before the move, not the newest, which came from the other stream."""
    node, sink = engine
    await node.listen("slip")
    for n in range(5):
        await node.publish("slip", Payload.of(n), OPTIONS)
    epoch = [(await next_pub(sink)).epoch for _ in range(5)][-1]
    channels = node._channels
    channels.moving(["slip"])
    entry_id, fields = (await _fork(node, "slip", 2, ["x3", "x4", "x5", "x6"]))[-1]
    live = b"P" + b" ".join([epoch.encode(), entry_id.split(b"-")[1], fields[b"t"], fields[b"d"]])
    await channels.on_message("slip", live)  # offset 6 of the other stream, first on the new connection
    assert (await next_pub(sink)).data == "x6"
    await channels.catch_up(["slip"])
    channel, position = sink.resets.get_nowait()
    assert channel == "slip" and position.epoch != epoch and position.offset == 6


async def test_node_messages_reach_only_their_node(redis_server: RedisServer) -> None:
    a, b = RedisEngine(redis_server.url, node_id="node-a"), RedisEngine(redis_server.url, node_id="node-b")
    sink_a, sink_b = Sink(), Sink()
    await a.start(sink_a)
    await b.start(sink_b)
    try:
        assert a.session_prefix() == "node-a."
        assert await b.locate_session("node-a.xyz") == "node-a"
        assert await b.locate_session("node-z.xyz") is None, "a node that is not alive holds nothing"
        await b.claim_session("node-a.xyz", ttl=30)
        assert await a.locate_session("node-a.xyz") == "node-b", "a hand-over is recorded"
        await b.send_node("node-a", b"hello")
        async with asyncio.timeout(5):
            while not sink_a.node:  # noqa: ASYNC110 - pub/sub delivery, observed from outside
                await asyncio.sleep(0.01)
        assert sink_a.node == [b"hello"] and sink_b.node == []
    finally:
        await a.stop()
        await b.stop()


def _unused(_: Any) -> None: ...


async def test_a_burst_larger_than_the_pool_waits_for_connections(redis_server: RedisServer) -> None:
    """A restart makes every client resubscribe at once: more commands than connections must
    queue for one, not fail with engine_unavailable."""
    engine = RedisEngine(redis_server.url, max_connections=4)
    await engine.start(Sink())
    try:
        positions = await asyncio.gather(*(engine.position(f"burst:{n}") for n in range(200)))
        assert len(positions) == 200 and all(p.offset == 0 for p in positions)
    finally:
        await engine.stop()


class _Relay:
    """A TCP relay to Redis on a free loopback port; subclasses decide what happens to each
    chunk before it is passed on (``replies``: it comes from Redis)."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._relaying: set[asyncio.Task[Any]] = set()

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await asyncio.gather(*self._relaying, return_exceptions=True)

    async def _before_write(self, replies: bool) -> None:
        return None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._relaying.add(task)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self._writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, replies: bool) -> None:
            try:
                while data := await src.read(65536):
                    await self._before_write(replies)
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer, False), pipe(up_reader, writer, True))


class SlowReply(_Relay):
    """A TCP relay to Redis that can hold Redis's next reply for ``hold`` seconds: the command
    runs at once, its answer arrives late (a stalled network, an overloaded Redis)."""

    def __init__(self, target: int) -> None:
        super().__init__(target)
        self.hold = 0.0

    async def _before_write(self, replies: bool) -> None:
        if replies and self.hold:
            delay, self.hold = self.hold, 0.0
            await asyncio.sleep(delay)  # the simulated stall itself


async def test_a_publish_that_timed_out_is_not_sent_again(redis_server: RedisServer) -> None:
    """A publication whose reply does not come in time may have been stored: the caller gets
    an error, and the engine must not send it again (that would store it twice)."""
    async with SlowReply(redis_server.port) as relay:
        engine = RedisEngine(f"redis://127.0.0.1:{relay.port}/0", command_timeout=0.2)
        await engine.start(Sink())
        try:
            await engine.publish("slow", Payload.of(0), OPTIONS)
            relay.hold = 0.5
            with pytest.raises(LadderError) as unknown:
                await engine.publish("slow", Payload.of(1), OPTIONS)
            assert unknown.value.code == "engine_unavailable"
            last = await engine.publish("slow", Payload.of(2), OPTIONS)
            history = await engine.history("slow", since=None, limit=10, options=OPTIONS)
            assert [p.data for p in history.publications] == [0, 1, 2], "stored once, not twice"
            assert last.offset == 3
        finally:
            await engine.stop()


class StallRelay(_Relay):
    """A TCP relay to Redis that can stall: while stalled, bytes in both directions are held
    (not dropped, no connection is reset) and go on, in order, once it heals."""

    def __init__(self, target: int) -> None:
        super().__init__(target)
        self.flowing = asyncio.Event()
        self.flowing.set()

    async def __aexit__(self, *exc: object) -> None:
        self.flowing.set()
        await super().__aexit__(*exc)

    async def _before_write(self, replies: bool) -> None:
        await self.flowing.wait()


async def _until(condition: Any, timeout: float) -> float:
    """Seconds until ``condition()`` holds (the engine's health is a flag its own tasks set)."""
    started = time.monotonic()
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    return time.monotonic() - started


async def test_health_follows_a_stall_that_heals_without_a_connection_reset(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ladder")
    async with StallRelay(redis_server.port) as relay:
        engine, sink = RedisEngine(f"redis://127.0.0.1:{relay.port}/0", command_timeout=0.3), Sink()
        hub = Ladder(engine)  # its /health reports what hub.health() says
        await engine.start(sink)
        try:
            assert hub.health()["ok"]
            infos = [r.message for r in caplog.records if r.levelno == logging.INFO and "redis engine" in r.message]
            assert infos and "redis engine connected" in infos[0], infos  # (not "healthy again" at start)
            relay.flowing.clear()
            await _until(lambda: not hub.health()["ok"], 5.0)
            warnings = [
                r for r in caplog.records if r.levelno == logging.WARNING and "unhealthy" in r.message
            ]
            assert len(warnings) == 1 and "engine_unavailable" in warnings[0].message
            await asyncio.sleep(2.0)  # the stall itself lasts a while
            assert not hub.health()["ok"]
            assert engine.details()["commands"] is False  # /health says which half is at fault
            relay.flowing.set()
            healed = await _until(lambda: hub.health()["ok"], 10.0)
            assert healed < 5.0
            assert engine.details()["commands"] is engine.details()["listening"] is True
            assert any(r.levelno == logging.INFO and "healthy again" in r.message for r in caplog.records)
            # and it works again: a channel listened to now is delivered
            await engine.listen("after")
            await engine.publish("after", Payload.of("ok"), OPTIONS)
            assert (await next_pub(sink)).data == "ok"
        finally:
            await engine.stop()


async def test_health_comes_back_after_a_command_fails_with_an_error_that_is_not_redis(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The heartbeat is what makes a node healthy again: an unexpected error from redis-py
    (uvloop's RuntimeError for a transport closed under it, a parser's bug) ended it, and the
    node then answered 503 on /health, and refused every new session, until it restarted."""
    caplog.set_level(logging.INFO, logger="ladder")
    engine = RedisEngine(redis_server.url)
    await engine.start(Sink())
    client = engine._link.redis
    answer = client.ping
    failures = 2

    async def ping() -> Any:
        nonlocal failures
        if failures:
            failures -= 1
            raise RuntimeError("unable to perform operation on <TCPTransport closed=True>")
        return await answer()

    try:
        assert engine.healthy
        client.ping = ping  # type: ignore[method-assign]
        await _until(lambda: not engine.healthy, 5.0)
        assert engine.details()["commands"] is False
        assert "RuntimeError" in (engine.last_error or "") or "TCPTransport" in (engine.last_error or "")
        await _until(lambda: engine.healthy, 6.0)  # two more heartbeats, 1.5 s apart
        assert not failures
        assert any("heartbeat" in r.message and r.levelno == logging.ERROR for r in caplog.records)
    finally:
        await engine.stop()


async def test_a_dead_node_is_known_dead_quickly(redis_server: RedisServer) -> None:
    """A client resuming a session of a dead node waits for this answer; through connections
    cut every 100-700 ms, an answer slower than that never reached it (it resumed forever).
    Only right after Redis restarted (live nodes subscribing again) is it asked longer."""
    node = RedisEngine(redis_server.url, node_id="node-a")
    await node.start(Sink())
    routing = node._routing
    looks: list[str] = []
    listening = routing.listening

    async def counted(name: str) -> bool:
        looks.append(name)
        if len(looks) == 2 and routing.resubscribe_grace:  # (the caller gives up while this one is asked)
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                return False  # as redis-py may answer a command cancelled at the wrong moment
        return await listening(name)

    async def given_up() -> None:
        async with asyncio.timeout(1.0):
            await node.node_alive("node-gone")  # still asking: it may be subscribing again

    routing.listening = counted  # type: ignore[method-assign]
    try:
        routing.resubscribe_grace = 3600.0  # as if Redis had just started
        asking = asyncio.create_task(given_up())
        done, _ = await asyncio.wait([asking], timeout=5.0)
        while not asking.done():  # (a failure: asking went on after the timeout, for an hour)
            asking.cancel()
            await asyncio.wait([asking], timeout=0.1)
        assert done, "node_alive went on after its caller gave up (the cancellation taken by a command)"
        with pytest.raises(TimeoutError):
            asking.result()
        routing.resubscribe_grace = 0.0  # as if Redis had been up for long
        looks.clear()
        assert not await node.node_alive("node-gone")
        # (counted, not timed: a loop stalled on a shared machine can take longer than a look)
        assert looks == ["node-gone", "node-gone"], "dead: said at once (a second look after 0.15 s)"
        assert await node.node_alive("node-a")
    finally:
        await node.stop()


class FullRedis(RedisServer):
    def extra_args(self) -> list[str]:
        return ["--maxmemory", "3mb"]  # (and noeviction, as every test Redis)


async def test_a_full_redis_is_reported_as_full_naming_the_fix_not_as_unreachable() -> None:
    with FullRedis() as redis:
        engine = RedisEngine(redis.url)
        await engine.start(Sink())
        try:
            big = Payload.of("x" * 50_000)
            with pytest.raises(LadderError) as refused:
                for _ in range(1000):
                    await engine.publish("full", big, OPTIONS)
            assert refused.value.code == "engine_unavailable"
            assert "full" in refused.value.reason and "maxmemory" in refused.value.reason
            assert "unreachable" not in refused.value.reason
            assert engine.healthy  # it answers: only writes are refused
            # A record refused in a pipeline: redis-py's error quoted the command first, and the
            # reason (to the log, and to a client) carried the whole session id and the hash
            # of its resume token.
            sid = "n0de.Secret-session-id-0123456789"
            with pytest.raises(LadderError) as unrecorded:
                for n in range(1000):  # (until Redis is past maxmemory when the record comes)
                    await engine.record_applied(
                        f"{sid}{n}", "tok", done=1, replies={1: b"x" * 20_000}, forget=(), origins=None, ttl=60.0
                    )
            reason = unrecorded.value.reason
            assert "full" in reason and "Secret" not in reason and "HSET" not in reason, reason
        finally:
            await engine.stop()


def test_what_redis_said_reaches_the_reason_escaped_and_short() -> None:
    """A script refused by a full Redis quotes its arguments, a recorded answer's bytes among
    them: they went into the log (and the client's reason) as they were."""
    quoted = "OOM command not allowed ... HSET ladder:a:s1 t c\x00\ufffd\x01 r:1 " + "x" * 1000
    for error in (OutOfMemoryError(quoted), ResponseError(quoted)):
        reason = unavailable(error).reason
        assert reason.isascii() and reason.isprintable(), reason
        assert "\\x00\\ufffd\\x01" in reason and len(reason) < 420, len(reason)
