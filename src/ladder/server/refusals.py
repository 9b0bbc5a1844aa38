"""Refused input: counted by code and logged once, briefly (bad input is not a server fault)."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Final, Protocol

from ..protocol.errors import LadderError
from ..protocol.sids import label
from .http import UNTRUSTED_PROXY
from .metrics import Counters
from .session import Session

log = logging.getLogger("ladder")

_MAX_ORIGIN_WARNINGS: Final = 256
LOG_EVERY: Final = 0.1
"""Seconds: refusals of one session, or of one address before a session, are logged at most
this often."""
ADDRESSES_KEPT: Final = 4096
"""Addresses whose last logged refusal is remembered (the ones refused most recently)."""


class Damped(Protocol):
    """What the damping keeps per session (:class:`.Session`) or per address."""

    logged_at: float
    unlogged: int


class _Address:
    __slots__ = ("logged_at", "unlogged")

    def __init__(self) -> None:
        self.logged_at = -1.0e9
        self.unlogged = 0


class Refusals:
    """Counts and logs refusals; warns once per refused origin."""

    __slots__ = ("_addresses", "_allowed", "_clock", "_counters", "_warned")

    def __init__(
        self, counters: Counters, allowed_origins: tuple[str, ...] | None, clock: Callable[[], float]
    ) -> None:
        self._counters = counters
        self._allowed = allowed_origins
        self._clock = clock
        self._warned: set[str] = set()
        """Origins already warned about (at most ``_MAX_ORIGIN_WARNINGS``)."""
        self._addresses: OrderedDict[str, _Address] = OrderedDict()
        """Damping of refusals made before a session, per client address, least recently
        refused first (at most :data:`ADDRESSES_KEPT`)."""

    def __call__(
        self,
        transport: str,
        error: LadderError,
        *,
        session: Session | None = None,
        client: str | None = None,
        origin: str | None = None,
        own: str | None = None,
        ending: bool = False,
    ) -> None:
        """Log a refusal (never a traceback). A refused ``origin`` is also a WARNING, once
        per origin: it is more often a page of the application's own that
        ``allowed_origins`` forgot than an attack.

        A session's refusals of frames, which it goes on after, are logged at most once per
        :data:`LOG_EVERY`, the next line saying how many were not (a flood in batches had
        a line for each message too far ahead, 100 a second); one that ends the session
        (``ending``, or a fatal code) is always logged. Refusals made before a session
        (``client``: ``host:port``, or ``address via host:port``) follow the same rule per
        client address (a flood of requests had a line each, 1,600 in 0.8 s). Each is
        counted all the same."""
        self._counters.errors[error.code] += 1
        if session is None:
            who = client or "-"
            self._log(transport, error, who, self._address(who), ending=False)
        else:
            self._log(transport, error, label(session.sid), session, ending=ending or error.fatal)
        if origin is not None and error.code == "origin_not_allowed":
            self._warn_origin(origin, error.reason, own)

    def _address(self, who: str) -> _Address:
        """The damping of ``who``'s address (its port left out: each connection has another)."""
        address, via, _ = who.partition(" via ")
        key = address if via else who.rpartition(":")[0] or who
        addresses = self._addresses
        damped = addresses.get(key)
        if damped is None:
            damped = addresses[key] = _Address()
            if len(addresses) > ADDRESSES_KEPT:
                addresses.popitem(last=False)
        else:
            addresses.move_to_end(key)
        return damped

    def _log(self, transport: str, error: LadderError, who: str, damped: Damped, *, ending: bool) -> None:
        now = self._clock()
        if not ending and now - damped.logged_at < LOG_EVERY:
            damped.unlogged += 1
            return
        unlogged, damped.unlogged, damped.logged_at = damped.unlogged, 0, now
        if unlogged:
            log.info("refused on %s (%s): %s (and %d more not logged)", transport, who, error, unlogged)
        else:
            log.info("refused on %s (%s): %s", transport, who, error)

    def _warn_origin(self, origin: str, reason: str, own: str | None) -> None:
        seen = self._warned
        if origin in seen or len(seen) > _MAX_ORIGIN_WARNINGS:
            return
        seen.add(origin)
        if len(seen) > _MAX_ORIGIN_WARNINGS:
            log.warning("refused over %d origins: the others are logged at INFO only", _MAX_ORIGIN_WARNINGS)
            return
        if reason.endswith(UNTRUSTED_PROXY):  # the page is the server's own, behind a proxy
            log.warning("refused origin %s (origin_not_allowed): %s", origin[:200], UNTRUSTED_PROXY)
            return
        now: object = "same-origin only" if self._allowed is None else list(self._allowed)
        if self._allowed is None and own is not None:  # (a proxy that does not pass the Host)
            now = (
                f"same-origin only, and this request's Host made this server {own[:200]}: behind a "
                "proxy, pass the page's Host on (nginx: proxy_set_header Host $host)"
            )
        log.warning(
            "refused origin %s (origin_not_allowed): if that page is yours, add it to "
            "Ladder(allowed_origins=[...]) (now: %s)",
            origin[:200],
            now,
        )
