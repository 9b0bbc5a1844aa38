"""What each session applied, kept in this process's memory (sessions closed here, e.g. for
``slow_consumer``, are honoured by their successors the same way as across nodes)."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping, Sequence

from ..base import AppliedRecord, token_digest

_Kept = tuple[bytes, int, "tuple[str, ...] | None", float, int]
"""Per session, a tuple of atoms: its token's digest, the highest id applied, carried keys
(or None), when the record is forgotten, and the id it began with. It is replaced at every
call and lives until the session's next one (seconds, for a user of a chat app): the
collector untracks such a tuple at its first pass over it, so it is never promoted to the
oldest generation."""


class MemoryAppliedRecords:
    """The :class:`~ladder.engine.base.AppliedRecords` part of the memory engine."""

    records_at_once = True
    records_in_process = True
    """Records here are read only by successors of this process's sessions: the hub writes
    a session's record when the session ends (:meth:`record_session_now`), not after each
    message, since nothing can read it sooner."""

    def __init__(self, clock: Callable[[], float], touched: Callable[[float], None]) -> None:
        self._clock = clock
        self._touched = touched
        self._records: dict[str, _Kept] = {}
        self._replies: dict[str, dict[int, bytes]] = {}
        """Per session, the kept answers by message id: changed in place (a call adds one,
        an acknowledgement takes those it covered), so a call costs the same with 32 answers
        unacknowledged as with none; a dict of ints and bytes is never tracked by the collector."""

    def sweep(self, now: float) -> None:
        """Forget the records whose time ran out, oldest first: each call moves its record
        to the end of ``_records``, so with one ``ttl`` for all (the hub's) they are in the
        order they expire, and the sweep stops at the first one still due later."""
        records, expired = self._records, []
        for sid, kept in records.items():
            if kept[3] > now:
                break
            expired.append(sid)
        for sid in expired:
            del records[sid]
            self._replies.pop(sid, None)

    async def record_applied(
        self,
        sid: str,
        token: str,
        *,
        done: int,
        replies: Mapping[int, bytes],
        forget: Sequence[int],
        origins: Sequence[str] | None,
        ttl: float,
    ) -> None:
        self.record_applied_now(
            sid, token, done=done, replies=replies, forget=forget, origins=origins, ttl=ttl
        )

    def record_applied_now(
        self,
        sid: str,
        token: str,
        *,
        done: int,
        replies: Mapping[int, bytes],
        forget: Sequence[int],
        origins: Sequence[str] | None,
        ttl: float,
    ) -> None:
        """:meth:`record_applied` as a plain call (the hub's drain then makes no coroutine)."""
        now = self._clock()
        self._touched(now)
        kept = self._records.pop(sid, None)  # (put back at the end: see sweep)
        if kept is None:
            digest, keys, since = token_digest(token), None, done
        else:
            digest, keys, since = kept[0], kept[2], kept[4]
        answers = self._replies.get(sid)
        if forget and answers:
            for number in forget:
                answers.pop(number, None)
            if not answers:  # (an emptied dict keeps its size: let it go)
                del self._replies[sid]
                answers = None
        if replies:
            if answers is None:
                answers = self._replies[sid] = {}
            answers.update(replies)
        if origins is not None:
            keys = tuple(origins)
        self._records[sid] = (digest, done, keys, now + ttl, since)

    def record_session_now(
        self,
        sid: str,
        token: str,
        *,
        done: int,
        replies: Mapping[int, bytes],
        origins: Sequence[str] | None,
        ttl: float,
    ) -> None:
        """The record of a session that ended, merged into what is kept of it: ``done`` never
        moves back (a message it was still applying may have been recorded meanwhile), and
        the record covers the session from its first message."""
        now = self._clock()
        self._touched(now)
        kept = self._records.pop(sid, None)  # (put back at the end: see sweep)
        if kept is None:
            digest, keys, since = token_digest(token), None, 1
        else:
            digest, keys, since = kept[0], kept[2], kept[4]
            done = max(done, kept[1])
        if replies:
            self._replies.setdefault(sid, {}).update(replies)
        if origins is not None:
            keys = tuple(origins)
        self._records[sid] = (digest, done, keys, now + ttl, since)

    async def applied_record(self, sid: str, token: str) -> AppliedRecord | None:
        kept = self._records.get(sid)
        if kept is None or kept[3] <= self._clock() or not hmac.compare_digest(kept[0], token_digest(token)):
            return None
        return AppliedRecord(kept[1], dict(self._replies.get(sid, ())), list(kept[2] or ()), kept[4])
