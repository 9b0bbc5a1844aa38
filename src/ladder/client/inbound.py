"""Reading: the frames a transport delivers, the watchdog that judges its silence, and
the session's credentials kept fresh."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time

from ..protocol.client import (
    StreamProof,
    answers_ping,
    proves_stream,
    refresh_delay,
    silence_limit,
    silence_verdict,
)
from ..protocol.errors import LadderError
from ..protocol.peer import Frame
from .events import Presence, Push, ResyncNeeded, ServerError
from .options import check_timeout, check_token_length
from .outbound import Outbound
from .transports.base import Transport, TransportClosed

log = logging.getLogger("ladder.client")


class _SessionEnded(Exception):
    def __init__(self, error: LadderError) -> None:
        super().__init__(error.reason)
        self.error = error


class Inbound(Outbound):
    """The client's downstream: frames in, events and replies out."""

    async def refresh(self, token: str | None = None, *, timeout: float | None = 10.0) -> None:
        """Give the server new credentials for this session without reconnecting.

        With no ``token``, the client's own ``token`` (a callable is called) is sent. A client
        whose ``token`` is a callable does this by itself shortly before the old one expires.
        """
        check_timeout(timeout)  # (before the token function, which may fetch)
        if token is not None:
            if not isinstance(token, str):
                raise TypeError(f"token must be a str, not {type(token).__name__}")
            check_token_length(token)
        fresh = token or await self._current_token()
        if not fresh:
            raise LadderError("unauthorized", "no token to refresh with")
        reply = await self._request({"t": "refresh", "tok": fresh}, timeout)
        if token is not None and not callable(self._token):
            self._token = token  # (only once accepted: a refused one, another user's, is not kept)
        self._expires = reply.get("exp") if isinstance(reply, dict) else None
        self._arm_refresh()

    def _arm_refresh(self, retry: bool = False) -> None:
        """Refresh a callable ``token`` when the core's :func:`refresh_delay` says (about
        ``refresh_margin`` before it expires), also on a session that hears nothing meanwhile
        (a check on arriving frames alone came after a quiet session's credentials had
        expired). ``retry``: the last refresh failed."""
        if self._refresh_timer is not None:
            self._refresh_timer.cancel()
            self._refresh_timer = None
        self._refresh_due = None
        expires = self._expires
        if expires is None or not callable(self._token) or self.state == "closed":
            return
        now = time.time()
        delay = refresh_delay(expires * 1000, now * 1000, self.refresh_margin * 1000, retry) / 1000
        self._refresh_due = now + delay
        self._refresh_timer = asyncio.get_running_loop().call_later(delay, self._maybe_refresh, True)

    def _maybe_refresh(self, due: bool = False) -> None:
        """Refresh an expiring token in time (only when ``token`` is a callable; ``due``: its
        timer says it is time; otherwise, as frames arrive, whether a timer held back while
        the machine slept is overdue)."""
        when = self._refresh_due
        if when is None or self._refreshing or self.state == "closed":
            return
        if due or time.time() >= when:
            self._refreshing = True
            self._refresh_due = None

            async def run() -> None:
                try:
                    await self.refresh()
                except LadderError as exc:
                    if self.state != "closed":  # (closing the client ends a refresh on its way)
                        log.warning("token refresh failed: %s", exc)
                        # Told to the app too: credentials it cannot renew end the session at
                        # their expiry, and it may want to sign its user in again before then.
                        self._emit(ServerError(exc.code, f"token refresh failed: {exc.reason}"))
                        self._arm_refresh(retry=True)
                except Exception as exc:
                    log.warning("token refresh failed: the client's token callable raised %r", exc)
                    self._arm_refresh(retry=True)
                finally:
                    self._refreshing = False

            self._spawn(run())

    def _liveness(self, conn: Transport) -> float:
        """Seconds ``conn`` may stay silent (the core's :func:`silence_limit`)."""
        welcome = conn.welcome
        limit = silence_limit(
            conn.name,
            float(welcome.get("hb", 20_000)),
            float(welcome.get("poll", 25_000)),
            poll_max=self.poll_interval[1] * 1000,
        )
        return limit / 1000

    async def _read(self, conn: Transport) -> None:
        """Handle what ``conn`` delivers until it ends, a watchdog judging its silence."""
        loop = asyncio.get_running_loop()
        self._heard = loop.time()
        self._pinged = None
        self._watch(conn, self._heard + self._liveness(conn))
        if proves_stream(conn.name):
            self._proof = StreamProof(every=float(conn.welcome.get("hb", 20_000)))
            self._proof.start(self._heard * 1000)  # (its open proved it)
            self._prove_later(conn)
        seen = conn.received
        try:
            while True:
                frames = await conn.recv()
                self._heard = loop.time()
                self.peer.unacked_bytes += conn.received - seen
                seen = conn.received
                for frame in frames:
                    self._handle(frame, conn)
                self._maybe_refresh()
                self._ack_received(conn)
        finally:
            if self._watchdog is not None:
                self._watchdog.cancel()
                self._watchdog = None
            self._proof = None
            if self._proof_timer is not None:
                self._proof_timer.cancel()
                self._proof_timer = None

    def _prove_later(self, conn: Transport) -> None:
        """Arm the next check that ``conn``'s stream is not buffered (the core's
        :class:`StreamProof` says when: every ``hb``, at once after a late pong)."""
        proof = self._proof
        if proof is None:
            return
        if self._proof_timer is not None:
            self._proof_timer.cancel()
            self._proof_timer = None
        wait = proof.due(asyncio.get_running_loop().time() * 1000)
        if wait is not None:
            self._proof_timer = asyncio.get_running_loop().call_later(wait / 1000, self._prove, conn)

    def _prove(self, conn: Transport) -> None:
        """POST a ping (with a pending ack, if any: one POST for both) and time its pong."""
        self._proof_timer = None
        proof = self._proof
        if proof is None or self._conn is not conn:
            return
        loop = asyncio.get_running_loop()
        if self._pacer.pacing:  # (told to wait, the server drops pings: no pong would come)
            proof.start(loop.time() * 1000)
            self._prove_later(conn)
            return
        nonce = random.getrandbits(31)
        frames: list[Frame] = [{"t": "ping", "n": nonce}]
        acked_before = self.peer.acked_out
        ack = self.peer.ack_frame()
        if ack is not None:
            frames.insert(0, ack)
            self._acks_sent()
        proof.sent(nonce, loop.time() * 1000)

        async def post() -> None:
            try:
                await conn.send(frames)
            except TransportClosed:
                proof.failed(nonce)
                self._take_back(frames, acked_before if ack is not None else None)
                self._prove_later(conn)  # (the reader notices a dead transport)
                return
            wait = proof.answered(nonce, loop.time() * 1000)
            if wait is not None and self._proof is proof:
                self._proof_timer = loop.call_later(wait / 1000, self._proof_expired, conn)

        self._spawn(post())

    def _proof_expired(self, conn: Transport) -> None:
        self._proof_timer = None
        proof = self._proof
        if proof is not None:
            self._proven(conn, proof.expired(asyncio.get_running_loop().time() * 1000))

    def _proven(self, conn: Transport, verdict: str) -> None:
        """Act on a check's verdict: abandon a buffered stream (the ladder steps down), or
        arm the next check."""
        proof = self._proof
        if proof is None or verdict == "none":
            return
        if verdict == "buffered":
            conn.interrupt(proof.reason(conn.name))
            return
        self._prove_later(conn)

    def _watch(self, conn: Transport, due: float, checking: bool = False) -> None:
        """Arm the watchdog of ``conn`` for ``due`` (loop time).

        Silent past its limit, the transport is ended; but a watchdog that fires late (the
        process was frozen, its loop blocked) first pings (``n``: a nonce) and ends it only
        if the pong does not come within twice ``verify_timeout`` (the core's
        :func:`silence_verdict` decides).
        """
        loop = asyncio.get_running_loop()

        def fire() -> None:
            now = loop.time()
            if checking and self._pinged is not None:
                conn.interrupt(f"{conn.name}: no answer to a check within {self.verify_timeout * 2:g} s")
                return
            limit = self._liveness(conn)
            verdict = silence_verdict((now - self._heard) * 1000, limit * 1000, (now - due) * 1000)
            if verdict == "alive":
                self._watch(conn, self._heard + limit)
            elif verdict == "check":
                self._pinged = random.getrandbits(31)
                self._spawn(self._control(conn, [{"t": "ping", "n": self._pinged}]))
                self._watch(conn, now + self.verify_timeout * 2, checking=True)
            else:
                conn.interrupt(f"{conn.name}: nothing received for {limit:g} s (heartbeat timeout)")

        self._watchdog = loop.call_at(due, fire)

    async def _control(self, conn: Transport, frames: list[Frame]) -> None:
        with contextlib.suppress(TransportClosed):  # the reader notices a dead transport
            await conn.send(frames)

    def _handle(self, frame: Frame, conn: Transport) -> None:
        if "s" in frame:
            for ready in self.peer.receive(frame):
                self._deliver(ready)
            return
        kind = frame.get("t")
        if kind == "ack":
            self.peer.on_ack(int(frame["i"]))
            self._acked()
        elif kind == "ping":
            if answers_ping(conn.name):
                self._spawn(self._pong(conn))
        elif kind == "pong":
            if frame.get("n") == self._pinged:
                self._pinged = None  # a check is answered: the transport lives
            proof = self._proof
            if proof is not None:
                now = asyncio.get_running_loop().time() * 1000
                self._proven(conn, proof.pong(frame.get("n"), now))
        elif kind == "bye":
            raise _SessionEnded(
                LadderError(str(frame.get("code") or "session_closed"), str(frame.get("reason", "")))
            )
        elif kind == "err":
            if frame.get("code") == "rate_limited" and isinstance(frame.get("re"), int):
                retry_after = frame.get("retry_after")
                self._rate_limited(int(frame["re"]), float(retry_after) if retry_after else 0.0)
                return
            if self.state != "closed":  # (the app closed it: it hears nothing more)
                self._emit(ServerError.of(frame))

    async def _pong(self, conn: Transport) -> None:
        """Answer a WebSocket ping; a pending ack goes with it instead of waiting its timer."""
        frames: list[Frame] = [{"t": "pong"}]
        ack = self.peer.ack_frame()
        if ack is not None:
            frames.append(ack)
            self._acks_sent()
        with contextlib.suppress(TransportClosed):  # the reader notices a dead socket
            await conn.send(frames)

    def _deliver(self, frame: Frame) -> None:
        kind = frame.get("t")
        if kind == "pub":
            sub = self._subs.get(frame["ch"])
            if sub is not None:
                sub.deliver(int(frame["o"]), frame.get("d"))
        elif kind in ("reply", "err"):
            msg_id = frame.get("re")
            callback = self._waiting.pop(msg_id, None) if isinstance(msg_id, int) else None
            if callback is not None:
                callback(frame)
            elif kind == "err":
                self._emit(ServerError.of(frame))
        elif kind == "push":
            self._emit(Push(str(frame.get("ev")), frame.get("d")))
        elif kind in ("join", "leave"):
            self._emit(Presence(str(kind), str(frame.get("ch")), dict(frame.get("m") or {})))
        elif kind == "resync":
            sub = self._subs.get(frame["ch"])
            if sub is not None:
                sub.resync(str(frame["ep"]), int(frame["off"]))
            self._emit(ResyncNeeded(str(frame["ch"]), str(frame["ep"]), int(frame["off"])))
