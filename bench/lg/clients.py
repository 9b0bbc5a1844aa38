"""Load-generator clients speaking each server's wire protocol directly.

The Ladder client (``ladder.Client``) and python-socketio's client are far too heavy to run
thousands of on one core next to the servers under test (each message costs them tens of
microseconds of Python), so the load generator speaks the protocols itself, on top of
:mod:`lg.wire`, doing what the real clients do on the wire and nothing else:

* Ladder, WebSocket rung (``LadderWS``): hello / welcome, ``sub`` frames, ``emit`` and
  ``call``; acknowledges server frames like ``ladder.Client`` does: at once when the frames
  unacknowledged reach a count drawn from 256 to 512 (drawn again after each such ack; the
  bounds from the welcome's ``lim`` never bind on 100 B frames under the default limits),
  otherwise once nothing was heard for 1 s (one timer, started by the
  first unacknowledged frame, waiting out the rest of the quiet spell when it fires), and
  a pending ack rides with any message or pong written meanwhile; answers ``ping`` with
  ``pong``. Encoding msgpack (the Python client's default) or JSON.
* Ladder, SSE rung (``LadderSSE``): the event stream down, ``POST /send`` up (acks by the
  same rule, sent one POST at a time as the client does; ``ping`` events are heartbeats and
  get no pong, as in the client). The open-time "pong through the stream" proof is
  skipped: it happens once per connection and measures nothing here.
* Ladder, long-polling and short polling (``LadderPoll``): ``GET longpoll``/``poll``
  carrying ``ack``; short polling paces itself like ``ladder.Client`` (50 ms after a
  non-empty answer or a send, doubling to 2 s while idle). msgpack, like the client.
* Socket.IO over Engine.IO v4, WebSocket (``SioWS``) and HTTP long-polling (``SioPoll``):
  open packet, namespace connect, ``42`` events, ``42<id>``/``43<id>`` acks, ping/pong.

Each client counts publications delivered into a shared :class:`Stats` and, when
``sample`` is set, records the latency of each one (``now - data["ts"]``, both read from
this process's ``perf_counter``: the publisher runs in the same process).
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from array import array
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import msgpack
import orjson

from .wire import ConnClosed, HTTPConn, WSConn

now = time.perf_counter
_packb = msgpack.Packer(use_bin_type=True).pack
def _new_unpacker() -> msgpack.Unpacker:
    return msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=64 * 1024 * 1024)


_unpacker = _new_unpacker()


def _unpack_all(data: bytes) -> list[Any]:
    # One shared unpacker is safe: every call feeds whole batches and drains them at once
    # (a fresh one per batch costs ~0.7 µs more). After an error it is replaced, so no
    # half-read bytes can leak into the next batch.
    global _unpacker
    try:
        _unpacker.feed(data)
        return list(_unpacker)
    except Exception:
        _unpacker = _new_unpacker()
        raise


def _json_all(data: bytes) -> list[Any]:
    return [orjson.loads(line) for line in data.split(b"\n") if line]


class Stats:
    """Counters shared by all clients of one run (hot path: two attribute updates)."""

    def __init__(self) -> None:
        self.delivered = 0
        self.wake_at = float("inf")
        self.wake = asyncio.Event()
        self.lat = array("d")
        self.errors = 0
        self.closed = 0
        self.acks = 0
        """Acknowledgement frames the (Ladder) clients sent."""

    def arm(self, at: float) -> None:
        self.wake_at = at
        self.wake.clear()
        if self.delivered >= at:
            self.wake.set()

    def reset_window(self) -> None:
        self.delivered = 0
        self.lat = array("d")


Callback = Callable[[Any], None]


class PostPool:
    """Keep-alive connections shared by all clients of a server for their upstream POSTs.

    Like many ``ladder.Client`` instances sharing one httpx client (``http_client=``), or a
    browser's per-host connection pool: the downstream GET or stream of every client is its
    own connection, the POSTs go through a few shared ones. (It also keeps 10k SSE clients
    within the load generator's descriptor limit.)
    """

    def __init__(self, port: int, size: int = 32) -> None:
        self.port = port
        self.size = size
        self.opened = 0
        self.free: list[HTTPConn] = []
        self.all: list[HTTPConn] = []
        self.waiters: list[asyncio.Future[None]] = []

    async def request(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Any:
        while not self.free and self.opened >= self.size:
            waiter = asyncio.get_running_loop().create_future()
            self.waiters.append(waiter)
            await waiter
        if self.free:
            conn = self.free.pop()
        else:
            self.opened += 1
            try:
                conn = await HTTPConn.connect(self.port)
            except BaseException:
                self.opened -= 1
                self._wake()
                raise
            self.all.append(conn)
        ok = False
        try:
            response = await conn.request(method, path, headers, body)
            ok = True
            return response
        finally:
            if ok and not conn.closed:
                self.free.append(conn)
            else:
                conn.abort()
                self.opened -= 1
            self._wake()

    def _wake(self) -> None:
        while self.waiters:
            waiter = self.waiters.pop(0)
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self) -> None:
        for conn in self.all:
            conn.abort()
        self.all.clear()
        self.free.clear()


_pools: dict[int, PostPool] = {}


def post_pool(port: int) -> PostPool:
    pool = _pools.get(port)
    if pool is None:
        pool = _pools[port] = PostPool(port)
    return pool


def close_pools() -> None:
    for pool in _pools.values():
        pool.close()
    _pools.clear()


class BaseClient:
    name = ""

    def __init__(self, port: int, stats: Stats, *, sample: bool = False) -> None:
        self.port = port
        self.stats = stats
        self.sample = sample
        self.count = 0
        self.alive = False
        self.on_pub: Callable[[Any], None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    def _spawn(self, coro: Any) -> None:
        """Run ``coro`` in the background; cancelled by :meth:`_cancel_tasks`."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _cancel_tasks(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    async def connect(self) -> None:
        raise NotImplementedError

    async def join(self, channel: str) -> None:
        raise NotImplementedError

    def emit(self, event: str, data: Any) -> None:
        raise NotImplementedError

    def call(self, event: str, data: Any, callback: Callback) -> None:
        raise NotImplementedError

    async def call_async(self, event: str, data: Any) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def done(result: Any) -> None:
            if not future.done():
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)

        self.call(event, data, done)
        return await future

    def close(self) -> None:
        raise NotImplementedError

    def _lost(self) -> None:
        if self.alive:
            self.stats.closed += 1
        self.alive = False


# ---------------------------------------------------------------------------------------
# Ladder
# ---------------------------------------------------------------------------------------


class _LadderSession(BaseClient):
    """What every Ladder rung shares: message ids, the seq/ack bookkeeping, frame handling."""

    ACK_EVERY = 512
    ACK_INTERVAL = 1.0
    pongs = True
    """Whether server pings get a pong (WebSocket; on SSE they are heartbeats only)."""

    def __init__(self, port: int, stats: Stats, *, sample: bool = False) -> None:
        super().__init__(port, stats, sample=sample)
        self.next_i = 1
        self.last_s = 0
        self.acked_s = 0
        self.ack_at = self._draw()
        self.ack_timer: asyncio.TimerHandle | None = None
        self.heard = 0.0
        """When the last batch arrived (``now``): the ack timer waits for 1 s of quiet."""
        self.waiting: dict[int, Callback] = {}
        self.welcome: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.sid = ""
        self.rt = ""

    def _frames(self, frames: list[Any]) -> None:
        """Handle a batch of decoded server frames."""
        n = 0
        sample = self.sample
        lat = self.stats.lat
        t_now = now() if sample else 0.0
        control: list[dict[str, Any]] = []
        for f in frames:
            s = f.get("s")
            if s is not None:
                if s <= self.last_s:
                    continue
                self.last_s = s
                t = f["t"]
                if t == "pub":
                    n += 1
                    if sample:
                        lat.append(t_now - f["d"]["ts"])
                    if self.on_pub is not None:
                        self.on_pub(f)
                elif t in ("reply", "err"):
                    callback = self.waiting.pop(f.get("re"), None)
                    if callback is not None:
                        callback(f.get("d") if t == "reply" else ConnClosed(f"err {f.get('code')}"))
                continue
            t = f["t"]
            if t == "ping":
                if self.pongs:
                    control.append({"t": "pong"})
            elif t == "welcome":
                self.sid, self.rt = f["sid"], f["rt"]
                if not self.welcome.done():
                    self.welcome.set_result(f)
            elif t == "bye":
                self.stats.errors += 1
            elif t == "err" and not self.welcome.done():
                self.welcome.set_exception(ConnClosed(f"refused: {f.get('code')} {f.get('reason')}"))
        if n:
            self.count += n
            stats = self.stats
            stats.delivered += n
            if stats.delivered >= stats.wake_at:
                stats.wake.set()
        if not self.implicit_ack:
            self.heard = now()
            pending = self.last_s - self.acked_s
            due = pending >= self.ack_at
            if due:
                self.ack_at = self._draw()
            if due or (pending and control):
                # At once at the drawn count; otherwise a pending ack rides with the pong.
                control.append(self._ack())
            elif pending and self.ack_timer is None:
                self.ack_timer = asyncio.get_running_loop().call_later(self.ACK_INTERVAL, self._ack_due)
        if control:
            self._send(control)

    implicit_ack = False

    def _draw(self) -> int:
        """The next count acked at once: from [ACK_EVERY/2, ACK_EVERY], as the clients draw it."""
        return math.ceil(self.ACK_EVERY / 2 + random.random() * self.ACK_EVERY / 2)

    def _cancel_ack_timer(self) -> None:
        if self.ack_timer is not None:
            self.ack_timer.cancel()
            self.ack_timer = None

    def _ack(self) -> dict[str, Any]:
        """The ack frame for everything received so far; the timer is no longer needed."""
        self._cancel_ack_timer()
        self.acked_s = self.last_s
        self.stats.acks += 1
        return {"t": "ack", "s": self.last_s}

    def _ack_due(self) -> None:
        self.ack_timer = None
        left = self.ACK_INTERVAL - (now() - self.heard)
        if left > 0:
            self.ack_timer = asyncio.get_running_loop().call_later(left, self._ack_due)
        elif self.alive and self.last_s > self.acked_s:
            self._send([self._ack()])

    def _send(self, frames: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    def _submit(self, frame: dict[str, Any], callback: Callback | None = None) -> None:
        frame["i"] = i = self.next_i
        self.next_i += 1
        if callback is not None:
            self.waiting[i] = callback
        if not self.implicit_ack and self.last_s > self.acked_s:
            self._send([frame, self._ack()])  # a pending ack rides with the message
        else:
            self._send([frame])

    async def join(self, channel: str) -> None:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._submit({"t": "sub", "ch": channel}, lambda d: future.done() or future.set_result(d))
        result = await future
        if isinstance(result, BaseException):
            raise result

    def emit(self, event: str, data: Any) -> None:
        self._submit({"t": "emit", "ev": event, "d": data})

    def publish(self, channel: str, data: Any) -> None:
        """The client's own publication (a ``pub`` frame: no handler; ``client_publish``)."""
        self._submit({"t": "pub", "ch": channel, "d": data})

    def call(self, event: str, data: Any, callback: Callback) -> None:
        self._submit({"t": "call", "ev": event, "d": data}, callback)


class LadderWS(_LadderSession):
    name = "websocket"

    def __init__(self, port: int, stats: Stats, *, sample: bool = False, encoding: str = "msgpack") -> None:
        super().__init__(port, stats, sample=sample)
        self.binary = encoding == "msgpack"
        self.ws: WSConn | None = None

    async def connect(self) -> None:
        self.ws = WSConn("/ws", self.port, self._on_message, self._lost)
        await self.ws.start()
        self.alive = True
        self._send([{"t": "hello", "v": 1}])
        await self.welcome

    def _on_message(self, opcode: int, payload: bytes) -> None:
        self._frames(_unpack_all(payload) if opcode == 2 else _json_all(payload))

    def _send(self, frames: list[dict[str, Any]]) -> None:
        ws = self.ws
        if ws is None:
            return
        if self.binary:
            ws.send_binary(b"".join(_packb(f) for f in frames))
        else:
            ws.send_text(b"\n".join(orjson.dumps(f) for f in frames))

    def close(self) -> None:
        self._cancel_ack_timer()
        if self.ws is not None:
            self.ws.abort()


class _LadderHTTP(_LadderSession):
    """Upstream for the HTTP rungs: ``POST /send``, one at a time, queued frames batched.
    Server pings get no pong (only WebSocket needs one, as in ``ladder.Client``)."""

    pongs = False

    def __init__(self, port: int, stats: Stats, *, sample: bool = False) -> None:
        super().__init__(port, stats, sample=sample)
        self.pool = post_pool(port)
        self._queue: list[dict[str, Any]] = []
        self._posting = False

    def _send(self, frames: list[dict[str, Any]]) -> None:
        self._queue.extend(frames)
        if not self._posting:
            self._posting = True
            self._spawn(self._post_loop())

    async def _post_loop(self) -> None:
        try:
            while self._queue and self.alive:
                frames, self._queue = self._queue, []
                body = b"\n".join(orjson.dumps(f) for f in frames)
                response = await self.pool.request(
                    "POST",
                    f"/send?sid={self.sid}",
                    {"X-Ladder-Rt": self.rt, "Content-Type": "application/x-ndjson"},
                    body,
                )
                if response.status >= 300:
                    self.stats.errors += 1
                self._after_post()
        except (ConnClosed, OSError):
            if self.alive:
                self.stats.errors += 1
        finally:
            self._posting = False

    def _after_post(self) -> None:
        pass

    def close(self) -> None:
        self.alive = False
        self._cancel_ack_timer()
        conn = getattr(self, "conn", None)
        if conn is not None:
            conn.abort()
        self._cancel_tasks()


class LadderSSE(_LadderHTTP):
    name = "sse"

    def __init__(self, port: int, stats: Stats, *, sample: bool = False) -> None:
        super().__init__(port, stats, sample=sample)
        self.conn: HTTPConn | None = None
        self._buf = b""

    async def connect(self) -> None:
        self.conn = await HTTPConn.connect(self.port)
        self.conn.on_close = self._lost
        self.alive = True
        response = await self.conn.stream("/sse?v=1", self._on_body, {"Accept": "text/event-stream"})
        if response.status != 200:
            raise ConnClosed(f"sse: HTTP {response.status}")
        await self.welcome

    def _on_body(self, chunk: bytes) -> None:
        data = self._buf + chunk if self._buf else chunk
        head, sep, rest = data.rpartition(b"\n\n")
        if not sep:
            self._buf = data
            return
        self._buf = rest
        frames = []
        for line in head.split(b"\n"):
            if line.startswith(b"data: "):
                frames.append(orjson.loads(line[6:]))
        if frames:
            self._frames(frames)


class LadderPoll(_LadderHTTP):
    implicit_ack = True

    def __init__(self, port: int, stats: Stats, *, sample: bool = False, hold: bool = True) -> None:
        super().__init__(port, stats, sample=sample)
        self.hold = hold
        self.name = "longpoll" if hold else "poll"
        self.conn: HTTPConn | None = None
        self.interval = 0.05
        self._nudge = asyncio.Event()

    async def _get(self, query: str, headers: dict[str, str] | None = None) -> None:
        assert self.conn is not None
        response = await self.conn.request("GET", f"/{self.name}?{query}&enc=msgpack", headers)
        if response.status != 200:
            raise ConnClosed(f"{self.name}: HTTP {response.status}")
        frames = _unpack_all(response.body) if response.body else []
        if frames:
            self._frames(frames)
        # Like ladder.Client: only sequenced frames count as traffic (acks alone do not).
        return any("s" in frame for frame in frames)

    async def connect(self) -> None:
        self.conn = await HTTPConn.connect(self.port)
        self.conn.on_close = self._lost
        self.alive = True
        await self._get("v=1&open=1")
        await self.welcome
        self._spawn(self._loop())

    async def _loop(self) -> None:
        headers = {"X-Ladder-Rt": self.rt}
        try:
            while self.alive:
                if not self.hold and not self._nudge.is_set():
                    try:
                        async with asyncio.timeout(self.interval):
                            await self._nudge.wait()
                    except TimeoutError:
                        pass
                self._nudge.clear()
                got = await self._get(f"sid={self.sid}&ack={self.last_s}", headers)
                if not self.hold:
                    self.interval = 0.05 if got else min(2.0, self.interval * 2)
        except (ConnClosed, OSError):
            if self.alive:
                self.stats.errors += 1

    def _after_post(self) -> None:
        self.interval = 0.05
        self._nudge.set()


# ---------------------------------------------------------------------------------------
# Socket.IO (Engine.IO v4)
# ---------------------------------------------------------------------------------------

EIO_PATH = "/socket.io/?EIO=4&transport="


class _SioSession(BaseClient):
    def __init__(self, port: int, stats: Stats, *, sample: bool = False) -> None:
        super().__init__(port, stats, sample=sample)
        self.next_id = 0
        self.waiting: dict[int, Callback] = {}
        self.connected: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.sid = ""

    def _packet(self, p: bytes) -> None:
        """One Engine.IO packet (text)."""
        c = p[:1]
        if c == b"4":
            kind = p[1:2]
            if kind == b"2":
                self.count += 1
                stats = self.stats
                stats.delivered += 1
                # Every event is decoded, as a Socket.IO client's parser does (and as every
                # Ladder frame is); only the sampled clients also note when it came.
                data = orjson.loads(p[2:])[1]
                if self.sample:
                    stats.lat.append(now() - data["ts"])
                if self.on_pub is not None:
                    self.on_pub(p)
                if stats.delivered >= stats.wake_at:
                    stats.wake.set()
            elif kind == b"3":
                j = 2
                while 48 <= p[j] <= 57:
                    j += 1
                callback = self.waiting.pop(int(p[2:j]), None)
                if callback is not None:
                    args = orjson.loads(p[j:])
                    callback(args[0] if args else None)
            elif kind == b"0":
                if not self.connected.done():
                    self.connected.set_result(None)
            elif kind == b"4" and not self.connected.done():
                self.connected.set_exception(ConnClosed(f"connect_error {p[2:]!r}"))
        elif c == b"2":
            self._send_packets([b"3"])
        elif c == b"0":
            self.sid = orjson.loads(p[1:])["sid"]
            self._opened()
        elif c == b"1":
            self.stats.errors += 1

    def _opened(self) -> None:
        self._send_packets([b"40"])

    def _send_packets(self, packets: list[bytes]) -> None:
        raise NotImplementedError

    def emit(self, event: str, data: Any) -> None:
        self._send_packets([b"42" + orjson.dumps([event, data])])

    def call(self, event: str, data: Any, callback: Callback) -> None:
        ack = self.next_id
        self.next_id += 1
        self.waiting[ack] = callback
        self._send_packets([b"42%d" % ack + orjson.dumps([event, data])])

    async def join(self, channel: str) -> None:
        await self.call_async("join", channel)


class SioWS(_SioSession):
    name = "websocket"

    def __init__(self, port: int, stats: Stats, *, sample: bool = False) -> None:
        super().__init__(port, stats, sample=sample)
        self.ws: WSConn | None = None

    async def connect(self) -> None:
        self.ws = WSConn(EIO_PATH + "websocket", self.port, self._on_message, self._lost)
        await self.ws.start()
        self.alive = True
        await self.connected

    def _on_message(self, opcode: int, payload: bytes) -> None:
        self._packet(payload)

    def _send_packets(self, packets: list[bytes]) -> None:
        if self.ws is not None:
            for p in packets:
                self.ws.send_text(p)

    def close(self) -> None:
        if self.ws is not None:
            self.ws.abort()


class SioPoll(_SioSession):
    name = "polling"

    def __init__(self, port: int, stats: Stats, *, sample: bool = False) -> None:
        super().__init__(port, stats, sample=sample)
        self.conn: HTTPConn | None = None
        self.pool = post_pool(port)
        self._queue: list[bytes] = []
        self._posting = False

    async def connect(self) -> None:
        self.conn = await HTTPConn.connect(self.port)
        self.conn.on_close = self._lost
        self.alive = True
        response = await self.conn.request("GET", EIO_PATH + "polling")
        if response.status != 200:
            raise ConnClosed(f"polling: HTTP {response.status}")
        self._body(response.body)
        self._spawn(self._loop())
        await self.connected

    def _body(self, body: bytes) -> None:
        for p in body.split(b"\x1e"):
            if p:
                self._packet(p)

    async def _loop(self) -> None:
        assert self.conn is not None
        path = f"{EIO_PATH}polling&sid={quote(self.sid)}"
        try:
            while self.alive:
                response = await self.conn.request("GET", path)
                if response.status != 200:
                    raise ConnClosed(f"polling: HTTP {response.status}")
                self._body(response.body)
        except (ConnClosed, OSError):
            if self.alive:
                self.stats.errors += 1

    def _send_packets(self, packets: list[bytes]) -> None:
        self._queue.extend(packets)
        if not self._posting:
            self._posting = True
            self._spawn(self._post_loop())

    async def _post_loop(self) -> None:
        path = f"{EIO_PATH}polling&sid={quote(self.sid)}"
        try:
            while self._queue and self.alive:
                packets, self._queue = self._queue, []
                response = await self.pool.request(
                    "POST", path, {"Content-Type": "text/plain;charset=UTF-8"}, b"\x1e".join(packets)
                )
                if response.status >= 300:
                    self.stats.errors += 1
        except (ConnClosed, OSError):
            if self.alive:
                self.stats.errors += 1
        finally:
            self._posting = False

    def close(self) -> None:
        self.alive = False
        if self.conn is not None:
            self.conn.abort()
        self._cancel_tasks()


def make_client(server: str, transport: str, port: int, stats: Stats, *, sample: bool = False,
                encoding: str = "msgpack") -> BaseClient:
    """``server`` is ``ladder`` or a Socket.IO peer; ``transport`` a rung name."""
    if server == "ladder":
        if transport == "websocket":
            return LadderWS(port, stats, sample=sample, encoding=encoding)
        if transport == "sse":
            return LadderSSE(port, stats, sample=sample)
        if transport in ("longpoll", "poll"):
            return LadderPoll(port, stats, sample=sample, hold=transport == "longpoll")
        raise ValueError(transport)
    if transport == "websocket":
        return SioWS(port, stats, sample=sample)
    if transport == "polling":
        return SioPoll(port, stats, sample=sample)
    raise ValueError(transport)
