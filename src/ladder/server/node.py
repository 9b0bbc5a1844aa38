"""One hub's server side, wired: the tables, the dispatch, the cluster and the drivers' gateway.

Built by :class:`~ladder.Ladder` from its settings; every part gets what it uses at
construction, so no part reaches back into the hub. Also the clock: deadlines, expiry and
presence refreshes advance here, on one task.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from typing import Any, Final

from ..engine.base import Engine
from ..protocol.attachment import Attachment
from ..protocol.errors import LadderError
from ..protocol.session import Phase, SessionState
from .channels import ChannelTable
from .cluster import Cluster
from .config import Settings
from .descriptors import Watch
from .dispatch import Dispatch, Handler
from .gateway import Gateway
from .inbound import Inbound
from .lease import Lease
from .lease import log as cluster_log
from .logs import make_visible
from .metrics import Counters, Metrics, Observed
from .polling import serve_forwarded_poll
from .pushing import Pusher
from .refusals import Refusals
from .routing import Router
from .session import Session
from .sessions import SessionTable
from .tasks import Tasks
from .timers import Round
from .upstream import serve_forwarded_send

log = logging.getLogger("ladder")

FULL_TICK: Final = 60.0
"""Seconds over which the clock also visits every session, not only the due ones: a safety
net that bounds the delay of a deadline some future code path forgets to report. The visits
are spread over that time (a share per tick: see :class:`~.timers.Round`), so that 100,000
sessions do not stop the event loop once a minute."""

CLAIMS_AT_ONCE: Final = 64
"""Claims renewed concurrently (the rest of a tick's share waits for them): fewer than a
Redis engine's connections, so that renewing never starves the other commands."""


class Node:
    """The parts of a hub, wired together, and their lifecycle."""

    def __init__(
        self, settings: Settings, engine: Engine, handlers: dict[str, Handler], hub: Any
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.counters = Counters()
        self.tasks = Tasks()
        self.refused = Refusals(self.counters, settings.allowed_origins, settings.clock)
        self.channels = ChannelTable(engine, settings.channel_rules)
        self.sessions = SessionTable(
            engine,
            self.channels,
            self.tasks,
            settings.session_limits,
            settings.clock,
            inbox_window=settings.limits.inbox_window,
        )
        self.sessions.refused = self.refused
        dispatch = Dispatch(
            settings,
            engine,
            self.channels,
            handlers=handlers,
            hub=hub,
            counters=self.counters,
            refused=self.refused,
            tasks=self.tasks,
        )
        self.lease = Lease(engine, settings.node_lease)
        self.lease.on_fenced = self._fenced
        self.inbound = Inbound(
            settings,
            engine,
            self.sessions,
            dispatch,
            tasks=self.tasks,
            counters=self.counters,
            refused=self.refused,
            lease=self.lease,
        )
        self.lease.resume = lambda session: self.tasks.spawn(self.inbound.drain(session), "ladder-drain")
        self.cluster = Cluster(engine, self.tasks, self.lease)
        self.channels.node_message = self.cluster.on_node_message
        self.channels.route_lost = self._route_lost
        self.router = Router(settings, engine, self.sessions, self.cluster, self.inbound)
        self.native_ws_path: str | None = None
        """Where ``ladder serve``'s native driver serves this hub's WebSockets (it sets it):
        one reaching the hub through ASGI at another path is told of once (routes.py; None
        then)."""
        self.pusher = Pusher(engine, self.sessions, self.cluster)
        self.gateway = Gateway(
            settings,
            self.router,
            self.inbound,
            counters=self.counters,
            refused=self.refused,
            node=self,
        )
        self.cluster.serve("poll", functools.partial(serve_forwarded_poll, self.gateway))
        self.cluster.serve("send", functools.partial(serve_forwarded_send, self.gateway))
        observed = Observed(
            self.counters,
            transports=settings.transports,
            sessions=self.sessions,
            channels=self.channels,
            healthy=lambda: bool(self.engine.healthy),
            cluster=self.cluster.counters,
            shards=lambda: [
                (s["shard"], bool(s["healthy"])) for s in self.engine.details().get("shards", [])
            ],
        )
        self.metrics = Metrics(observed)
        self._ticker: asyncio.Task[None] | None = None
        self._start_lock: asyncio.Lock | None = None
        self.started = False
        self.stopped = False
        """Stopped, and not started again explicitly: requests are refused with ``shutting_down``
        (they would otherwise start it again, and a session opened then would hold the
        process open after a SIGTERM)."""
        self._last_sweep = settings.clock()
        self._full_round: Round[str] = Round(FULL_TICK, settings.clock())
        self._presence_round: Round[tuple[str, str]] = Round(settings.presence_ttl / 3, settings.clock())
        self._claiming = False
        self._claim_all = False
        """Claim every session that moved here once the engine is healthy (its link broke:
        it may come back without its data, as a Redis restarted without persistence)."""
        self._claim_round: Round[str] = Round(settings.session_limits.ttl / 2, settings.clock())
        """Sessions that moved here claim their place again every half TTL: the engine's
        record of a hand-over lasts twice the TTL, and must outlive the node that made the
        session (else a client landing anywhere but here is told ``unknown_session``)."""
        self.descriptors = Watch()
        """Warns when the descriptors in use near the process's limit (each connection holds one)."""

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect the engine and start the clock. Idempotent."""
        self.stopped = False
        if self.started:
            return
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self.started:
                return
            make_visible()
            trace_ttl = getattr(self.engine, "trace_ttl", None)
            if trace_ttl is not None:  # (its sessions' node must be known as long as they are)
                self.engine.trace_ttl = max(trace_ttl, 2 * self.settings.session_limits.ttl)  # type: ignore[attr-defined]
            await self.engine.start(self.channels)
            await self.lease.start()
            self._ticker = asyncio.create_task(self._tick_loop(), name="ladder-ticker")
            self.started = True

    async def stop(self) -> None:
        """Close every session (clients are told the server is going away) and the engine."""
        self.stopped = True
        if not self.started:
            return
        self.started = False
        self.cluster.stop()
        for session in self.sessions:
            self.sessions.close(session, LadderError("shutting_down"))
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        await self.tasks.wait(2.0)
        await self.lease.stop()
        await self.engine.stop()

    async def serving(self) -> None:
        """Start on first use (a client's request, a publish from server code), but never
        again once stopped: a straggling task publishing during a shutdown would otherwise
        start the engine and the clock again."""
        if self.stopped:
            raise LadderError("shutting_down", "this server is shutting down")
        await self.start()

    # -- the clock --------------------------------------------------------------------------

    @property
    def tick_interval(self) -> float:
        limits = self.settings.session_limits
        return max(0.02, min(1.0, limits.heartbeat / 4, limits.poll_timeout / 4, limits.ttl / 4))

    async def _tick_loop(self) -> None:
        interval = self.tick_interval
        while True:
            await asyncio.sleep(interval)
            try:
                await self.tick(self.settings.clock())
            except Exception:  # pragma: no cover - a bug must not stop the clock
                log.exception("tick failed")

    async def tick(self, now: float) -> None:
        """Advance the deadlines of the sessions that are due (and of this tick's share of
        every session, in case one was missed: see ``FULL_TICK``); reap the expired ones;
        end sessions whose credentials expired without a refresh; resume or refuse messages
        that wait for their records' server (``holding.py``); refresh presence."""
        wall = time.time()
        sessions = self.sessions
        due = sessions.timers.pop_due(now)
        silent = self._silent  # (one bound method per tick, not one per due session)
        extra = self._safety_net(now)
        if extra:
            known = set(due)
            due = due + [session for session in extra if session not in known]
        for session in due:
            if sessions.get(session.sid) is not session:
                continue  # ended or moved on meanwhile
            expires = session.identity.expires
            if expires is not None and wall >= expires:
                sessions.close(session, LadderError("token_expired"))
            expired = session.state.tick(now, silent)
            if expired or session.state.phase is Phase.CLOSED:
                await sessions.forget(session, expired=expired)
            else:
                sessions.schedule(session)
        if now - self._last_sweep >= 10.0:
            self._last_sweep = now
            self.gateway.address_limiter.sweep(now)
        if self.inbound.holds.since:  # (messages waiting for their records' server)
            self.inbound.release(now)
        sessions.moved.sweep(now)
        sessions.ended.sweep(now)
        self.descriptors.look(now)
        claims = self._claim_round.due(now, sessions.moved_in)
        if self._claim_all and self.engine.healthy and not self._claiming:
            self._claim_all = False
            claims = sessions.moved_in()
        if claims and not self._claiming:  # (one at a time: a stalled engine delays no deadline)
            self._claiming = True
            self.tasks.spawn(self._claim_again(claims), "ladder-claims")
        if self.engine.healthy:  # (else its round waits: nothing could be refreshed)
            await self._refresh_presence(now)

    def _silent(self, state: SessionState, att: Attachment) -> None:
        """A transport the clock dropped for not answering pings: counted and logged as a refusal."""
        if att.close_error is not None:
            self.refused(att.transport, att.close_error, session=self.sessions.get(state.sid))

    async def _refresh_presence(self, now: float) -> None:
        """Refresh this tick's share of the presence entries held here. One the engine
        cannot refresh now (one Redis server of several down: its health is logged) waits
        for the next round; a Redis outage is not a bug of the clock's."""
        presence_ttl, channels, sessions = self.settings.presence_ttl, self.channels, self.sessions
        for sid, channel in self._presence_round.due(now, channels.present_ids):
            found = sessions.get(sid)
            sub = None if found is None else found.subs.get(channel)
            if sub is not None and sub.member is not None and sub in channels.present:
                try:
                    await self.engine.presence_add(channel, sub.member, presence_ttl)
                except LadderError as exc:
                    if exc.code != "engine_unavailable":
                        raise
                    log.debug("presence of %s in %s not refreshed: %s", sid, channel, exc.reason)

    def _fenced(self, silent: float) -> None:
        """Another node declared this one dead (see ``lease.py``): end every session held
        here, now, before anything more is applied for them; their clients start successors
        (a ``bye`` with ``unknown_session``, as a killed node's clients are told)."""
        node = self.engine.node_id
        error = LadderError(
            "unknown_session", f"node {node} was declared dead after {silent:.1f} s without its lease"
        )
        ended = list(self.sessions)
        for session in ended:
            self.sessions.close(session, error)
        self.cluster.counters["fenced"] += 1
        cluster_log.warning(
            "this node (%s) did not refresh its lease for %.1f s (paused, or its event loop blocked by a "
            "handler): another node declared it dead, and its %d sessions were ended (their clients start "
            "new sessions carrying their unacknowledged messages); give handlers no blocking work (run it "
            "in a thread), or raise node_lease (--node-lease, now %g s)",
            node, silent, len(ended), self.lease.seconds,
        )

    def _route_lost(self) -> None:
        self.cluster.on_route_lost()
        self._claim_all = True

    async def _claim_again(self, sids: list[str]) -> None:
        """Renew the engine's record that these sessions live here (those still here and not
        moving on). A renewal that fails is logged; the next round tries again (a share that
        came while one ran was skipped: its sessions are renewed then too)."""
        sessions, ttl = self.sessions, self.settings.session_limits.ttl * 2
        failed: list[BaseException] = []
        try:
            for start in range(0, len(sids), CLAIMS_AT_ONCE):
                here = [
                    sid
                    for sid in sids[start : start + CLAIMS_AT_ONCE]
                    if (session := sessions.get(sid)) is not None and not session.moving
                ]
                results = await asyncio.gather(
                    *(self.engine.claim_session(sid, ttl) for sid in here), return_exceptions=True
                )
                failed += [result for result in results if isinstance(result, Exception)]
        finally:
            self._claiming = False
        if failed:
            log.warning(
                "%d of %d sessions that moved here could not claim their place again (%s); "
                "tried again within half the session TTL",
                len(failed),
                len(sids),
                failed[0],
            )

    def _safety_net(self, now: float) -> list[Session]:
        """This tick's share of the round that visits every session once per ``FULL_TICK``
        (by id: an ended session is not held until its turn)."""
        sessions = self.sessions
        ids = self._full_round.due(now, sessions.ids)
        return [session for sid in ids if (session := sessions.get(sid)) is not None]

    # -- what it reports ------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        sessions = self.sessions
        return {
            "sessions": len(sessions),
            "live": sum(1 for s in sessions if s.state.phase is Phase.LIVE),
            "channels": len(self.channels),
            "users": sessions.users,
        }

    def health(self) -> dict[str, Any]:
        engine = self.engine
        return {
            "ok": bool(engine.healthy) and not self.stopped,
            "node": engine.node_id,
            **self.stats(),
            **engine.details(),
            **self.cluster.counters,
        }
