"""Changing what the client stands on: adopting a welcome, losing a transport, how it ended
(the core's tables decide), giving up, and climbing back to a better rung."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from typing import Literal

from ..protocol.client import FATAL, after_transport
from ..protocol.client.ending import Action
from ..protocol.errors import LadderError
from ..protocol.peer import Frame
from ..protocol.sids import label
from . import rungs as rung_memory
from .events import (
    Connected,
    Disconnected,
    ProbeResult,
    ServerError,
    SessionLost,
    StateChanged,
    TransportChanged,
)
from .inbound import _SessionEnded
from .opening import Opening
from .transports.base import Transport, TransportClosed

log = logging.getLogger("ladder.client")


class Switching(Opening):
    """A client's moves between transports and sessions."""

    @property
    def _refreshable(self) -> bool:
        """An expired token is worth retrying only when ``token`` is a callable."""
        return callable(self._token)

    def _session_gone(self, reason: str) -> None:
        if self.peer.sid is not None:
            log.info("session %s lost: %s", label(self.peer.sid), reason)
            self.peer.forget_session()
            self._pending_loss = reason

    def _give_up(self, error: LadderError) -> None:
        if self._closed_by_app:
            # The app closed it: the server's answer to its bye (``session_closed``, read by
            # the pump while close() waited) is not why the subscriptions end.
            return
        if error.code == "origin_not_allowed":
            origin = next((v for k, v in self.endpoint.headers.items() if k.lower() == "origin"), None)
            error = LadderError(
                error.code,
                f"the server at {self.url} does not allow the Origin {origin!r} this client sends: "
                f"add it to the server's allowed_origins (or send no Origin) [{error.reason}]",
            )
        final = (  # (frame_too_large: a proxy's body limit, protocol.client.UpstreamRetry)
            "connect_failed", "token_expired", "timeout", "internal", "unsupported_transport",
            "frame_too_large",
        )
        if error.code in FATAL or error.code in final:
            self._fatal = error
            log.warning("%s: giving up: %s", self.url, error)
            self._emit(ServerError(error.code, error.reason))
        self._set_state("closed", f"{error.code}: {error.reason}")
        if self._pace_timer is not None:
            self._pace_timer.cancel()
            self._pace_timer = None
        self._arm_refresh()  # (closed: it only cancels the refresh timer)
        if self._connected is not None and not self._connected.done():
            self._connected.set_exception(error)
        for callback in list(self._waiting.values()):
            callback({"t": "err", **error.body()})
        self._waiting.clear()
        ended = self._fatal or LadderError("closed", "this client was closed")
        for waiter in self._drained:  # (a flush waiting: nothing will acknowledge its messages;
            if not waiter.done():  # it ends as a flush called now would)
                waiter.set_exception(ended)
        self._drained.clear()
        for sub in self._subs.values():
            sub.end(error)

    def _adopt(self, conn: Transport, reason: str) -> None:
        """A transport won: take over its welcome, carry messages over, resubscribe."""
        welcome = conn.welcome
        limits = dict(welcome.get("lim") or {})
        oversize: dict[int, LadderError] = {}
        named = self.peer.lost is not None  # the hello named the carried ids: keep exactly those

        def keep(frame: Frame) -> bool:
            if not self.peer.carry(frame):
                return False  # subscriptions are renewed below
            too_large = None if named else self._too_large(frame, limits)
            if too_large is not None:  # queued before the limit was known: it could never pass
                oversize[int(frame["i"])] = too_large
                return False
            return True

        self.acking.welcome(limits, random.random())
        moved = self.peer.welcome(welcome, keep=keep)
        new_session = moved is not None
        if moved is not None:
            rekeyed: dict[int, Callable[[Frame], None]] = {}
            for old, new in moved:
                callback = self._waiting.pop(old, None)
                if callback is not None:
                    rekeyed[new] = callback
            lost = LadderError("session_closed", "the session ended before the reply arrived")
            for msg_id, callback in self._waiting.items():
                if msg_id not in self._subscribing:  # subscriptions are renewed just below
                    callback({"t": "err", **oversize.get(msg_id, lost).body()})
            for msg_id, error in oversize.items():
                if msg_id not in self._waiting:  # an emit: nobody waits for it
                    self._emit(ServerError(error.code, error.reason))
            self._waiting = rekeyed
            self._subscribing.clear()
        self._acked()
        self._conn = conn
        self._limits = limits
        self.session_id = str(welcome["sid"])
        expires = welcome.get("exp")
        self._expires = float(expires) if isinstance(expires, int | float) else None
        self._arm_refresh()
        old_rung, self.transport = self._last_rung, conn.name
        self._last_rung = conn.name
        self._set_state("connected", tell=False)  # reported after ``connected``
        self._cancel_ack_timer()  # the hello told the server what was delivered
        if self._remember:
            rung_memory.remember(self.url, self.rungs, conn.name)
        self.policy.won(conn.name)
        self._probes.stand(conn.name)
        offered = welcome.get("tr")
        if isinstance(offered, list):  # (probes try no rung the server does not offer)
            self.policy.offered([str(rung) for rung in offered])
        if new_session and self._had_session:
            self._emit(SessionLost(self._pending_loss or "the server started a new session"))
        self._pending_loss = None
        if new_session:
            for sub in list(self._subs.values()):
                if sub.active:
                    self._submit_subscribe(sub, renewal=True)
        self._had_session = True
        self._emit(Connected(conn.name, self.session_id, not new_session))
        self._emit(StateChanged("connected", ""))
        self._state_told = True
        if old_rung != conn.name:
            why = self._step_reason or reason
            self._emit(TransportChanged(old_rung, conn.name, why))
        self._step_reason = None
        if self._connected is not None and not self._connected.done():
            self._connected.set_result(None)
        self._spawn(self._flush())
        if self.policy.above(conn.name):
            self._start_probe()

    async def _lost(self, conn: Transport, reason: str) -> None:
        if self._probe_task is not None:
            self._probe_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._probe_task
            self._probe_task = None
        if self._conn is conn:
            self._conn = None
        self._cancel_ack_timer()  # the next hello carries the ack
        self.transport = None
        if self.state != "closed":
            self._set_state("disconnected", reason)
        if not self._closed_by_app:
            self._emit(Disconnected(conn.name, reason))
        # Closed aside: a silent peer's close handshake (up to 1 s) delays neither the app's
        # news nor the next race, and nothing is written on a transport being closed.
        self._spawn(conn.close())

    async def _pump(self, conn: Transport) -> tuple[Transport, float, str, Action]:
        """Read frames until the transport ends; switch transports when a probe wins.

        Returns the transport that ended (the last one switched to), when it began (the
        loop's time, as ``_heard``), why it ended and what follows (the core's
        :func:`after_transport` decides): a drop is counted against the rung that dropped.
        """
        loop = asyncio.get_running_loop()
        opened = loop.time()
        while True:
            try:
                await self._read(conn)
            except TransportClosed as exc:
                switch, self._switch_to = self._switch_to, None
                if switch is None or self.state == "closed":
                    error = exc.error
                    action = self._ending("close" if error is None else "refusal", error)
                    return conn, opened, exc.reason, action
                new, reason = switch
                await conn.close()
                old = conn.name
                conn, opened = new, loop.time()
                self._conn = conn
                self.transport = conn.name
                self._last_rung = conn.name
                self.policy.won(conn.name)
                self._probes.stand(conn.name)
                if self._remember:
                    rung_memory.remember(self.url, self.rungs, conn.name)
                self.peer.welcome(conn.welcome)
                self._cancel_ack_timer()  # the new transport's hello carried the ack
                self._emit(TransportChanged(old, conn.name, reason))
                self._spawn(self._flush())
                if self.policy.above(conn.name):
                    self._start_probe()
            except _SessionEnded as ended:
                error = ended.error
                reason = f"{conn.name}: session ended by the server ({error.code}: {error.reason})"
                return conn, opened, reason, self._ending("bye", error)

    def _ending(self, via: Literal["bye", "refusal", "close"], error: LadderError | None) -> Action:
        """Act on how a transport ended: give up, or forget a session the server dropped."""
        code = None if error is None else error.code
        action = after_transport(via, code, token_refreshable=self._refreshable)
        if error is not None and action == "give_up":
            self._give_up(error)
        elif error is not None and action == "new_session":
            self._session_gone(f"{error.code}: {error.reason}")
        return action

    def _start_probe(self) -> None:
        if self._probe_task is None or self._probe_task.done():
            self._probe_task = asyncio.get_running_loop().create_task(self._probe(), name="ladder-probe")

    async def _probe(self) -> None:
        """While on a lower rung, try the better ones with backoff; hand over on success.
        The schedule goes on across reconnects on the same rung (the core's ProbeSchedule)."""
        on = self._conn
        first = self.probe_delay * 1000
        if on is not None:  # (after steps down for cuts: later, see RungPolicy.probe_wait)
            first = self.policy.probe_wait(on.name, first)
        clock = asyncio.get_running_loop().time
        schedule = self._probes
        cap = max(first, self.probe_max_delay * 1000)
        wait = schedule.resume(first, cap, random.random(), clock() * 1000)
        while self.state == "connected" and self._conn is not None:
            await asyncio.sleep(wait / 1000)
            current = self._conn
            if current is None or self.state != "connected":
                return
            for rung in self.policy.above(current.name):
                try:
                    candidate = await self._open(rung, "probe")
                except TransportClosed as exc:
                    log.debug("probe of %s failed: %s", rung, exc.reason)
                    self._emit(ProbeResult(rung, False, exc.reason))
                    continue
                if self._conn is not current or self.state != "connected":
                    await candidate.close()
                    return
                if not candidate.welcome.get("resumed"):
                    await self._discard(candidate)  # our session is gone there; the pump will learn
                    self._emit(ProbeResult(rung, False, f"{rung}: the session was not resumed"))
                    continue
                self._emit(ProbeResult(rung, True, f"{rung}: round trip completed"))
                self._switch_to = (candidate, f"{rung} works again (probe succeeded)")
                current.interrupt("switching to a better rung")
                return
            wait = schedule.next_delay(random.random(), clock() * 1000)
