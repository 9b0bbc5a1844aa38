"""A failed upstream write: write it again, or drop the transport.

Over ``POST send`` the downstream (a stream or a poll) may well be alive, so nothing else
would notice a failed write: it is retried on the same transport after short pauses; after
the last one the rung counts as broken and the client reconnects (resending everything
unacknowledged). A write the server refused for now (``engine_unavailable``: the Redis
server keeping the session's records is down) proves the rung works: it is retried on the
same transport for as long as that lasts, the pause growing to :data:`REFUSED_CAP`, and the
stream is kept (dropping it would interrupt deliveries from the servers that answer, and
gain nothing). The server drops repeated message ids, so writing twice is safe. A
WebSocket write that fails means the socket is gone: the transport is dropped at once, as
it is for a refusal that retrying cannot fix or that says the session is gone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .ending import FATAL, SESSION_GONE

RETRY_DELAYS = (100.0, 400.0, 1000.0)
"""ms before each new attempt of a failed ``POST send`` (each times a draw from ``[0.75, 1]``)."""

REFUSED_CAP = 5000.0
"""ms: the longest pause before writing again what the server keeps refusing for now (past
:data:`RETRY_DELAYS`, the pause doubles up to this; the reconnect pauses' cap, §9.4)."""


class UpstreamRetry:
    """The retries of one transport's writes; a write that succeeds starts the count again."""

    def __init__(self, *, delays: Sequence[float] = RETRY_DELAYS) -> None:
        self.delays = list(delays)
        self.failures = 0
        self.unanswered = 0
        """Failures without the server's word (no refusal code): past the delays, the rung
        counts as broken."""

    def failed(
        self,
        separate_upstream: bool,
        code: str | None,
        rand: float,
        too_large: int | None = None,
        alone: bool = False,
        *,
        retry_after: float | None = None,
    ) -> dict[str, Any]:
        """A write failed (``code``: the server's refusal, if any): ``{"retry_in": ms}`` or
        ``{"drop": attempts}`` (give the transport up after that many attempts). A refusal
        for now (any code that neither gives up nor says the session is gone) never drops a
        separate upstream: the pause grows instead, up to :data:`REFUSED_CAP`.

        ``too_large``: the bytes of a ``POST send`` that something other than the server
        refused with HTTP 413 (a proxy's body limit, below the server's ``lim.post``), and
        ``alone`` whether it carried one message only. Written again as it was, it was
        refused again, on every rung and in every session: messages are written in POSTs of
        at most half as many bytes (``{"shrink": bytes, "retry_in": 0}``), and one message
        alone too large ends the client (``{"give_up": reason}``, naming the fix).

        ``retry_after``: ms the refusal said to wait (a POST over the address's request rate,
        ``429``): it is never written again sooner (every 100 ms, it kept the rate used up)."""
        if too_large is not None:
            if alone:
                return {
                    "give_up": f"a POST of {too_large} bytes (one message) was refused by something on "
                    "the way with HTTP 413, not by the server: raise that proxy's request body limit "
                    "(nginx: client_max_body_size) to the server's lim.post, or send smaller messages"
                }
            return {"shrink": max(1, too_large // 2), "retry_in": 0.0}
        self.failures += 1
        if not separate_upstream or (code is not None and (code in SESSION_GONE or code in FATAL)):
            return {"drop": self.failures}
        if code is None:
            self.unanswered += 1
            if self.unanswered > len(self.delays):
                return {"drop": self.failures}
        delays, n = self.delays, self.failures
        delay = delays[n - 1] if n <= len(delays) else min(delays[-1] * 2.0 ** (n - len(delays)), REFUSED_CAP)
        return {"retry_in": max(delay * (0.75 + 0.25 * rand), retry_after or 0.0)}

    def sent(self) -> None:
        self.failures = self.unanswered = 0
