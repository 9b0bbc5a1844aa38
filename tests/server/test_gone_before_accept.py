"""A WebSocket whose client went away before the server accepted it is not an error.

The browser gives up an upgrade that takes too long (a black-holed rung, a network coming
back): when the server then accepts it, the ASGI server's ``send`` raises an ``OSError``
(uvicorn's ``ClientDisconnected``). That logged ``ERROR ladder: websocket handler failed``
with a traceback, once per such upgrade."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from ladder import Ladder


class ClientDisconnected(OSError):
    """What uvicorn raises from ``send`` once the client is gone (an ``OSError``, as ASGI asks)."""


async def test_an_upgrade_whose_client_left_is_logged_without_a_traceback(caplog: pytest.LogCaptureFixture) -> None:
    hub = Ladder()
    await hub.start()
    scope = {
        "type": "websocket",
        "path": "/ws",
        "query_string": b"",
        "headers": [(b"host", b"x")],
        "client": ("127.0.0.1", 1),
        "subprotocols": [],
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        raise ClientDisconnected()

    try:
        with caplog.at_level(logging.DEBUG, logger="ladder"):
            await hub(scope, receive, send)
    finally:
        await hub.stop()
    assert [m["type"] for m in sent] == ["websocket.accept"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert not [r for r in caplog.records if r.exc_info], "no traceback"
    assert "went away before its upgrade was accepted" in caplog.text
