"""The test hub (``tests.support.apps``) mounted at ``/ladder``, and a page for the browser at ``/``.

``ladder serve tests.hostile.app:app`` with ``LADDER_TEST_CONFIG``. The page only imports the
browser client the hub serves (``/ladder/client.js``) and exposes it as ``window.ladder``: the
tests drive it with ``page.evaluate``, so the page works unchanged through any proxy.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Mount, Route

from tests.support.apps import hub

PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Ladder through a hostile network</title></head>
<body>
<p id="status">loading the client…</p>
<script type="module">
  import * as ladder from "/ladder/client.js";
  window.ladder = ladder;
  document.querySelector("#status").textContent = "client loaded";
</script>
</body>
</html>
"""


async def page(request: Request) -> HTMLResponse:
    return HTMLResponse(PAGE, headers={"cache-control": "no-store"})


app = Starlette(routes=[Route("/", page), Mount("/ladder", app=hub)], lifespan=hub.lifespan)
app.hub = hub  # type: ignore[attr-defined]  # `ladder serve --engine` finds the hub here
