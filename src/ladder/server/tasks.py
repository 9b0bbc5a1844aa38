"""Background work a hub owns (never one task per message): kept referenced, failures logged;
and work run at once that becomes a task only if it has to wait."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Generator
from typing import Any

log = logging.getLogger("ladder")


class Tasks:
    """The hub's background tasks: spawned, kept referenced, waited for on stop."""

    __slots__ = ("_tasks", "now")

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self.now = False
        """True while :meth:`run_now` runs a coroutine outside any task."""

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    async def wait(self, timeout: float) -> None:
        """Let running tasks finish (at most ``timeout`` s), then cancel the rest: they would
        run on against a stopped engine."""
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)

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
        self.spawn(_go_on(coro, waiting), name)


async def _go_on(coro: Coroutine[Any, Any, None], waiting: Any) -> None:
    """Go on with ``coro``, which stopped (outside any task) to wait for ``waiting``: hand
    what it waits for to this task, and what the task is sent or thrown back to it."""
    while True:
        try:
            await _Wait(waiting)
        except BaseException as exc:  # (a cancellation thrown into this task is the coroutine's)
            try:
                waiting = coro.throw(exc)
            except StopIteration:
                return
        else:
            try:
                waiting = coro.send(None)
            except StopIteration:
                return


class _Wait:
    """Awaiting it yields ``waiting`` (a future, or None for a bare yield) to the task, once."""

    __slots__ = ("waiting",)

    def __init__(self, waiting: Any) -> None:
        self.waiting = waiting

    def __await__(self) -> Generator[Any, None, None]:
        yield self.waiting
