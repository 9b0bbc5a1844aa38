"""Sessions by the time their deadlines fall due, so a tick costs what is due, not what is held.

A hundred thousand idle sessions each need a look only when a heartbeat, a long poll or
their expiry falls due. The core says when (``SessionState.due``) and reports when that may
have moved earlier (``on_due``: a transport attached, or the last one detached); this heap
keeps one live entry per session and skips the stale ones it pops.
"""

from __future__ import annotations

import heapq
import itertools

from .session import Session


class _Entry:
    """A heap entry's hold on its session, let go when the entry goes stale: an entry stays
    in the heap until its time comes, and must not keep an ended session's memory alive
    until then (a heartbeat or a TTL may be minutes away)."""

    __slots__ = ("due", "session")

    def __init__(self, session: Session, due: float) -> None:
        self.session: Session | None = session
        self.due = due


class Timers:
    """A min-heap of (due, order, entry); ``_due`` holds each session's live entry."""

    __slots__ = ("_due", "_heap", "_order")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, _Entry]] = []
        self._due: dict[Session, _Entry] = {}
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self._due)

    def schedule(self, session: Session, extra: float | None = None) -> None:
        """Look at ``session`` again when its core is next due (or at ``extra``, if sooner:
        a deadline the core does not know, e.g. its credentials' expiry)."""
        due = session.state.due()
        if extra is not None and (due is None or extra < due):
            due = extra
        current = self._due.get(session)
        if current is not None:
            if current.due == due:
                return
            current.session = None  # stale from now on
        if due is None:
            self._due.pop(session, None)
            return
        entry = self._due[session] = _Entry(session, due)
        heapq.heappush(self._heap, (due, next(self._order), entry))

    def forget(self, session: Session) -> None:
        current = self._due.pop(session, None)
        if current is not None:
            current.session = None

    def pop_due(self, now: float) -> list[Session]:
        """The sessions due by ``now``, each once; they are unscheduled until scheduled again
        (a session scheduled again for a time already past waits for the next call)."""
        heap, live, due_now = self._heap, self._due, []
        while heap and heap[0][0] <= now:
            _, _, entry = heapq.heappop(heap)
            session = entry.session
            if session is not None:
                entry.session = None
                del live[session]
                due_now.append(session)
        if len(heap) > 2 * len(live) + 64:  # mostly stale entries: rebuild
            self._heap = [(entry.due, next(self._order), entry) for entry in live.values()]
            heapq.heapify(self._heap)
        return due_now
