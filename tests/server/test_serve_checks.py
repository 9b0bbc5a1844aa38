"""``ladder serve``'s checks of an app and its options, before anything is served."""

from __future__ import annotations

import argparse

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from ladder import Ladder
from ladder.cli import check


def test_a_hub_mounted_at_the_root_is_named_as_slash_and_its_websockets_as_slash_ws() -> None:
    """Mounted at ``/``, the refusal of another path said "mounts the hub at : pass
    --native-ws-path /ws" (the mount's path with its slash stripped)."""
    hub = Ladder()
    app = Starlette(routes=[Mount("/", app=hub)])
    args = argparse.Namespace(app="main:app", native_ws_path="/api/ws", asgi_ws=False, ws_deflate=False)
    with pytest.raises(SystemExit) as refused:
        check(app, hub, args)
    assert "mounts the hub at /: pass --native-ws-path /ws" in str(refused.value), refused.value
    args.native_ws_path = "/ws"
    check(app, hub, args)  # the right path is taken
