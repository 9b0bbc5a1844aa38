"""Is an event stream delivered as it is written? Proved by a pong that comes back in time.

SSE is the one rung whose downstream a proxy can hold back without closing it: a buffer that
fills every few seconds keeps the stream just alive enough for the silence watchdog, and
delivers everything seconds late. So the client POSTs a ``ping`` with a nonce (at the open,
then every ``every`` ms) and expects the ``pong`` on the stream within a bound of the moment
the POST was answered: the server writes the pong to the stream before it answers the POST,
so a pong later than that waited somewhere on the way. The bound, ``max(1 s, 4 round trips
of the POST)``, grows with a slow network (both directions are slow then), and is measured
from the answer, so neither the network nor a busy server (which delays both alike) is taken
for a buffer. ``Arrived before a timeout`` is not enough: a busy stream pushes a pong through
a buffer within its timeout. Times in ms.
"""

from __future__ import annotations

from typing import Literal

PROOF_FLOOR = 1000.0
"""ms: the least time a pong may take after its POST was answered (§9.2)."""
PROOF_FACTOR = 4.0
"""The most round trips of its POST a pong may take after the POST was answered."""
PROOF_STRIKES = 2
"""Late pongs among a live stream's last three checks that prove it buffered (one may be a
stalled client)."""
ASLEEP = 1000.0
"""ms: a pong's deadline noticed later than this means the client, not the stream, was asleep."""
VERIFY_TIMEOUT = 2500.0
"""ms an SSE stream's first pong may take (a check on a live stream: twice this) before the
stream counts as failed."""

Verdict = Literal["proven", "again", "buffered", "none"]


def pong_bound(round_trip: float) -> float:
    """ms a pong may arrive after the answer to its POST, which took ``round_trip`` ms."""
    return max(PROOF_FLOOR, PROOF_FACTOR * round_trip)


def proves_stream(rung: str) -> bool:
    """Whether ``rung``'s downstream must keep proving it is not buffered (SSE only: a
    WebSocket and a poll's answer are not held back by a proxy without ending them)."""
    return rung == "sse"


class StreamProof:
    """The checks of one stream: when to ping, and what a pong (or its absence) says.

    ``every``: ms between checks (the welcome's ``hb``); ``strikes``: late pongs among the
    last ``strikes + 1`` checks that prove the stream buffered (1 at the open, where a wrong
    guess costs a probe; 2 on a live stream, where one late pong may be a client whose loop
    was busy). Not ``strikes`` in a row: the check made at once after a late pong can leave
    a proxy's buffer in the same flush as the late one, in time, and a buffer flushed by
    steady traffic then passed every check (a stream 3 s late for minutes)."""

    __slots__ = ("deadline", "every", "next_at", "nonce", "recent", "sent_at", "strikes")

    def __init__(self, *, every: float = 20_000.0, strikes: int = PROOF_STRIKES) -> None:
        self.every = every
        self.strikes = strikes
        self.nonce: int | None = None
        """The ping whose pong is awaited."""
        self.sent_at = 0.0
        self.deadline: float | None = None
        """When the pong is late (once its POST was answered)."""
        self.recent: list[bool] = []
        """Whether each of the last checks was late (at most ``strikes + 1``, or 1)."""
        self.next_at = 0.0
        """When the next check is due."""

    @property
    def late(self) -> int:
        """Late pongs among the last checks."""
        return sum(self.recent)

    def start(self, now: float) -> None:
        """The stream was proven (its open's check): the next check in ``every``."""
        self.nonce, self.deadline, self.recent = None, None, []
        self.next_at = now + self.every

    def _checked(self, late: bool) -> None:
        recent = self.recent
        recent.append(late)
        del recent[: -(self.strikes + 1 if self.strikes > 1 else 1)]

    def due(self, now: float) -> float | None:
        """ms until the next ping should go (0: now), or None while one is awaited."""
        if self.nonce is not None:
            return None
        return max(0.0, self.next_at - now)

    def sent(self, nonce: int, now: float) -> None:
        """A ping with ``nonce`` is being POSTed."""
        self.nonce, self.sent_at, self.deadline = nonce, now, None

    def answered(self, nonce: int, now: float) -> float | None:
        """The POST of ping ``nonce`` was answered: ms to wait for its pong (then call
        :meth:`expired`), or None when there is nothing to wait for (its pong came first,
        or another ping replaced it)."""
        if nonce != self.nonce:
            return None
        bound = pong_bound(now - self.sent_at)
        self.deadline = now + bound
        return bound

    def failed(self, nonce: int) -> None:
        """The POST of ping ``nonce`` failed: it proves nothing (the writer handles the failure)."""
        if nonce == self.nonce:
            self.nonce, self.deadline = None, None

    def pong(self, nonce: object, now: float) -> Verdict:
        """A pong with ``nonce`` arrived on the stream: ``proven`` (in time: the next check in
        ``every``), ``again`` (late: ping again now), ``buffered`` (late in ``strikes`` of
        the last checks: abandon the stream) or ``none`` (not the awaited one)."""
        if self.nonce is None or nonce != self.nonce:
            return "none"
        if self.deadline is not None and now > self.deadline:
            return self._strike(now)
        self.nonce, self.deadline = None, None
        self._checked(False)
        # From the ping, not the pong: a pong arrives as a buffer flushes, and a check timed
        # from it came at the same point of every flush cycle, where its pong was in time.
        self.next_at = self.sent_at + self.every
        return "proven"

    def expired(self, now: float) -> Verdict:
        """The pong's deadline passed with no pong: ``again`` or ``buffered`` as a late pong,
        ``none`` when nothing is late (answered meanwhile, or not due yet). A deadline noticed
        more than :data:`ASLEEP` late says the client was asleep (a blocked loop, a frozen
        tab): the check is done again, without a strike."""
        deadline = self.deadline
        if self.nonce is None or deadline is None or now < deadline:
            return "none"
        if now - deadline > ASLEEP:
            self.nonce, self.deadline = None, None
            self.next_at = now
            return "again"
        return self._strike(now)

    def _strike(self, now: float) -> Verdict:
        self.nonce, self.deadline = None, None
        self._checked(True)
        if self.late >= self.strikes:
            return "buffered"
        self.next_at = now
        return "again"

    def reason(self, rung: str = "sse") -> str:
        """Why the stream is abandoned (a hello's ``why`` reads ``buffered`` in it)."""
        times = "" if self.strikes == 1 else f", in {self.late} of its last {len(self.recent)} checks"
        return (
            f"{rung}: stream buffered by something on the way (its pong came over "
            f"{PROOF_FLOOR / 1000:g} s and {PROOF_FACTOR:g} round trips after its ping was answered{times})"
        )
