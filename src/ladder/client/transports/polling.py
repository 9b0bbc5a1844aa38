"""Polling rungs: ``GET /longpoll`` (held by the server) and ``GET /poll`` (answered at once).

Each GET carries the highest sequence number received (``ack``), so no ack frames are
needed and a lost response is simply sent again. Short polling adapts its pace: it asks
again at once after a send or an answer carrying messages, and backs off towards
``max_interval`` while idle (the core's :class:`~ladder.protocol.client.PollPace`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from ...protocol.client import LongPollHold, PollPace, poll_again_in
from .base import Frame, TransportClosed, split_welcome
from .http import HttpTransport, auth_headers, hello_query, refusal_of, unreachable


class PollingTransport(HttpTransport):
    streaming = False
    implicit_ack = True

    def __init__(
        self,
        *args: Any,
        hold: bool,
        min_interval: float = 0.05,
        max_interval: float = 2.0,
        holding: LongPollHold | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.holding = holding or LongPollHold()
        """How long a long poll asks to be held: the client's, shared by its transports."""
        self.name = "longpoll" if hold else "poll"
        self.hold = hold
        self.min_interval = min_interval
        self.max_interval = max_interval
        self.pace = PollPace(fastest=min_interval * 1000, slowest=max_interval * 1000)
        self.poll_timeout = 25.0
        self._nudge = asyncio.Event()

    async def _get(
        self, params: dict[str, Any], token: str | None, timeout: float, bearer: str | None = None
    ) -> list[Frame]:
        params = {**params, "enc": self.endpoint.codec.name}
        try:
            response = await self.http.get(
                self.endpoint.http(self.name),
                params=params,
                headers=auth_headers(self.endpoint, token, bearer),
                timeout=httpx.Timeout(10.0, read=timeout),
            )
        except httpx.HTTPError as exc:
            raise TransportClosed(unreachable(self.name, self.endpoint.http(self.name), exc)) from exc
        if response.status_code != 200:
            refused = refusal_of(response, response.content, self.name)
            if refused.error is None:
                refused.status = response.status_code
            raise refused
        return self.decode(response.content, response.headers.get("content-type"))

    async def open(self, hello: Frame, verify_timeout: float) -> Frame:
        frames = await self._get({**hello_query(hello), "open": 1}, hello.get("rt"), 10.0, hello.get("tok"))
        welcome, rest = split_welcome(frames, self.name)
        self.adopt(welcome)
        self.poll_timeout = float(welcome.get("poll", 25_000)) / 1000
        self.welcome, self.pending = welcome, rest
        return welcome

    async def _recv(self) -> list[Frame]:
        if self._closed:
            raise TransportClosed(f"{self.name}: closed")
        if not self.hold and not self._nudge.is_set():
            try:
                async with asyncio.timeout(self.pace.interval / 1000):
                    await self._nudge.wait()
            except TimeoutError:
                pass
        self._nudge.clear()
        timeout = self.poll_timeout + 10.0 if self.hold else 10.0
        waited = 0.0
        loop = asyncio.get_running_loop()
        while True:
            params: dict[str, Any] = {"sid": self.sid, "ack": self.applied()}
            if self.hold and self.holding.hold is not None:
                params["hold"] = int(self.holding.hold)
            asked = loop.time()
            try:
                frames = await self._get(params, self.token, timeout)
                break
            except TransportClosed as exc:  # (refused for the address's request rate: again)
                if self.hold and exc.status is not None:  # a proxy's answer: its timeout?
                    self.holding.cut((loop.time() - asked) * 1000, exc.status)
                error = exc.error
                after = None if error is None or error.retry_after is None else error.retry_after * 1000
                pause = poll_again_in(None if error is None else error.code, after, waited)
                if pause is None or self._closed:
                    raise
                waited += pause
                await asyncio.sleep(pause / 1000)
        self.pace.answered(frames)  # only messages speed it up (the core's PollPace)
        return frames

    def wake(self) -> None:
        self.pace.woken()
        self._nudge.set()

    async def close(self) -> None:
        self._closed = True
        self._nudge.set()
