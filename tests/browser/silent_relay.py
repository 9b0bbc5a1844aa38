"""A loopback TCP relay that can kill its live connections silently.

:meth:`SilentRelay.swallow` does what a mobile OS or a NAT that forgot the connection does: the
relayed connections stay open at both ends, but from then on every byte either side writes is
read and dropped; no FIN, no RST, so neither the browser nor the server hears of it. New
connections are relayed as usual, so a client that notices can reconnect through it.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from tests.chaos.relay import LoopThread

CHUNK = 65536


class _Relay:
    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0
        self.server: asyncio.Server | None = None
        self.live: list[asyncio.Event] = []
        """One event per live connection: set when its bytes are to be dropped."""
        self.writers: list[asyncio.StreamWriter] = []
        self.handlers: set[asyncio.Task[Any]] = set()
        self.stopping = asyncio.Event()

    async def listen(self) -> None:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self.server.sockets[0].getsockname()[1])

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.handlers.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return
        dropped = asyncio.Event()
        self.live.append(dropped)
        self.writers += [writer, up_writer]
        await asyncio.gather(
            self._pump(reader, up_writer, dropped), self._pump(up_reader, writer, dropped), return_exceptions=True
        )
        for w in (writer, up_writer):
            w.close()

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, dropped: asyncio.Event) -> None:
        with contextlib.suppress(OSError):
            while data := await src.read(CHUNK):
                if not dropped.is_set():
                    dst.write(data)
                    await dst.drain()
            if not dropped.is_set() and dst.can_write_eof():
                dst.write_eof()
        if dropped.is_set():
            await self.stopping.wait()  # keep the other side open, silent, until the relay stops

    def swallow(self) -> int:
        count = 0
        for dropped in self.live:
            if not dropped.is_set():
                dropped.set()
                count += 1
        self.live = []
        return count

    async def stop(self) -> None:
        self.stopping.set()
        if self.server is not None:
            self.server.close()
        for w in self.writers:
            w.close()
        if self.handlers:
            await asyncio.wait(self.handlers, timeout=5)


class SilentRelay:
    """The relay on its own loop thread, driven from the test's thread; a context manager."""

    def __init__(self, target: int) -> None:
        self._thread = LoopThread("silent-relay")
        self._relay = _Relay(target)
        self._thread.run(self._relay.listen())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._relay.port}"

    def swallow(self) -> int:
        """Kill every live connection (the WebSocket, idle keep-alive ones) silently; returns
        how many there were."""
        return self._thread.call(self._relay.swallow)

    def stop(self) -> None:
        self._thread.run(self._relay.stop())
        self._thread.stop()

    def __enter__(self) -> SilentRelay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
