"""This node's lease on its sessions, and what it does when it finds it lost it.

A process paused (SIGSTOP) or whose event loop a handler blocked keeps its pub/sub
subscription, so without a lease it looked alive to the others for as long as it was
silent, and its clients were refused ``engine_unavailable`` until it answered again. With
one, a node asking it in vain declares it dead once its lease lapsed (``Cluster.ask``),
and its clients start successor sessions elsewhere, as after a killed node.

The node must then apply nothing more for those sessions: a successor may be applying the
same messages. It knows locally until when its lease is certainly held, :attr:`Lease.until`
(when the last refresh that succeeded was *sent*, plus ``node_lease``): past that, a
message is applied, and a question from another node answered, only after a refresh
confirms the lease. A refresh that finds the tombstone fences the node: every session it
holds is ended (:meth:`Lease.on_fenced`), then it takes the lease again and serves new
sessions under the same id. A refresh that cannot reach the server keeping the lease holds
it until the next try (see :meth:`Lease._keep`): messages then wait only for the servers
keeping their records, as before leases. The memory engine keeps no leases:
:attr:`Lease.until` is infinite and nothing here runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable
from time import monotonic
from typing import TYPE_CHECKING, Any, Final

from ..protocol.errors import LadderError

if TYPE_CHECKING:
    from .session import Session

log = logging.getLogger("ladder.cluster")

RETRY: Final = 0.25
"""Seconds between refreshes while the engine does not answer them."""


class Lease:
    """Keeps this node's lease (a task of its own), and says whether it is held now."""

    def __init__(self, engine: Any, seconds: float) -> None:
        self.seconds = seconds
        self._refresh = getattr(engine, "refresh_lease", None)
        self.until = math.inf if self._refresh is None else 0.0
        """Monotonic time until which the lease is certainly held (see the module)."""
        self.waiting: dict[Session, None] = {}
        """Sessions whose next message waits for the lease to be confirmed."""
        self.resume: Callable[[Session], None] = lambda session: None
        """Drains a session again once the lease is confirmed (set by the inbound side)."""
        self.on_fenced: Callable[[float], None] = lambda silent: None
        """Ends every session held here (set by the node); ``silent``: seconds since the
        last refresh that succeeded was sent."""
        self._due = asyncio.Event()
        self._stopped = False
        self._confirmed: asyncio.Future[bool] | None = None
        self._held_at = monotonic()
        self._task: asyncio.Task[None] | None = None

    @property
    def kept(self) -> bool:
        """Whether this node keeps a lease at all (not with the memory engine)."""
        return self._refresh is not None

    async def start(self) -> None:
        """Start refreshing, and wait briefly for the lease (the first messages need it);
        if the engine does not answer yet, messages wait for it in the background."""
        self._stopped = False
        if self._refresh is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._keep(), name="ladder-lease")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await self.confirm()

    async def stop(self) -> None:
        self._stopped = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._settle(False)

    def hold(self, session: Session) -> None:
        """``session``'s next message waits until the lease is confirmed (a refresh now)."""
        self.waiting[session] = None
        self._due.set()

    async def confirm(self) -> bool:
        """True once the lease is certainly held now (at once if it is), False if this node
        was found declared dead meanwhile (its sessions were ended)."""
        if monotonic() < self.until:
            return True
        if self._stopped:
            return False
        if self._confirmed is None or self._confirmed.done():
            self._confirmed = asyncio.get_running_loop().create_future()
        self._due.set()
        return await asyncio.shield(self._confirmed)

    async def _keep(self) -> None:
        """Refresh every ``seconds``/4; at once when asked (:meth:`hold`, :meth:`confirm`)."""
        assert self._refresh is not None
        take = True  # (a node starting holds no sessions: a tombstone of an earlier run goes)
        while True:
            self._due.clear()
            wait = self.seconds / 4
            sent = monotonic()
            try:
                held = await self._refresh(self.seconds, take=take)
            except Exception as exc:  # (the task must go on: it is what confirms the lease)
                level = logging.DEBUG if isinstance(exc, LadderError) else logging.WARNING
                log.log(level, "refreshing this node's lease failed: %r", exc)
                wait = min(RETRY, wait)
                # The server keeping the lease is out of reach: held until the next try, so
                # that messages wait only for the servers keeping their records, as before
                # leases (with several servers, the others' sessions go on). Declaring this
                # node dead needs that server too: a node that cannot reach it cannot be
                # declared dead through it, and a node cut off from it alone still answers
                # the others through the other servers (or, with one server, is taken for
                # gone by them already: its listener is not subscribed).
                self.until = max(self.until, monotonic() + 2 * RETRY)
                self._settle(True)
            else:
                if held:
                    take = False
                    self._held_at = sent
                    self.until = sent + self.seconds
                    if monotonic() < self.until:
                        self._settle(True)
                    else:  # (an answer heard after a pause says nothing of now)
                        wait = 0
                else:
                    self.until = 0.0
                    self._fenced(sent - self._held_at)
                    take = True
                    wait = 0
            if wait:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._due.wait()

    def _fenced(self, silent: float) -> None:
        try:
            self.on_fenced(silent)
        except Exception:  # (a bug: the lease is still taken again, new sessions served)
            log.exception("ending the sessions of this node, declared dead, failed")
        self._settle(False)

    def _settle(self, held: bool) -> None:
        confirmed, self._confirmed = self._confirmed, None
        if confirmed is not None and not confirmed.done():
            confirmed.set_result(held)
        waiting, self.waiting = self.waiting, {}
        if held:
            for session in waiting:
                self.resume(session)
