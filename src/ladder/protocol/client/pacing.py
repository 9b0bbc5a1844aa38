"""How fast to write and to ask: pacing after a rate refusal, and short polling's interval.

A rate limit never consumes a reliable message (protocol §4): the server refuses a message
over its rate with ``err`` ``rate_limited`` naming it (``re``) and ``retry_after``, without
using up its id. The client rewinds to that message, waits ``retry_after`` and then writes
one message per ``interval`` (the largest ``retry_after`` heard since pacing began), the
ones that became due meanwhile together, until every message is acknowledged. Times in ms.
"""

from __future__ import annotations

from typing import Any

MIN_INTERVAL = 1.0
"""ms: the shortest pace, whatever a server says."""
MAX_DUE = 64
"""Most messages that may become due while the client was busy (one batch at most)."""
POST_GAP = 50.0
"""ms at least between two writes while pacing over ``POST send`` (the due ones go
together): each POST is a request of the client's address, which the server bounds too
(``request_rate``); one POST per message at the message rate's pace took most of it, and
refused polls then stalled the queue."""


class Pacer:
    """The pace of upstream messages: unlimited until the server refuses one for its rate."""

    def __init__(self) -> None:
        self.interval = 0.0
        """ms between messages while pacing; 0 when not pacing."""
        self.resume_at = 0.0
        self._due = 0.0
        self._stamp = 0.0
        self._written_at = -1.0e12

    @property
    def pacing(self) -> bool:
        return self.interval > 0

    def refused(self, retry_after: float, now: float) -> None:
        """The server refused a message for its rate: wait ``retry_after`` ms, then pace."""
        retry_after = max(retry_after, MIN_INTERVAL)
        self.interval = max(self.interval, retry_after)
        self.resume_at = max(self.resume_at, now + retry_after)
        self._stamp = self.resume_at
        self._due = 1.0  # the refused message, once the wait is over

    def allowance(self, now: float, separate_upstream: bool = False) -> dict[str, Any]:
        """``{"count": n, "wait": ms}``: how many messages may be written now (None: any
        number) and, when none may, how long until the next one may. Over a separate
        upstream (``POST send``, each write a request) writes are :data:`POST_GAP` apart at
        least, what became due meanwhile written together."""
        gap = POST_GAP if separate_upstream else 0.0
        if not self.pacing:
            return {"count": None, "wait": 0.0}
        if now < self.resume_at:
            return {"count": 0, "wait": self.resume_at - now}
        if now < self._written_at + gap:
            return {"count": 0, "wait": self._written_at + gap - now}
        self._due = min(float(MAX_DUE), self._due + (now - self._stamp) / self.interval)
        self._stamp = now
        due = int(self._due)
        if due == 0:
            return {"count": 0, "wait": (1.0 - self._due) * self.interval}
        self._written_at = now
        return {"count": due, "wait": 0.0}

    def wrote(self, count: int) -> None:
        """``count`` messages were written under the current allowance."""
        if self.pacing:
            self._due = max(0.0, self._due - count)

    def returned(self, count: int) -> None:
        """``count`` messages written under the allowance were not taken (their write
        failed): due again, so the next write carries them all (one per write, a queue
        refused POST after POST went out one message at a time)."""
        if self.pacing:
            self._due = min(float(MAX_DUE), self._due + count)

    def drained(self) -> None:
        """Every message was acknowledged: write freely again."""
        self.interval = 0.0
        self.resume_at = 0.0
        self._due = 0.0


POLL_REFUSED_MAX = 10_000.0
"""ms a poll refused for the address's request rate waits in all before its transport is
given up (see :func:`poll_again_in`)."""


def poll_again_in(code: str | None, retry_after: float | None, waited: float) -> float | None:
    """A poll refused with ``code`` (``retry_after`` in ms, as the refusal said; ``waited``:
    ms already waited for this poll): when to poll again (ms), or None to give the
    transport up. A ``rate_limited`` poll (the server's requests per address: the address's
    pace, not the transport's fault; each of a paced client's POSTs counts too) is asked
    again after ``retry_after`` (50 ms at least) for up to :data:`POLL_REFUSED_MAX` in all:
    dropping the transport for it made the client reconnect, its queue stalled meanwhile."""
    if code != "rate_limited" or waited >= POLL_REFUSED_MAX:
        return None
    return min(max(retry_after or 0.0, 50.0), POLL_REFUSED_MAX - waited)


POLL_FASTEST = 50.0
"""ms between short polls while messages flow."""

POLL_SLOWEST = 2000.0
"""ms between short polls at most, while idle."""


class PollPace:
    """Short polling's interval (ms): the fastest while messages flow, doubling up to the
    slowest while idle. Only sequenced frames (messages) count as traffic: an answer that
    holds only an ``ack`` or a ``pong`` answers the client's own writes."""

    def __init__(self, *, fastest: float = POLL_FASTEST, slowest: float = POLL_SLOWEST) -> None:
        self.fastest = fastest
        self.slowest = slowest
        self.interval = fastest

    def answered(self, frames: list[dict[str, Any]]) -> float:
        """A poll was answered with ``frames``: the pause before the next poll."""
        if any("s" in frame for frame in frames):
            self.interval = self.fastest
        else:
            self.interval = min(self.slowest, self.interval * 2)
        return self.interval

    def woken(self) -> float:
        """The client wrote something (a reply may follow) or was woken: poll now, then fast."""
        self.interval = self.fastest
        return 0.0


HOLD_CUT_FLOOR = 2000.0
"""ms: a long poll held less than this when a proxy answered it says nothing of a timeout."""


TIMED_OUT = frozenset({504, 524})
"""A proxy's answers for a request it gave up waiting on (504 Gateway Timeout; Cloudflare's
524): not 502, which a proxy sends when the server died (a crash during a deploy lowered
every long-polling client's hold for good)."""

HOLD_MARGIN = 1500.0
"""ms at least between a proxy's cut and the hold asked: the server releases a held poll
within about a second of its hold (its clock ticks once a second at most)."""


class LongPollHold:
    """How long a client asks the server to hold its long polls (protocol §3.5 ``hold``, ms;
    None: the server's ``poll``). A proxy whose read timeout is shorter than the server's hold
    answers a held poll itself, 504 (:data:`TIMED_OUT`), every time (the client
    reconnected every few seconds for ever): the client then asks for three quarters of what
    that poll was held, or :data:`HOLD_MARGIN` less when that is less, and never more again,
    as the proxy stays. A poll answered so within :data:`HOLD_CUT_FLOOR` says nothing of a
    timeout; the server's own refusals are not the proxy's."""

    def __init__(self) -> None:
        self.hold: float | None = None

    def cut(self, held: float, status: int) -> None:
        """A long poll held ``held`` ms got HTTP ``status`` from something that is not the
        server (its body is not Ladder's)."""
        if status not in TIMED_OUT or held < HOLD_CUT_FLOOR:
            return
        asked = float(int(held - max(held * 0.25, HOLD_MARGIN)))
        if self.hold is None or asked < self.hold:
            self.hold = asked
