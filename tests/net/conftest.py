"""A hostile network for the client: a FaultProxy running on its own event loop in a thread.

The proxy does not share the client's event loop, so a busy client cannot slow the
"network" down and the timings measured through it are the client's own.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from tests.net.faultproxy import FaultProxy
from tests.support.server import LadderServer

T = TypeVar("T")


class Network:
    """The proxy in its thread. Change its behaviour with :meth:`set` and :meth:`cut_all`."""

    def __init__(self, upstream_port: int) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="faultproxy", daemon=True)
        self._thread.start()
        self.proxy = self._run(FaultProxy(upstream_port).start())

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def _call(self, fn: Callable[[], T]) -> T:
        async def call() -> T:
            return fn()

        return self._run(call())

    @property
    def url(self) -> str:
        return self.proxy.url

    def set(self, **changes: Any) -> None:
        """Set proxy switches (``refuse={"ws"}``, ``cut_after=(0.1, 0.5)``, ...) on its loop."""

        def apply() -> None:
            for name, value in changes.items():
                setattr(self.proxy, name, value)

        self._call(apply)

    def clear(self) -> None:
        self._call(self.proxy.clear)

    def cut_all(self) -> int:
        return self._call(self.proxy.cut_all)

    def stats(self) -> dict[str, int]:
        return self._call(lambda: dict(self.proxy.stats))

    def stop(self) -> None:
        self._run(self.proxy.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


@pytest.fixture
def backend() -> Iterator[LadderServer]:
    with LadderServer({"heartbeat": 5.0, "session_ttl": 60.0, "poll_timeout": 10.0}) as server:
        yield server


@pytest.fixture
def net(backend: LadderServer) -> Iterator[Network]:
    network = Network(backend.port)
    try:
        yield network
    finally:
        network.stop()
