"""The test hub under ``/rt`` of a plain ASGI app (no routes to read, as in Django), with
``app.hub`` for ``ladder serve --native-ws-path``."""

from __future__ import annotations

from typing import Any

from tests.support.apps import hub


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    path = scope.get("path", "")
    if scope["type"] == "lifespan" or path.startswith("/rt/"):
        if scope["type"] != "lifespan":
            scope = {**scope, "root_path": scope.get("root_path", "") + "/rt"}
        await hub(scope, receive, send)
        return
    await send({"type": "http.response.start", "status": 404, "headers": []})
    await send({"type": "http.response.body", "body": b"not here"})


app.hub = hub  # type: ignore[attr-defined]
