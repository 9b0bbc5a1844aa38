"""The engine contract, run against both engines: whatever the hub may rely on behaves the
same on ``memory://`` and on Redis, so a difference between them fails here."""

from __future__ import annotations

import asyncio
import time

import pytest

from ladder.engine import create_engine
from ladder.engine.base import ChannelOptions, Engine, Member, Position, Publication
from ladder.protocol.codec import Payload
from tests.engine.conftest import SWEEP_EVERY, Make, Sink

OPTIONS = ChannelOptions(history_size=100, history_ttl=600)
SMALL = ChannelOptions(history_size=5, history_ttl=600)


async def next_pub(sink: Sink) -> Publication:
    return await asyncio.wait_for(sink.pubs.get(), 5)


async def next_presence(sink: Sink, timeout: float = 5.0) -> tuple[str, str, Member]:
    return await asyncio.wait_for(sink.presence.get(), timeout)


async def publish(engine: Engine, channel: str, values: range, options: ChannelOptions = OPTIONS) -> None:
    for value in values:
        await engine.publish(channel, Payload.of(value), options)


# -- lifecycle ---------------------------------------------------------------------------


async def test_a_started_engine_is_an_engine_and_healthy(make: Make) -> None:
    engine, _ = await make()
    assert isinstance(engine, Engine)
    assert engine.healthy
    assert engine.healthy_for(engine.session_prefix() + "any"), "a healthy engine records every session"
    details = engine.details()
    assert details["engine"] == make.kind and details["healthy"] is True


# -- publishing, offsets, epochs ---------------------------------------------------------


async def test_offsets_count_from_one_within_one_epoch_per_channel(make: Make) -> None:
    engine, _ = await make()
    fresh = await engine.position("new")
    assert fresh.offset == 0 and fresh.epoch
    assert await engine.position("new") == fresh, "reading a position does not change it"
    pubs = [await engine.publish("new", Payload.of(n), OPTIONS) for n in range(5)]
    assert [p.offset for p in pubs] == [1, 2, 3, 4, 5]
    assert {p.epoch for p in pubs} == {fresh.epoch}
    assert [(p.channel, p.data) for p in pubs[:2]] == [("new", 0), ("new", 1)]
    assert await engine.position("new") == Position(fresh.epoch, 5)
    other = await engine.publish("other", Payload.of("x"), OPTIONS)
    assert other.offset == 1, "each channel counts on its own"


async def test_a_channel_idle_past_its_lifetime_starts_a_new_epoch(make: Make) -> None:
    engine, _ = await make(idle_ttl=1.0)
    no_history = ChannelOptions(history_size=0, history_ttl=1)
    await engine.publish("idle", Payload.of(1), no_history)
    before = await engine.position("idle")
    assert before.offset == 1
    await asyncio.sleep(1.0 + 3 * SWEEP_EVERY)  # the channel must stay unused past its lifetime
    after = await engine.position("idle")
    assert after.epoch != before.epoch and after.offset == 0
    lost = await engine.history("idle", since=before, limit=10, options=no_history)
    assert not lost.complete and lost.publications == [] and lost.position == after


async def test_a_listening_node_never_gets_a_new_epoch_unannounced(make: Make) -> None:
    """A listened channel left idle past its lifetime either keeps its stream, or the node is
    told the stream started anew (a reset) instead of being handed its publications. As
    docs/ops.md says: the memory engine keeps a listened channel's, Redis does not."""
    engine, sink = await make(idle_ttl=1.0)
    no_history = ChannelOptions(history_size=0, history_ttl=1)
    await engine.listen("quiet")
    first = await engine.publish("quiet", Payload.of(1), no_history)
    assert (await next_pub(sink)).offset == first.offset
    await asyncio.sleep(1.0 + 3 * SWEEP_EVERY)  # the channel must stay unused past its lifetime
    await engine.publish("quiet", Payload.of(2), no_history)
    pub, reset = asyncio.create_task(sink.pubs.get()), asyncio.create_task(sink.resets.get())
    done, pending = await asyncio.wait({pub, reset}, timeout=5, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    assert done, "the publication was neither delivered nor announced as a new stream"
    assert (pub in done) == (make.kind == "memory"), "memory: kept while listened; Redis: meta_ttl"
    if pub in done:
        assert (pub.result().epoch, pub.result().offset) == (first.epoch, 2), "same stream, next offset"
    else:
        channel, position = reset.result()
        assert channel == "quiet" and position.epoch != first.epoch
        assert sink.pubs.empty() or (await sink.pubs.get()).epoch == position.epoch


# -- the live stream ---------------------------------------------------------------------


async def test_a_listening_node_gets_its_channels_publications_in_order_and_no_others(make: Make) -> None:
    engine, sink = await make()
    await engine.listen("room")
    for n in range(20):
        await engine.publish("room", Payload.of({"n": n, "b": b"\x00"}), OPTIONS)
    got = [await next_pub(sink) for _ in range(20)]
    assert [p.offset for p in got] == list(range(1, 21))
    assert got[3].data == {"n": 3, "b": b"\x00"} and len({p.epoch for p in got}) == 1
    await engine.publish("elsewhere", Payload.of(1), OPTIONS)
    await engine.publish("room", Payload.of("last"), OPTIONS)
    assert (await next_pub(sink)).data == "last", "a channel not listened to is not delivered"
    await engine.unlisten("room")
    await engine.listen("marker")
    await engine.publish("room", Payload.of("after unlisten"), OPTIONS)
    await engine.publish("marker", Payload.of("marker"), OPTIONS)
    assert (await next_pub(sink)).channel == "marker", "after unlisten the channel is not delivered"


# -- history and recovery ----------------------------------------------------------------


async def test_history_gives_the_newest_publications(make: Make) -> None:
    engine, _ = await make()
    await publish(engine, "h", range(8), SMALL)
    position = await engine.position("h")
    recent = await engine.history("h", since=None, limit=3, options=SMALL)
    assert recent.complete and recent.position == position
    assert [p.data for p in recent.publications] == [5, 6, 7]
    assert [p.offset for p in recent.publications] == [6, 7, 8]
    kept = await engine.history("h", since=None, limit=50, options=SMALL)
    assert [p.data for p in kept.publications] == [3, 4, 5, 6, 7], "history keeps history_size"
    assert (await engine.history("h", since=None, limit=0, options=SMALL)).publications == []


async def test_recovery_is_complete_when_history_holds_everything_missed(make: Make) -> None:
    engine, _ = await make()
    await publish(engine, "h", range(8), SMALL)
    position = await engine.position("h")
    ok = await engine.history("h", since=Position(position.epoch, 4), limit=5, options=SMALL)
    assert ok.complete and ok.position == position
    assert [(p.offset, p.data, p.epoch) for p in ok.publications] == [
        (5, 4, position.epoch),
        (6, 5, position.epoch),
        (7, 6, position.epoch),
        (8, 7, position.epoch),
    ]
    nothing_missed = await engine.history("h", since=position, limit=5, options=SMALL)
    assert nothing_missed.complete and nothing_missed.publications == []


@pytest.mark.parametrize(
    ("since", "why"),
    [
        (Position("", 1), "history no longer reaches back to offset 2"),
        (Position("", 2), "more missed (6) than the limit (5)"),
        (Position("other", 7), "another epoch"),
        (Position("", 9), "an offset beyond the channel's newest"),
    ],
)
async def test_recovery_is_all_or_nothing(make: Make, since: Position, why: str) -> None:
    engine, _ = await make()
    await publish(engine, "h", range(8), SMALL)
    position = await engine.position("h")
    since = Position(since.epoch or position.epoch, since.offset)
    result = await engine.history("h", since=since, limit=5, options=SMALL)
    assert not result.complete, why
    assert result.publications == [] and result.position == position


async def test_history_older_than_its_ttl_does_not_count(make: Make) -> None:
    engine, _ = await make()
    short = ChannelOptions(history_size=10, history_ttl=1)
    await engine.publish("ttl", Payload.of(1), short)
    position = await engine.position("ttl")
    assert (await engine.history("ttl", since=Position(position.epoch, 0), limit=10, options=short)).complete
    await asyncio.sleep(1.1)  # the publication must age past its 1 s TTL
    late = await engine.history("ttl", since=Position(position.epoch, 0), limit=10, options=short)
    assert not late.complete and late.publications == []
    assert (await engine.history("ttl", since=None, limit=10, options=short)).publications == []


async def test_a_history_ttl_between_whole_seconds_is_kept_its_whole_time(make: Make) -> None:
    """Redis expired the stream after ``int(history_ttl)`` seconds: 1.9 s of history was gone
    after 1 s there (the memory engine kept it), and a client back within that second resynced."""
    engine, _ = await make()
    ttl = ChannelOptions(history_size=10, history_ttl=1.9)
    await engine.publish("between", Payload.of(1), ttl)
    position = await engine.position("between")
    await asyncio.sleep(1.3)  # past the whole second the key lived, within the 1.9 s it should
    kept = await engine.history("between", since=Position(position.epoch, 0), limit=10, options=ttl)
    assert kept.complete and [p.data for p in kept.publications] == [1]


async def test_a_history_ttl_shorter_than_anything_keeps_nothing_and_publishes_everything(make: Make) -> None:
    """A publication is delivered live whatever its history keeps; offsets stay consecutive."""
    engine, sink = await make()
    tiny = ChannelOptions(history_size=10, history_ttl=1e-9)
    await engine.listen("tiny")
    offsets = [(await engine.publish("tiny", Payload.of(n), tiny)).offset for n in range(3)]
    assert offsets == [1, 2, 3]
    assert [(p.offset, p.data) for p in [await next_pub(sink) for _ in range(3)]] == [(1, 0), (2, 1), (3, 2)]
    await asyncio.sleep(0.01)  # (older than 1e-9 s by any clock's resolution)
    position = await engine.position("tiny")
    assert (await engine.history("tiny", since=None, limit=10, options=tiny)).publications == []
    missed = await engine.history("tiny", since=Position(position.epoch, 1), limit=10, options=tiny)
    assert not missed.complete and position.offset == 3


async def test_a_channel_without_history_recovers_nothing_missed(make: Make) -> None:
    engine, _ = await make()
    none = ChannelOptions(history_size=0)
    start = await engine.position("bare")
    await engine.publish("bare", Payload.of(1), none)
    result = await engine.history("bare", since=start, limit=0, options=none)
    assert not result.complete and result.position.offset == 1


# -- presence ----------------------------------------------------------------------------


async def test_presence_join_refresh_and_leave(make: Make) -> None:
    engine, sink = await make()
    await engine.listen("lobby")
    alice, bob = Member("c1", "alice", {"nick": "Al"}), Member("c2", "bob")
    await engine.presence_add("lobby", alice, ttl=30)
    assert await next_presence(sink) == ("lobby", "join", alice)
    await engine.presence_add("lobby", alice, ttl=30)  # a refresh is not a second join
    await engine.presence_add("lobby", bob, ttl=30)
    assert sorted(m.user or "" for m in await engine.presence("lobby")) == ["alice", "bob"]
    assert {m.client: m for m in await engine.presence("lobby")}["c1"] == alice, "info is kept"
    await engine.presence_remove("lobby", alice)
    await engine.presence_remove("lobby", alice)  # removing twice announces once
    await engine.presence_remove("lobby", Member("c9", "nobody"))  # never there: no event
    await engine.presence_add("lobby", Member("c3", "carol"), ttl=30)
    events = [await next_presence(sink) for _ in range(3)]
    assert [(kind, m.user) for _, kind, m in events] == [
        ("join", "bob"),
        ("leave", "alice"),
        ("join", "carol"),
    ]
    assert sorted(m.user or "" for m in await engine.presence("lobby")) == ["bob", "carol"]
    assert await engine.presence("empty") == []


async def test_an_expired_member_leaves_by_itself_within_the_sweep_interval(make: Make) -> None:
    """A member not refreshed (its node died) leaves within a bounded time after its expiry,
    announced to listening nodes without anyone asking who is present."""
    engine, sink = await make()
    await engine.listen("lobby")
    await engine.presence_add("lobby", Member("c0", "stays"), ttl=30)
    await next_presence(sink)
    added = time.monotonic()
    carol = Member("c3", "carol")
    await engine.presence_add("lobby", carol, ttl=0.5)
    assert await next_presence(sink) == ("lobby", "join", carol)
    assert await next_presence(sink, timeout=0.5 + SWEEP_EVERY + 2.0) == ("lobby", "leave", carol)
    waited = time.monotonic() - added
    assert waited >= 0.45, f"left after {waited:.2f} s, before its 0.5 s ttl ran out"
    assert [m.user for m in await engine.presence("lobby")] == ["stays"]
    assert sink.presence.empty(), "the leave is announced once"


async def test_presence_events_reach_only_listening_nodes(make: Make) -> None:
    engine, sink = await make()
    await engine.presence_add("unheard", Member("c1", "alice"), ttl=0.3)
    await engine.listen("heard")
    await engine.presence_add("heard", Member("c2", "bob"), ttl=30)
    assert (await next_presence(sink))[:2] == ("heard", "join")
    await asyncio.sleep(0.3 + 3 * SWEEP_EVERY)  # alice expires where nobody listens
    await engine.presence_remove("heard", Member("c2", "bob"))
    assert (await next_presence(sink))[:2] == ("heard", "leave")
    assert sink.presence.empty()


# -- session routing and node messages ----------------------------------------------------


async def test_sessions_made_here_are_located_here_or_by_the_hubs_own_table(make: Make) -> None:
    engine, _ = await make()
    sid = engine.session_prefix() + "abc"
    here = (None, engine.node_id)  # None: "not elsewhere", the hub's own table answers
    assert await engine.locate_session(sid) in here
    await engine.claim_session(sid, ttl=30)
    assert await engine.locate_session(sid) in here
    await engine.release_session(sid)
    assert await engine.locate_session(sid) in here
    assert await engine.locate_session("ghost-node.abc") is None, "no live node holds it"


async def test_node_liveness_and_a_broadcast_with_no_other_node(make: Make) -> None:
    engine, sink = await make()
    assert await engine.node_alive(engine.node_id)
    assert not await engine.node_alive("ghost-node")
    assert await engine.broadcast(b"to everyone else") == 0
    assert sink.node.empty() or await sink.node.get() == b"to everyone else"


async def test_an_engine_knows_the_nodes_that_ran_on_it_lately_and_no_others(make: Make) -> None:
    """``node_trace`` (offered by engines whose session ids name their node): a node that
    runs, or stopped within ``trace_ttl``, left its trace, saying what the engine's ``trace``
    says (a node configured alike says the same); one that never ran on it left none."""
    engine, _ = await make()
    if not engine.session_prefix():
        assert getattr(engine, "node_trace", None) is None, "ids without a node: nothing to check"
        return
    other, _ = await make()
    node_trace = engine.node_trace  # type: ignore[attr-defined]
    assert engine.trace_ttl >= 600  # type: ignore[attr-defined]
    own = engine.trace  # type: ignore[attr-defined]
    assert own and await node_trace(engine.node_id) == own and await node_trace(other.node_id) == own
    assert await node_trace("ghost-node") is None
    await other.stop()
    assert not await engine.node_alive(other.node_id)
    assert await node_trace(other.node_id) == own, "a node that stopped lately is known: its sessions are gone"


async def test_publications_sent_together_keep_each_channels_order_and_their_own_outcomes(make: Make) -> None:
    """``publish_many`` (offered by engines whose publish waits for a server) is ``publish``
    for each item, in order, sent together."""
    engine, sink = await make()
    publish_many = getattr(engine, "publish_many", None)
    assert (publish_many is None) is (make.kind == "memory"), "the memory engine publishes at once"
    if publish_many is None:
        return
    channels = ["many-a", "many-b", "many-c"]  # (on the sharded engine: most likely on several shards)
    for channel in channels:
        await engine.listen(channel)
    items = [(channels[n % 3], Payload.of(n), OPTIONS) for n in range(30)]
    outcomes = await publish_many(items)
    assert all(isinstance(o, Publication) for o in outcomes), outcomes
    for channel in channels:
        mine = [(o.offset, o.data) for o in outcomes if o.channel == channel]
        assert mine == [(i + 1, n) for i, n in enumerate(range(channels.index(channel), 30, 3))]
    delivered = [await next_pub(sink) for _ in range(30)]
    for channel in channels:
        assert [p.data for p in delivered if p.channel == channel] == list(range(channels.index(channel), 30, 3))


# -- what sessions applied ----------------------------------------------------------------


async def test_applied_records_are_read_only_with_the_resume_token(make: Make) -> None:
    engine, _ = await make()
    await engine.record_applied("s1", "tok", done=1, replies={1: b"one"}, forget=(), origins=None, ttl=30)
    record = await engine.applied_record("s1", "tok")
    assert record is not None
    assert (record.done, record.replies, record.origins, record.since) == (1, {1: b"one"}, [], 1)
    assert await engine.applied_record("s1", "wrong") is None
    assert await engine.applied_record("nobody", "tok") is None
    await engine.record_applied(
        "s1", "tok", done=2, replies={2: b"two"}, forget=(1,), origins=["k1", "k2"], ttl=30
    )
    await engine.record_applied("s1", "tok", done=3, replies={}, forget=(), origins=None, ttl=30)
    record = await engine.applied_record("s1", "tok")
    assert record is not None
    assert (record.done, record.replies, record.origins) == (3, {2: b"two"}, ["k1", "k2"])
    assert record.since == 1  # where it began


async def test_one_record_write_keeps_the_answers_of_messages_applied_together(make: Make) -> None:
    engine, _ = await make()
    await engine.record_applied("s4", "tok", done=1, replies={1: b"one"}, forget=(), origins=None, ttl=30)
    together = {2: b"two", 3: b"three", 5: b"five"}  # (4: an emit, no answer)
    await engine.record_applied("s4", "tok", done=5, replies=together, forget=(1,), origins=None, ttl=30)
    record = await engine.applied_record("s4", "tok")
    assert record is not None
    assert (record.done, record.replies, record.since) == (5, together, 1)


async def test_an_engine_that_records_at_once_never_waits_to_record(make: Make) -> None:
    """``records_at_once`` lets a driver apply a message with no task: recording must then
    finish in the coroutine's first step (only the memory engine says so)."""
    engine, _ = await make()
    at_once = getattr(engine, "records_at_once", False)
    assert at_once is (make.kind == "memory")
    if at_once:
        recording = engine.record_applied("s3", "tok", done=1, replies={}, forget=(), origins=None, ttl=30)
        with pytest.raises(StopIteration):
            recording.send(None)
        assert await engine.applied_record("s3", "tok") is not None
        # ... and its plain-call form (what the hub's drain calls) records the same
        engine.record_applied_now("s3", "tok", done=2, replies={2: b"two"}, forget=(), origins=None, ttl=30)
        record = await engine.applied_record("s3", "tok")
        assert record is not None and (record.done, record.replies, record.since) == (2, {2: b"two"}, 1)
    else:
        assert getattr(engine, "record_applied_now", None) is None  # the hub must await


async def test_applied_records_expire_and_say_where_they_began_again(make: Make) -> None:
    """A record lost (here: expired; or Redis restarted without persistence) and written
    again begins at that write: answers to the messages before it are not known."""
    engine, _ = await make()
    await engine.record_applied("s2", "tok", done=1, replies={1: b"one"}, forget=(), origins=None, ttl=0.3)
    assert await engine.applied_record("s2", "tok") is not None
    await asyncio.sleep(0.5)  # the record's 0.3 s lifetime must pass
    assert await engine.applied_record("s2", "tok") is None
    await engine.record_applied("s2", "tok", done=5, replies={}, forget=(), origins=None, ttl=30)
    await engine.record_applied("s2", "tok", done=6, replies={6: b"six"}, forget=(), origins=None, ttl=30)
    record = await engine.applied_record("s2", "tok")
    assert record is not None
    assert (record.done, record.replies, record.since) == (6, {6: b"six"}, 5)


# -- construction ------------------------------------------------------------------------


def test_engine_urls_build_engines() -> None:
    assert isinstance(create_engine("memory://"), Engine)
    assert isinstance(create_engine("redis://127.0.0.1:1/0"), Engine)


async def test_an_engine_stopped_right_after_starting_stops(make: Make) -> None:
    """(A cancellation swallowed inside a Redis command once kept the heartbeat running and
    ``stop`` waiting for it forever.)"""
    for _ in range(3):
        engine, _ = await make()
        async with asyncio.timeout(5):
            await engine.stop()
