"""The test hub mounted under a sub-path of a Starlette app, as a user would do it."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.websockets import WebSocket

from tests.support.apps import hub


async def homepage(request: object) -> PlainTextResponse:
    return PlainTextResponse("the app's own page")


async def echo(websocket: WebSocket) -> None:
    """The app's own WebSocket endpoint, beside the hub's."""
    await websocket.accept()
    await websocket.send_text("echo: " + await websocket.receive_text())
    await websocket.close()


app = Starlette(
    routes=[Route("/", homepage), WebSocketRoute("/echo", echo), Mount("/api/realtime", app=hub)],
    lifespan=hub.lifespan,
)
app.hub = hub  # type: ignore[attr-defined]  # what `ladder serve --native-ws-path` looks for
