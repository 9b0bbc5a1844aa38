"""Which rungs to race, when to step down and what to probe: the ladder as bookkeeping.

The driver reports what happened (a race won, a connection that lived so long) and asks
what to do next. Times in ms.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

RUNGS = ("websocket", "sse", "longpoll", "poll")
"""Best first."""

WHY: tuple[tuple[str, str], ...] = (
    ("buffered", "buffered"),
    ("cut ", "cut"),
    ("heartbeat", "heartbeat"),
    ("nothing received", "heartbeat"),
    ("refused", "refused"),
    ("cannot connect", "refused"),
    ("not open after", "timeout"),
    ("no welcome", "timeout"),
    ("probe", "probe"),
    ("lost", "lost"),
    ("closed", "lost"),
    ("session ended", "lost"),
)
"""A reason's words → the one word a hello's ``why`` carries (first match wins)."""


def why(reason: str | None) -> str | None:
    """The ``why`` of the next hello from why the previous connection ended (None on the
    first connect). Probes say ``probe``; anything unrecognised is ``error``."""
    if reason is None:
        return None
    lowered = reason.lower()
    return next((word for needle, word in WHY if needle in lowered), "error")


UNHEARD: Final = "heartbeat_timeout"
"""The code of a connection the server closed for hearing nothing from the client, as its
reason carries it (``websocket: closed by the server (4408 heartbeat_timeout: ...)``)."""

STABLE_AFTER = 10_000.0
"""ms a connection must live to forgive the cuts before it (§9.2); the client's ``stable_after``."""
CUT_LIMIT = 3
"""Connections in a row cut sooner than that before the client steps down a rung (§9.2)."""

PROBE_WAIT_CAP: Final = 160_000.0
"""ms: the longest delay probes start with after steps down for cuts (a probe every 80-160 s)."""


class RungPolicy:
    """The ladder's state for one client: the floor it stands on and its recent cuts."""

    def __init__(
        self,
        rungs: Sequence[str],
        *,
        cut_limit: int = CUT_LIMIT,
        stable_after: float = STABLE_AFTER,
        start: str | None = None,
    ) -> None:
        if not rungs:
            raise ValueError("at least one transport is needed")
        self.rungs = [rung for rung in RUNGS if rung in rungs]
        self.cut_limit = cut_limit
        self.stable_after = stable_after
        self.floor = self.rungs.index(start) if start in self.rungs else 0
        self._cuts = dict.fromkeys(self.rungs, 0)
        self._stepped = dict.fromkeys(self.rungs, 0)
        """Times the client stepped down from each rung for its cuts since it last held there."""
        self._offered: list[str] | None = None
        """The rungs the server's last welcome offered (``tr``), when it said."""
        self._refused: set[str] = set()
        """Allowed rungs the server refused as not offered (``unsupported_transport``)."""
        self._told: list[str] | None = None
        """The rungs the last such refusal said the server offers (its ``details.tr``)."""

    def index(self, rung: str) -> int:
        return self.rungs.index(rung)

    @property
    def current(self) -> str:
        return self.rungs[self.floor]

    def candidates(self) -> list[str]:
        """Rungs to race on (re)connect: from the floor down, but none the server refused as
        not offered; when that leaves none, every allowed rung it did not refuse (none:
        :meth:`stranded`)."""
        below = [rung for rung in self.rungs[self.floor :] if rung not in self._refused]
        return below or [rung for rung in self.rungs if rung not in self._refused]

    def above(self, rung: str) -> list[str]:
        """Better rungs than ``rung``, best first: what a probe tries (of those the server
        offers, once a welcome said which; none it refused as not offered)."""
        offered = self._offered
        return [
            r
            for r in self.rungs[: self.index(rung)]
            if r not in self._refused and (offered is None or r in offered)
        ]

    def offered(self, rungs: Sequence[str]) -> None:
        """A welcome listed the rungs its server offers (``tr``): a probe does not try the
        others, which would be refused every time for as long as the client lives."""
        self._offered = list(rungs)
        self._refused.difference_update(rungs)

    def not_offered(self, rung: str, details: object = None) -> None:
        """``rung`` was refused with ``unsupported_transport``; ``details``: the refusal's, whose
        ``tr`` lists the rungs the server offers, when it says. No race or probe tries the
        rungs it does not offer until a welcome lists them."""
        self._refused.add(rung)
        offered = details.get("tr") if isinstance(details, dict) else None
        if isinstance(offered, list) and all(isinstance(r, str) for r in offered):
            self._told = list(offered)
            self._refused.update(r for r in self.rungs if r not in offered)

    def stranded(self) -> str | None:
        """Why to give up, when the server refused every rung this client allows as not
        offered (a user's mistake on one side or the other, which no retry mends), else None."""
        if any(rung not in self._refused for rung in self.rungs):
            return None
        allowed = ", ".join(self.rungs)
        fix = f"or offer {_one_of(self.rungs)} on the server"
        if self._told is None:
            return (
                f"this client allows only {allowed} (its transports option), which the server does "
                f"not offer (its transports setting): allow another rung in the client's transports, {fix}"
            )
        return (
            f"this client allows only {allowed} (its transports option) and the server offers only "
            f"{', '.join(self._told)} (its transports setting): allow {_one_of(self._told)} "
            f"in the client's transports, {fix}"
        )

    def won(self, rung: str) -> None:
        """A race (or a probe) was won on ``rung``: stand there."""
        self.floor = self.index(rung)

    def dropped(
        self, rung: str, lived: float, reason: str, heard: float | None = None, action: str | None = None
    ) -> str | None:
        """A connection on ``rung`` ended after ``lived`` ms; ``heard``: ms from its opening
        to the last thing it delivered; ``action``: what its end leads to (the core's
        ``after_transport``).

        Returns the reason for stepping down when this makes ``cut_limit`` short-lived
        connections in a row (a proxy cutting streams), or when the stream was found
        buffered (``reason`` itself), else None. One dropped for its
        silence worked only until it went quiet: a proxy that passes the welcome and then
        silently stops forwarding is a cut too (the watchdog's limit made it live 30 s).
        One the server ended with a refusal (``back_off``: ``engine_unavailable``,
        ``internal``, …) is not a cut: the rung carried the server's word, so what fails is
        the server, which a lower rung reaches no better (Redis down made every rung in turn
        look cut, down to short polling); the cuts before it stand. One the server closed
        for hearing nothing from the client (``heartbeat_timeout``) is a cut whatever it
        lived: the server had stopped hearing it two heartbeats before, while the client,
        hearing the server, saw nothing wrong (a proxy forwarding one way only).
        """
        position = self.index(rung)
        if why(reason) == "buffered" and position + 1 < len(self.rungs) and self.floor <= position:
            # As at the open: a stream found buffered is abandoned for the rung below, which
            # the probes leave for it once a new stream proves itself (§9.2, §9.3).
            self._cuts[rung] = 0
            self.floor = position + 1
            return reason
        if heard is not None and why(reason) == "heartbeat":
            lived = min(lived, heard)
        if UNHEARD in reason:
            lived = 0.0
        if lived >= self.stable_after:
            self._cuts[rung] = self._stepped[rung] = 0
            return None
        if action == "back_off":
            return None
        self._cuts[rung] += 1
        if self._cuts[rung] >= self.cut_limit and position + 1 < len(self.rungs) and self.floor <= position:
            self._cuts[rung] = 0
            self._stepped[rung] += 1
            self.floor = position + 1
            if UNHEARD in reason:  # (it lived longer: the server had stopped hearing it)
                return f"{rung}: cut {self.cut_limit} times in a row (last: {reason})"
            return (
                f"{rung}: cut {self.cut_limit} times in a row, each within "
                f"{self.stable_after / 1000:g} s of opening (last: {reason})"
            )
        return None

    def probe_wait(self, rung: str, first: float) -> float:
        """The delay ``d`` (ms) the probes from ``rung`` start with (the first is drawn from
        ``[d/2, d)``): ``first``, unless the client stepped down for its cuts from a rung a
        probe tries (any offered rung above ``rung``, not only the one just above: cut on
        WebSocket, a race can land two rungs lower when SSE fails). Then a probe would find
        that rung open (a proxy that cuts after a few seconds lets the welcome through) and
        climb straight back to be cut again: it waits ``stable_after`` doubled for each step
        down from the most stepped-down of those rungs since it last held, so the first probe
        comes no sooner than ``stable_after`` (up to :data:`PROBE_WAIT_CAP`)."""
        stepped = max((self._stepped[r] for r in self.above(rung)), default=0)
        if not stepped:
            return first
        return max(first, min(self.stable_after * 2.0**stepped, PROBE_WAIT_CAP))


def _one_of(rungs: Sequence[str]) -> str:
    return rungs[0] if len(rungs) == 1 else f"one of {', '.join(rungs)}"
