"""A session's message rate (protocol §4): every client frame but a batch's first ``ack``
takes a token, refused ones included; past the rate a frame is refused for a while, never consumed, and a
session that keeps sending while told to wait is ended (``bye`` ``rate_limited``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from ..protocol.errors import LadderError
from ..protocol.frames import Bye, ClientFrame, Numbered
from ..protocol.session import Phase
from .config import Settings
from .ratelimit import Bucket, Rate, told
from .refusals import Refusals
from .session import Session
from .sessions import SessionTable

QUIET: Final = 0.1
"""Seconds after answering a refusal past the rate during which further ones get no word."""


class Throttle:
    """The message rate of every session of a node (each session keeps its own bucket)."""

    __slots__ = ("rate", "refused", "sessions", "settings")

    def __init__(self, settings: Settings, sessions: SessionTable, refused: Refusals) -> None:
        self.settings = settings
        self.sessions = sessions
        self.refused = refused
        self.rate = Rate(settings.limits.message_rate, settings.limits.message_burst)

    def frame(self, session: Session, frame: ClientFrame, now: float, transport: str) -> ClientFrame | None:
        """Apply the session's message rate to a frame about to be offered. Returns the frame,
        or None to stop reading the batch.

        A rate limit never consumes a reliable message: a numbered message over the limit is
        not applied, not acknowledged and its id not used up. It is answered with an
        unsequenced ``err`` ``rate_limited`` naming it (``re``) and ``retry_after``; the rest
        of its batch is not read (the client sends it all again, from that id, once it waited).
        Any other frame over the limit gets the same ``err`` without ``re``, and ends the batch
        too (a POST of 75,000 pings was answered with as many errors, and never ended).
        """
        if not self.rate.enabled or type(frame) is Bye:
            # (a batch's first ack does not come here: Inbound applies it first; a bye ends
            # the session, which costs less than keeping it: never refused, or a client that
            # closed after a burst would leave its session to the TTL)
            return frame
        if session.state.phase is Phase.CLOSED:
            return None  # ended (for flooding, say): what its socket still brings is dropped
        retry_after = self._wait(session, now, frame.i if isinstance(frame, Numbered) else None)
        if not retry_after:
            return frame
        told = self._told(session, now)
        if isinstance(frame, Numbered):
            bucket = session.bucket
            if told and bucket is not None and bucket.refused_message != frame.i:
                # A message after one refused and not written again yet: the client writes
                # that one and every one after it again, so it needs no word of this one (a
                # flood of messages answered one by one took 200 MB and stalled others). The
                # lowest refused is always answered: a paced client waits for nothing else.
                return None
            limited = LadderError(
                "rate_limited", f"message {frame.i} not applied: send it again", retry_after=retry_after
            )
            if not told:
                self.refused(transport, limited, session=session)
            session.state.send_control({"t": "err", **limited.body(), "re": frame.i})
            return None
        if told:
            return None  # a ping or pong sent while told to wait: dropped without a word
        limited = LadderError("rate_limited", retry_after=retry_after)
        self.refused(transport, limited, session=session)
        session.state.send_control({"t": "err", **limited.body()})
        return None

    def read(self, session: Session, rest: Iterator[object] | None, now: float, transport: str) -> None:
        """A batch was read: to its end (``rest`` None), or up to a frame refused past the
        rate (``rest``: what was not read after it; see :meth:`Bucket.read`). A session
        that kept sending while told to wait (``flood_patience``) is ended now. (Asked at
        each refusal, a client that came back as told could be ended for the next message
        of its batch, before it was known to have come back.)"""
        bucket = session.bucket
        if bucket is None or session.state.phase is Phase.CLOSED:
            return
        bucket.read(None if rest is None else sum(1 for _ in rest), now)
        if bucket.abusive(self.rate, now, self.settings.limits.flood_patience):
            flooding = LadderError("rate_limited", "persistent flooding")
            self.refused(transport, flooding, session=session, ending=True)
            self.sessions.close(session, flooding)

    @staticmethod
    def _told(session: Session, now: float) -> bool:
        """Whether a refusal past the rate was answered less than :data:`QUIET` ago: then one
        more is dropped (or, for a message, answered) without a log line. A flood read in one
        turn of the loop shares one ``now``, so the bucket's own wait, a fraction of a
        millisecond, could not say that: each junk frame was answered and logged."""
        bucket = session.bucket
        if bucket is None or now - bucket.answered_at >= QUIET:
            if bucket is not None:
                bucket.answered_at = now
            return False
        return True

    def _wait(self, session: Session, now: float, message: int | None = None) -> float:
        """Take a token: 0.0 (go on), or the seconds to wait, as told to the client."""
        rate = self.rate
        bucket = session.bucket
        if bucket is None:
            bucket = session.bucket = Bucket(rate, now)
        wait = bucket.take(rate, now, message)
        return told(wait) if wait else 0.0
