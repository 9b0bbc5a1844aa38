"""A failed upstream write: write it again, or drop the transport.

Over ``POST send`` the downstream (a stream or a poll) may well be alive, so nothing else
would notice a failed write: it is retried on the same transport after short pauses; after
the last one the rung counts as broken and the client reconnects (resending everything
unacknowledged). The server drops repeated message ids, so writing twice is safe. A
WebSocket write that fails means the socket is gone: the transport is dropped at once, as
it is for a refusal that retrying cannot fix or that says the session is gone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .ending import FATAL, SESSION_GONE

RETRY_DELAYS = (100.0, 400.0, 1000.0)
"""ms before each new attempt of a failed ``POST send`` (each times a draw from ``[0.75, 1]``)."""


class UpstreamRetry:
    """The retries of one transport's writes; a write that succeeds starts the count again."""

    def __init__(self, *, delays: Sequence[float] = RETRY_DELAYS) -> None:
        self.delays = list(delays)
        self.failures = 0

    def failed(self, separate_upstream: bool, code: str | None, rand: float) -> dict[str, Any]:
        """A write failed (``code``: the server's refusal, if any): ``{"retry_in": ms}`` or
        ``{"drop": attempts}`` (give the transport up after that many attempts)."""
        self.failures += 1
        if (
            not separate_upstream
            or (code is not None and (code in SESSION_GONE or code in FATAL))
            or self.failures > len(self.delays)
        ):
            return {"drop": self.failures}
        return {"retry_in": self.delays[self.failures - 1] * (0.75 + 0.25 * rand)}

    def sent(self) -> None:
        self.failures = 0
