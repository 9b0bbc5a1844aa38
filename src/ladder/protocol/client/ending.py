"""What ends a transport or a race leads to: the same session, a new one, or giving up.

Two tables, read like the server's ``session.TRANSITIONS``: the code a transport ended
with (a ``bye`` from the server, or a refusal of any request on it: an upgrade, a poll, a
``POST send``) maps to one action. Anything not in a table is an ordinary failure: the
session is resumed on the next connection, after a pause that grows while the server keeps
refusing connections soon after their welcome (``back_off``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

Action = Literal["resume", "back_off", "resume_now", "new_session", "give_up"]
"""``resume``: reconnect after a short pause, resuming the session; ``back_off``: the same
after a refusal (the server was reached, and could not serve: ``engine_unavailable``,
``internal``), the pause growing while such connections keep ending soon after their welcome
(:meth:`~.backoff.Reconnect.ended`); ``resume_now``: the same, with no pause (the server is
going away); ``new_session``: the server no longer has
the session, start a new one at once (carrying unacknowledged messages); ``give_up``: close
the client, fail every pending and later call with the code, do not reconnect."""

FATAL = frozenset({"unauthorized", "origin_not_allowed", "unsupported_version"})
"""Refusals that retrying cannot fix, on any request."""

SESSION_GONE = frozenset({"unknown_session", "session_closed", "slow_consumer", "bad_resume_token"})
"""Refusals meaning the server no longer has the session."""

ENDED_ON_PURPOSE = "session_closed"
"""The server ended the session on purpose (``hub.disconnect``): heard as a ``bye`` or, by a
client that was not listening then (a short poll), as the refusal of its next request; either
way the client gives up, without an error event."""

BYE: dict[str, Action] = {
    # The server ended the session on purpose (``hub.disconnect``): do not come back uninvited.
    "session_closed": "give_up",
    # Not the session's end: this server process is going away. Resume elsewhere, now.
    "shutting_down": "resume_now",
}
"""A ``bye`` by its code; any other code (``slow_consumer``, ``rate_limited``…) ended this
session only: start a new one."""

REFUSAL: dict[str, Action] = {
    **dict.fromkeys(FATAL, "give_up"),
    **dict.fromkeys(SESSION_GONE, "new_session"),
    ENDED_ON_PURPOSE: "give_up",
    "shutting_down": "resume_now",
    "token_expired": "resume",  # (a callable token is called again; a fixed one: give_up, below)
    # The server heard nothing from the client for two heartbeats: the connection failed the
    # client (a proxy forwarding only one way), not the server: a cut (RungPolicy.dropped).
    "heartbeat_timeout": "resume",
}
"""A refused request (HTTP status, WebSocket close code or ``err``) by its code."""


def after_transport(
    via: Literal["bye", "refusal", "close"], code: str | None = None, *, token_refreshable: bool = True
) -> Action:
    """How a connection that was established ended, and what follows.

    ``via``: ``bye`` (the server's frame; no code means ``session_closed``), ``refusal`` (a
    request on the transport was refused with ``code``; WebSocket close 1001 is
    ``shutting_down``), ``close`` (dropped, silent, cut or otherwise broken: no code).
    ``token_expired`` gives up when the token is fixed (retrying sends the same one), a
    ``bye`` with it as a refusal does: a new session with the same token is refused so.
    """
    if code == "token_expired" and not token_refreshable and via != "close":
        return "give_up"
    if via == "bye":
        return BYE.get(code or "session_closed", "new_session")
    if via == "refusal" and code is not None:
        return REFUSAL.get(code, "back_off")
    return "resume"


def gives_up(code: str | None, *, token_refreshable: bool = True) -> bool:
    """Whether a refusal with ``code``, on any rung of a race, ends the client: a fatal
    refusal, the session's end on purpose, or an expired token that cannot be refreshed.
    No other rung can help then, so the race stops at once (:class:`~.race.RaceSchedule`)."""
    return code is not None and (
        code in FATAL or code == ENDED_ON_PURPOSE or (code == "token_expired" and not token_refreshable)
    )


def after_race(
    codes: Sequence[str], *, won: bool, token_refreshable: bool = True
) -> Literal["adopt", "give_up", "new_session", "retry"]:
    """What a race leads to, from the server's refusal codes heard on any of its rungs.

    A refusal that :func:`gives_up` gives up even when another rung won (a page's
    same-origin ``GET`` may pass while its ``POST`` is refused). Otherwise a winner is
    adopted; with no winner, a session the server no longer has is replaced at once, anything
    else is retried with backoff (:class:`~.backoff.Reconnect`).
    """
    if any(gives_up(code, token_refreshable=token_refreshable) for code in codes):
        return "give_up"
    if won:
        return "adopt"
    if any(code in SESSION_GONE for code in codes):
        return "new_session"
    return "retry"


def answers_ping(rung: str) -> bool:
    """Only a WebSocket answers the server's ``ping`` with ``pong`` (any pending ack rides
    along); on SSE a ping is a heartbeat, and a POSTed pong would cost a request each time."""
    return rung == "websocket"
