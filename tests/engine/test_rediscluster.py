"""The Redis Cluster engine on a real six-node cluster (three primaries, one replica each):
keys per slot, spread, routing across slots, and a primary killed mid-stream."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis as redis_py

from ladder import Publisher
from ladder.engine import create_engine
from ladder.engine.base import ChannelOptions, Member, Position, Publication
from ladder.engine.rediscluster import RedisClusterEngine
from ladder.engine.rediscluster.link import seeds, tag, untag
from ladder.errors import ConfigurationError
from ladder.protocol.codec import Payload
from ladder.protocol.errors import LadderError
from tests.engine.conftest import Sink
from tests.support.redis import RedisServer
from tests.support.redis_cluster import RedisCluster
from tests.support.waiting import until

OPTIONS = ChannelOptions(history_size=1000, history_ttl=600)


def test_every_key_of_a_channel_shares_its_slot() -> None:
    for name in ("room", "a{b}c", "}", "", "#general", "x" * 300):
        tagged = tag(name)
        assert untag(tagged) == name
        inner = tagged[1 : tagged.index("}")]
        assert inner and "{" not in inner, f"{name!r}: a non-empty hash tag"
    assert tag("room") == "{room}", "plain names stay readable"
    assert seeds("redis+cluster://u:p@h1:7000,h2:7001") == (
        [("h1", 7000), ("h2", 7001)],
        {"username": "u", "password": "p"},
    )
    for bad in ("redis+cluster://h1", "redis+cluster://h1:7000/3", "redis+cluster://h1:7000?x=1"):
        with pytest.raises(ConfigurationError):
            seeds(bad)
    assert isinstance(create_engine("redis+cluster://127.0.0.1:1"), RedisClusterEngine)


def test_a_cluster_url_written_wrong_is_told_in_cluster_terms() -> None:
    """A list written wrong was answered with the form of a list of servers
    (``redis://h1:p1,h2:p2/0``), which is not a cluster."""
    for url, problem in [
        (
            "redis+cluster://a:1,redis://b:2",
            "'redis://b:2' gives a node of the list a scheme of its own: one scheme for the whole "
            "list: redis+cluster://h1:p1,h2:p2",
        ),
        (
            "redis+cluster://a:1,b:2/0,c:3",
            "'/0,c:3' gives a node of the list a database of its own: a cluster has only "
            "database 0: redis+cluster://h1:p1,h2:p2",
        ),
        ("redis+cluster://a:1,", "the list has an empty entry (a comma with no node on one side): drop that comma"),
    ]:
        with pytest.raises(ConfigurationError) as caught:
            create_engine(url)
        said = str(caught.value)
        assert said.startswith(f"engine: {url!r} is not a Redis URL: {problem}"), said
        assert said.endswith('write "redis+cluster://h1:7000,h2:7000" (or "rediss+cluster://" for TLS)'), said


@pytest.mark.parametrize("query", ["foo=1", "client_name=x"])
def test_a_cluster_url_with_options_is_told_it_takes_none(query: str) -> None:
    """``?foo=1`` was refused as "not an option of a Redis URL (the options are client_name,
    db, …)", and then ``?client_name=x`` as "has options in its query": one says what the
    other refuses."""
    url = f"redis+cluster://127.0.0.1:7000?{query}"
    with pytest.raises(ConfigurationError) as caught:
        create_engine(url)
    assert str(caught.value) == (
        f"engine: {url!r}: a Redis Cluster's URL takes no options (?{query}); "
        "drop the query, and pass options to RedisClusterEngine(url, ...)"
    )


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    with RedisCluster() as started:
        yield started


@pytest.fixture
async def nodes(cluster: RedisCluster) -> AsyncIterator[list[tuple[RedisClusterEngine, Sink]]]:
    made: list[tuple[RedisClusterEngine, Sink]] = []
    try:
        for name in ("node-a", "node-b"):
            # (5 s per command and per connection, not 1 and 0.5: these tests are not about slow
            # answers, and the suite's first run shares two cores with the compiled build's
            # compiler and Chromium, where a fresh cluster's first 50 publications, opening
            # every connection, once took 1 s, and once timed out connecting)
            engine = RedisClusterEngine(
                cluster.url, node_id=name, sweep_every=0.2, command_timeout=5.0, connect_timeout=5.0
            )
            sink = Sink()
            await engine.start(sink)
            assert engine.healthy
            made.append((engine, sink))
        yield made
    finally:
        for engine, _ in made:
            await engine.stop()


async def test_a_thousand_channels_land_on_every_primary(
    cluster: RedisCluster, nodes: list[tuple[RedisClusterEngine, Sink]]
) -> None:
    engine = nodes[0][0]
    for start in range(0, 1000, 50):
        await asyncio.gather(
            *(engine.publish(f"spread:{n}", Payload.of(n), OPTIONS) for n in range(start, start + 50))
        )
    held: Counter[int] = Counter()
    for node in cluster.primaries():
        client = redis_py.Redis(port=node.port)
        held[node.port] = sum(1 for _ in client.scan_iter(match="ladder:m:{spread:*", count=1000))
        client.close()
    print(f"\n1000 channels over the cluster's primaries: {sorted(held.values())}")
    assert sum(held.values()) == 1000 and len(held) == 3
    assert all(250 < count < 420 for count in held.values()), held
    details = engine.details()
    assert details["engine"] == "redis-cluster" and details["shards_healthy"] == 3


async def test_sessions_and_node_messages_work_across_slots(
    cluster: RedisCluster, nodes: list[tuple[RedisClusterEngine, Sink]]
) -> None:
    (a, _), (b, sink_b) = nodes
    sid = "node-a.abc"
    holder = cluster.primary_of(a._link.k("a", sid))
    assert a.healthy_for(sid) and a.record_server(sid) == f"127.0.0.1:{holder.port}", "named when down"
    await b.claim_session(sid, ttl=30)
    assert await a.locate_session(sid) == "node-b"
    await a.send_node("node-b", b"hello b")
    assert await asyncio.wait_for(sink_b.node.get(), 5) == b"hello b"
    assert await a.broadcast(b"all") == 1 and await asyncio.wait_for(sink_b.node.get(), 5) == b"all"
    assert await a.node_alive("node-b") and not await a.node_alive("ghost")
    await b.release_session(sid)
    assert await a.locate_session(sid) == "node-a"


async def test_delivered_offsets_given_to_other_publications_move_the_channel_to_a_new_epoch(
    cluster: RedisCluster, nodes: list[tuple[RedisClusterEngine, Sink]]
) -> None:
    """What a failover under asynchronous replication can leave: the channel's primary now
    holds other publications at offsets the nodes delivered (and one more). When their
    connections to it are cut, as a failover cuts them, they move the channel, find the
    fork in history, and every subscriber resyncs to one new epoch."""
    (a, sink_a), (b, sink_b) = nodes
    for engine in (a, b):
        await engine.listen("forked")
    for n in range(5):
        await a.publish("forked", Payload.of(n), OPTIONS)
    for sink in (sink_a, sink_b):
        got = [await asyncio.wait_for(sink.pubs.get(), 5) for _ in range(5)]
        assert [p.offset for p in got] == [1, 2, 3, 4, 5]
    epoch = got[-1].epoch
    primary = redis_py.Redis(port=cluster.primary_of("ladder:m:{forked}").port)
    try:
        kept = primary.xrange("ladder:s:{forked}", "0-1", "0-2")
        primary.delete("ladder:s:{forked}")
        for entry_id, fields in kept:
            primary.xadd("ladder:s:{forked}", fields, id=entry_id)
        for n in range(3, 7):
            primary.xadd(
                "ladder:s:{forked}", {"t": repr(time.time()), "d": Payload.of(f"x{n}").msgpack}, id=f"0-{n}"
            )
        primary.hset("ladder:m:{forked}", "o", 6)
        primary.client_kill_filter(_type="pubsub")
    finally:
        primary.close()
    for sink in (sink_a, sink_b):
        async with asyncio.timeout(15):
            channel, position = await sink.resets.get()
        assert channel == "forked" and position.epoch != epoch and position.offset == 6
        assert sink.pubs.empty(), "nothing of the other stream delivered as if it continued this one"
    pub = await a.publish("forked", Payload.of("next"), OPTIONS)
    assert (pub.epoch, pub.offset) == (position.epoch, 7), "one new epoch"
    for sink in (sink_a, sink_b):
        assert (await asyncio.wait_for(sink.pubs.get(), 5)).data == "next"


def _evalsha_calls(cluster: RedisCluster) -> int:
    calls = 0
    for node in cluster.primaries():
        client = redis_py.Redis(port=node.port)
        stats = client.info("commandstats").get("cmdstat_evalsha", {})
        calls += int(stats.get("calls", 0)) - int(stats.get("failed_calls", 0))  # (not NOSCRIPT)
        client.close()
    return calls


async def test_a_node_sweeps_a_channel_when_its_next_expiry_came(cluster: RedisCluster) -> None:
    """A cluster keeps no due set: each node sweeps a channel when the expiry its last sweep
    found next has passed. 200 live channels and 3 expired: a sweep runs 3 scripts (it ran
    203, every 5 s), the next none, and a channel whose member left is no longer looked at."""
    node, sink = RedisClusterEngine(cluster.url, node_id="sweeper", sweep_every=3600), Sink()
    await node.start(sink)
    try:
        presence = node._presence
        await asyncio.gather(*(node.presence_add(f"live:{n}", Member(f"c{n}", "u"), ttl=60) for n in range(200)))
        gone = {f"gone:{n}": Member(f"g{n}", "ghost") for n in range(3)}
        for channel, member in gone.items():
            await node.listen(channel)
            await node.presence_add(channel, member, ttl=-1)  # its time has already run out
            assert await asyncio.wait_for(sink.presence.get(), 5) == (channel, "join", member)
        before = _evalsha_calls(cluster)
        await presence.sweep()
        assert _evalsha_calls(cluster) - before == 3
        leaves = sorted([await asyncio.wait_for(sink.presence.get(), 5) for _ in gone])
        assert leaves == sorted((channel, "leave", member) for channel, member in gone.items())
        assert len(presence.looks) == 200, "the emptied channels are off the schedule"
        before = _evalsha_calls(cluster)
        await presence.sweep()
        assert _evalsha_calls(cluster) == before
    finally:
        await node.stop()


async def test_connections_the_servers_closed_are_opened_again_before_a_publication(
    cluster: RedisCluster, nodes: list[tuple[RedisClusterEngine, Sink]]
) -> None:
    """What a primary's restart leaves in the pools: connections the server closed. A
    publication is never repeated, so one sent on such a connection failed (5 of 16 after
    a restart); like one Redis's pool, each connection is checked before use and opened
    again if its server closed it (nothing was sent on it)."""
    a = nodes[0][0]
    channels = [f"stale:{n}" for n in range(16)]
    assert len({cluster.primary_of(f"ladder:m:{{{ch}}}").port for ch in channels}) == 3
    for _ in range(3):  # several connections to every primary in the pools
        await asyncio.gather(*(a.publish(ch, Payload.of(0), OPTIONS) for ch in channels))

    def close_command_connections() -> None:
        for node in cluster.primaries():
            client = cluster.client(node)
            try:
                client.client_kill_filter(_type="normal", skipme=True)
            finally:
                client.close()

    await asyncio.to_thread(close_command_connections)
    answers = await asyncio.gather(
        *(a.publish(ch, Payload.of(1), OPTIONS) for ch in channels), return_exceptions=True
    )
    failed = [f"{ch}: {answer}" for ch, answer in zip(channels, answers, strict=True) if not isinstance(answer, Publication)]
    assert not failed, failed
    assert all(isinstance(answer, Publication) and answer.offset == 4 for answer in answers)


@contextlib.contextmanager
def shard_down(cluster: RedisCluster, slot: int) -> Iterator[RedisServer]:
    """The primary of ``slot`` stopped, its replicas told not to take over (it stays down);
    afterwards it is started again and the cluster is whole."""
    victim = cluster.primary_of_slot(slot)
    replicas = cluster.replicas_of(victim)

    def no_failover(value: str) -> None:
        for node in replicas:
            client = cluster.client(node)
            try:
                client.config_set("cluster-replica-no-failover", value)
            finally:
                client.close()

    no_failover("yes")
    victim.stop()
    try:
        yield victim
    finally:
        if victim.proc is None:
            victim.start()
        cluster.wait_ok()
        no_failover("no")


async def test_a_node_starts_while_the_first_primary_is_down(cluster: RedisCluster) -> None:
    """redis-py reads the command table from the first primary (slots 0-5460): a node or a
    publisher started while it was down stayed unusable, every shard unhealthy, whichever
    seeds were up. Now any node that answers is asked."""
    with shard_down(cluster, 0) as victim:
        node, sink = RedisClusterEngine(cluster.url, node_id="late"), Sink()
        await node.start(sink)
        try:
            assert node._cluster_listener.subscribed.is_set(), "it hears messages to it"
            assert await node.broadcast(b"all") == 0, "no other node (it hears itself)"
            await until(lambda: node.healthy and node.details()["shards_healthy"] == 2, "healthy", 10)
            down = [shard["shard"] for shard in node.details()["shards"] if not shard["healthy"]]
            assert down == [f"127.0.0.1:{victim.port}"]
            channel = next(f"up:{n}" for n in range(100) if cluster.primary_of(f"ladder:m:{{up:{n}}}") is not victim)
            assert (await node.publish(channel, Payload.of(1), OPTIONS)).offset >= 1
            async with Publisher(cluster.url) as publisher:
                await publisher.publish(channel, "from a publisher")
        finally:
            await node.stop()


async def test_a_primary_down_is_logged_once_per_outage(
    cluster: RedisCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """The listener tries a primary that is down again every 0.1-1 s: it said so at WARNING
    each time (67 lines a minute); now once when it is lost, the attempts at DEBUG, and a
    line when it is subscribed there again."""
    caplog.set_level(logging.DEBUG, logger="ladder.redis")
    node, sink = RedisClusterEngine(cluster.url, node_id="quiet"), Sink()
    await node.start(sink)
    try:
        with shard_down(cluster, 0) as victim:
            name = f"127.0.0.1:{victim.port}"

            def attempts() -> int:
                return sum(f"{name} not subscribed yet" in r.getMessage() for r in caplog.records)

            await until(lambda: attempts() >= 3, "three attempts on the primary that is down")
            loud = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and name in r.getMessage() and "listener" in r.getMessage()]
            assert len(loud) == 1, loud
            await until(lambda: name in (node.details()["error"] or ""), "/health names it")
        await until(lambda: node.details()["shards_healthy"] == 3 and node._cluster_listener.ok, "back")
        back = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO and name in r.getMessage() and "listener" in r.getMessage()]
        assert len(back) == 1 and "again" in back[0], back
        # (the node stayed healthy: its error, the down primary's, was shown for ever after)
        await until(lambda: node.details()["error"] is None, "/health's error cleared", 5)
    finally:
        await node.stop()


async def test_a_restarted_primary_is_back_once_it_takes_writes(cluster: RedisCluster) -> None:
    """A primary that restarts answers PING at once but refuses commands (CLUSTERDOWN) for
    about 2 s: the shard was reported back then, and the messages held for it were applied
    and not recorded. It is back when it says the cluster is ok (``CLUSTER INFO``)."""
    node, sink = RedisClusterEngine(cluster.url, node_id="held"), Sink()
    await node.start(sink)
    try:
        victim = cluster.primary_of_slot(0)
        sid = next(f"held.{n}" for n in range(1000) if cluster.primary_of(node._link.k("a", f"held.{n}")) is victim)
        channel = next(f"back:{n}" for n in range(1000) if cluster.primary_of(f"ladder:m:{{back:{n}}}") is victim)
        await until(lambda: node.healthy_for(sid), "the shard is up")
        with shard_down(cluster, 0):
            await until(lambda: not node.healthy_for(sid), "the shard is down")
            await asyncio.to_thread(victim.start)
            await until(lambda: node.healthy_for(sid), "the shard is back", 20)
            pub = await node.publish(channel, Payload.of("first write"), OPTIONS)
            assert pub.offset >= 1
    finally:
        await node.stop()


def _documented_cluster_keys() -> list[re.Pattern[str]]:
    """The keys docs/ops.md says a cluster holds, as patterns (a name in braces: any)."""
    text = (Path(__file__).parents[2] / "docs" / "ops.md").read_text()
    start = text.index("in a\ncluster they read")
    part = " ".join(text[start : text.index("**Sizing and layout.**", start)].split())
    named = re.findall(r"`(ladder:[^`]+)`", part)
    assert len(named) >= 7, named
    return [re.compile(re.sub(r"\\\{[^}]*\\\}", r"\\{[^}]+\\}", re.escape(key)) + "$") for key in named]


async def test_every_key_a_node_writes_on_a_cluster_is_documented(cluster: RedisCluster) -> None:
    """docs/ops.md lists a cluster's keys with their hash tags; the lease, trace and away
    keys were missing."""
    node, sink = RedisClusterEngine(cluster.url, node_id="listed"), Sink()
    await node.start(sink)
    try:
        await node.publish("listed", Payload.of(1), OPTIONS)
        await node.presence_add("listed", Member("c1", "u"), ttl=60)
        await node.claim_session("other.s1", ttl=30)  # (handed over from another node: moved)
        await node.record_applied("listed.s1", "token", done=1, replies={}, forget=(), origins=None, ttl=30)
        assert await node._routing.refresh_lease(10, take=True)
        node._routing.away(True)

        def keys() -> set[str]:
            found: set[str] = set()
            for primary in cluster.primaries():
                client = cluster.client(primary)
                try:
                    found |= {key.decode() for key in client.scan_iter(match="ladder:*", count=1000)}
                finally:
                    client.close()
            return found

        kinds = ("m", "s", "pm", "pe", "a", "moved", "live", "node", "away")
        await until(lambda: set(kinds) <= {key.split(":", 2)[1] for key in keys()}, "every kind written")
        patterns = _documented_cluster_keys()
        undocumented = sorted(key for key in keys() if not any(p.match(key) for p in patterns))
        assert not undocumented, undocumented
    finally:
        await node.stop()


async def test_a_primary_whose_connection_broke_is_down_at_once_for_the_sessions_it_records(
    cluster: RedisCluster,
) -> None:
    """A primary killed was noticed by the listener at once, but a session's records counted
    as reachable until the next heartbeat (up to 1.5 s): a message then was applied and not
    recorded (``applied but not recorded``) instead of waiting for the shard, and /health
    still said the shard was up."""
    node, sink = RedisClusterEngine(cluster.url, node_id="quick"), Sink()
    await node.start(sink)
    try:
        await until(lambda: node.details()["shards_healthy"] == 3, "every shard up")
        victim = cluster.primary_of_slot(0)
        name = f"127.0.0.1:{victim.port}"
        sid = next(f"s{n}" for n in range(10_000) if cluster.primary_of(node._link.k("a", f"s{n}")) is victim)
        channel = next(f"c:{n}" for n in range(10_000) if cluster.primary_of(node._link.k("m", f"c:{n}")) is victim)
        await node.listen(channel)  # (a connection of the listener's to the victim)
        await until(lambda: node._cluster_listener.reader_ok(name) is True, "listening there")
        assert node.healthy_for(sid)
        with shard_down(cluster, 0):
            await until(lambda: node._cluster_listener.reader_ok(name) is False, "the listener lost it", 5)
            assert not node.healthy_for(sid), "its sessions' messages wait for it from now"
            [shard] = [s for s in node.details()["shards"] if s["shard"] == name]
            assert shard["healthy"] is False and node.details()["shards_healthy"] == 2
    finally:
        await node.stop()


async def test_a_cluster_no_node_of_which_answers_is_unavailable(
    cluster: RedisCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """While no node answers, redis-py fails every command with its own
    ``RedisClusterUnreachableError``, which is no ``RedisError``: a publication raised it
    as it was (not ``engine_unavailable``) and the away mark logged a traceback at ERROR
    every 0.2 s."""
    node, sink = RedisClusterEngine(cluster.url, node_id="alone"), Sink()
    await node.start(sink)
    running = [server for server in cluster.nodes if server.proc is not None]
    try:
        for server in running:
            server.stop()
        await until(lambda: not node.healthy and node._routing._marked, "unhealthy, marking itself away")
        for _ in range(3):
            with pytest.raises(LadderError) as caught:
                await node.publish("nowhere", Payload.of(1), OPTIONS)
            assert caught.value.code == "engine_unavailable", caught.value
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("ladder")]
        assert not errors, errors
    finally:
        await node.stop()
        for server in running:
            server.start()
        await asyncio.to_thread(cluster.wait_ok)


async def test_a_primary_killed_mid_stream_costs_only_its_share(
    cluster: RedisCluster, nodes: list[tuple[RedisClusterEngine, Sink]]
) -> None:
    """(Last in the module: it leaves the cluster with one primary fewer.)"""
    (a, _), (b, sink_b) = nodes
    by_primary: dict[int, list[str]] = {}
    for n in range(200):
        by_primary.setdefault(cluster.primary_of(f"ladder:m:{{live:{n}}}").port, []).append(f"live:{n}")
    assert len(by_primary) == 3
    # The primary that carries messages to node-b now: they must switch to another one.
    victim = cluster.primary_of(b._cluster.node_key(b.node_id))
    doomed = by_primary[victim.port][:3]
    kept = [channels[0] for port, channels in by_primary.items() if port != victim.port]
    for channel in doomed + kept:
        await b.listen(channel)

    got: dict[str, list[Publication]] = {channel: [] for channel in doomed + kept}
    resets: list[str] = []
    stop = asyncio.Event()

    async def drain() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.1):
                    pub = await sink_b.pubs.get()
                    got[pub.channel].append(pub)
            while not sink_b.resets.empty():
                channel, _ = sink_b.resets.get_nowait()
                resets.append(channel)

    drainer = asyncio.create_task(drain())
    sent: Counter[str] = Counter()
    refused: Counter[str] = Counter()
    accepted: dict[str, dict[int, Position]] = {channel: {} for channel in doomed + kept}
    errors: list[str] = []
    slowest: dict[str, float] = {}
    longest: dict[str, float] = {}

    async def publish_to(channel: str, rounds: int) -> None:
        for n in range(rounds):
            try:
                t0 = time.monotonic()
                pub = await a.publish(channel, Payload.of(n), OPTIONS)
                accepted[channel][n] = Position(pub.epoch, pub.offset)
                slowest[channel] = max(slowest.get(channel, 0.0), time.monotonic() - t0)
                sent[channel] += 1
            except LadderError as exc:
                assert exc.code == "engine_unavailable"
                refused[channel] += 1
                errors.append(f"{channel}: {exc.reason}")
            await asyncio.sleep(0.01)

    async def watch(channel: str) -> None:
        """The longest time between two deliveries on a channel that was publishing."""
        last, seen = time.monotonic(), 0
        while not stop.is_set():
            await asyncio.sleep(0.02)
            if len(got[channel]) != seen:
                seen, now = len(got[channel]), time.monotonic()
                longest[channel] = max(longest.get(channel, 0.0), now - last)
                last = now

    watchers = [asyncio.create_task(watch(channel)) for channel in kept]
    publishers = [asyncio.create_task(publish_to(channel, 400)) for channel in doomed + kept]
    await asyncio.sleep(1.0)
    assert victim.proc is not None
    victim.proc.kill()  # SIGKILL: no goodbye to the cluster
    killed = time.monotonic()
    await asyncio.to_thread(victim.stop)  # (reaps it; in a thread, not to block the clients)
    await asyncio.sleep(0.3)  # the nodes notice (their connections to it broke)
    assert sink_b.routes_lost >= 1, "told that answers awaited through that primary may be lost"
    await a.send_node(b.node_id, b"during the failover")
    assert await asyncio.wait_for(sink_b.node.get(), 1.0) == b"during the failover"
    reached = time.monotonic() - killed
    assert b.healthy, "node-b still hears messages to it, through another primary"
    await asyncio.gather(*publishers)
    await asyncio.to_thread(cluster.wait_ok)
    async with asyncio.timeout(30):
        while not all(len(got[ch]) >= sent[ch] or ch in resets for ch in doomed + kept):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    stop.set()
    await drainer
    for task in watchers:
        await task
    print(
        f"\nslowest publish {slowest}"
        f"\nnode message through another primary {reached:.2f} s after the kill"
        f"\nprimary killed {time.monotonic() - killed:.1f} s ago; on the other shards: "
        + ", ".join(
            f"{ch} {len(got[ch])}/{sent[ch]} delivered, longest gap {longest[ch] * 1000:.0f} ms"
            for ch in kept
        )
        + "; on the failed shard: "
        + ", ".join(
            f"{ch} {sent[ch]} accepted, {refused[ch]} refused, {len(got[ch])} delivered"
            + (", reset (resync)" if ch in resets else "")
            for ch in doomed
        )
    )
    for channel in kept:
        offsets = [p.offset for p in got[channel]]
        assert offsets == list(range(1, sent[channel] + 1)), f"{channel}: lost or doubled"
        assert refused[channel] == 0, [e for e in errors if e.startswith(channel + ":")]
    for channel in doomed:
        assert refused[channel] > 0, "publishes to the failed shard were refused meanwhile"
        stream_goes_on_once_in_order(channel, sink_b.log, accepted[channel])
    for channel in kept:
        assert longest[channel] < 1.0, f"{channel} stalled {longest[channel]:.2f} s"


def stream_goes_on_once_in_order(
    channel: str, log: list[Publication | tuple[str, Position]], accepted: dict[int, Position]
) -> None:
    """What a subscriber of a channel whose shard failed sees: its publications once, in
    order, with consecutive offsets, possibly cut by resyncs (when the promoted replica
    lacked the newest publications). Nothing delivered comes again, before or after a
    resync; after one, the offsets go on from the position it gave; and every accepted
    publication is delivered unless it sits at or before the last resync's position (the
    application refetches the channel's state there)."""
    values: list[int] = []
    at: Position | None = None
    for event in log:
        if isinstance(event, tuple):
            if event[0] == channel:
                at = event[1]
            continue
        if event.channel != channel:
            continue
        assert not values or event.payload.value > values[-1], (
            f"{channel}: {event.payload.value} again or late"
        )
        values.append(event.payload.value)
        if at is None:
            at = Position(event.epoch, 0)
        assert (event.epoch, event.offset) == (at.epoch, at.offset + 1), f"{channel}: offsets skip or go back"
        at = Position(event.epoch, event.offset)
    last_reset = next(
        (event[1] for event in reversed(log) if isinstance(event, tuple) and event[0] == channel), None
    )
    owed = [  # (an epoch before the resync's is covered by it whole)
        n
        for n, where in accepted.items()
        if last_reset is None or (where.epoch == last_reset.epoch and where.offset > last_reset.offset)
    ]
    assert set(owed) <= set(values), (
        f"{channel}: accepted and never delivered: {sorted(set(owed) - set(values))}"
    )
    assert values and values[-1] == max(accepted), (
        f"{channel}: the stream did not go on to the last publication"
    )


async def test_a_publisher_is_not_counted_or_reached_by_a_broadcast(
    cluster: RedisCluster, nodes: list[tuple[RedisClusterEngine, Sink]]
) -> None:
    """A publisher answers no node: listening for broadcasts, it made every ``send_user``
    wait out its timeout for an answer that never came."""
    (a, _), (_, sink_b) = nodes
    async with Publisher(cluster.url) as publisher:
        await publisher.start()
        assert await a.broadcast(b"all") == 1, "node-b only"
        assert await asyncio.wait_for(sink_b.node.get(), 5) == b"all"
        assert await publisher.engine.broadcast(b"asked") == 2, "both nodes (it does not hear itself)"
        # It hears the answers to it once its own key is subscribed (it waited 2 s in its start
        # for a subscription to every node's key, which it never makes).
        assert publisher.engine._listener.subscribed.is_set()  # type: ignore[attr-defined]
        # Healthy by what it listens for: it was never healthy (broadcasts' key, which it does
        # not subscribe, was required), and said "unhealthy" at its first error.
        await until(lambda: publisher.engine.healthy, "the publisher's engine is healthy")  # type: ignore[attr-defined]
