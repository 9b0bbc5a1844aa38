"""A fault-injecting TCP proxy: the hostile networks Ladder must survive, on demand, in tests.

Real networks refuse WebSocket upgrades, swallow requests, buffer streams, add latency,
cut long-lived connections and fragment data. :class:`FaultProxy` sits between a client
and a real server and does each of these when told to. It speaks HTTP/1.1 per request
(with ``h11``, both ways) because clients reuse one keep-alive connection for different
endpoints, and a real proxy's rules apply per request, not per connection. After a
``101 Switching Protocols`` it pipes raw bytes both ways.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
from collections import Counter
from collections.abc import Callable
from types import TracebackType

import h11

__all__ = ["FaultProxy", "endpoint_of", "reset"]

CHUNK = 65536
"""Bytes read from a socket at once."""
QUEUE_CHUNKS = 64
"""Chunks a direction may hold in flight (latency): the bound on its memory."""
SPLIT_MAX = 64
"""Largest piece written in ``split`` mode."""

_H11Event = h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]


def endpoint_of(target: bytes) -> str:
    """The last path segment without the query string: how Ladder names its endpoints."""
    path = target.split(b"?", 1)[0].split(b"#", 1)[0]
    return path.rsplit(b"/", 1)[-1].decode("latin-1")


class _Broken(Exception):
    """A peer did something this proxy cannot pass on: the connection is aborted."""


def reset(writer: asyncio.StreamWriter) -> None:
    """Close at once with an RST where possible: what a failing network looks like."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Pipe:
    """One direction of a connection: writes chunks in order, each ``latency`` after it was read.

    A single task and a bounded FIFO of ``(due, bytes)`` keep the byte order even while the
    latency changes, and bound memory: a full queue blocks the reading side, which is the
    backpressure a slow link gives.
    """

    def __init__(self, proxy: FaultProxy, writer: asyncio.StreamWriter, broken: Callable[[], None]) -> None:
        self._proxy = proxy
        self._writer = writer
        self._broken = broken
        self._queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(QUEUE_CHUNKS)
        self._loop = asyncio.get_running_loop()
        self.task = asyncio.create_task(self._run(), name="faultproxy-pipe")
        proxy._track(self.task)

    async def send(self, data: bytes) -> None:
        if data:
            await self._queue.put((self._loop.time() + self._proxy.latency, data))

    async def flush(self) -> None:
        """Wait until everything sent so far is written to the socket."""
        await self._queue.join()

    async def close(self) -> None:
        """Write what is queued, then end the task (the socket stays open)."""
        await self._queue.put(None)
        await self.task

    async def _run(self) -> None:
        try:
            while (item := await self._queue.get()) is not None:
                due, data = item
                delay = due - self._loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                if self._proxy.split:
                    await self._write_split(data)
                else:
                    self._writer.write(data)
                    await self._writer.drain()
                self._queue.task_done()
            self._queue.task_done()
        except OSError:  # the peer went away: so does the whole connection
            self._broken()

    async def _write_split(self, data: bytes) -> None:
        """Small pieces, each its own write, with a loop turn between so the reader sees them apart."""
        view = memoryview(data)
        while view:
            size = random.randint(1, SPLIT_MAX)
            self._writer.write(view[:size])
            view = view[size:]
            await self._writer.drain()
            await asyncio.sleep(0)


class _Upstream:
    """The proxy's connection to the server behind it (one at a time per client connection)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pipe: _Pipe) -> None:
        self.reader = reader
        self.writer = writer
        self.pipe = pipe
        self.conn = h11.Connection(h11.CLIENT)

    def emit(self, event: h11.Event) -> bytes:
        return self.conn.send(event) or b""

    async def next_event(self) -> _H11Event:
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            self.conn.receive_data(await self.reader.read(CHUNK))


class _Link:
    """One client connection, the upstream connection behind it, and the faults applied to it."""

    def __init__(self, proxy: FaultProxy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.proxy = proxy
        self.reader = reader
        self.writer = writer
        self.server = h11.Connection(h11.SERVER)
        self.pipes: list[_Pipe] = []
        self.down = self._pipe(writer)
        self.up: _Upstream | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.task: asyncio.Task[None] | None = None
        self.finished = False

    # -- faults from outside --------------------------------------------------------------

    def schedule_cut(self, window: tuple[float, float] | None) -> None:
        """(Re)arm the cut timer: a uniformly random delay in ``window`` from now."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if window is not None and not self.finished:
            delay = random.uniform(*window)
            self.timer = asyncio.get_running_loop().call_later(delay, self.cut)

    def cut(self) -> bool:
        """Abort both sides now, as a network failure; False if the connection already ended."""
        if self.finished:
            return False
        self.proxy.stats["cuts"] += 1
        self.abort()
        return True

    def abort(self) -> None:
        """RST both sockets and stop the connection's task (no counting: used by ``stop``)."""
        if self.finished:
            return
        self.finished = True
        self._reset_sockets()
        if self.task is not None:
            self.task.cancel()
        for pipe in self.pipes:  # in case the connection's task never got to run its cleanup
            pipe.task.cancel()

    def _reset_sockets(self) -> None:
        reset(self.writer)
        if self.up is not None:
            reset(self.up.writer)

    # -- the connection's life -------------------------------------------------------------

    async def run(self) -> None:
        graceful = False
        try:
            await self._serve()
            graceful = True
        except (OSError, h11.ProtocolError, _Broken):
            pass  # a peer failed or misbehaved: abort, as the network would
        finally:
            await self._teardown(graceful)

    async def _teardown(self, graceful: bool) -> None:
        self.finished = True
        if self.timer is not None:
            self.timer.cancel()
        self.proxy._links.discard(self)
        for pipe in self.pipes:
            pipe.task.cancel()
        for pipe in self.pipes:
            with contextlib.suppress(asyncio.CancelledError):
                await pipe.task
        writers = [self.writer] + ([self.up.writer] if self.up is not None else [])
        for writer in writers:
            if graceful and not writer.transport.is_closing():
                writer.close()  # the transport still writes what it buffered, then FIN
            elif not writer.transport.is_closing():
                reset(writer)

    def _pipe(self, writer: asyncio.StreamWriter) -> _Pipe:
        pipe = _Pipe(self.proxy, writer, self.abort)
        self.pipes.append(pipe)
        return pipe

    async def _serve(self) -> None:
        """Request after request on the keep-alive connection, each with the faults in force now."""
        while True:
            event = await self._client_event(idle=True)
            if isinstance(event, h11.ConnectionClosed):
                break
            if not isinstance(event, h11.Request):
                raise _Broken(f"unexpected {event!r} from the client")
            if not await self._handle(event):
                break
            if self.server.our_state is not h11.DONE or self.server.their_state is not h11.DONE:
                break
            self.server.start_next_cycle()
        await self.down.close()
        if self.up is not None:
            await self.up.pipe.close()

    async def _handle(self, request: h11.Request) -> bool:
        """Refuse, swallow or forward one request; True if the connection may carry another."""
        proxy = self.proxy
        endpoint = endpoint_of(request.target)
        proxy.stats[f"requests:{endpoint}"] += 1
        if endpoint in proxy.refuse:
            proxy.stats["refused"] += 1
            await self._skip_body()
            await self._reply(403, "Forbidden", b"refused by FaultProxy\n")
            return False
        declared = next((int(v) for name, v in request.headers if name == b"content-length"), 0)
        if proxy.max_body is not None and declared > proxy.max_body:
            proxy.stats["too_large"] += 1
            await self._skip_body()
            await self._reply(413, "Request Entity Too Large", b"<html><body>413 Request Entity Too Large</body></html>\n")
            return False
        if endpoint in proxy.blackhole:
            proxy.stats["blackholed"] += 1
            while await self.reader.read(CHUNK):
                pass  # read and never answer, until the client gives up
            return False
        return await self._forward(request, endpoint, buffered=endpoint in proxy.buffer)

    async def _forward(self, request: h11.Request, endpoint: str, *, buffered: bool) -> bool:
        try:
            up = await self._upstream()
        except OSError:
            await self._skip_body()
            await self._reply(502, "Bad Gateway", b"FaultProxy: upstream unreachable\n")
            return False
        await up.pipe.send(
            up.emit(h11.Request(method=request.method, target=request.target, headers=request.headers))
        )
        # A body goes up concurrently with the response coming down (a server may answer
        # first); a bodiless request is finished before anything can come back, which h11
        # needs to accept a 101.
        has_body = any(
            (name == b"content-length" and value != b"0") or name == b"transfer-encoding"
            for name, value in request.headers
        )
        body: asyncio.Task[None] | None = None
        if has_body:
            body = asyncio.create_task(self._send_body(up), name="faultproxy-body")
        else:
            await self._send_body(up)
        try:
            first = None
            if self.proxy.read_timeout is not None:
                try:
                    first = await asyncio.wait_for(up.next_event(), self.proxy.read_timeout)
                except TimeoutError:
                    self.proxy.stats["timed_out"] += 1
                    await self._drop_upstream()
                    await self._reply(504, "Gateway Time-out", b"<html><body>504 Gateway Time-out</body></html>\n")
                    return False
            reusable = await self._relay_response(up, endpoint, buffered=buffered, first=first)
            if body is not None:
                await body
        finally:
            if body is not None and not body.done():
                body.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await body
        if up.conn.our_state is h11.DONE and up.conn.their_state is h11.DONE:
            up.conn.start_next_cycle()
        else:
            await self._drop_upstream()
        return reusable

    async def _relay_response(
        self, up: _Upstream, endpoint: str, *, buffered: bool, first: _H11Event | None = None
    ) -> bool:
        """Pass the upstream's answer on (or hold it back whole, or in blocks of ``hold``
        bytes), ``first`` its first event when read already; False once tunnelling is over."""
        held: list[bytes] = []

        async def out(data: bytes) -> None:
            held.append(data)
            if buffered:
                return
            block = self.proxy.hold.get(endpoint)
            if block is None or sum(map(len, held)) >= block:
                joined = b"".join(held)
                held.clear()
                await self.down.send(joined)

        while True:
            event, first = (first, None) if first is not None else (await up.next_event(), None)
            if isinstance(event, h11.InformationalResponse):
                data = self._emit(
                    h11.InformationalResponse(
                        status_code=event.status_code, headers=event.headers, reason=event.reason
                    )
                )
                if event.status_code == 101:
                    await self.down.send(b"".join([*held, data]))
                    await self._tunnel(up)
                    return False
                await out(data)
            elif isinstance(event, h11.Response):
                head = h11.Response(status_code=event.status_code, headers=event.headers, reason=event.reason)
                await out(self._emit(head))
            elif isinstance(event, h11.Data):
                await out(self._emit(h11.Data(data=event.data)))
            elif isinstance(event, h11.EndOfMessage):
                await out(self._emit(h11.EndOfMessage(headers=event.headers)))
                break
            else:
                raise _Broken(f"unexpected {event!r} from upstream")
        if held:
            await self.down.send(b"".join(held))
        return True

    async def _tunnel(self, up: _Upstream) -> None:
        """After a 101: raw bytes both ways (h11's leftovers first) until both sides have closed."""
        to_up, client_closed = self.server.trailing_data
        to_down, up_closed = up.conn.trailing_data
        await up.pipe.send(to_up)
        await self.down.send(to_down)
        stall = self.proxy.stall_ws_after
        stall_at = None if stall is None else asyncio.get_running_loop().time() + stall
        down_stall_at = None if self.proxy.stall_ws_up_only else stall_at
        directions = [
            asyncio.create_task(self._pump_raw(self.reader, up.pipe, up.writer, client_closed, stall_at)),
            asyncio.create_task(self._pump_raw(up.reader, self.down, self.writer, up_closed, down_stall_at)),
        ]
        try:
            done, _ = await asyncio.wait(directions, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()  # re-raise a failure: the connection is aborted
        finally:
            for task in directions:
                task.cancel()
            await asyncio.gather(*directions, return_exceptions=True)

    @staticmethod
    async def _pump_raw(
        reader: asyncio.StreamReader,
        pipe: _Pipe,
        writer: asyncio.StreamWriter,
        closed: bool,
        stall_at: float | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        if not closed:
            while data := await reader.read(CHUNK):
                if stall_at is None or loop.time() < stall_at:  # (past it: swallowed, nothing said)
                    await pipe.send(data)
        await pipe.flush()
        if writer.can_write_eof() and not writer.transport.is_closing():
            writer.write_eof()  # pass the half-close on; the other direction may still talk

    # -- helpers ----------------------------------------------------------------------------

    async def _client_event(self, *, idle: bool = False) -> _H11Event:
        while True:
            event = self.server.next_event()
            if event is not h11.NEED_DATA:
                return event
            self.server.receive_data(await (self._read_idle() if idle else self.reader.read(CHUNK)))

    async def _read_idle(self) -> bytes:
        """Read the client between requests, dropping an upstream connection that closes meanwhile.

        Otherwise the next request would go to a dead socket and fail although the server is
        fine; a fresh upstream connection is opened for it instead.
        """
        up = self.up
        if up is None:
            return await self.reader.read(CHUNK)
        from_client = asyncio.ensure_future(self.reader.read(CHUNK))
        from_up = asyncio.ensure_future(up.reader.read(CHUNK))
        try:
            await asyncio.wait([from_client, from_up], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (from_client, from_up):
                task.cancel()
            await asyncio.gather(from_client, from_up, return_exceptions=True)
        if from_up.done() and not from_up.cancelled():
            await self._drop_upstream()  # closed (or talking out of turn): not reusable
        if from_client.cancelled():
            return await self.reader.read(CHUNK)
        return from_client.result()

    async def _send_body(self, up: _Upstream) -> None:
        while True:
            event = await self._client_event()
            if isinstance(event, h11.Data):
                await up.pipe.send(up.emit(h11.Data(data=event.data)))
            elif isinstance(event, h11.EndOfMessage):
                await up.pipe.send(up.emit(h11.EndOfMessage(headers=event.headers)))
                return
            else:
                raise _Broken(f"unexpected {event!r} in a request body")

    async def _skip_body(self) -> None:
        while not isinstance(await self._client_event(), h11.EndOfMessage):
            pass

    async def _reply(self, status: int, reason: str, body: bytes) -> None:
        """Answer the client ourselves and close the connection after it."""
        headers = [
            ("content-type", "text/plain; charset=utf-8"),
            ("content-length", str(len(body))),
            ("connection", "close"),
        ]
        await self.down.send(
            self._emit(h11.Response(status_code=status, headers=headers, reason=reason))
            + self._emit(h11.Data(data=body))
            + self._emit(h11.EndOfMessage())
        )

    def _emit(self, event: h11.Event) -> bytes:
        return self.server.send(event) or b""

    async def _upstream(self) -> _Upstream:
        if self.up is not None and self.up.conn.our_state is h11.IDLE:
            return self.up
        await self._drop_upstream()
        proxy = self.proxy
        reader, writer = await asyncio.open_connection(proxy.upstream_host, proxy.upstream_port)
        self.up = _Upstream(reader, writer, self._pipe(writer))
        return self.up

    async def _drop_upstream(self) -> None:
        """Close the upstream connection once what was sent on it is written.

        It stays ``self.up`` until then, so that a cut meanwhile resets it too.
        """
        up = self.up
        if up is not None:
            await up.pipe.close()
            self.up = None
            self.pipes.remove(up.pipe)
            up.writer.close()


class FaultProxy:
    """A TCP proxy on a free 127.0.0.1 port in front of an upstream HTTP/WebSocket server.

    Transparent until told otherwise. The switches can be flipped at any time; ``refuse``,
    ``blackhole`` and ``buffer`` apply to requests that start afterwards, ``hold`` to the next
    bytes of live responses too, ``latency`` and
    ``split`` to bytes forwarded afterwards, ``cut_after`` to live and new connections.
    """

    def __init__(self, upstream_port: int, *, upstream_host: str = "127.0.0.1") -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.port = 0
        self.refuse: set[str] = set()
        """Endpoints answered at once with 403 and a close (``ws``: the upgrade is refused)."""
        self.blackhole: set[str] = set()
        """Endpoints whose requests are read and never answered."""
        self.buffer: set[str] = set()
        """Endpoints whose responses are held back until complete (an endless stream: nothing)."""
        self.hold: dict[str, int] = {}
        """Endpoints whose responses, live ones too, are passed on only in blocks of at least
        so many bytes (a proxy's buffer that fills, then flushes: a stream delivered late)."""
        self.latency = 0.0
        """Seconds added to every forwarded chunk, in each direction."""
        self.split = False
        """Forward data in random pieces of 1 to 64 bytes."""
        self.stall_ws_after: float | None = None
        """Seconds after its 101 a WebSocket silently stops forwarding, both ways, and stays
        open (a proxy that breaks a rung without a word)."""
        self.stall_ws_up_only = False
        """``stall_ws_after`` stops only what the client sends: the server's frames still pass."""
        self.max_body: int | None = None
        """Requests declaring a larger body are answered 413 with a page (a proxy's body limit)."""
        self.read_timeout: float | None = None
        """Seconds a request waits for the head of its answer before the proxy answers it 504
        with a page of its own and drops the upstream connection (nginx's
        ``proxy_read_timeout``: a long poll held longer is cut)."""
        self.stats: Counter[str] = Counter(dict.fromkeys(("connections", "cuts", "refused", "blackholed"), 0))
        self._cut_after: tuple[float, float] | None = None
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def cut_after(self) -> tuple[float, float] | None:
        """Cut every connection a random ``[a, b]`` seconds after it started (or after this was set)."""
        return self._cut_after

    @cut_after.setter
    def cut_after(self, window: tuple[float, float] | None) -> None:
        if window is not None:
            low, high = window
            if not 0 <= low <= high:
                raise ValueError(f"cut_after needs 0 <= a <= b, not {window}")
            window = (float(low), float(high))
        self._cut_after = window
        for link in self._links:
            link.schedule_cut(window)

    def cut_all(self) -> int:
        """Abruptly close every live connection now (both sides, RST); how many there were."""
        return sum(link.cut() for link in list(self._links))

    def clear(self) -> None:
        """Back to a transparent proxy (live connections stay up)."""
        self.refuse.clear()
        self.blackhole.clear()
        self.buffer.clear()
        self.hold.clear()
        self.latency = 0.0
        self.split = False
        self.stall_ws_after = None
        self.stall_ws_up_only = False
        self.max_body = None
        self.read_timeout = None
        self.cut_after = None

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        """Close the listener and every connection, and wait until none of its tasks runs."""
        self._stopping = True
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.abort()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._stopping:
            reset(writer)
            return
        self.stats["connections"] += 1
        link = _Link(self, reader, writer)
        self._links.add(link)
        link.task = self._track(asyncio.create_task(link.run(), name="faultproxy-link"))
        link.schedule_cut(self._cut_after)

    def _track(self, task: asyncio.Task[None]) -> asyncio.Task[None]:
        """Remember a running task so that ``stop`` can wait for it."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
