"""Server-Sent Events rung: a streamed GET down (httpx), ``POST /send`` up."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx

from ...protocol.client import StreamProof
from ...protocol.codec import JSON
from .base import Frame, TransportClosed, split_welcome
from .http import HttpTransport, auth_headers, hello_query, refusal_of, unreachable


class SSETransport(HttpTransport):
    name = "sse"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._response: httpx.Response | None = None
        self._chunks: AsyncIterator[bytes] | None = None
        self._buffer = b""

    async def open(self, hello: Frame, verify_timeout: float) -> Frame:
        request = self.http.build_request(
            "GET",
            self.endpoint.http("sse"),
            params=hello_query(hello),
            headers={
                **auth_headers(self.endpoint, hello.get("rt"), hello.get("tok")),
                "accept": "text/event-stream",
            },
            timeout=httpx.Timeout(10.0, read=None),
        )
        try:
            response = await self.http.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise TransportClosed(unreachable("sse", self.endpoint.http("sse"), exc)) from exc
        self._response = response
        if response.status_code != 200:
            body = await response.aread()
            await self.close()
            raise refusal_of(response, body, self.name)
        if "text/event-stream" not in response.headers.get("content-type", ""):
            await self.close()
            raise TransportClosed("sse: the answer is not an event stream (a proxy in the way?)")
        self._chunks = response.aiter_raw()
        welcome, rest = split_welcome(await self._read(), self.name)
        self.adopt(welcome)
        self.welcome, self.pending = welcome, rest
        await self._verify(verify_timeout)
        return welcome

    async def _verify(self, timeout: float) -> None:
        """Ping up, and wait for the pong to come down the stream: proof nothing buffers it.

        Within ``timeout`` in all, and within the core's bound of the POST's answer
        (:class:`~ladder.protocol.client.StreamProof`): a pong that other traffic pushed
        through a buffer arrives before the timeout, but late."""
        loop = asyncio.get_running_loop()
        proof = StreamProof(strikes=1)
        nonce = secrets.randbelow(2**31)
        try:
            async with asyncio.timeout(timeout):
                proof.sent(nonce, loop.time() * 1000)
                await self.send([{"t": "ping", "n": nonce}])
                wait = proof.answered(nonce, loop.time() * 1000)
                deadline = loop.time() + (wait or 0.0) / 1000  # once: traffic does not restart it
                proven = False
                while not proven and wait is not None:
                    try:
                        async with asyncio.timeout_at(deadline):
                            frames = await self._read()
                    except TimeoutError:
                        if proof.expired(loop.time() * 1000) == "buffered":
                            raise TransportClosed(proof.reason(self.name)) from None
                        raise  # (a loop asleep past the bound: the overall timeout decides)
                    for frame in frames:
                        if frame.get("t") == "pong" and frame.get("n") == nonce:
                            if proof.pong(nonce, loop.time() * 1000) == "buffered":
                                raise TransportClosed(proof.reason(self.name))
                            proven = True  # keep the rest of this read: it is real traffic
                        else:
                            self.pending.append(frame)
        except TimeoutError:
            raise TransportClosed(
                f"sse: stream buffered by something on the way (no pong within {timeout:g} s)"
            ) from None

    async def _read(self) -> list[Frame]:
        """Read until at least one whole frame is in; parse every complete event.

        Blocks of comments (the padding prelude) or ``retry:`` lines carry no frame, and TCP
        may hand them over separately from what follows: keep reading past them.
        """
        assert self._chunks is not None
        while True:
            head, sep, rest = self._buffer.rpartition(b"\n\n")
            if sep:
                self._buffer = rest
                self.received += len(head)
                frames = self._parse(head)
                if frames:
                    return frames
            try:
                chunk = await anext(self._chunks)
            except StopAsyncIteration:
                raise TransportClosed("sse: stream ended") from None
            except httpx.HTTPError as exc:
                raise TransportClosed(f"sse: stream broken ({exc!r})") from exc
            if 0x0D in chunk:  # (b"\r" as an int: bytes "in" bytes raises and clears a TypeError first)
                chunk = chunk.replace(b"\r\n", b"\n")
            self._buffer += chunk

    @staticmethod
    def _parse(block: bytes) -> list[Frame]:
        frames: list[Frame] = []
        for event in block.split(b"\n\n"):
            data = [line[5:].lstrip(b" ") for line in event.split(b"\n") if line.startswith(b"data:")]
            if data:
                frames.extend(JSON.decode(b"\n".join(data)))
        return frames

    async def _recv(self) -> list[Frame]:
        if self._closed:
            raise TransportClosed("sse: closed")
        return await self._read()

    async def close(self) -> None:
        self._closed = True
        response, self._response = self._response, None
        if response is not None:
            with contextlib.suppress(Exception):
                await response.aclose()
