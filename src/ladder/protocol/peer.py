"""The client side of a session, with no I/O: the mirror image of :mod:`.session`.

It numbers the client's messages (``i``) and keeps them until the server acknowledges
them, so a message written into a dying transport is written again on the next one; and
it drops any server frame (``s``) it has already handed to the application. A welcome
tells it where the server stands: on a resumed session it continues from the server's
acknowledgement; on a new session (the old one expired) every message still unconfirmed
is renumbered and sent to the new session, in the same order. The hello that opens that
new session names the lost one (``psid``, ``prt``) and which of its messages are carried
(``pids``), so the server can tell those the lost session already applied, and whose user it
was (``pu``, from its welcome's ``u``), so that a session of another user refuses them even
once the server has forgotten the lost one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from .errors import LadderError
from .frames import MAX_TOKEN, PROTOCOL_VERSION, format_ids
from .reliable import Inbox, Outbox, OutboxOverflow

Frame = dict[str, Any]


def carried(frame: Frame) -> bool:
    """Whether an unacknowledged message moves to a new session: everything but ``sub`` and
    ``unsub``, which the client renews itself (resubscribing from where each channel was)."""
    return frame.get("t") not in ("sub", "unsub")


MAX_QUEUE: Final = 1000
"""Messages a client keeps while unacknowledged or offline, by default (a full queue refuses
the next one)."""


class PeerState:
    """Client bookkeeping for one logical connection (across sessions and transports)."""

    def __init__(
        self,
        *,
        max_queue: int = MAX_QUEUE,
        window: int = 100_000,
        carry: Callable[[Frame], bool] = carried,
    ) -> None:
        self.sid: str | None = None
        self.token: str | None = None
        self.carry = carry
        """Which unacknowledged messages move to a new session (the rest are dropped)."""
        self.lost: tuple[str, str] | None = None
        """The session lost last (id, resume token), until a new one is adopted."""
        self.user: str | None = None
        """The current session's user as a hello says it (its welcome's ``u``, ``""`` for an
        anonymous one; None: no session welcomed yet)."""
        self.lost_user: str | None = None
        """The lost session's user, said in the next hello as ``pu`` (None: not known)."""
        self.inbox: Inbox[Frame] = Inbox(window=window)
        self.outbox: Outbox[Frame] = Outbox(max_items=max_queue, max_bytes=2**62)
        self.cursor = 0
        """Highest message id written on the current transport."""
        self.acked_out = 0
        """Highest server sequence number the server has been told we have."""
        self.unacked_bytes = 0
        """Bytes received since the last ack (or welcome): the server keeps them until acked."""

    # -- opening --------------------------------------------------------------------------

    def hello(self, token: str | None = None, why: str | None = None) -> Frame:
        """The hello for a new transport: resumes the session when there is one.

        ``why`` says in one word why this transport is being opened (for server metrics).
        """
        frame: Frame = {"t": "hello", "v": PROTOCOL_VERSION}
        if why is not None:
            frame["why"] = why
        if self.sid is not None:
            frame["sid"] = self.sid
            frame["rt"] = self.token
            frame["ack"] = self.inbox.applied
        elif self.lost is not None:
            carried = [number for number, item in self.outbox.after(0) if self.carry(item)]
            if carried:
                frame["psid"], frame["prt"] = self.lost
                frame["pids"] = format_ids(carried)
                if self.lost_user is not None and len(self.lost_user) <= MAX_TOKEN:
                    frame["pu"] = self.lost_user  # (a longer id: the server decides by what it knows)
        if token is not None:
            frame["tok"] = token
        return frame

    def welcome(
        self, welcome: Frame, keep: Callable[[Frame], bool] | None = None
    ) -> list[tuple[int, int]] | None:
        """Adopt a welcome. Returns None for a resumed session, or for a new one the
        ``(old id, new id)`` pairs of the messages carried over (``keep``, by default
        :attr:`carry`, filters them).
        """
        keep = keep or self.carry
        self.unacked_bytes = 0
        self.user = "" if welcome.get("u") is None else str(welcome["u"])
        if welcome.get("sid") == self.sid and welcome.get("resumed"):
            ack = int(welcome.get("ack", 0))
            if ack > self.outbox.last:
                raise LadderError("bad_frame", f"server acknowledged {ack} of {self.outbox.last} messages")
            self.outbox.ack(ack)
            self.cursor = ack
            self.acked_out = self.inbox.applied
            return None
        self.sid = str(welcome["sid"])
        self.token = str(welcome["rt"])
        self.lost = None
        self.lost_user = None
        self.inbox.reset()
        self.acked_out = 0
        self.cursor = 0
        moved: list[tuple[int, int]] = []
        first_old = self.outbox.acked + 1
        for offset, frame in enumerate(self.outbox.renumber()):
            if keep(frame):
                old = first_old + offset
                frame["i"] = self.outbox.push(frame)
                moved.append((old, frame["i"]))
        return moved

    def forget_session(self) -> None:
        """The session is gone for good; the next hello starts a new one (naming this one)."""
        if self.sid is not None and self.token is not None:
            self.lost = (self.sid, self.token)
            self.lost_user = self.user
        self.sid = None
        self.token = None
        self.user = None

    # -- outbound -------------------------------------------------------------------------

    def submit(self, frame: Frame, *, bounded: bool = True) -> int:
        """Number a message and keep it until acknowledged; ``queue_full`` past the bound.

        ``bounded=False`` is for the subscriptions a new session renews: the carried messages
        may fill the queue, and refusing the renewal would end a subscription nobody left.
        """
        try:
            frame["i"] = self.outbox.last + 1
            self.outbox.push(frame, bounded=bounded)
        except OutboxOverflow:
            raise LadderError(
                "queue_full",
                f"{len(self.outbox)} messages are waiting to be sent or acknowledged (the client's "
                "max_queue / maxQueue): wait until they are acknowledged (flush() waits for that) or "
                "raise the bound",
            ) from None
        return int(frame["i"])

    def unsent(self) -> list[Frame]:
        """Messages not yet written on the current transport, oldest first."""
        items = self.outbox.after(self.cursor)
        if items:
            self.cursor = items[-1][0]
        return [frame for _, frame in items]

    def on_ack(self, upto: int) -> None:
        """The server applied every message up to ``upto``."""
        self.outbox.ack(min(upto, self.outbox.last))

    # -- inbound --------------------------------------------------------------------------

    def receive(self, frame: Frame) -> list[Frame]:
        """A sequenced frame: the frames now deliverable, in order (repeats dropped)."""
        return self.inbox.offer(int(frame["s"]), frame)

    def ack_frame(self, *, every: int = 1) -> Frame | None:
        """An ack to send, once at least ``every`` frames arrived since the last one."""
        applied = self.inbox.applied
        if applied - self.acked_out >= every and applied > self.acked_out:
            self.acked_out = applied
            self.unacked_bytes = 0
            return {"t": "ack", "s": applied}
        return None
