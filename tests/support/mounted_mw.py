"""The test hub mounted in a Starlette app that lists a middleware (which the native
WebSocket driver's sockets never pass through)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.routing import Mount

from tests.support.apps import hub

app = Starlette(
    routes=[Mount("/rt", app=hub)],
    middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1"])],
    lifespan=hub.lifespan,
)
app.hub = hub  # type: ignore[attr-defined]
