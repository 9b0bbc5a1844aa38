"""The connection loop: race, adopt, read until the transport ends, reconnect (the core's
:class:`~ladder.protocol.client.Reconnect` says when, and when to give up)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence

from ..protocol.client import Reconnect, after_race, after_transport
from ..protocol.errors import LadderError
from .options import check_timeout
from .race import AllRungsFailed, race
from .switching import Switching
from .transports.base import TransportClosed

log = logging.getLogger("ladder.client")


class Connection(Switching):
    """The one task per client that keeps it connected."""

    async def connect(self, timeout: float | None = None) -> None:
        """Start connecting; return once connected (while the client reconnects: once it
        is connected again).

        Raises ``connect_failed`` (listing each rung's reason) when the first connection
        could not be made within ``connect_timeout``, or not within ``timeout`` seconds (the
        client then keeps trying until ``connect_timeout``; ``close()`` it to stop), the
        server's refusal when retrying cannot help (``unauthorized``,
        ``origin_not_allowed``; ``unsupported_transport`` once the server refused every rung
        of ``transports`` as not offered, naming those it offers), ``timeout`` once
        ``max_attempts`` ran out.
        """
        check_timeout(timeout, "for connect_timeout alone")
        if self.state == "closed":
            raise self._fatal or LadderError("closed", "this client was closed")
        self._in_its_loop()
        loop = asyncio.get_running_loop()
        if self._run_task is None:
            # No HTTP client yet: the race starts with the WebSocket at once, and the HTTP
            # client (~50 ms of imports, plus the CA bundle for https) is built when the
            # first HTTP rung is due, if one ever is.
            self._connected = loop.create_future()
            self._run_task = loop.create_task(self._run(), name="ladder-client")
        assert self._connected is not None
        if self.state != "connected":
            if self._connected.done():  # (connected before: wait for the next connection)
                self._connected = loop.create_future()
            try:
                async with asyncio.timeout(timeout):
                    await asyncio.shield(self._connected)
            except TimeoutError:
                if self._connected.done():
                    raise
                raise self._unreachable(f"within {timeout:g} s") from None

    async def _run(self) -> None:
        try:
            await self._connection_loop()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must not leave callers waiting forever
            log.exception("the connection loop failed")
            self._give_up(LadderError("internal", f"the client's connection loop failed: {exc!r}"))
        if self.state == "closed" and not self._closed_by_app and self._own_http and self._http is not None:
            # Given up (nobody may call close() after a failed ``async with``): release the pool.
            http, self._http = self._http, None
            await http.aclose()

    async def _connection_loop(self) -> None:
        loop = asyncio.get_running_loop()
        reconnect = Reconnect(
            base=self.backoff_base * 1000,
            cap=self.backoff_max * 1000,
            connect_timeout=None if self.connect_timeout is None else self.connect_timeout * 1000,
            max_attempts=self.max_attempts,
            at_deadline="give_up",  # a script: connect() raises, its caller decides what next
            stable_after=self.policy.stable_after,
        )
        while self.state != "closed":
            self._set_state("connecting")
            refusals: dict[str, TransportClosed] = {}
            self._racing = refusals
            if self._race_token is not None:  # (asked once per race, by its first rung)
                self._race_token.cancel()
            self._race_token = None
            deadline = reconnect.started(loop.time() * 1000)
            try:
                async with asyncio.timeout_at(None if deadline is None else deadline / 1000):
                    conn, failed = await race(
                        self.policy.candidates(),
                        self._reopen,
                        self.stagger,
                        on_loser=self._discard,
                        failures=refusals,
                        token_refreshable=self._refreshable,
                    )
            except TimeoutError:  # the first connect's deadline passed during the race
                self._note(refusals)
                if reconnect.expired() == "give_up":
                    self._give_up(self._unreachable(f"within {self.connect_timeout:g} s"))
                return
            except AllRungsFailed as exc:
                self._note(exc.failures)
                errors = exc.errors()
                outcome = after_race([e.code for e in errors], won=False, token_refreshable=self._refreshable)
                if outcome == "give_up":
                    self._give_up(self._fatal_of(errors))
                    return
                stranded = self.policy.stranded()
                if stranded is not None:  # (no rung left to try: a user's mistake, not the network)
                    self._give_up(LadderError("unsupported_transport", stranded))
                    return
                if outcome == "new_session":
                    gone = next(e for e in errors if after_transport("refusal", e.code) == "new_session")
                    self._session_gone(f"{gone.code}: {gone.reason}")
                    continue
                step = reconnect.failed(loop.time() * 1000, random.random())
                log.warning("connecting to %s failed (attempt %d): %s", self.url, reconnect.failures, exc)
                if step.get("give_up") == "timeout":
                    tried = f"could not connect after {reconnect.failures} attempts: {exc}"
                    self._give_up(LadderError("timeout", tried))
                    return
                failures = reconnect.failures
                self._set_state("disconnected", f"{failures} attempt{'s' * (failures > 1)} failed: {exc}")
                if "give_up" in step:  # (disconnected meanwhile: §9.10, as the browser client is)
                    await asyncio.sleep(max(0.0, step["at"] / 1000 - loop.time()))
                    self._give_up(self._unreachable(f"within {self.connect_timeout:g} s"))
                    return
                await asyncio.sleep(step["wait"] / 1000)
                continue
            heard = [e.error for e in refusals.values() if e.error is not None]
            codes = [e.code for e in heard]
            if after_race(codes, won=True, token_refreshable=self._refreshable) == "give_up":
                await self._discard(conn)
                self._give_up(self._fatal_of(heard))
                return
            reconnect.welcomed()  # any welcome forgives: the next node may be a good one
            reason = "; ".join(failed.get(rung, "") for rung in self.policy.candidates() if rung in failed)
            self._note(refusals)  # (after: a rung the server does not offer leaves the candidates)
            self._adopt(conn, reason or "connected")
            conn, opened, ended, action = await self._pump(conn)  # (conn: the one that ended)
            lived, worked = loop.time() - opened, self._heard - opened
            await self._lost(conn, ended)
            if self.state == "closed":
                return
            self._last_end = ended
            if action != "resume_now":
                step_down = self.policy.dropped(conn.name, lived, ended, worked, action)
                if step_down is not None:
                    self._step_reason = self._last_end = step_down
            await asyncio.sleep(reconnect.ended(action, random.random(), lived * 1000) / 1000)

    def _note(self, failures: dict[str, TransportClosed]) -> None:
        """Remember why each rung failed, for the error of a first connect that gives up, and
        tell the ladder of the rungs the server does not offer."""
        for rung, exc in failures.items():
            self._reasons[rung] = exc.reason
            if exc.error is not None and exc.error.code == "unsupported_transport":
                self.policy.not_offered(rung, exc.error.details)

    def _unreachable(self, within: str) -> LadderError:
        """``connect_failed``: the first connection could not be made, with every rung's reason."""
        latest = {**self._reasons, **{rung: exc.reason for rung, exc in self._racing.items()}}
        token = self._race_token
        asking = token is not None and not token.done()
        silent = "still waiting for the client's token function" if asking else "no answer"
        reasons = [latest.get(rung) or f"{rung}: {silent}" for rung in self.policy.candidates()]
        return LadderError(
            "connect_failed", f"could not connect to {self.url} {within}: {'; '.join(reasons)}"
        )

    def _fatal_of(self, errors: Sequence[LadderError]) -> LadderError:
        """The refusal among ``errors`` that retrying cannot fix (the core's tables decide)."""
        return next(
            e
            for e in errors
            if after_transport("refusal", e.code, token_refreshable=self._refreshable) == "give_up"
        )
