"""What the Redis engine's parts share: key names, the command clients and the sink."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from typing import Final

import redis.asyncio as aioredis
from redis.asyncio.connection import BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ...protocol.errors import LadderError
from ..base import EngineSink
from ..urls import check_query

log = logging.getLogger("ladder.redis")


def cancelled_meanwhile() -> None:
    """Raise the cancellation of this task that a Redis command took: redis-py may answer a
    command cancelled at the wrong moment as if it was not (in a loop of commands cancelled
    at random moments, 7 cancellations in 10 with redis-py 8.2), so a loop of commands that
    waits for something would go on after its caller gave up, for as long as it waits."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def unavailable(exc: BaseException, keys: Sequence[str] = ()) -> LadderError:
    """The error every engine call raises while Redis cannot be reached, or refuses what it
    was asked (a full Redis under ``noeviction``: the reason names the fix).

    A key holding another type of value (``WRONGTYPE``: something else wrote under the
    prefix, or a bug) is no outage, and no retry helps: it is logged with ``keys`` and
    Redis's words, and answered ``internal``. A reason never carries where in a script
    Redis failed (its SHA and line), which the log keeps, nor the command a pipeline's error
    quotes (redis-py puts it first: a session's id and its resume token's hash, a publication's
    data), which neither keeps."""
    whole = _PIPELINE_COMMAND.sub("", str(exc))
    plain = _SCRIPT_WHERE.sub("", whole).strip()
    said = _printable(plain)
    if isinstance(exc, OutOfMemoryError):
        return LadderError(
            "engine_unavailable",
            f"Redis is full and refuses writes (raise its maxmemory, or give it more memory): {said}",
        )
    if isinstance(exc, ResponseError):
        if plain.startswith("WRONGTYPE"):
            log.error(
                "Redis holds another type of value under one of %s (written by another program "
                "under this prefix, or a bug); answered internal: %s",
                ", ".join(keys) or "this command's keys",
                _printable(whole),
            )
            why = "Redis holds another type of value under a key this needs (see the server log)"
            return LadderError("internal", why)
        if plain != whole:  # (a script's error: where it failed goes to the log only)
            log.warning("Redis refused a script on %s: %s", ", ".join(keys) or "its keys", _printable(whole))
        return LadderError("engine_unavailable", f"Redis refused the command ({type(exc).__name__}: {said})")
    return LadderError("engine_unavailable", f"Redis is unreachable ({type(exc).__name__}: {said})")


_PIPELINE_COMMAND: Final = re.compile(r"^Command # \d+ \(.*\) of pipeline caused error: ", re.S)
"""What redis-py writes before the error of a command in a pipeline: the command, quoted."""

_SCRIPT_WHERE: Final = re.compile(
    r"Error running script \(call to f_[0-9a-f]+\): @user_script:\d+: |"
    r"\s*script: [0-9a-f]{40}, on @user_script:\d+\.?"
)
"""Where in a Lua script Redis failed, as its errors say it (Redis 7, and 6 before it)."""


def _printable(text: str, most: int = 300) -> str:
    """What Redis said, escaped and short: a refused script's error quotes its arguments
    (a recorded answer's bytes went into the log and to clients as they were)."""
    text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= most else f"{text[:most]}..."


class RedisLink:
    """Keys under one prefix, and the connections every part of one engine uses.

    ``redis`` serves reads and commands that may be repeated; ``writer`` serves
    publications, which must not be (see :meth:`open`).
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str,
        node_id: str,
        connect_timeout: float,
        command_timeout: float,
        max_connections: int,
        pool_timeout: float,
    ) -> None:
        check_query(url)  # (an engine made with RedisEngine(url), not from the URL alone)
        self.url = url
        self.prefix = prefix
        self.node_id = node_id
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.max_connections = max_connections
        self.pool_timeout = pool_timeout
        self.sink: EngineSink | None = None
        self.hears_all = True
        """Whether this node listens for messages to every node (see ``answers_nodes``)."""
        self._redis: aioredis.Redis | None = None
        self._writer: aioredis.Redis | None = None

    pipelined_scripts = True
    """Whether scripts may run in a pipeline (not in a cluster)."""

    def k(self, kind: str, name: str) -> str:
        """The key (or pub/sub channel) of ``kind`` for ``name``: ``{prefix}:{kind}:{name}``."""
        return f"{self.prefix}:{kind}:{name}"

    @property
    def all_nodes(self) -> str:
        """The pub/sub channel every node listens on."""
        return f"{self.prefix}:all"

    def node_keys(self) -> list[str]:
        """The pub/sub keys this node listens on for messages to it and to every node."""
        return [self.k("n", self.node_id), self.all_nodes] if self.hears_all else [self.k("n", self.node_id)]

    def node_key(self, node: str) -> str:
        """The pub/sub key a message to ``node`` goes to (``"*"``: to every node)."""
        return self.all_nodes if node == "*" else self.k("n", node)

    def node_keys_of(self, node: str) -> list[str]:
        """Every pub/sub key a message to ``node`` may travel on, best first (one here; a
        cluster has one per primary)."""
        return [self.node_key(node)]

    def for_nodes(self, key: bytes) -> bool:
        """Whether pub/sub ``key`` carries messages to this node (or every node)."""
        return key.decode() in self.node_keys()

    def channel_of(self, key: bytes) -> str:
        """The channel name of a ``{prefix}:c:{channel}`` pub/sub key."""
        return key.decode()[len(self.prefix) + 3 :]

    def script(self, text: str) -> str:
        """A Lua script as this deployment runs it (a cluster publishes with ``SPUBLISH``)."""
        return text

    async def publish(self, key: str, data: bytes) -> int:
        """Publish ``data`` on pub/sub ``key``; how many listeners received it."""
        return int(await self.redis.publish(key, data))

    async def subscribers(self, key: str) -> int:
        """How many connections listen on pub/sub ``key``."""
        ((_, count),) = await self.redis.pubsub_numsub(key)
        return int(count)

    async def uptime(self, key: str) -> int:
        """Seconds the Redis serving ``key`` has been up."""
        return int((await self.redis.info("server")).get("uptime_in_seconds", 0))

    @property
    def redis(self) -> aioredis.Redis:
        if self._redis is None:
            raise LadderError("engine_unavailable", "the Redis engine is not started")
        return self._redis

    @property
    def writer(self) -> aioredis.Redis:
        if self._writer is None:
            raise LadderError("engine_unavailable", "the Redis engine is not started")
        return self._writer

    def _client(self, *, retry_on: tuple[type[RedisError], ...]) -> aioredis.Redis:
        """A command client on a blocking pool: past ``max_connections`` commands in flight
        (a burst of resubscribing clients after a restart), the next one waits up to
        ``pool_timeout`` for a free connection instead of failing at once."""
        pool = BlockingConnectionPool.from_url(
            self.url,
            max_connections=self.max_connections,
            timeout=self.pool_timeout,
            socket_connect_timeout=self.connect_timeout,
            socket_timeout=self.command_timeout,
            retry=Retry(NoBackoff(), 1, supported_errors=retry_on),
            retry_on_error=[RuntimeError],  # a write refused by a closed transport: not sent
            health_check_interval=0,
        )
        return aioredis.Redis.from_pool(pool)

    def open(self) -> None:
        """Make the command clients (connections open on first use).

        Reads may be repeated freely; a publication must not be: a timeout or a lost
        connection after the script was sent leaves its outcome unknown, and running it
        again would store it twice. Its client retries only when the command cannot have
        been sent (uvloop refuses writes to a transport already closed with RuntimeError;
        redis-py then drops that connection and the retry opens a new one).
        """
        self._redis = self._client(retry_on=(RedisConnectionError, RedisTimeoutError))
        self._writer = self._client(retry_on=())

    async def ready(self) -> None:
        """Prepare the opened clients before first use (nothing to do for one server)."""

    def listener_client(self) -> aioredis.Redis:
        """The pub/sub listener's own client. It never reconnects by itself: a silent
        reconnect would resubscribe without the catch-up that finds what was missed."""
        return aioredis.from_url(
            self.url,
            socket_connect_timeout=self.connect_timeout,
            socket_timeout=None,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )

    async def close(self) -> None:
        for client in (self._redis, self._writer):
            if client is not None:
                await client.aclose()
