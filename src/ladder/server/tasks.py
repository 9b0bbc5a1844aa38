"""Background work a hub owns (never one task per message): kept referenced, failures logged;
and work run at once that becomes a task only if it has to wait."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, cast

log = logging.getLogger("ladder")


class Tasks:
    """The hub's background tasks: spawned, kept referenced, waited for on stop."""

    __slots__ = ("_tasks", "borrowed", "now")

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self.now = False
        """True while :meth:`run_now` runs a coroutine outside any task."""
        self.borrowed: set[asyncio.Task[Any]] = set()
        """Requests' tasks doing the hub's work meanwhile (a POST applying its messages, its
        handlers included): waited for and cancelled on stop as the hub's own are."""

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def borrow(self, task: asyncio.Task[Any]) -> None:
        """Count ``task`` (a WebSocket's, applying its client's messages, handlers included)
        as the hub's until it ends: waited for and cancelled on stop, so that a message in
        a handler is recorded as interrupted before the engine goes (a successor session on
        another node reads that record: it applied the message again, finding none)."""
        self.borrowed.add(task)
        task.add_done_callback(self.borrowed.discard)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    async def wait(self, timeout: float) -> None:
        """Let running tasks finish (at most ``timeout`` s), also those they or a request
        start meanwhile (another node's question to a stopping node is answered before its
        engine goes), then cancel the rest: they would run on against a stopped engine."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (running := self._running()) and (left := deadline - loop.time()) > 0:
            await asyncio.wait(running, timeout=left)
        cancelled: set[asyncio.Task[Any]] = set()
        for _ in range(3):
            pending = self._running()
            if not pending:
                break
            if cancelled:
                # What the cancelled ones spawned (a drain cancelled in a handler, the task that
                # records and answers its message: never applied twice, a successor on
                # another node reads that record) gets a moment before it is cancelled too.
                await asyncio.wait(pending, timeout=1.0)
                pending = self._running()
            for task in pending:
                task.cancel()
            cancelled |= pending
            await asyncio.wait(pending, timeout=1.0)

    def _running(self) -> set[asyncio.Task[Any]]:
        """The hub's tasks and those it borrowed, but the caller's own."""
        running = self._tasks | self.borrowed
        running.discard(cast(asyncio.Task[Any], asyncio.current_task()))
        return running

    def run_now(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``coro`` now, in the caller's turn, with no task made if it never waits; if it
        waits after all, it goes on in a task of the hub's from where it stopped.

        Only for code that needs no task of its own until it first waits (what runs before
        then sees no current task: ``asyncio.timeout`` and libraries that ask for one fail).
        """
        outer, self.now = self.now, True
        try:
            waiting = coro.send(None)
        except StopIteration:
            return
        finally:
            self.now = outer
        self.spawn(cast(Coroutine[Any, Any, None], _GoOn(coro, waiting)), name)


class _GoOn:
    """The rest of a coroutine that stopped, outside any task, to wait for ``waiting``, as a
    task's coroutine: its first step hands the task what the coroutine waits for; after that,
    what the task sends or throws goes to the coroutine (a cancellation before the first
    step too, so the coroutine always hears of it where it waits)."""

    __slots__ = ("_coro", "_started", "_waiting")

    def __init__(self, coro: Coroutine[Any, Any, None], waiting: Any) -> None:
        self._coro = coro
        self._waiting = waiting
        self._started = False

    def send(self, value: Any) -> Any:
        if not self._started:
            self._started = True
            waiting, self._waiting = self._waiting, None
            return waiting
        return self._coro.send(value)

    def throw(self, error: BaseException) -> Any:
        self._started = True
        self._waiting = None
        return self._coro.throw(error)

    def close(self) -> None:
        self._coro.close()

    def __await__(self) -> _GoOn:
        return self

    def __iter__(self) -> _GoOn:
        return self

    def __next__(self) -> Any:
        return self.send(None)


Coroutine.register(_GoOn)  # what asyncio takes as a task's coroutine
