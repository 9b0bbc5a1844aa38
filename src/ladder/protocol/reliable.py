"""The two halves of a reliable, ordered stream over unreliable transports.

Both directions of a Ladder session use the same pair:

* :class:`Outbox` numbers what one side sends (1, 2, 3, ...) and keeps every item until
  the peer acknowledges it cumulatively. A new transport resumes from the peer's last
  acknowledgement, so anything lost in a dropped connection is sent again.
* :class:`Inbox` hands each number to the application exactly once and in order: repeats
  are dropped, early arrivals wait (within a bounded window) for the gap to fill. It tells
  *accepted* (handed out) from *done* (the application finished with it): a receiver that
  acknowledges only what is done never confirms a message it might still lose.

Server to client: the server's outbox numbers frames with ``s``; the client's inbox
dedupes them. Client to server: the client's outbox numbers messages with ``i``; the
server's inbox applies each once. No I/O, no clock: pure bookkeeping.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Generic, TypeVar

from .errors import LadderError

T = TypeVar("T")


class OutboxOverflow(Exception):
    """The peer has not acknowledged enough to make room (a slow or vanished consumer)."""


class Outbox(Generic[T]):
    """Numbered items kept until acknowledged. Bounded by count and by bytes."""

    __slots__ = ("_kept", "acked", "bytes", "last", "max_bytes", "max_items")

    def __init__(self, *, max_items: int, max_bytes: int) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.last = 0
        """Number of the newest item (0 before the first)."""
        self.acked = 0
        """Highest number the peer acknowledged; everything up to it is forgotten."""
        self.bytes = 0
        self._kept: list[Any] = []
        """Each unacknowledged item, then its size: one list for the session's life, emptied
        (56 bytes, no array) rather than dropped. A container made and dropped per
        acknowledgement outlives young collections (an acknowledgement comes up to a second
        later) and piles up in the collector's oldest generation, whose growth is what
        triggers a full collection; a second container would be one more object per
        session for each full collection to walk."""

    def __len__(self) -> int:
        return self.last - self.acked

    def push(self, item: T, size: int = 0, *, bounded: bool = True) -> int:
        """Number and keep ``item``; raises :class:`OutboxOverflow` past the bounds
        (``bounded=False``: kept anyway, for the few items the protocol itself must send).
        An item larger than ``max_bytes`` is kept when it is the only one: the bound is on
        what piles up unacknowledged, and one large publication must not drop every
        subscriber that reads it in time."""
        kept = self.last - self.acked
        if bounded and (kept >= self.max_items or (kept and self.bytes + size > self.max_bytes)):
            raise OutboxOverflow(f"{kept} unacknowledged items, {self.bytes} bytes")
        items = self._kept  # (two appends: no tuple made and dropped per item)
        items.append(item)
        items.append(size)
        self.bytes += size
        self.last += 1
        return self.last

    def room(
        self, sizes: Iterable[int], *, reserve: int = 0, reserve_bytes: int = 0, share: float = 1.0
    ) -> int:
        """How many of ``sizes`` (items about to be pushed in this order, after ``reserve``
        items of ``reserve_bytes`` in all) fit within ``share`` of what the bounds leave, as
        :meth:`push` counts (below 1, an item larger than the bytes left is no exception).

        A burst the server makes itself, at once (a subscription's missed publications, a
        history answer), is sized by it to fit: past the bounds it would end the session
        before the client could acknowledge any of it, and again in every session after;
        taking all that is left, the next publication would. The server asks for half: the
        client acknowledges once half is unacknowledged (protocol §9.7), and the other half
        takes what comes meanwhile."""
        kept = self.last - self.acked
        most_items = kept + (self.max_items - kept) * share
        most_bytes = self.bytes + (self.max_bytes - self.bytes) * share
        kept += reserve
        total = self.bytes + reserve_bytes
        fitting = 0
        for size in sizes:
            if kept >= most_items or ((kept or share < 1) and total + size > most_bytes):
                break
            kept += 1
            total += size
            fitting += 1
        return fitting

    def ack(self, upto: int) -> int:
        """Forget everything numbered ``upto`` or lower. Returns how many were dropped.

        Acknowledging beyond what was sent is a protocol violation by the peer.
        """
        if upto > self.last:
            raise LadderError("bad_frame", f"ack {upto} is beyond the last sent number {self.last}")
        dropped = upto - self.acked
        if dropped <= 0:
            return 0
        kept = self._kept
        if upto == self.last:
            kept.clear()
            self.bytes = 0
        else:
            end = 2 * dropped
            self.bytes -= sum(kept[1:end:2])
            del kept[:end]
        self.acked = upto
        return dropped

    def after(self, cursor: int, limit: int | None = None) -> list[tuple[int, T]]:
        """Items numbered above ``cursor`` (and above the ack), oldest first, at most ``limit``."""
        acked = self.acked
        start = cursor if cursor > acked else acked
        if start >= self.last or limit == 0:
            return []
        kept = self._kept
        if self.last - start == 1:  # the common case (one new frame): no slice, no zip
            return [(self.last, kept[-2])]
        skip = 2 * (start - acked)
        items: list[T] = kept[skip::2] if limit is None else kept[skip : skip + 2 * limit : 2]
        return list(zip(range(start + 1, self.last + 1), items, strict=False))  # limit may cut items

    def pending(self, cursor: int) -> int:
        """How many items above ``cursor`` have not been acknowledged yet."""
        return self.last - max(cursor, self.acked)

    def restore(self, acked: int, items: list[tuple[T, int]]) -> None:
        """Start over from a snapshot: ``acked`` confirmed, then ``items`` (with sizes) kept."""
        self.renumber()
        self.acked = self.last = acked
        for item, size in items:
            self.push(item, size)

    def kept(self) -> list[tuple[T, int]]:
        """Every kept item with its size, oldest first (to take a snapshot)."""
        kept = self._kept
        return list(zip(kept[::2], kept[1::2], strict=True))

    def renumber(self) -> list[T]:
        """Take every kept item out and restart numbering at 1 (for a brand-new session)."""
        items: list[T] = self._kept[::2]
        self._kept.clear()
        self.bytes = 0
        self.last = 0
        self.acked = 0
        return items


class Inbox(Generic[T]):
    """Applies numbered items once, in order, holding early arrivals in a bounded window.

    ``accepted`` counts what was handed out; ``done`` what the application finished. They
    differ while a handler is still running: only ``done`` may be acknowledged, and only
    ``done`` moves with a session to another process.
    """

    __slots__ = ("_early", "accepted", "done", "window")

    def __init__(self, *, window: int) -> None:
        self.window = window
        self.accepted = 0
        """Every number up to this one has been handed out; higher ones have not."""
        self.done = 0
        """Every number up to this one has been applied (see :meth:`finish`)."""
        self._early: dict[int, T] = {}

    @property
    def applied(self) -> int:
        """What was handed out (a receiver that applies at once, like a client, needs no more)."""
        return self.accepted

    def offer(self, number: int, item: T) -> list[T]:
        """Accept ``item`` numbered ``number``; return what is now ready, in order.

        A number already accepted is a repeat and yields nothing. A number too far ahead
        (beyond ``accepted + window``) is refused so a broken peer cannot grow memory.
        """
        if number <= self.accepted or number in self._early:
            return []
        if number > self.accepted + self.window:
            raise LadderError(
                "too_far_ahead",
                f"message {number} arrived while waiting for {self.accepted + 1}",
            )
        if number != self.accepted + 1:
            self._early[number] = item
            return []
        ready = [item]
        self.accepted = number
        early = self._early
        while early and (self.accepted + 1) in early:
            self.accepted += 1
            ready.append(early.pop(self.accepted))
        return ready

    def finish(self, number: int) -> None:
        """The application is done with ``number`` (items finish in the order handed out)."""
        if number != self.done + 1 or number > self.accepted:
            raise RuntimeError(f"finished {number} while {self.done} done and {self.accepted} accepted")
        self.done = number

    @property
    def waiting(self) -> int:
        """How many early items are held for a gap to fill."""
        return len(self._early)

    def restore(self, done: int) -> None:
        """Start over with every number up to ``done`` applied."""
        self.accepted = self.done = done
        self._early.clear()

    def reset(self) -> None:
        self.restore(0)
