"""Error codes shared by server and clients.

Every refusal Ladder sends has a stable string ``code`` and a human ``reason``. The table
below is the single source of truth for how a code shows up on each transport: as an HTTP
status on the polling rungs and the handshake, and as a WebSocket close code. Clients switch
on ``code``; ``reason`` is for logs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    """How one error code travels: HTTP status, WebSocket close code, default reason."""

    code: str
    http_status: int
    ws_close: int
    reason: str
    fatal: bool
    """True when the session (or the connection attempt) cannot go on after this error."""


_SPECS = [
    # Input that cannot be understood. The session stays up when the frame had an id.
    ErrorSpec("bad_frame", 400, 4400, "malformed frame", False),
    ErrorSpec("unknown_frame", 400, 4400, "unknown frame type", False),
    ErrorSpec("bad_request", 400, 4400, "malformed request", True),
    ErrorSpec("frame_too_large", 413, 1009, "frame exceeds the size limit", True),
    ErrorSpec("unsupported_version", 400, 4400, "unsupported protocol version", True),
    ErrorSpec("unsupported_transport", 400, 4400, "transport not offered", True),
    # Who may do what.
    ErrorSpec("unauthorized", 401, 4401, "authentication failed", True),
    ErrorSpec("token_expired", 401, 4401, "credentials expired; refresh them or reconnect", True),
    ErrorSpec("forbidden", 403, 4403, "permission denied", False),
    ErrorSpec("origin_not_allowed", 403, 4403, "origin not allowed", True),
    ErrorSpec("bad_resume_token", 403, 4403, "resume token does not match the session", True),
    # Sessions.
    ErrorSpec("unknown_session", 404, 4404, "unknown or expired session", True),
    ErrorSpec("session_closed", 410, 4410, "session closed", True),
    ErrorSpec("slow_consumer", 410, 4408, "client fell too far behind; session dropped", True),
    ErrorSpec("heartbeat_timeout", 408, 4408, "no heartbeat from the client", True),
    ErrorSpec("session_moved", 409, 4409, "the session moved to another server; resume it", True),
    ErrorSpec("shutting_down", 503, 1001, "server is shutting down", True),
    # Limits.
    ErrorSpec("too_many_subscriptions", 400, 4429, "subscription limit reached", False),
    ErrorSpec("too_many_sessions", 429, 4429, "session limit reached", True),
    ErrorSpec("rate_limited", 429, 4429, "rate limit exceeded", False),
    ErrorSpec("too_far_ahead", 400, 4400, "message id too far ahead of the last applied one", False),
    # Application level.
    ErrorSpec("unknown_event", 404, 4404, "no handler for this event", False),
    ErrorSpec("handler_error", 500, 1011, "the event handler failed", False),
    ErrorSpec("not_subscribed", 400, 4400, "not subscribed to this channel", False),
    ErrorSpec("presence_disabled", 400, 4400, "presence is not enabled for this channel", False),
    ErrorSpec("engine_unavailable", 503, 1011, "message engine unavailable", False),
    # Transport plumbing.
    ErrorSpec("not_found", 404, 4404, "no such endpoint", True),
    ErrorSpec("method_not_allowed", 405, 4400, "method not allowed", True),
    ErrorSpec("internal", 500, 1011, "internal error", True),
    # Client-side only (never on the wire from a server).
    ErrorSpec("queue_full", 0, 0, "offline queue is full", False),
    ErrorSpec("timeout", 0, 0, "timed out", False),
    ErrorSpec("closed", 0, 0, "client is closed", False),
    ErrorSpec("connect_failed", 0, 0, "could not connect", False),
]

ERRORS: dict[str, ErrorSpec] = {spec.code: spec for spec in _SPECS}


def _a_wait(value: Any) -> bool:
    """Whether ``value`` can be a ``retry_after``: seconds, 0 or more, finite."""
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < math.inf


class LadderError(Exception):
    """An error with a wire code. Raised by the core, the server and handlers alike.

    Handlers may raise ``LadderError("forbidden", "not your room")`` (or any code of their
    own) and the caller of ``call`` gets exactly that code and reason back.
    """

    def __init__(
        self,
        code: str,
        reason: str | None = None,
        *,
        retry_after: float | None = None,
        details: Any = None,
    ) -> None:
        if not (isinstance(code, str) and code):
            raise ValueError(f"LadderError: code must be a non-empty string such as 'forbidden': {code!r}")
        if retry_after is not None and not _a_wait(retry_after):
            raise ValueError(f"LadderError: retry_after must be seconds, 0 or more, or None: {retry_after!r}")
        spec = ERRORS.get(code)
        self.code = code
        self.reason = reason or (spec.reason if spec else code)
        self.retry_after = retry_after
        self.details = details
        super().__init__(f"{self.code}: {self.reason}")

    @property
    def spec(self) -> ErrorSpec:
        """The table entry for this code (application codes map to a generic 400/4400)."""
        return ERRORS.get(self.code) or ErrorSpec(self.code, 400, 4400, self.reason, False)

    @property
    def http_status(self) -> int:
        """The HTTP status this error travels with on the polling rungs and the handshake."""
        return self.spec.http_status

    @property
    def ws_close(self) -> int:
        """The WebSocket close code when this error ends a socket."""
        return self.spec.ws_close

    @property
    def fatal(self) -> bool:
        """Whether the session (or the connection attempt) cannot go on after this error."""
        return self.spec.fatal

    def body(self) -> dict[str, Any]:
        """The error's wire fields (``code``, ``reason`` and, when set, ``retry_after`` and
        ``details``)."""
        out: dict[str, Any] = {"code": self.code, "reason": self.reason}
        if self.retry_after is not None:
            out["retry_after"] = self.retry_after
        if self.details is not None:
            out["details"] = self.details
        return out

    @property
    def close_reason(self) -> str:
        """The reason of a WebSocket the server closes for this error: ``code: reason``, within
        the 123 bytes a close frame holds. A client reads the code back (:meth:`of_close`): a
        close code alone (1011) does not say which refusal it was."""
        return f"{self.code}: {self.reason}".encode()[:123].decode("utf-8", "ignore")

    @classmethod
    def of_close(cls, reason: str) -> LadderError | None:
        """The error a server's close reason names (``code: reason``), or None."""
        code, sep, rest = reason.partition(": ")
        if not sep or not code or not all(c.islower() or c.isdigit() or c == "_" for c in code):
            return None
        return cls(code, rest)

    @classmethod
    def of(cls, frame: Mapping[str, Any]) -> LadderError:
        """An ``err`` frame (or an HTTP error body) as the error it carries, every wire field
        kept: a handler's ``details`` and a ``retry_after`` reach the caller (a wait that is
        none, negative or endless, is read as absent; no code as ``internal``)."""
        retry_after = frame.get("retry_after")
        return cls(
            str(frame.get("code") or "internal"),
            str(frame.get("reason", "")),
            retry_after=float(retry_after) if retry_after is not None and _a_wait(retry_after) else None,
            details=frame.get("details"),
        )
