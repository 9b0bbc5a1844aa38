"""What the permissions hook's ``history`` and ``presence`` answers cover in a subscription.

A subscription's past (``recent``, a recovery from ``ep``+``off``) is history, and its
``join``/``leave`` frames are presence. Both leaked: refused ``history``, a ``sub`` with
``recent`` or with ``off: 0`` was handed every publication the channel kept; refused
``presence``, a subscriber got every ``join`` and ``leave`` (client ids, users, info) all
the same. On the memory engine and on a real redis-server (the same server code).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from ladder import ChannelOptions, Identity, Ladder
from ladder.engine.redis import RedisEngine
from ladder.server.auth import AuthRequest
from ladder.server.channels import ChannelTable
from ladder.server.hub import internals
from ladder.server.moving import pack, restore
from tests.server.harness import Peer, make_hub
from tests.support.redis import RedisServer

CHANNELS = {"priv:*": ChannelOptions(presence=True), "open:*": ChannelOptions(presence=True)}


class Hook:
    """Refuses ``history`` and ``presence`` on ``priv:*`` to everyone but alice; async, as an
    app's may be; keeps every question it was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[str | None, str, str]] = []

    async def __call__(self, identity: Identity, action: str, channel: str, options: ChannelOptions) -> bool:
        self.asked.append((identity.user, action, channel))
        await asyncio.sleep(0)
        return identity.user == "alice" or not (channel.startswith("priv:") and action in ("history", "presence"))

    def count(self, action: str) -> int:
        return sum(1 for _, asked, _ in self.asked if asked == action)


def _identity(request: AuthRequest) -> Identity:
    return Identity(user=request.token, info={"nick": request.token})


def _hub(hook: Hook, engine: str | None = None) -> Ladder:
    settings: dict[str, Any] = {"permissions": hook, "channels": CHANNELS, "authenticate": _identity}
    return make_hub(**settings) if engine is None else Ladder(engine=RedisEngine(engine), **settings)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def hook() -> Hook:
    return Hook()


@pytest.fixture(params=["memory", "redis"])
async def hub(request: pytest.FixtureRequest, hook: Hook) -> AsyncIterator[Ladder]:
    if request.param == "memory":
        hub = _hub(hook)
        yield hub
        await hub.stop()
        return
    with RedisServer() as redis:
        hub = _hub(hook, redis.url)
        await hub.start()
        yield hub
        await hub.stop()


def pubs(frames: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(f["ch"], f["o"]) for f in frames if f["t"] == "pub"]


async def test_a_sub_asking_for_recent_publications_needs_history(hub: Ladder, hook: Hook) -> None:
    """``recent`` on a channel refused ``history``: it was answered with every publication
    kept. It is refused ``forbidden`` now, naming history and the fix; nothing is handed out
    and nothing is subscribed. A plain ``sub`` does not ask the hook about history."""
    for channel in ("priv:x", "open:x"):
        for n in range(3):
            await hub.publish(channel, f"secret {n}")
    bob = await Peer.open(hub, "bob")
    refused = await bob.request({"t": "sub", "ch": "priv:x", "recent": 10})
    assert (refused["t"], refused["code"]) == ("err", "forbidden"), refused
    assert refused["reason"] == "history on 'priv:x' is not allowed: subscribe without recent"
    assert pubs(bob.read()) == [] and "priv:x" not in bob.session.subs
    assert hook.count("history") == 1

    plain = await bob.request({"t": "sub", "ch": "priv:x"})
    assert plain["d"] | {"ep": None} == {"ch": "priv:x", "ep": None, "off": 3, "rec": True, "n": 0}
    assert hook.count("history") == 1, "a plain sub asks nothing of history"
    (recent,) = await bob.send({"t": "sub", "ch": "open:x", "recent": 2})
    frames = bob.read()
    assert next(f for f in frames if f.get("re") == recent)["d"]["n"] == 2
    assert pubs(frames) == [("open:x", 2), ("open:x", 3)], "where history is allowed, as before"


async def test_a_recovery_without_history_is_told_it_missed_something_and_gets_none_of_it(
    hub: Ladder, hook: Hook
) -> None:
    """A recovery from ``off: 0`` on a channel refused ``history`` was answered with every
    publication kept. Now it gets none and ``rec`` false (as when history is gone): its
    client resyncs. The hook is asked only when there is something to hand out."""
    for n in range(3):
        await hub.publish("priv:x", f"secret {n}")
    epoch = (await hub.engine.position("priv:x")).epoch
    bob = await Peer.open(hub, "bob")
    (sub_id,) = await bob.send({"t": "sub", "ch": "priv:x", "ep": epoch, "off": 0})
    frames = bob.read()
    reply = next(f for f in frames if f.get("re") == sub_id)
    assert reply["d"] == {"ch": "priv:x", "ep": epoch, "off": 3, "rec": False, "n": 0}
    assert pubs(frames) == []
    assert hook.count("history") == 1

    carol = await Peer.open(hub, "carol")
    current = await carol.request({"t": "sub", "ch": "priv:x", "ep": epoch, "off": 3})
    assert current["d"] == {"ch": "priv:x", "ep": epoch, "off": 3, "rec": True, "n": 0}, "nothing missed"
    assert hook.count("history") == 1, "nothing to hand out: nothing asked"
    alice = await Peer.open(hub, "alice")  # (allowed history)
    (sub_id,) = await alice.send({"t": "sub", "ch": "priv:x", "ep": epoch, "off": 1})
    frames = alice.read()
    assert next(f for f in frames if f.get("re") == sub_id)["d"]["rec"] is True
    assert pubs(frames) == [("priv:x", 2), ("priv:x", 3)]


async def test_a_subscriber_refused_presence_gets_no_join_or_leave(hook: Hook) -> None:
    """Refused ``presence`` on a channel, a subscriber still got its ``join`` and ``leave``
    frames: the member list leaked anyway. The hook is asked once per subscription (never
    per frame), and only where the channel sends them."""
    hub = _hub(hook)
    try:
        bob = await Peer.open(hub, "bob")
        alice = await Peer.open(hub, "alice")
        for peer in (bob, alice):
            for channel in ("priv:x", "open:x"):
                assert (await peer.request({"t": "sub", "ch": channel}))["t"] == "reply"
        carol = await Peer.open(hub, "carol")
        for channel in ("priv:x", "open:x"):
            await carol.request({"t": "sub", "ch": channel})
        await carol.send({"t": "bye"})
        await internals(hub).sessions.forget(carol.session)

        def heard(peer: Peer) -> list[tuple[str, str, str]]:
            return [(f["t"], f["ch"], f["m"]["u"]) for f in peer.read() if f["t"] in ("join", "leave")]

        assert heard(bob) == [
            ("join", "open:x", "alice"),
            ("join", "open:x", "carol"),
            ("leave", "open:x", "carol"),
        ]
        assert ("join", "priv:x", "carol") in heard(alice), "alice may see who is there"
        assert hook.count("presence") == 6, "once per subscription of a channel that sends join/leave"
        refused = await bob.request({"t": "presence", "ch": "priv:x"})
        assert refused["code"] == "forbidden", "as the presence query is"
    finally:
        await hub.stop()


async def test_a_moved_session_recovers_its_own_gap_and_still_gets_no_join_or_leave(
    redis_server: RedisServer, hook: Hook, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session moving between nodes continues its own subscription: the publications of
    the move reach it from history (not a history read of the client's), and the node it
    moves to asks the hook again for presence, so it hears no ``join`` it was refused."""
    old, new = _hub(hook, redis_server.url), _hub(hook, redis_server.url)
    joined = asyncio.Event()
    on_presence = ChannelTable.on_presence

    def told(self: ChannelTable, channel: str, kind: str, member: Any) -> None:
        on_presence(self, channel, kind, member)
        if self is internals(new).channels and member.user == "carol":
            joined.set()

    monkeypatch.setattr(ChannelTable, "on_presence", told)
    try:
        bob = await Peer.open(old, "bob")
        assert (await bob.request({"t": "sub", "ch": "priv:x"}))["t"] == "reply"
        packed = pack(bob.session, internals(old).channels)
        await old.publish("priv:x", "during the move")
        parts = internals(new)
        await new.start()
        session = await restore(packed, parts.settings, parts.sessions, parts.tasks)
        moved = Peer(new, session, parts.gateway.attach(session, "websocket", streaming=True, ack=0, resumed=True))
        alice = await Peer.open(new, "alice")
        await alice.request({"t": "sub", "ch": "priv:x"})
        carol = await Peer.open(new, "carol")
        await carol.request({"t": "sub", "ch": "priv:x"})
        async with asyncio.timeout(5):
            await joined.wait()
        assert ("join", "carol") in [(f["t"], f["m"]["u"]) for f in alice.read() if f["t"] == "join"]
        frames = moved.read()
        assert [f for f in frames if f["t"] in ("join", "leave")] == []
        assert [f["d"] for f in frames if f["t"] == "pub"] == ["during the move"]
        assert ("bob", "history", "priv:x") not in hook.asked
        assert hook.asked.count(("bob", "presence", "priv:x")) == 2, "once on each node"
    finally:
        await old.stop()
        await new.stop()
