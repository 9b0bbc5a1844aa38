"""The Redis engine: several server processes share channels, history, presence and routing.

Layout in Redis (``prefix`` defaults to ``ladder``):

====================================  ===================================================
``{p}:m:{channel}``                   hash: ``e`` epoch, ``o`` last offset (the channel's
                                      position); expires ``meta_ttl`` after its last use
``{p}:s:{channel}``                   stream: history, entry ids ``0-<offset>``, fields
                                      ``t`` (time) and ``d`` (msgpack data); capped at the
                                      channel's ``history_size``, expires after
                                      ``history_ttl`` without publications
``{p}:p:{channel}``, ``…:t``          hash of presence members and zset of their expiry
``{p}:c:{channel}``                   pub/sub: live publications and presence changes
``{p}:n:{node}``                      pub/sub: messages for one node (session routing); a
                                      node is alive while it is subscribed there
``{p}:all``                           pub/sub: messages for every node (``send_user``)
``{p}:a:{sid}``                       hash: what a session applied (``t`` token digest,
                                      ``i`` highest id, ``r:<id>`` kept answers, ``o``
                                      carried keys); expires ``ttl`` after its last write
``{p}:moved:{sid}``                   where a session went when a node handed it over
====================================  ===================================================

A publication is one Lua script: take the next offset, append to the stream, publish to
the channel. Every node (the publisher's included) delivers from pub/sub, checking that
offsets follow each other: a gap (a message lost while the listener reconnected) is filled
from the stream, and a changed epoch (Redis lost the data) is reported so clients resync.
Nothing is dropped silently. While Redis is unreachable, publishing raises
``engine_unavailable`` at once, the health check fails, and the listener reconnects with
backoff and catches up by itself when Redis is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import logging
import random
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgpack
import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.connection import BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT, FieldT

from ..protocol.codec import Payload
from ..protocol.errors import LadderError
from .base import (
    AppliedRecord,
    ChannelOptions,
    EngineSink,
    HistoryResult,
    Member,
    Position,
    Publication,
    token_digest,
)

log = logging.getLogger("ladder.redis")

HEARTBEAT_EVERY: Final = 1.5
RESUBSCRIBE_GRACE: Final = 3.0
"""Seconds after Redis (re)started that live nodes get to subscribe again: until then
:meth:`RedisEngine.node_alive` keeps asking rather than declare a node without a
subscription dead (its sessions would be lost, and with them, without persistence, the
record of what they applied)."""
LISTENER_PONG_WAIT: Final = 5.0
"""Seconds the listener waits for the answer to its ping before it reconnects (a connection
that silently stopped carrying anything)."""

_PUBLISH: Final = """
local e = redis.call('HGET', KEYS[1], 'e')
if not e then
  e = ARGV[1]
  redis.call('HSET', KEYS[1], 'e', e)
  redis.call('DEL', KEYS[2])
end
local o = redis.call('HINCRBY', KEYS[1], 'o', 1)
if tonumber(ARGV[3]) > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], '0-' .. o, 't', ARGV[6], 'd', ARGV[2])
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('PUBLISH', ARGV[7], 'P' .. e .. ' ' .. o .. ' ' .. ARGV[6] .. ' ' .. ARGV[2])
return {e, o}
"""

_POSITION: Final = """
local e = redis.call('HGET', KEYS[1], 'e')
if not e then
  e = ARGV[1]
  redis.call('HSET', KEYS[1], 'e', e, 'o', 0)
  redis.call('DEL', KEYS[2])
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return {e, tonumber(redis.call('HGET', KEYS[1], 'o') or 0)}
"""


def _entries(raw: Any) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """Stream entries as redis-py returns them (typed loosely there)."""
    return list(raw or [])


@dataclass(slots=True)
class _Listening:
    epoch: str | None = None
    last: int = 0


def _unavailable(exc: BaseException) -> LadderError:
    return LadderError("engine_unavailable", f"Redis is unreachable ({type(exc).__name__}: {exc})")


class RedisEngine:
    """Channels, history, presence and session routing in Redis (``redis://host:port/db``).

    ``Ladder(engine="redis://...")`` builds one with these defaults; pass
    ``Ladder(engine=RedisEngine(url, ...))`` to change them. Needs ``ladder-rt[redis]``.

    Args:
        url: ``redis://host:port/db``, ``rediss://`` for TLS, or ``unix:///path/to/redis.sock``.
        prefix: Prefix of every key and pub/sub channel (several deployments can share a Redis).
        connect_timeout: Seconds to open a connection to Redis.
        command_timeout: Seconds a command may take before the engine counts Redis as unreachable.
        meta_ttl: Seconds a channel's epoch and offset are kept after its last use.
        node_id: This process's id among the nodes (None: random).
        max_connections: Connections to Redis this process may open at once.
        pool_timeout: Seconds a command waits for a free connection when all are busy.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "ladder",
        connect_timeout: float = 0.5,
        command_timeout: float = 1.0,
        meta_ttl: float = 86_400.0,
        node_id: str | None = None,
        max_connections: int = 100,
        pool_timeout: float = 2.0,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.node_id = node_id or secrets.token_hex(4)
        self.meta_ttl = meta_ttl
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._max_connections = max_connections
        self._pool_timeout = pool_timeout
        self._redis: aioredis.Redis | None = None
        self._writer: aioredis.Redis | None = None
        self._listener_redis: aioredis.Redis | None = None
        self._sink: EngineSink | None = None
        self._listening: dict[str, _Listening] = {}
        self._pubsub: PubSub | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._subscribed = asyncio.Event()
        self.healthy = False
        """True while this node can reach Redis and its listener is subscribed; it follows
        both ways (see :meth:`_health`), and each change is logged."""
        self._listener_ok = False
        self._commands_ok = True
        self.reconnects = 0
        self.last_error: str | None = None

    # -- keys ------------------------------------------------------------------------------

    def _k(self, kind: str, name: str) -> str:
        return f"{self.prefix}:{kind}:{name}"

    @property
    def _all(self) -> str:
        """The pub/sub channel every node listens on."""
        return f"{self.prefix}:all"

    def _channel_of(self, key: bytes) -> str:
        return key.decode()[len(self.prefix) + 3 :]

    # -- lifecycle -------------------------------------------------------------------------

    def _client(self, *, retry_on: tuple[type[RedisError], ...]) -> aioredis.Redis:
        """A command client on a blocking pool: past ``max_connections`` commands in flight
        (a burst of resubscribing clients after a restart), the next one waits up to
        ``pool_timeout`` for a free connection instead of failing at once."""
        pool = BlockingConnectionPool.from_url(
            self.url,
            max_connections=self._max_connections,
            timeout=self._pool_timeout,
            socket_connect_timeout=self._connect_timeout,
            socket_timeout=self._command_timeout,
            retry=Retry(NoBackoff(), 1, supported_errors=retry_on),
            retry_on_error=[RuntimeError],  # a write refused by a closed transport: not sent
            health_check_interval=0,
        )
        return aioredis.Redis.from_pool(pool)

    async def start(self, sink: EngineSink) -> None:
        self._sink = sink
        # Reads may be repeated freely; a publication must not be: a timeout or a lost
        # connection after the script was sent leaves its outcome unknown, and running it
        # again would store it twice. Its client retries only when the command cannot have
        # been sent (uvloop refuses writes to a transport already closed with RuntimeError;
        # redis-py then drops that connection and the retry opens a new one).
        self._redis = self._client(retry_on=(RedisConnectionError, RedisTimeoutError))
        self._writer = self._client(retry_on=())
        # The listener's own client never reconnects by itself: a silent reconnect would
        # resubscribe without the catch-up that finds what was missed meanwhile.
        self._listener_redis = aioredis.from_url(
            self.url,
            socket_connect_timeout=self._connect_timeout,
            socket_timeout=None,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        self._publish = self._writer.register_script(_PUBLISH)
        self._position = self._redis.register_script(_POSITION)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._listen_forever(), name="ladder-redis-listener"),
            loop.create_task(self._heartbeat_forever(), name="ladder-redis-heartbeat"),
        ]
        # Wait briefly for the first subscription so a node that starts healthy is usable
        # at once; if Redis is down, keep starting: the listener retries in the background.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                await self._subscribed.wait()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()  # type: ignore[no-untyped-call]
        for client in (self._redis, self._writer):
            if client is not None:
                await client.aclose()
        if self._listener_redis is not None:
            await self._listener_redis.aclose()
        self._sink = None
        self._listener_ok = False
        self.healthy = False

    @property
    def redis(self) -> aioredis.Redis:
        if self._redis is None:
            raise LadderError("engine_unavailable", "the Redis engine is not started")
        return self._redis

    def _health(self, *, listener: bool | None = None, commands: bool | None = None) -> None:
        """Record what the listener or the heartbeat found; log when health changes.

        Health follows both ways: a stall that heals without a connection reset leaves
        the listener connected, and the next answered heartbeat makes the node healthy again.
        """
        if listener is not None:
            self._listener_ok = listener
        if commands is not None:
            self._commands_ok = commands
        healthy = self._listener_ok and self._commands_ok
        if healthy == self.healthy:
            return
        self.healthy = healthy
        if healthy:
            self.last_error = None
            log.info("redis engine healthy again (%s): accepting new sessions", self.url)
        elif self._sink is not None:  # not while stopping
            log.warning(
                "redis engine unhealthy (%s): %s; new sessions are refused with engine_unavailable "
                "and /health answers 503 until it answers again",
                self.url,
                self.last_error or "no answer",
            )

    async def _heartbeat_forever(self) -> None:
        """Check Redis answers commands (the listener checks its own connection)."""
        while True:
            try:
                await self.redis.ping()
            except (RedisError, OSError) as exc:
                self.last_error = str(exc) or type(exc).__name__
                self._health(commands=False)
            else:
                self._health(commands=True)
            await asyncio.sleep(HEARTBEAT_EVERY)

    # -- the listener ----------------------------------------------------------------------

    async def _listen_forever(self) -> None:
        """Pub/sub reader, restarted whenever its connection fails; never left deaf."""
        delay = 0.1
        while True:
            started = time.monotonic()
            try:
                await self._listen_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # RedisError, OSError, or a bug: log, reconnect
                self._subscribed.clear()
                self.last_error = str(exc) or type(exc).__name__
                self._health(listener=False)
                self.reconnects += 1
                if isinstance(exc, RedisError | OSError):
                    log.warning("redis listener lost its connection (%s); reconnecting", exc)
                else:
                    log.exception("redis listener failed; restarting it")
            if self._pubsub is not None:
                with contextlib.suppress(Exception):
                    await self._pubsub.aclose()  # type: ignore[no-untyped-call]
                self._pubsub = None
            if time.monotonic() - started > 10.0:
                delay = 0.1  # it had been working: come back quickly
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, 5.0)

    async def _listen_once(self) -> None:
        assert self._listener_redis is not None
        pubsub = self._pubsub = self._listener_redis.pubsub()
        channels = [self._k("n", self.node_id), self._all, *(self._k("c", ch) for ch in self._listening)]
        await pubsub.subscribe(*channels)
        await self._catch_up_all()
        self._health(listener=True)
        self._subscribed.set()
        idle = 0.0
        pinged: float | None = None
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is None:
                idle += 1.0
                if pinged is not None and time.monotonic() - pinged > LISTENER_PONG_WAIT:
                    raise RedisConnectionError(f"no answer to a ping in {LISTENER_PONG_WAIT:g} s")
                if idle >= 3.0 and pinged is None:  # quiet for a while: prove the connection answers
                    await pubsub.ping()
                    pinged = time.monotonic()
                    idle = 0.0
                continue
            idle = 0.0
            if message.get("type") == "pong":
                pinged = None
                continue
            await self._dispatch(message["channel"], message["data"])

    async def _dispatch(self, key: bytes, data: bytes) -> None:
        sink = self._sink
        if sink is None:
            return
        if key == self._k("n", self.node_id).encode() or key == self._all.encode():
            on_node = getattr(sink, "on_node_message", None)
            if on_node is not None:
                on_node(data)
            return
        channel = self._channel_of(key)
        kind = data[:1]
        if kind == b"P":
            epoch, offset, stamp, packed = data[1:].split(b" ", 3)
            pub = Publication(
                channel, int(offset), epoch.decode(), Payload.from_msgpack(packed), float(stamp)
            )
            await self._deliver(pub)
        elif kind in (b"J", b"L"):
            client, user, info = msgpack.unpackb(data[1:], raw=False)
            sink.on_presence(channel, "join" if kind == b"J" else "leave", Member(client, user, info))

    async def _deliver(self, pub: Publication) -> None:
        """Hand a live publication on, filling any gap before it from history first."""
        state = self._listening.get(pub.channel)
        sink = self._sink
        if state is None or sink is None:
            return
        if state.epoch is not None and pub.epoch != state.epoch:
            await self._catch_up(pub.channel, state)
            return
        if pub.offset <= state.last:
            return  # already delivered (catch-up and live overlapped)
        if pub.offset > state.last + 1:
            await self._catch_up(pub.channel, state)
            return
        state.epoch, state.last = pub.epoch, pub.offset
        sink.on_publication(pub)

    async def _catch_up_all(self) -> None:
        for channel, state in list(self._listening.items()):
            await self._catch_up(channel, state)

    async def _catch_up(self, channel: str, state: _Listening) -> None:
        """Deliver what this node missed in ``channel``; report a lost stream as a reset."""
        sink = self._sink
        position = await self._read_position(channel)
        if state.epoch is None:
            state.epoch, state.last = position.epoch, position.offset
            return
        if position.epoch != state.epoch:
            log.warning(
                "channel %s: epoch changed (%s -> %s); subscribers resync",
                channel,
                state.epoch,
                position.epoch,
            )
            state.epoch, state.last = position.epoch, position.offset
            if sink is not None:
                sink.on_reset(channel, position)
            return
        if position.offset <= state.last:
            return
        entries = _entries(await self.redis.xrange(self._k("s", channel), f"0-{state.last + 1}", "+"))
        pubs = [self._entry(channel, state.epoch, entry) for entry in entries]
        if not pubs or pubs[0].offset != state.last + 1:
            log.warning(
                "channel %s: history no longer covers offsets after %d; subscribers resync",
                channel,
                state.last,
            )
            state.last = position.offset
            if sink is not None:
                sink.on_reset(channel, position)
            return
        for pub in pubs:
            if pub.offset == state.last + 1 and sink is not None:
                state.last = pub.offset
                sink.on_publication(pub)

    def _entry(self, channel: str, epoch: str, entry: tuple[bytes, dict[bytes, bytes]]) -> Publication:
        entry_id, fields = entry
        offset = int(entry_id.split(b"-")[1])
        return Publication(channel, offset, epoch, Payload.from_msgpack(fields[b"d"]), float(fields[b"t"]))

    # -- channels --------------------------------------------------------------------------

    async def publish(self, channel: str, payload: Payload, options: ChannelOptions) -> Publication:
        now = time.time()
        try:
            epoch, offset = await self._publish(
                keys=[self._k("m", channel), self._k("s", channel)],
                args=[
                    secrets.token_hex(4),
                    payload.msgpack,
                    options.history_size,
                    max(1, int(options.history_ttl)),
                    int(max(self.meta_ttl, options.history_ttl)),
                    repr(now),
                    self._k("c", channel),
                ],
            )
        except (RedisError, OSError) as exc:
            raise _unavailable(exc) from exc
        return Publication(channel, int(offset), epoch.decode(), payload, now)

    async def listen(self, channel: str) -> None:
        if channel in self._listening:
            return
        state = self._listening[channel] = _Listening()
        try:
            if self._pubsub is not None and self._listener_ok:  # (not `healthy`: commands may be
                # stalled while the listener is connected, and it subscribes only on reconnect)
                await self._pubsub.subscribe(self._k("c", channel))
            await self._catch_up(channel, state)  # the baseline: live messages after it count
        except (RedisError, OSError) as exc:
            # The listener will subscribe and catch up when it reconnects.
            log.warning("listen %s: %s", channel, exc)

    async def unlisten(self, channel: str) -> None:
        if self._listening.pop(channel, None) is None:
            return
        if self._pubsub is not None and self._listener_ok:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.unsubscribe(self._k("c", channel))

    async def _read_position(self, channel: str) -> Position:
        epoch, offset = await self._position(
            keys=[self._k("m", channel), self._k("s", channel)],
            args=[secrets.token_hex(4), int(self.meta_ttl)],
        )
        return Position(epoch.decode(), int(offset))

    async def position(self, channel: str) -> Position:
        try:
            return await self._read_position(channel)
        except (RedisError, OSError) as exc:
            raise _unavailable(exc) from exc

    async def history(
        self, channel: str, *, since: Position | None, limit: int, options: ChannelOptions
    ) -> HistoryResult:
        try:
            position = await self._read_position(channel)
            stream = self._k("s", channel)
            if since is None:
                entries = (
                    list(reversed(_entries(await self.redis.xrevrange(stream, "+", "-", count=limit))))
                    if limit > 0
                    else []
                )
            elif since.epoch != position.epoch or since.offset > position.offset:
                return HistoryResult([], position, False)
            elif since.offset == position.offset:
                return HistoryResult([], position, True)
            else:
                missed = position.offset - since.offset
                if missed > limit:
                    return HistoryResult([], position, False)
                entries = _entries(
                    await self.redis.xrange(stream, f"0-{since.offset + 1}", f"0-{position.offset}")
                )
        except (RedisError, OSError) as exc:
            raise _unavailable(exc) from exc
        oldest = time.time() - options.history_ttl
        pubs = [p for p in (self._entry(channel, position.epoch, e) for e in entries) if p.time > oldest]
        if since is None:
            return HistoryResult(pubs, position, True)
        complete = bool(pubs) and pubs[0].offset == since.offset + 1 and pubs[-1].offset == position.offset
        if not complete:
            return HistoryResult([], position, False)
        return HistoryResult(pubs, position, True)

    # -- presence --------------------------------------------------------------------------

    async def presence_add(self, channel: str, member: Member, ttl: float) -> None:
        packed = msgpack.packb([member.client, member.user, member.info])
        key, times = self._k("p", channel), self._k("p", channel) + ":t"
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(key, member.client, packed)
                pipe.zadd(times, {member.client: time.time() + ttl})
                pipe.expire(key, int(ttl) + 1)
                pipe.expire(times, int(ttl) + 1)
                added, *_ = await pipe.execute()
            if added:
                await self.redis.publish(self._k("c", channel), b"J" + packed)
        except (RedisError, OSError) as exc:
            raise _unavailable(exc) from exc

    async def presence_remove(self, channel: str, member: Member) -> None:
        key = self._k("p", channel)
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hdel(key, member.client)
                pipe.zrem(key + ":t", member.client)
                removed, _ = await pipe.execute()
            if removed:
                packed = msgpack.packb([member.client, member.user, member.info])
                await self.redis.publish(self._k("c", channel), b"L" + packed)
        except (RedisError, OSError) as exc:
            log.warning("presence_remove %s: %s (it expires by itself)", channel, exc)

    async def presence(self, channel: str) -> list[Member]:
        key, times = self._k("p", channel), self._k("p", channel) + ":t"
        now = time.time()
        try:
            expired: list[bytes] = await self.redis.zrangebyscore(times, "-inf", now)  # type: ignore[assignment]
            for client in expired:  # members of a node that died: announce that they left
                packed = await self.redis.hget(key, client)
                if await self.redis.zrem(times, client) and packed is not None:
                    await self.redis.hdel(key, client)
                    await self.redis.publish(self._k("c", channel), b"L" + bytes(packed))  # type: ignore[arg-type]
            values: dict[bytes, bytes] = await self.redis.hgetall(key)  # type: ignore[assignment]
        except (RedisError, OSError) as exc:
            raise _unavailable(exc) from exc
        members = []
        for packed in values.values():
            client, user, info = msgpack.unpackb(packed, raw=False)
            members.append(Member(client, user, info))
        return members

    # -- session routing -------------------------------------------------------------------

    def session_prefix(self) -> str:
        """Session ids start with the id of the node that made them (``<node>.``)."""
        return f"{self.node_id}."

    async def locate_session(self, sid: str) -> str | None:
        """The live node that holds ``sid`` (after hand-overs), or None."""
        try:
            moved: bytes | None = await self.redis.get(self._k("moved", sid))  # type: ignore[assignment]
            node = moved.decode() if moved else sid.split(".", 1)[0]
            if node == self.node_id:
                return node
        except (RedisError, OSError) as exc:
            raise _unavailable(exc) from exc
        return node if await self.node_alive(node) else None

    resubscribe_grace = RESUBSCRIBE_GRACE

    async def node_alive(self, node: str) -> bool:
        """A node is alive while its listener is subscribed to its own channel: a killed
        process's subscription ends with its connection.

        The answer must come fast: a client resuming a session of a dead node waits for it,
        and a connection cut meanwhile would leave it resuming forever. A live listener whose
        connection dropped is back within about 0.1 s, so a missing subscription is checked
        once more after 0.15 s; only while Redis has been up less than ``resubscribe_grace``
        (it just restarted: every node is subscribing again) is it asked until then.
        """
        channel = self._k("n", node)
        try:
            for attempt in itertools.count():
                ((_, listeners),) = await self.redis.pubsub_numsub(channel)
                if listeners:
                    return True
                if attempt:
                    uptime = int((await self.redis.info("server")).get("uptime_in_seconds", 0))
                    if uptime >= self.resubscribe_grace:
                        return False
                await asyncio.sleep(0.15 if attempt == 0 else 0.25)
        except (RedisError, OSError) as exc:
            raise _unavailable(exc) from exc
        return False  # pragma: no cover - the loop only ends by returning

    async def claim_session(self, sid: str, ttl: float) -> None:
        """Record that ``sid`` now lives on this node (after a hand-over)."""
        try:
            if sid.split(".", 1)[0] == self.node_id:
                await self.redis.delete(self._k("moved", sid))
            else:
                await self.redis.set(self._k("moved", sid), self.node_id, px=int(ttl * 1000))
        except (RedisError, OSError) as exc:
            raise _unavailable(exc) from exc

    async def release_session(self, sid: str) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self.redis.delete(self._k("moved", sid))

    async def send_node(self, node: str, message: bytes) -> None:
        """Deliver ``message`` to ``node``'s ``on_node_message`` (fire and forget)."""
        try:
            await self.redis.publish(self._k("n", node), message)
        except (RedisError, OSError) as exc:
            raise _unavailable(exc) from exc

    async def record_applied(
        self,
        sid: str,
        token: str,
        *,
        done: int,
        reply: tuple[int, bytes] | None,
        forget: Sequence[int],
        origins: Sequence[str] | None,
        ttl: float,
    ) -> None:
        """One round trip (a pipeline of HSET, HDEL when answers were delivered, PEXPIRE)
        per applied message."""
        key = self._k("a", sid)
        fields: dict[FieldT, EncodableT] = {"t": token_digest(token), "i": done}
        if reply is not None:
            fields[f"r:{reply[0]}"] = reply[1]
        if origins is not None:
            fields["o"] = msgpack.packb(list(origins))
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hset(key, mapping=fields)
                if forget:
                    pipe.hdel(key, *(f"r:{number}" for number in forget))
                pipe.pexpire(key, max(1, int(ttl * 1000)))
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise _unavailable(exc) from exc

    async def applied_record(self, sid: str, token: str) -> AppliedRecord | None:
        try:
            raw: dict[bytes, bytes] = await self.redis.hgetall(self._k("a", sid))  # type: ignore[assignment]
        except (RedisError, OSError) as exc:
            raise _unavailable(exc) from exc
        digest = raw.get(b"t")
        if digest is None or not hmac.compare_digest(bytes(digest), token_digest(token)):
            return None
        record = AppliedRecord(done=int(raw.get(b"i", b"0")))
        for name, value in raw.items():
            if name.startswith(b"r:"):
                record.replies[int(name[2:])] = bytes(value)
        if b"o" in raw:
            record.origins = [str(key) for key in msgpack.unpackb(raw[b"o"], raw=False)]
        return record

    async def broadcast(self, message: bytes) -> int:
        """Publish ``message`` to every node; returns how many *other* nodes received it."""
        try:
            receivers = int(await self.redis.publish(self._all, message))
        except (RedisError, OSError) as exc:
            raise _unavailable(exc) from exc
        return max(0, receivers - 1) if self._subscribed.is_set() else receivers

    async def ping(self) -> float:
        """Round-trip time to Redis, seconds."""
        started = time.perf_counter()
        try:
            await self.redis.ping()
        except (RedisError, OSError) as exc:
            raise _unavailable(exc) from exc
        return time.perf_counter() - started

    def details(self) -> dict[str, Any]:
        return {
            "engine": "redis",
            "healthy": self.healthy,
            "reconnects": self.reconnects,
            "error": self.last_error,
        }
