"""Opening a rung: the transport objects, the hello, and closing the ones that lost."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import httpx

from ..protocol.client import why
from .inbound import Inbound
from .transports.base import Transport, TransportClosed
from .transports.polling import PollingTransport
from .transports.sse import SSETransport
from .transports.websocket import WebSocketTransport

log = logging.getLogger("ladder.client")


class Opening(Inbound):
    """Makes and opens transports."""

    def _http_client(self) -> httpx.AsyncClient:
        """The HTTP client of the HTTP rungs, built on first use (see :meth:`connect`)."""
        if self._http is None:
            # A non-bool ``verify`` reaches httpcore unchanged, and httpcore makes a TLS
            # context only for an https request: for http:// (None) none is ever built.
            verify: Any = self.endpoint.tls()
            self._http = httpx.AsyncClient(
                verify=verify,
                limits=httpx.Limits(max_connections=16, max_keepalive_connections=8),
                timeout=httpx.Timeout(10.0),
            )
        return self._http

    def _make(self, rung: str) -> Transport:
        applied = self._applied
        if rung == "websocket":
            return WebSocketTransport(self.endpoint, applied)
        if rung == "sse":
            return SSETransport(self.endpoint, applied, self._http_client())
        low, high = self.poll_interval
        return PollingTransport(
            self.endpoint,
            applied,
            self._http_client(),
            hold=rung == "longpoll",
            min_interval=low,
            max_interval=high,
            holding=self._holding,
        )

    def _applied(self) -> int:
        return self.peer.inbox.applied

    async def _open(self, rung: str, why: str | None = None, *, racing: bool = False) -> Transport:
        """Open ``rung``; ``racing``: as a rung of the current race, whose rungs share one
        answer of the token function (it may fetch the token: once per race, not per rung)."""
        try:  # (within open_timeout: a token function may fetch the token)
            async with asyncio.timeout(self.open_timeout):
                token = await (self._token_for_race() if racing else self._current_token())
        except TimeoutError:
            late = f"{rung}: the client's token function gave none within {self.open_timeout:g} s"
            raise TransportClosed(late) from None
        except Exception as exc:  # the app's callable: its connections fail saying so
            raise TransportClosed(f"{rung}: the client's token callable raised {exc!r}") from exc
        transport = self._make(rung)
        try:
            async with asyncio.timeout(self.open_timeout):
                await transport.open(self.peer.hello(token, why), self.verify_timeout)
        except TimeoutError:
            await transport.close()
            raise TransportClosed(f"{rung}: no welcome within {self.open_timeout:g} s") from None
        except BaseException:
            await transport.close()
            raise
        return transport

    async def _reopen(self, rung: str) -> Transport:
        """Open ``rung`` in a race, telling the server (in one word) why the last connection
        ended."""
        return await self._open(rung, why(self._last_end), racing=True)

    async def _token_for_race(self) -> str | None:
        if self._race_token is None:
            self._race_token = asyncio.ensure_future(self._current_token())
            self._race_token.add_done_callback(lambda done: done.cancelled() or done.exception())
        return await asyncio.shield(self._race_token)

    async def _discard(self, transport: Transport) -> None:
        """Close a transport that lost a race; end the session it created, if it made one."""
        if self.peer.sid is None or transport.welcome.get("sid") != self.peer.sid:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await transport.send([{"t": "bye"}])
        await transport.close()
