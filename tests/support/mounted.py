"""The test hub mounted under a sub-path of a Starlette app, as a user would do it."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from tests.support.apps import hub


async def homepage(request: object) -> PlainTextResponse:
    return PlainTextResponse("the app's own page")


app = Starlette(
    routes=[Route("/", homepage), Mount("/api/realtime", app=hub)],
    lifespan=hub.lifespan,
)
