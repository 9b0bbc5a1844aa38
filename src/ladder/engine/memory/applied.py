"""What each session applied, kept in this process's memory (sessions closed here, e.g. for
``slow_consumer``, are honoured by their successors the same way as across nodes)."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence

from ..base import AppliedRecord, token_digest

_Kept = tuple[bytes, int, dict[int, bytes] | None, tuple[str, ...] | None, float]
"""Per session: its token's digest, the highest id applied, kept answers, carried keys, and
when the record is forgotten (atoms only while nothing is kept: small)."""


class MemoryAppliedRecords:
    """The :class:`~ladder.engine.base.AppliedRecords` part of the memory engine."""

    def __init__(self, clock: Callable[[], float], touched: Callable[[float], None]) -> None:
        self._clock = clock
        self._touched = touched
        self._records: dict[str, _Kept] = {}

    def sweep(self, now: float) -> None:
        """Forget the records whose time ran out."""
        for sid, (*_, expires) in list(self._records.items()):
            if expires <= now:
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
        digest, replies, keys = (
            (kept[0], kept[2], kept[3]) if kept is not None else (token_digest(token), None, None)
        )
        if forget and replies:
            replies = {number: body for number, body in replies.items() if number not in forget} or None
        if reply is not None:
            replies = {**(replies or {}), reply[0]: reply[1]}
        if origins is not None:
            keys = tuple(origins)
        self._records[sid] = (digest, done, replies, keys, now + ttl)

    async def applied_record(self, sid: str, token: str) -> AppliedRecord | None:
        kept = self._records.get(sid)
        if kept is None or kept[4] <= self._clock() or not hmac.compare_digest(kept[0], token_digest(token)):
            return None
        _, done, replies, keys, _ = kept
        return AppliedRecord(done, dict(replies or {}), list(keys or ()))
