"""``ladder serve module:attr`` and ``ladder demo``: run a hub under uvicorn."""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import sys
from typing import Any

import uvicorn

from .engine import create_engine
from .server.hub import Ladder
from .server.native import NativeWebSocket


def load_app(spec: str) -> Any:
    """Import ``module:attribute`` (the attribute may be a dotted path)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise SystemExit(f"expected module:attribute, got {spec!r}")
    sys.path.insert(0, ".")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def find_hub(app: Any) -> Ladder | None:
    """The Ladder hub inside ``app`` (the app itself, or an ``app.hub`` attribute)."""
    if isinstance(app, Ladder):
        return app
    hub = getattr(app, "hub", None)
    return hub if isinstance(hub, Ladder) else None


def websocket_protocol(app: Any, hub: Ladder | None, args: argparse.Namespace) -> str:
    """Which uvicorn WebSocket implementation serves the app.

    The native driver serves Ladder's ``ws`` endpoint without ASGI (leaner and faster); it
    needs to know where that endpoint is: ``/ws`` when the hub is the app, or the path given
    with ``--native-ws-path`` when the hub is mounted inside an app.
    """
    path = args.native_ws_path or ("/ws" if app is hub else None)
    if hub is None or path is None or args.ws_deflate or args.asgi_ws:
        return "websockets-sansio"
    NativeWebSocket.hub = hub
    NativeWebSocket.path = path
    return "ladder.server.native:NativeWebSocket"


def run(app: Any, args: argparse.Namespace) -> None:
    hub = find_hub(app)
    if args.engine:
        if hub is None:
            raise SystemExit("--engine needs the app to be a Ladder hub (or to have a .hub)")
        hub.engine = create_engine(args.engine)
    # Everything loaded so far lives as long as the process: keep it out of the garbage
    # collector's full passes, which otherwise walk it again and again under load.
    gc.collect()
    gc.freeze()
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        ws=websocket_protocol(app, hub, args),
        ws_per_message_deflate=args.ws_deflate,
        ws_ping_interval=None,  # Ladder sends its own heartbeats, visible to browser code
        log_level=args.log_level,
        access_log=args.access_log,
        lifespan="on",
        timeout_keep_alive=75,
    )


def _common(parser: argparse.ArgumentParser, port: int) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=port)
    parser.add_argument("--engine", default=None, help="memory:// (default) or redis://host:port/db")
    parser.add_argument(
        "--ws-deflate",
        action="store_true",
        help="negotiate WebSocket permessage-deflate (off by default: it costs CPU on fan-out)",
    )
    parser.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    parser.add_argument("--access-log", action="store_true", help="log every HTTP request")
    parser.add_argument(
        "--native-ws-path",
        default=None,
        help="path of the hub's ws endpoint when the hub is mounted inside an app (e.g. /ladder/ws)",
    )
    parser.add_argument(
        "--asgi-ws", action="store_true", help="serve WebSockets through ASGI instead of the native driver"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="ladder", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve an ASGI app or Ladder hub (module:attribute)")
    serve.add_argument("app", help="module:attribute, e.g. myapp:hub")
    _common(serve, 8000)
    demo = commands.add_parser("demo", help="the demo chat on http://127.0.0.1:8000")
    _common(demo, 8000)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.command == "serve":
        run(load_app(args.app), args)
    else:
        from .demo.app import app  # noqa: PLC0415

        run(app, args)


if __name__ == "__main__":  # pragma: no cover
    main()
