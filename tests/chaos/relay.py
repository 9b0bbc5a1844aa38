"""A fault-injecting TCP relay: the chaos suite's load balancer and each node's link to Redis.

:class:`FaultRelay` forwards raw TCP connections, round-robin over its targets (one target for
a node's Redis link, the nodes for the balancer), and does on demand what a failing network or
a bad load balancer does:

* ``cut_after``: abort (RST) each connection a random time after it opened;
* ``latency``: hold every chunk that long before writing it on;
* ``take_out(i)``: target ``i`` leaves the rotation (``health(i, False)`` too, kept apart: what
  the health check decided); ``stuck(i)``: it stays in rotation but the
  connections sent there are accepted and answered with a 503 or reset, as a node that is up
  for the balancer and broken for its clients;
* ``refuse()``: the listener closes (connecting fails with ECONNREFUSED) and live connections
  are reset; ``reset()``: live and new connections are reset; ``stall()``: live and new
  connections stay open but nothing crosses them until :meth:`heal`, when the held bytes go
  through, as after a network stall that recovered by itself without a reset.

A target that refuses the connection is skipped for the next one in rotation (as nginx's
``proxy_next_upstream error``); with none left the client's connection is reset. Unlike
``tests.net.faultproxy.FaultProxy`` it does not parse HTTP: the faults are the network's and the
balancer's, per TCP connection, whatever the protocol (Redis's included).

It runs on its own event loop in a thread (:class:`LoopThread`), so a busy test loop does not
slow the "network" down; every public method is called from the test's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import threading
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from tests.net.faultproxy import reset

T = TypeVar("T")
CHUNK = 65536
_STUCK_BODY = b'{"t":"err","code":"stuck","reason":"a node stuck in the balancer\'s rotation"}'
STUCK_REPLY = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
    + f"content-length: {len(_STUCK_BODY)}\r\nconnection: close\r\n\r\n".encode()
    + _STUCK_BODY
)
"""What a stuck node answers (to every other connection; the rest are reset)."""


class LoopThread:
    """An event loop running in a daemon thread; :meth:`run` executes a coroutine on it."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def call(self, fn: Callable[[], T]) -> T:
        async def call() -> T:
            return fn()

        return self.run(call())

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


class _Conn:
    """One relayed connection: the client side, the target side, the two pumps."""

    def __init__(self, relay: FaultRelay, writer: asyncio.StreamWriter) -> None:
        self.relay = relay
        self.writers = [writer]
        self.task: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.finished = False

    def arm(self, window: tuple[float, float] | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if window is not None and not self.finished:
            self.timer = asyncio.get_running_loop().call_later(random.uniform(*window), self.cut)

    def cut(self) -> None:
        if not self.finished:
            self.relay.stats["cuts"] += 1
            self.abort()

    def abort(self) -> None:
        if self.finished:
            return
        self.finished = True
        if self.timer is not None:
            self.timer.cancel()
        for writer in self.writers:
            reset(writer)
        if self.task is not None:
            self.task.cancel()


class FaultRelay:
    """Listen on a free loopback port; relay each connection to the next target in rotation."""

    def __init__(self, targets: list[int], name: str = "relay") -> None:
        self.targets = list(targets)
        self.name = name
        self.port = 0
        self.out: set[int] = set()
        self.failing: set[int] = set()
        """Targets a health check took out (kept apart from ``out``, which a scenario sets)."""
        self.stuck_targets: set[int] = set()
        self.latency = 0.0
        self.stats: Counter[str] = Counter()
        self._cut_after: tuple[float, float] | None = None
        self._mode = "pass"
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._rotation = itertools.count()
        self._conns: set[_Conn] = set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- faults (called on the relay's loop) ---------------------------------------------------

    def set_cut_after(self, window: tuple[float, float] | None) -> None:
        self._cut_after = window
        for conn in self._conns:
            conn.arm(window)

    def take_out(self, index: int, out: bool = True) -> None:
        (self.out.add if out else self.out.discard)(index)

    def stuck(self, index: int, stuck: bool = True) -> None:
        (self.stuck_targets.add if stuck else self.stuck_targets.discard)(index)

    def health(self, index: int, healthy: bool) -> None:
        (self.failing.discard if healthy else self.failing.add)(index)

    async def refuse(self) -> None:
        self._mode = "refuse"
        await self._close_listener()
        self.reset_all()

    def reset(self) -> None:
        self._mode = "reset"
        self.reset_all()

    def stall(self) -> None:
        self._mode = "stall"
        self._flowing.clear()

    async def heal(self) -> None:
        """Back to a transparent relay (every target in rotation, no cuts, no latency)."""
        if self._server is None:
            await self.listen()
        self._mode = "pass"
        self._flowing.set()
        self.out.clear()
        self.stuck_targets.clear()
        self.latency = 0.0
        self.set_cut_after(None)

    def reset_all(self) -> int:
        conns = list(self._conns)
        for conn in conns:
            conn.abort()
        return len(conns)

    # -- life -----------------------------------------------------------------------------

    async def listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _close_listener(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def stop(self) -> None:
        await self._close_listener()
        self.reset_all()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats["connections"] += 1
        if self._mode in ("reset", "refuse"):  # refuse: accepted just before the listener closed
            self.stats["reset"] += 1
            reset(writer)
            return
        conn = _Conn(self, writer)
        self._conns.add(conn)
        conn.task = asyncio.create_task(self._serve(conn, reader, writer), name=f"{self.name}-conn")
        self._tasks.add(conn.task)
        conn.task.add_done_callback(self._tasks.discard)
        conn.arm(self._cut_after)

    def _order(self) -> list[int]:
        """Target indexes in the order to try for a new connection (round-robin)."""
        start = next(self._rotation) % len(self.targets)
        order = [(start + k) % len(self.targets) for k in range(len(self.targets))]
        return [i for i in order if i not in self.out and i not in self.failing]

    async def _serve(self, conn: _Conn, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._flowing.wait()  # a stalled link accepts, then says nothing
            upstream = None
            for index in self._order():
                if index in self.stuck_targets:
                    self.stats[f"stuck:{index}"] += 1
                    await self._answer_stuck(reader, writer)
                    return
                try:
                    upstream = await asyncio.open_connection("127.0.0.1", self.targets[index])
                except OSError:
                    self.stats["target_refused"] += 1
                    continue
                self.stats[f"to:{index}"] += 1
                break
            if upstream is None:
                self.stats["no_target"] += 1
                reset(writer)
                return
            up_reader, up_writer = upstream
            conn.writers.append(up_writer)
            if conn.finished:  # cut while connecting
                reset(up_writer)
                return
            pumps = [
                asyncio.create_task(self._pump(reader, up_writer)),
                asyncio.create_task(self._pump(up_reader, writer)),
            ]
            try:
                await asyncio.gather(*pumps)
            finally:
                for pump in pumps:
                    pump.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            conn.finished = True
            if conn.timer is not None:
                conn.timer.cancel()
            self._conns.discard(conn)
            for w in conn.writers:
                if not w.transport.is_closing():
                    w.close()

    async def _answer_stuck(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Every other connection gets a 503 after its request head, the others a reset."""
        if self.stats["stuck_answers"] % 2:
            self.stats["stuck_answers"] += 1
            reset(writer)
            return
        self.stats["stuck_answers"] += 1
        with contextlib.suppress(asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            await reader.readuntil(b"\r\n\r\n")
        writer.write(STUCK_REPLY)
        await writer.drain()
        writer.close()

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await src.read(CHUNK):
                if self.latency:
                    await asyncio.sleep(self.latency)
                await self._flowing.wait()
                dst.write(data)
                await dst.drain()
            if dst.can_write_eof() and not dst.transport.is_closing():
                dst.write_eof()


class Relay:
    """A :class:`FaultRelay` on its own loop thread, driven from the test's thread."""

    def __init__(self, targets: list[int], name: str = "relay") -> None:
        self._thread = LoopThread(name)
        self.relay = FaultRelay(targets, name)
        self._thread.run(self.relay.listen())

    @property
    def port(self) -> int:
        return self.relay.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut_after(self, window: tuple[float, float] | None) -> None:
        self._thread.call(lambda: self.relay.set_cut_after(window))

    def set_latency(self, seconds: float) -> None:
        self._thread.call(lambda: setattr(self.relay, "latency", seconds))

    def take_out(self, index: int, out: bool = True) -> None:
        self._thread.call(lambda: self.relay.take_out(index, out))

    def stuck(self, index: int, stuck: bool = True) -> None:
        self._thread.call(lambda: self.relay.stuck(index, stuck))

    def health(self, index: int, healthy: bool) -> None:
        self._thread.call(lambda: self.relay.health(index, healthy))

    def rotation(self) -> list[int]:
        """Targets in rotation now (not taken out by a scenario or a health check)."""
        relay = self.relay
        return self._thread.call(
            lambda: [i for i in range(len(relay.targets)) if i not in relay.out and i not in relay.failing]
        )

    def refuse(self) -> None:
        self._thread.run(self.relay.refuse())

    def reset(self) -> None:
        self._thread.call(self.relay.reset)

    def stall(self) -> None:
        self._thread.call(self.relay.stall)

    def heal(self) -> None:
        self._thread.run(self.relay.heal())

    def cut_all(self) -> int:
        return self._thread.call(self.relay.reset_all)

    def stats(self) -> dict[str, int]:
        return self._thread.call(lambda: dict(self.relay.stats))

    def stop(self) -> None:
        try:
            self._thread.run(self.relay.stop())
        finally:
            self._thread.stop()
