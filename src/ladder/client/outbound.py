"""Writing: numbering and queueing messages, batches within the server's limits, pacing,
retrying a failed write, and when to acknowledge what arrived."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any

from ..protocol.client import Renewal, UpstreamRetry, no_reply
from ..protocol.codec import encode_message
from ..protocol.errors import LadderError
from ..protocol.peer import Frame
from .base import ClientBase
from .events import Resubscribed, ResyncNeeded, ServerError
from .options import check_timeout
from .subscription import Subscription
from .transports.base import Transport, TransportClosed
from .transports.http import UNORDERED

log = logging.getLogger("ladder.client")


class _NotFlushed(LadderError, TimeoutError):
    """``flush()`` ran out of time: a ``LadderError`` ``timeout``, as a call's (and the browser
    client's ``flush``) is, and the built-in ``TimeoutError`` it was first."""


HEADROOM = 64
"""Bytes kept free in every batch under the server's limits (for the ack that rides along)."""


class Outbound(ClientBase):
    """The client's upstream: every message goes through the peer's outbox."""

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until the server has acknowledged every message sent or queued so far.

        A pending ack of ours goes out at once too, rather than when its timer fires. Raises
        ``LadderError("timeout")`` after ``timeout`` seconds, which is also a built-in
        ``TimeoutError`` (the messages stay queued),
        and ``LadderError("closed")`` once the client is closed (nothing will acknowledge them),
        or the error it gave up with (``unauthorized``, ``connect_failed``, ``timeout``, …),
        also for a flush already waiting then.
        """
        check_timeout(timeout, "to wait for as long as it takes")
        if self.state == "closed":  # (it waited for good)
            raise self._fatal or LadderError("closed", "this client was closed")
        self._in_its_loop()
        conn = self._conn
        if (
            conn is not None
            and not conn.implicit_ack
            and self.state == "connected"
            and self.peer.inbox.applied > self.peer.acked_out
        ):
            self._ack_now()
        if len(self.peer.outbox) == 0:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._drained.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except TimeoutError:
            never = " (this client was never connected: call `await client.connect()`)"
            raise _NotFlushed(
                "timeout",
                f"flush: {len(self.peer.outbox)} messages not acknowledged within {timeout:g} s"
                f"{never if self._run_task is None else ''}"
            ) from None

    def _acked(self) -> None:
        if len(self.peer.outbox) == 0:
            self._pacer.drained()
        if len(self.peer.outbox) == 0 and self._drained:
            for waiter in self._drained:
                if not waiter.done():
                    waiter.set_result(None)
            self._drained.clear()

    def _submit(
        self, frame: Frame, on_reply: Callable[[Frame], None] | None, *, bounded: bool = True
    ) -> int:
        """Number a message and queue it. A message that cannot travel is refused here, before
        it takes an id: a numbered message the server cannot read would never be applied, and
        every message after it would wait for it forever."""
        if self.state == "closed":
            raise self._fatal or LadderError("closed", "this client was closed")
        self._in_its_loop()
        too_large = self._too_large({**frame, "i": self.peer.outbox.last + 1}, self._limits)
        if too_large is not None:
            raise too_large
        msg_id = self.peer.submit(frame, bounded=bounded)
        if on_reply is not None:
            self._waiting[msg_id] = on_reply
        return msg_id

    def _too_large(self, frame: Frame, limits: dict[str, Any]) -> LadderError | None:
        """``frame_too_large`` when the encoded message exceeds the server's ``lim.frame``
        (less :data:`HEADROOM`); ``TypeError`` when it cannot be encoded at all."""
        size = len(encode_message(self.endpoint.codec, frame))
        limit = limits.get("frame")
        if isinstance(limit, int) and size > limit - HEADROOM:
            return LadderError(
                "frame_too_large",
                f"this {frame.get('t')} is {size} bytes encoded; this client sends at most "
                f"{limit - HEADROOM} (the server's frame limit, {limit}, less {HEADROOM} for the ack "
                "that rides along): "
                "send less, or raise the server's Limits(max_frame_size=)",
            )
        return None

    async def _request(self, frame: Frame, timeout: float | None) -> Any:
        check_timeout(timeout)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def settle(reply: Frame) -> None:
            if future.done():
                return
            if reply.get("t") == "err":
                future.set_exception(LadderError.of(reply))
            else:
                future.set_result(reply.get("d"))

        msg_id = self._submit(frame, settle)
        # Written in the background, as an emit is: awaited here, the answer waited for the
        # writer, which is one at a time per client, and on an HTTP rung a later call's
        # POST is held by the server while its handler runs (up to the POST's 10 s timeout):
        # an answer that had arrived waited for it.
        self._spawn(self._flush())
        try:
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            never = " (this client was never connected: call `await client.connect()`)"
            if timeout is None:  # (not this wait's: it has no bound)
                raise
            reason = no_reply(timeout * 1000) + (never if self._run_task is None else "")
            raise LadderError("timeout", reason) from None
        finally:
            if future.cancelled() or not future.done():
                # Timed out (or cancelled) while writing or waiting: ``settle`` stays waiting
                # and settles nothing. A late reply is absorbed, as the browser client does
                # (a late ``err`` was an error event, after a timeout while waiting), and the
                # client's close no longer fails a future nobody awaits ("Future exception was
                # never retrieved", after a timeout while writing on an HTTP rung).
                future.cancel()
            elif self._waiting.get(msg_id) is settle:
                self._waiting.pop(msg_id, None)

    def _submit_subscribe(self, sub: Subscription, *, renewal: bool = False) -> None:
        """Ask for ``sub``; a ``renewal`` (in a new session, or sent again after a refusal
        for now) is queued even past ``max_queue``, and takes over a retry still waiting."""
        sub.cancel_retry()

        def settle(reply: Frame) -> None:
            self._subscribing.discard(msg_id)
            if self._subs.get(sub.channel) is not sub:
                return  # unsubscribed meanwhile: nobody follows it any more
            if reply.get("t") == "err":
                self._sub_refused(sub, LadderError.of(reply), renewal=renewal)
                return
            again = sub.subscribed_once
            if sub.renewal is not None:
                sub.renewal.confirmed()
            result = sub.confirmed(reply.get("d") or {})
            if again:
                self._emit(Resubscribed(sub.channel, result.recovered))
            if not result.recovered:
                self._emit(ResyncNeeded(sub.channel, result.epoch, sub.offset))

        msg_id = self._submit(sub.subscribe_frame(), settle, bounded=not renewal)
        self._subscribing.add(msg_id)
        self._spawn(self._flush())

    def _sub_refused(self, sub: Subscription, error: LadderError, *, renewal: bool) -> None:
        """The server refused ``sub``: the core's :class:`Renewal` decides whether it ends or
        is sent again later (a renewal of a subscription confirmed before, refused for now)."""
        if self.state == "closed":  # (the client closed or gave up: it said so itself)
            self._subs.pop(sub.channel, None)
            sub.refused(error)
            return
        if sub.renewal is None:
            sub.renewal = Renewal(base=self.backoff_base * 1000, cap=self.backoff_max * 1000)
        step = sub.renewal.refused(
            sub.channel, error.code, error.reason, random.random(), renewal and sub.subscribed_once
        )
        if "end" in step:
            self._subs.pop(sub.channel, None)
            sub.refused(error)
            if "tell" in step:
                self._emit(ServerError(error.code, step["tell"]))
            return
        delay = step["retry_in"] / 1000
        if "tell" in step:
            log.info("%s (next in %.3f s)", step["tell"], delay)
            self._emit(ServerError(error.code, step["tell"]))
        else:
            log.debug("renewing %r refused again (%s); next in %.3f s", sub.channel, error.code, delay)
        sub.retry_later(delay, lambda: self._submit_subscribe(sub, renewal=True))

    async def _flush(self) -> None:
        """Write every queued message (and a due ack) on the current transport.

        One writer at a time; a flush asked for meanwhile is done by the running one's loop.
        A write that fails is taken back (the cursor rewinds to its first message) and tried
        again: over POST the downstream may well be alive, so nothing else would notice
        (a WebSocket's reader does). A transport that keeps failing is interrupted, so the
        client reconnects and resends everything the server has not acknowledged.
        """
        if self._flushing:
            return
        self._flushing = True
        loop = asyncio.get_running_loop()
        try:
            while self.state == "connected" and self._conn is not None:
                conn = self._conn
                allowed, wait = self._pacer.allowance(loop.time(), conn.separate_upstream)
                frames = self._batch(conn, allowed)
                self._pacer.wrote(len(frames))
                if wait > 0 and self.peer.outbox.pending(self.peer.cursor) > 0:
                    self._flush_later(wait)
                acked_before = self.peer.acked_out
                ack = None
                if not conn.implicit_ack and (frames or self._ack_wanted):
                    ack = self.peer.ack_frame()  # piggy-backed on messages, or due by the timer
                    if ack is not None:
                        # First: a server that stops reading a batch (a message over its rate)
                        # has read the ack.
                        frames.insert(0, ack)
                self._ack_wanted = False
                if not frames:
                    break
                try:
                    await conn.send(frames)
                except asyncio.CancelledError:
                    # The caller gave up waiting (a timeout, a cancelled task), not the client:
                    # what this write carried is written again, by a flush of the client's own.
                    if self._conn is conn:
                        self._take_back(frames, acked_before if ack is not None else None)
                        self._spawn(self._flush())
                    raise
                except TransportClosed as exc:
                    if self._conn is not conn:
                        continue  # a newer transport took over; its welcome rewound the cursor
                    self._take_back(frames, acked_before if ack is not None else None)
                    self._pacer.returned(sum("i" in frame for frame in frames))
                    failing, retry = self._retry
                    if failing is not conn:
                        failing, retry = self._retry = (conn, UpstreamRetry())
                    error = exc.error
                    code = None if error is None else error.code
                    after = None if error is None or error.retry_after is None else error.retry_after * 1000
                    alone = sum(frame.get("t") not in UNORDERED for frame in frames) <= 1
                    step = retry.failed(
                        conn.separate_upstream, code, random.random(), exc.too_large, alone, retry_after=after
                    )
                    if "give_up" in step:
                        refused = LadderError("frame_too_large", f"{conn.name}: {step['give_up']}")
                        self._give_up(refused)
                        conn.interrupt(refused.reason, refused)
                        break
                    if "shrink" in step:
                        self._post_cap = step["shrink"]
                        log.info("%s; messages go in POSTs of at most %d bytes", exc.reason, self._post_cap)
                        continue
                    if "drop" in step:
                        log.info("%s; the transport is given up", exc.reason)
                        conn.interrupt(f"{exc.reason} (after {step['drop']} attempts)", error)
                        break
                    log.debug("%s; writing it again (attempt %d)", exc.reason, retry.failures + 1)
                    await asyncio.sleep(step["retry_in"] / 1000)
                else:
                    self._retry[1].sent()
                    if ack is not None:
                        self._acks_sent()
        finally:
            self._flushing = False

    def _batch(self, conn: Transport, allowed: int | None) -> list[Frame]:
        """The next messages to write: at most ``allowed`` (pacing), and no more bytes than
        the server takes in one WebSocket message (``lim.frame``) or one POST (``lim.post``),
        so a long offline queue goes out in several writes instead of being refused whole."""
        items = self.peer.outbox.after(self.peer.cursor, allowed)
        if not items:
            return []
        limit = self._limits.get("post" if conn.separate_upstream else "frame")
        budget = (int(limit) if isinstance(limit, int) else 65_536) - HEADROOM
        if conn.separate_upstream and self._post_cap is not None:  # (a proxy's, found by a 413)
            budget = min(budget, self._post_cap)
        codec = self.endpoint.codec
        batch: list[Frame] = []
        size = 0
        for msg_id, frame in items:
            if len(items) > 1:
                size += len(codec.encode(frame)) + 1
                if batch and size > budget:
                    break
            batch.append(frame)
            self.peer.cursor = msg_id
        return batch

    def _flush_later(self, delay: float) -> None:
        """Flush again once pacing lets the next message go."""
        if self._pace_timer is None:

            def due() -> None:
                self._pace_timer = None
                self._spawn(self._flush())

            self._pace_timer = asyncio.get_running_loop().call_later(delay, due)

    def _rate_limited(self, msg_id: int, retry_after: float) -> None:
        """The server refused message ``msg_id`` for its rate without applying it (nor any
        message after it in that batch): write it again after ``retry_after``, paced."""
        if msg_id <= self.peer.outbox.acked:
            return  # stale: applied since
        self.peer.cursor = min(self.peer.cursor, msg_id - 1)
        self._pacer.refused(retry_after, asyncio.get_running_loop().time())
        log.debug("message %d refused for its rate; paced, again in %g s", msg_id, retry_after)
        self._flush_later(retry_after)

    def _take_back(self, frames: list[Frame], acked_before: int | None) -> None:
        """A write of ``frames`` failed: its messages (and ack, if any) count as unwritten."""
        first = next((int(frame["i"]) for frame in frames if "i" in frame), None)
        if first is not None:
            self.peer.cursor = min(self.peer.cursor, first - 1)
        if acked_before is not None:
            self.peer.acked_out = min(self.peer.acked_out, acked_before)
            self._ack_wanted = True

    def _ack_received(self, conn: Transport) -> None:
        """Frames were delivered: ack at once past about ``ack_every`` (or half the server's
        queue of frames or bytes), else once the stream has been quiet for ``ack_interval``
        (one timer, not one per frame: protocol §9.7)."""
        peer = self.peer
        decision = self.acking.received(
            peer.inbox.applied - peer.acked_out,
            self._ack_timer is not None,
            conn.implicit_ack,
            peer.unacked_bytes,
            random.random(),
        )
        if decision == "now":
            self._ack_now()
        elif decision == "timer":
            self._ack_timer = asyncio.get_running_loop().call_later(self.ack_interval, self._ack_quiet)

    def _ack_quiet(self) -> None:
        """The ack timer fired: ack if nothing was heard for ``ack_interval``, else wait out
        the rest of that quiet spell."""
        loop = asyncio.get_running_loop()
        wait = self.acking.due((loop.time() - self._heard) * 1000)
        if wait > 0:
            self._ack_timer = loop.call_later(wait / 1000, self._ack_quiet)
        else:
            self._ack_now()

    def _ack_now(self) -> None:
        self._cancel_ack_timer()
        conn = self._conn
        if self._flushing and conn is not None and conn.separate_upstream and not conn.implicit_ack:
            # A POST is in flight, answered only once its messages are applied (a long
            # call's): the ack goes on a POST of its own, now (protocol §3.6).
            acked_before = self.peer.acked_out
            ack = self.peer.ack_frame()
            if ack is not None:
                self._spawn(self._ack_alone(conn, ack, acked_before))
            return
        self._ack_wanted = True
        self._spawn(self._flush())

    async def _ack_alone(self, conn: Transport, ack: Frame, acked_before: int) -> None:
        try:
            await conn.send([ack])
        except TransportClosed:
            self.peer.acked_out = min(self.peer.acked_out, acked_before)
            self._ack_wanted = True  # (the next write carries it; the reader notices a dead transport)

    def _acks_sent(self) -> None:
        """An ack went out: the timer is needed again only for frames that came after it."""
        if self.peer.acked_out >= self.peer.inbox.applied:
            self._cancel_ack_timer()

    def _cancel_ack_timer(self) -> None:
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None
