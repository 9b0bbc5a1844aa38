"""Drive a hub in-process, without sockets: open sessions, send frames, read what it writes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from ladder import Context, Ladder, LadderError
from ladder.engine.memory import MemoryEngine
from ladder.engine.redis import RedisEngine
from ladder.engine.shards import ShardedEngine
from ladder.protocol.attachment import Attachment
from ladder.protocol.codec import JSON
from ladder.protocol.frames import Hello, Refused, decode_client_frames
from ladder.server.auth import AuthRequest
from ladder.server.hub import internals
from ladder.server.session import Session


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_hub(clock: Clock | None = None, *, records_per_message: bool = False, **kwargs: Any) -> Ladder:
    """A hub on the memory engine; ``records_per_message``: its records are written after
    each message, as on Redis, rather than when a session ends."""
    clock = clock or Clock()
    engine = MemoryEngine(clock=clock)
    if records_per_message:
        engine.records_in_process = False
        engine.record_session_now = None
    return Ladder(engine=engine, clock=clock, **kwargs)


class Recorder:
    """A handler for ``event`` that records what it applies, in order, and answers it. A
    value for which ``hold`` is true waits in the handler (``entered`` is set) until
    ``release`` is; ``applied`` may be shared by the hubs of several nodes."""

    def __init__(
        self,
        hub: Ladder,
        event: str = "do",
        *,
        hold: Callable[[Any], bool] = lambda data: False,
        applied: list[Any] | None = None,
    ) -> None:
        self.applied: list[Any] = [] if applied is None else applied
        self.entered, self.release = asyncio.Event(), asyncio.Event()

        @hub.on(event)
        async def record(ctx: Context, data: Any) -> Any:
            if hold(data):
                self.entered.set()
                await self.release.wait()
            self.applied.append(data)
            return data


@contextlib.asynccontextmanager
async def started_hubs() -> AsyncIterator[Callable[[Ladder], Awaitable[Ladder]]]:
    """``start(hub)`` starts a hub a test made and gives it back; each is stopped at the end."""
    made: list[Ladder] = []

    async def start(hub: Ladder) -> Ladder:
        await hub.start()
        made.append(hub)
        return hub

    try:
        yield start
    finally:
        for hub in made:
            await hub.stop()


class Peer:
    """One in-process client of a hub: a session with one WebSocket-like attachment."""

    def __init__(self, hub: Ladder, session: Session, att: Attachment) -> None:
        self.hub = hub
        self.session = session
        self.att = att
        self.next_id = 1

    @classmethod
    async def open(cls, hub: Ladder, token: str | None = None, headers: dict[str, str] | None = None) -> Peer:
        request = AuthRequest(
            headers=headers or {}, cookies={}, token=token, client="test", transport="websocket"
        )
        await hub.start()
        session, resumed = await internals(hub).router.open(Hello(v=1, token=token), request)
        att = internals(hub).gateway.attach(session, "websocket", streaming=True, ack=0, resumed=resumed)
        peer = cls(hub, session, att)
        welcome = peer.read()
        assert welcome[0]["t"] == "welcome"
        return peer

    async def send(self, *frames: dict[str, Any]) -> list[int]:
        ids = []
        numbered = []
        for frame in frames:
            if frame["t"] in ("ack", "ping", "pong", "bye"):
                numbered.append(frame)
                continue
            numbered.append({**frame, "i": self.next_id})
            ids.append(self.next_id)
            self.next_id += 1
        parsed = decode_client_frames(JSON, JSON.join(JSON.encode(f) for f in numbered))
        assert not any(isinstance(frame, Refused) for frame in parsed)
        await internals(self.hub).inbound.receive(self.session, self.att, parsed)
        return ids

    def read(self, *, ack: bool = True) -> list[dict[str, Any]]:
        """Everything the server wrote for this peer so far (sequenced frames acknowledged,
        unless ``ack`` is false: the client never saw them)."""
        out: list[dict[str, Any]] = []
        while True:
            control, frames = self.session.state.take(self.att, internals(self.hub).settings.clock())
            if not control and not frames:
                return out
            out.extend(control)
            out.extend(frame.decode(JSON, seq) for seq, frame in frames)
            if frames and ack:
                self.session.state.on_ack(frames[-1][0])

    async def request(self, frame: dict[str, Any]) -> dict[str, Any]:
        """Send one numbered frame; return its reply or err."""
        (msg_id,) = await self.send(frame)
        for out in self.read():
            if out.get("re") == msg_id:
                return out
        raise AssertionError(f"no answer to {frame}")


async def end_while_applying(
    peer: Peer, frame: dict[str, Any], entered: asyncio.Event
) -> asyncio.Task[list[int]]:
    """Send ``frame``, and once its handler is running (``entered``) end the session as a
    node shutting down does (closed, forgotten). Returns the sending, still in the handler."""
    sending = asyncio.create_task(peer.send(frame))
    await entered.wait()
    sessions = internals(peer.hub).sessions
    sessions.close(peer.session, LadderError("shutting_down"))
    await sessions.forget(peer.session)
    return sending


class Moved:
    """A session made on one hub and moved to another (see :func:`moved`)."""

    def __init__(self, sid: str, token: str, session: Session, att: Attachment | None) -> None:
        self.sid, self.token, self.session, self.att = sid, token, session, att


async def moved(made_on: Ladder, to: Ladder, *others: Ladder, attach: bool = True) -> Moved:
    """Open a session on ``made_on`` and move it to ``to`` as a client's stream does (every
    hub started); ``attach``: a WebSocket attached there keeps it alive past its TTL."""
    peer = await Peer.open(made_on)
    for hub in (to, *others):
        await hub.start()
    sid, token = peer.session.sid, peer.session.state.token
    session = await internals(to).router.route(sid, token, stream=True)
    att = None
    if attach:
        att = internals(to).gateway.attach(session, "websocket", streaming=True, ack=0, resumed=True)
    return Moved(sid, token, session, att)


async def lose_hand_over_records(redis: Any, sid: str) -> None:
    """Delete the engine's record of where ``sid`` was handed (expired, or lost with Redis's
    data); ``redis`` is a ``redis.asyncio.Redis`` on the engine's server."""
    keys = [key async for key in redis.scan_iter(match=f"*moved*{sid}")]
    assert keys, "no record of a hand-over to lose"
    await redis.delete(*keys)


def engine_of(hub: Ladder) -> ShardedEngine:
    engine = hub.engine
    assert isinstance(engine, ShardedEngine)
    return engine


async def peer_on(hub: Ladder, shard: RedisEngine) -> Peer:
    """A session whose records ``shard`` keeps (sessions are spread over the shards)."""
    engine = engine_of(hub)
    for _ in range(200):
        peer = await Peer.open(hub)
        if engine.placement.of(peer.session.sid) is shard:
            return peer
    raise AssertionError("no session placed on the shard in 200")
