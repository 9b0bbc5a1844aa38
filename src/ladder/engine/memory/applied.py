"""What each session applied, kept in this process's memory (sessions closed here, e.g. for
``slow_consumer``, are honoured by their successors the same way as across nodes)."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from typing import Any, Final

from ..base import AppliedRecord, token_digest

_Kept = tuple[Any, ...]
"""Per session, one flat tuple: its token's digest, the highest id applied, carried keys (a
tuple, or None), when the record is forgotten, then each kept answer's id and encoding. A
record is replaced at every call and lives until the session's next one (seconds, for a user
of a chat app): a tuple of atoms is untracked by the collector's first pass over it, never
promoted to its oldest generation (a dict inside made the record one more tracked object
per call; a tuple inside, found after its holder, kept the holder tracked a pass longer)."""
_HEAD: Final = 4


class MemoryAppliedRecords:
    """The :class:`~ladder.engine.base.AppliedRecords` part of the memory engine."""

    def __init__(self, clock: Callable[[], float], touched: Callable[[float], None]) -> None:
        self._clock = clock
        self._touched = touched
        self._records: dict[str, _Kept] = {}

    def sweep(self, now: float) -> None:
        """Forget the records whose time ran out."""
        for sid, kept in list(self._records.items()):
            if kept[3] <= now:
                del self._records[sid]

    async def record_applied(
        self,
        sid: str,
        token: str,
        *,
        done: int,
        reply: tuple[int, bytes] | None,
        forget: Sequence[int],
        origins: Sequence[str] | None,
        ttl: float,
    ) -> None:
        now = self._clock()
        self._touched(now)
        kept = self._records.get(sid)
        replies: tuple[Any, ...]
        if kept is None:
            digest, keys, replies = token_digest(token), None, ()
        else:
            digest, keys, replies = kept[0], kept[2], kept[_HEAD:]
        if forget and replies:
            replies = tuple(
                part
                for number, body in zip(replies[::2], replies[1::2], strict=True)
                if number not in forget
                for part in (number, body)
            )
        if reply is not None:
            replies += reply
        if origins is not None:
            keys = tuple(origins)
        self._records[sid] = (digest, done, keys, now + ttl, *replies)

    async def applied_record(self, sid: str, token: str) -> AppliedRecord | None:
        kept = self._records.get(sid)
        if kept is None or kept[3] <= self._clock() or not hmac.compare_digest(kept[0], token_digest(token)):
            return None
        done, keys, replies = kept[1], kept[2], kept[_HEAD:]
        return AppliedRecord(done, dict(zip(replies[::2], replies[1::2], strict=True)), list(keys or ()))
