"""The staggered race: the best rung starts at once, the next ones a little later.

The core's :class:`~ladder.protocol.client.RaceSchedule` says when each rung starts (rung *k*
at ``stagger[k]``, or at once when every rung started so far has failed). The first rung to
open (welcome received, stream verified) wins; the others are cancelled, or, if they opened too, handed to
``on_loser`` to be closed. A black-holed WebSocket therefore costs ``stagger[1]`` seconds,
not a connect timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from ..protocol.client import RaceSchedule
from ..protocol.errors import LadderError
from .transports.base import Transport, TransportClosed


class AllRungsFailed(Exception):
    """No rung opened. ``failures`` maps each rung to why."""

    def __init__(self, failures: dict[str, TransportClosed]) -> None:
        self.failures = failures
        super().__init__("; ".join(exc.reason for exc in failures.values()) or "no rung to try")

    def errors(self) -> list[LadderError]:
        """The server's own refusals among the failures (e.g. ``unknown_session``)."""
        return [exc.error for exc in self.failures.values() if exc.error is not None]


async def race(
    rungs: Sequence[str],
    open_rung: Callable[[str], Coroutine[Any, Any, Transport]],
    stagger: Sequence[float],
    *,
    on_loser: Callable[[Transport], Awaitable[None]],
    failures: dict[str, TransportClosed] | None = None,
    token_refreshable: bool = True,
) -> tuple[Transport, dict[str, str]]:
    """Open the best rung that works. Returns it and why the better ones failed.

    ``failures``, when given, is filled in as rungs fail: the caller sees why even when it
    cancels the race before it ends (a first connect that ran out of time). A refusal the
    client gives up on (:meth:`RaceSchedule.failed`) ends the race at once.
    """
    loop = asyncio.get_running_loop()
    started_at = loop.time()
    attempts: dict[asyncio.Task[Transport], str] = {}
    failures = {} if failures is None else failures
    winner: Transport | None = None
    slower: list[str] = []
    schedule = RaceSchedule(rungs, [offset * 1000 for offset in stagger], token_refreshable)
    try:
        while winner is None:
            plan = schedule.due((loop.time() - started_at) * 1000, len(attempts))
            for rung in plan["start"]:
                attempts[loop.create_task(open_rung(rung), name=f"ladder-open-{rung}")] = rung
            if not attempts:
                raise AllRungsFailed(failures)
            timeout = None if plan["wait"] is None else plan["wait"] / 1000
            done, _ = await asyncio.wait(attempts, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                rung = attempts.pop(task)
                exc = task.exception()
                if exc is None:
                    if winner is None:
                        winner = task.result()
                    else:
                        await on_loser(task.result())
                elif isinstance(exc, TransportClosed):
                    failures[rung] = exc
                    if winner is None and schedule.failed(None if exc.error is None else exc.error.code):
                        raise AllRungsFailed(failures)
                else:
                    failures[rung] = TransportClosed(f"{rung}: {exc!r}")
    finally:
        slower = list(attempts.values())
        for task in attempts:
            task.cancel()
        results = await asyncio.gather(*attempts, return_exceptions=True)
        for late in results:
            if isinstance(late, Transport):
                with contextlib.suppress(Exception):
                    await on_loser(late)
    reasons = {rung: exc.reason for rung, exc in failures.items()}
    elapsed = round((loop.time() - started_at) * 1000)
    for rung in slower:
        reasons[rung] = f"{rung}: not open after {elapsed} ms, when {winner.name} was"
    return winner, {rung: reasons[rung] for rung in rungs if rung in reasons}
