"""WebSocket rung (the ``websockets`` library): one socket, frames both ways."""

from __future__ import annotations

from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from ...protocol.errors import LadderError
from .base import Frame, Transport, TransportClosed, connect_hint, no_endpoint, refusal, split_welcome


class WebSocketTransport(Transport):
    name = "websocket"
    pongs = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ws: ClientConnection | None = None

    async def open(self, hello: Frame, verify_timeout: float) -> Frame:
        endpoint = self.endpoint
        headers = dict(endpoint.headers)
        try:
            self._ws = await connect(
                endpoint.ws(),
                additional_headers=headers,
                ssl=endpoint.tls(),  # None for ws://; one shared context for wss://
                open_timeout=None,  # the race bounds the whole attempt
                ping_interval=None,  # Ladder's own pings carry the heartbeat
                close_timeout=1.0,
                max_size=None,
                compression=None,
                max_queue=None,
            )
        except InvalidStatus as exc:
            raise _upgrade_refused(endpoint.ws(), exc) from exc
        except (InvalidHandshake, OSError) as exc:
            hint = connect_hint(exc)
            raise TransportClosed(f"websocket: cannot connect to {endpoint.ws()} ({exc}){hint}") from exc
        await self.send([hello])
        welcome, rest = split_welcome(await self.recv(), self.name)
        self.welcome, self.pending = welcome, rest
        return welcome

    async def _recv(self) -> list[Frame]:
        assert self._ws is not None
        try:
            data = await self._ws.recv()
        except ConnectionClosed as exc:
            raise _closed(exc) from exc
        self.received += len(data)
        frames: list[Frame] = self.endpoint.codec.decode(data)
        return frames

    async def send(self, frames: list[Frame]) -> None:
        if self._ws is None:
            raise TransportClosed("websocket: not open")
        codec = self.endpoint.codec
        data = codec.join(codec.encode(frame) for frame in frames)
        try:
            await self._ws.send(data if codec.binary else data.decode())
        except ConnectionClosed as exc:
            raise _closed(exc) from exc

    async def close(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            try:
                await ws.close()
            except Exception:
                ws.transport.abort()


_GATEWAY = frozenset({502, 503, 504})
"""A proxy's own answers when the server behind it failed it (Bad Gateway, Service
Unavailable, Gateway Timeout); Ladder's own 503 carries its error body."""


def _upgrade_refused(url: str, exc: InvalidStatus) -> TransportClosed:
    """A refused upgrade: the server's own error when its body carries one (protocol §8)."""
    status = exc.response.status_code
    try:
        body = orjson.loads(exc.response.body or b"")
    except orjson.JSONDecodeError:
        body = None
    if status == 404:
        return TransportClosed(no_endpoint("websocket", url, status))
    if isinstance(body, dict) and "code" in body:
        return refusal(body, "websocket")
    if status in _GATEWAY:  # (not "refuses WebSockets": the operator looked at the wrong thing)
        return TransportClosed(
            f"websocket: upgrade answered HTTP {status} at {url}, not by Ladder: a proxy on the way "
            "could not reach a server behind it (is the server up and healthy?)"
        )
    return TransportClosed(
        f"websocket: upgrade refused at {url} (HTTP {status}, not from Ladder): no Ladder endpoint "
        "there, or something on the way refuses WebSockets"
    )


def _closed(exc: ConnectionClosed) -> TransportClosed:
    frame = exc.rcvd
    if frame is None:
        return TransportClosed("websocket: connection lost")
    reason = f"websocket: closed by the server ({frame.code} {frame.reason})".rstrip()
    if frame.code == 1001:  # going away: the server is shutting down (protocol §8)
        return TransportClosed(reason, LadderError("shutting_down", frame.reason or "server going away"))
    # A refusal (``code: reason``, protocol §8): the core's tables decide what follows, as
    # for an ``err`` (a node that cannot serve is backed off from; a lost session renewed)
    return TransportClosed(reason, None if frame.code == 1000 else LadderError.of_close(frame.reason))
