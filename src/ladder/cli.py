"""Run a Ladder hub, or an ASGI app with a Ladder hub inside, under uvicorn.

ladder serve myapp:hub       serve the hub (or app) named module:attribute
ladder serve myapp:hub --workers 4 --engine redis://127.0.0.1:6379/0
                             four processes on one port (one per core)
ladder demo                  the demo chat on http://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import gc
import importlib
import importlib.machinery
import logging
import math
import platform
import sys
from typing import Any, Final, NoReturn

import uvicorn

from . import __version__
from .engine import create_engine
from .engine.memory import MemoryEngine
from .errors import ConfigurationError
from .server import native
from .server.descriptors import raise_limit
from .server.hub import Ladder, internals
from .server.logs import RedactTokens
from .server.native import NativeWebSocket
from .server.uvicorn_needs import parse_fallback, problem
from .server.workers import WORKER_TIMEOUT, Supervisor, bind, listen_failed, worker_socket, worker_socket_spec

GC_THRESHOLD = 50_000
"""``--gc-threshold``'s default: see :func:`tune_collector`."""


def load_app(spec: str) -> Any:
    """Import ``module:attribute`` (the attribute may be a dotted path)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        example = f"{module_name or 'myapp'}:hub"
        raise SystemExit(
            f"ladder serve: expected module:attribute, got {spec!r}: name the hub or the app in its "
            f"module, e.g. {example}"
        )
    sys.path.insert(0, ".")
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not module_name.startswith(exc.name):
            raise  # a module the app itself imports is missing: its traceback says which
        raise SystemExit(
            f"ladder serve: no module named {exc.name!r} (from {spec!r}): run it from the directory "
            "that holds the module, or check the name"
        ) from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise SystemExit(f"ladder serve: {module_name} has no attribute {part!r} (from {spec!r})")
        obj = getattr(obj, part)
    return obj


def find_hub(app: Any) -> Ladder | None:
    """The Ladder hub inside ``app`` (the app itself, or an ``app.hub`` attribute)."""
    if isinstance(app, Ladder):
        return app
    hub = getattr(app, "hub", None)
    return hub if isinstance(hub, Ladder) else None


def websocket_protocol(app: Any, hub: Ladder | None, args: argparse.Namespace) -> type[Any]:
    """Which uvicorn WebSocket implementation serves the app.

    The native driver serves Ladder's ws endpoint without ASGI (leaner and faster); it
    needs to know where that endpoint is: /ws when the hub is the app, or the path given
    with --native-ws-path when the hub is mounted inside an app.
    """
    from .server.serving import AsgiWebSocket  # noqa: PLC0415 - once uvicorn was checked (main)

    native_path = getattr(args, "native_ws_path", None)
    path = native_path or ("/ws" if app is hub else None)
    if hub is None or path is None or args.ws_deflate or getattr(args, "asgi_ws", False):
        return AsgiWebSocket
    NativeWebSocket.hub = hub
    NativeWebSocket.path = path
    if native_path:
        internals(hub).native_ws_path = path  # (told of once, when one comes elsewhere)
        _warn_middleware(app, path)
    return NativeWebSocket


def _check_ws_max_size(hub: Ladder, ws_max_size: int | None) -> None:
    """The hub's WebSockets go through uvicorn (``--asgi-ws``, ``--ws-deflate``, or a mounted
    hub without ``--native-ws-path``): a ``--ws-max-size`` below its ``max_frame_size`` closed
    every message between the two (1009) while the welcome told clients they could send it,
    and they resent it on every reconnect, for ever."""
    frame = hub.limits.max_frame_size
    if ws_max_size is not None and ws_max_size < frame:
        raise SystemExit(
            f"ladder serve: --ws-max-size {ws_max_size} is below the hub's max_frame_size ({frame}), "
            "which its clients are told they may send, and the hub's WebSockets go through uvicorn "
            f"here: pass --ws-max-size {frame} or more (or drop it), or lower Limits(max_frame_size=)"
        )


def _websocket_header_limits(max_header_size: int) -> None:
    """The ``websockets`` parser both WebSocket drivers read an upgrade with refused a header
    line over 8 KiB and more than 128 headers (431, in plain text), where every other
    request takes ``--max-header-size`` bytes of headers: a Bearer token of the 8,192
    characters a hello takes, or a site's large cookies, kept a client off the WebSocket."""
    import websockets.http11 as parser  # noqa: PLC0415 - once uvicorn was checked (main)

    parser.MAX_LINE_LENGTH = max(parser.MAX_LINE_LENGTH, max_header_size)
    parser.MAX_NUM_HEADERS = max(parser.MAX_NUM_HEADERS, max_header_size // 16)


def _warn_middleware(app: Any, path: str) -> None:
    """The native driver takes the hub's WebSockets before the app's ASGI middleware: a
    middleware that authenticates (or checks the Host) lets them through unseen. Said at
    start for the middleware an app lists (Starlette's and FastAPI's ``user_middleware``)."""
    listed = [getattr(m, "cls", m) for m in getattr(app, "user_middleware", None) or ()]
    if listed:
        names = ", ".join(getattr(cls, "__name__", repr(cls)) for cls in listed)
        logging.getLogger("ladder").warning(
            "--native-ws-path %s: WebSockets there are served before the app's middleware (%s), "
            "which does not see them; the hub's authenticate= and allowed_origins= apply. "
            "Use --asgi-ws instead if that middleware must see them",
            path,
            names,
        )


def check(app: Any, hub: Ladder | None, args: argparse.Namespace) -> None:
    """Refuse an ``app`` that cannot be served, and options that cannot apply to it, saying
    what would make them apply (uvicorn would fail at startup with a lifespan traceback)."""
    if getattr(args, "native_ws_path", None) is not None:
        if getattr(args, "asgi_ws", False) or args.ws_deflate:
            raise SystemExit(
                "ladder serve: --native-ws-path says where the native driver serves the hub's "
                "WebSockets, and --asgi-ws or --ws-deflate serves them through ASGI: drop one"
            )
        if hub is not None and app is hub:
            raise SystemExit(
                "ladder serve: --native-ws-path is for a hub mounted inside an app (module:app with "
                "app.hub); a hub served alone has its WebSockets at /ws: drop it"
            )
        from .server.servable import hub_mounts  # noqa: PLC0415

        mounts = [m or "/" for m in hub_mounts(app, hub)] if hub is not None else []
        if mounts and (args.native_ws_path.removesuffix("/ws") or "/") not in mounts:
            raise SystemExit(
                f"ladder serve: --native-ws-path {args.native_ws_path}, but {getattr(args, 'app', 'app')} "
                f"mounts the hub at {' and '.join(mounts)}: pass --native-ws-path {mounts[0].rstrip('/')}/ws"
            )
    if hub is not None:
        return
    spec = getattr(args, "app", "app")
    if not callable(app):
        raise SystemExit(
            f"ladder serve: {spec} is a {type(app).__name__}, not an ASGI app or a Ladder hub: name "
            "the hub (module:hub) or the ASGI app that serves it (module:app)"
        )
    needs_hub = [
        option
        for option, given in (
            (f"--workers {getattr(args, 'workers', 1)}", getattr(args, "workers", 1) != 1),
            ("--native-ws-path", getattr(args, "native_ws_path", None)),
            ("--engine", args.engine),
            ("--node-lease", getattr(args, "node_lease", None)),
        )
        if given
    ]
    if needs_hub:
        need = "needs" if len(needs_hub) == 1 else "need"
        raise SystemExit(
            f"ladder serve: {' and '.join(needs_hub)} {need} a Ladder hub, and {type(app).__name__} "
            f"{spec!r} is neither a Ladder hub nor has a `hub` attribute "
            "that is one: serve the hub itself (module:hub), or set `app.hub = hub`"
        )
    from .server.servable import not_asgi  # noqa: PLC0415

    wrong = not_asgi(app)
    if wrong is not None:
        raise SystemExit(
            f"ladder serve: {spec} is {wrong}, not an ASGI app or a Ladder hub: name the hub "
            "(module:hub) or the ASGI app that serves it (module:app)"
        )


def check_workers(hub: Ladder | None, args: argparse.Namespace) -> None:
    """Workers are separate processes: they serve one application only through a shared engine
    (and leases are kept by nodes of one: ``--node-lease``)."""
    workers = getattr(args, "workers", 1)
    lease = getattr(args, "node_lease", None) is not None
    if (workers == 1 and not lease) or hub is None:  # (without a hub, check() has refused)
        return
    engine = create_engine(args.engine) if args.engine else hub.engine
    if isinstance(engine, MemoryEngine) and workers == 1:
        raise SystemExit(
            "ladder serve: --node-lease applies to the Redis engine (the memory engine is one "
            "process: no node to declare dead). Remove it, or add --engine redis://host:6379/0"
        )
    if isinstance(engine, MemoryEngine):
        raise SystemExit(
            f"ladder serve: --workers {workers} needs the Redis engine: with the memory engine every "
            "worker would be a separate server (sessions, channels and history not shared). "
            "Add --engine redis://host:6379/0"
        )


def serve_workers(app: Any, args: argparse.Namespace, argv: list[str]) -> NoReturn:
    """The parent of ``--workers N``: check once, then start and supervise the workers."""
    hub = find_hub(app)
    check(app, hub, args)
    check_workers(hub, args)
    event_loop(announce=True)  # (said once, here: every worker runs the same)
    timeout = WORKER_TIMEOUT if args.worker_timeout is None else args.worker_timeout
    raise SystemExit(Supervisor(argv, args.host, args.port, args.workers, timeout).run())


def tune_collector(threshold: int) -> None:
    """Set the garbage collector up for a server process (see docs/ops.md, "Garbage collector").

    Everything loaded so far lives as long as the process: frozen, so that full passes do
    not walk it again and again. CPython starts a young collection when allocations less
    deallocations reach its threshold (700); with many requests held open (long polls,
    their tasks and coroutines, replaced as each is answered) that count barely moves while
    the young generation fills with live requests, and each collection walks tens of
    thousands of them. A higher threshold makes those passes rare; cyclic garbage waits
    for them, bounded by the same count.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(threshold, *gc.get_threshold()[1:])


def event_loop(*, announce: bool) -> str:
    """uvicorn's ``loop`` setting: uvloop where it is installed, else asyncio's own loop.

    uvicorn[standard] installs uvloop everywhere it runs, which is not Windows, Cygwin or
    PyPy; there, and wherever it is missing, the server runs the same on asyncio's loop, at
    more CPU per message. When ``announce``, one log line says which loop and why.
    """
    try:
        import uvloop  # noqa: F401, PLC0415
    except ImportError as exc:
        if announce:
            log = logging.getLogger("ladder")
            where = uvloop_unsupported()
            if where is not None:
                log.info("event loop: asyncio's own (uvloop does not run on %s)", where)
            else:
                log.warning(
                    "event loop: asyncio's own, as uvloop cannot be imported (%s): the server works "
                    "the same at more CPU per message; `pip install uvloop` for the faster loop",
                    exc,
                )
        return "asyncio"
    return "uvloop"


def uvloop_unsupported() -> str | None:
    """The platform uvloop does not run on (where uvicorn[standard] leaves it out), or None."""
    if sys.platform in ("win32", "cygwin"):
        return "Windows" if sys.platform == "win32" else "Cygwin"
    if platform.python_implementation() == "PyPy":
        return "PyPy"
    return None


def run(app: Any, args: argparse.Namespace) -> None:
    from .server.servable import checked_factory  # noqa: PLC0415
    from .server.serving import AsgiWebSocket, GracefulServer, HeaderTimeoutHttp  # noqa: PLC0415 - see main

    hub = find_hub(app)
    check(app, hub, args)
    app = checked_factory(app, getattr(args, "app", "app"))
    check_workers(hub, args)
    if args.engine and hub is not None:
        hub.engine = create_engine(args.engine)
    if getattr(args, "node_lease", None) is not None and hub is not None:
        hub.node_lease = args.node_lease
    ws = websocket_protocol(app, hub, args)
    if hub is not None and ws is not NativeWebSocket:
        _check_ws_max_size(hub, args.ws_max_size)
    HeaderTimeoutHttp.header_timeout = args.header_timeout
    HeaderTimeoutHttp.max_header_size = args.max_header_size
    _websocket_header_limits(args.max_header_size)
    HeaderTimeoutHttp.hub = hub
    fallback = parse_fallback()
    HeaderTimeoutHttp.quiet_parse = fallback is None
    if fallback is not None:
        logging.getLogger("ladder").warning("%s", fallback)
    if hub is not None:
        AsgiWebSocket.frame_timeout = hub.limits.frame_timeout
    ws_max_size = args.ws_max_size or (hub.limits.max_frame_size if hub is not None else 16 * 1024 * 1024)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        loop=event_loop(announce=getattr(args, "workers", 1) == 1),
        http=HeaderTimeoutHttp,
        ws=ws,
        ws_max_size=ws_max_size,
        ws_per_message_deflate=args.ws_deflate,
        ws_ping_interval=None,  # Ladder sends its own heartbeats, visible to browser code
        log_level=args.log_level,
        access_log=args.access_log,
        lifespan="on",
        timeout_keep_alive=75,
        # A hub served alone reads X-Forwarded-For itself, on every rung and only with
        # Limits(trust_forwarded_for=True); uvicorn's reading (for loopback peers, by default)
        # would apply it to the HTTP rungs without it. An app keeps uvicorn's, for its routes.
        proxy_headers=app is not hub,
    )
    for name in ("uvicorn.access", "uvicorn.error"):  # (the latter logs refused WebSocket paths)
        logging.getLogger(name).addFilter(RedactTokens())  # after uvicorn set up its logging
    tune_collector(args.gc_threshold)
    # A worker of --workers N serves the shared port (see server/workers.py); a process of
    # its own binds first, so that an address in use is one line naming the fix.
    sock = worker_socket(args.host, args.port) if getattr(args, "workers", 1) > 1 else None
    alone = sock is None
    if sock is None:
        try:
            sock = bind(args.host, args.port, reuse_port=False)
        except OSError as exc:
            raise listen_failed(args.command, args.host, args.port, exc) from exc
    GracefulServer(config, hub, announce=alone).run(sockets=[sock])


def _common(parser: argparse.ArgumentParser, *, demo: bool) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument(
        "--port", type=_port, default=8000, help="port to listen on (default: 8000; 0: any free one)"
    )
    parser.add_argument(
        "--engine",
        default=None,
        help="memory:// (one process), redis://host:port/db (several), redis://h1:port,h2:port/db "
        "(several Redis servers) or redis+cluster://h1:port,h2:port (a Redis Cluster); "
        "default: the hub's own",
    )
    # The demo's WebSockets always go through ASGI: its network panel refuses and cuts them.
    driver = "" if demo else "; WebSockets then go through uvicorn's ASGI driver, not the native one"
    parser.add_argument(
        "--ws-deflate",
        action="store_true",
        help=f"negotiate WebSocket permessage-deflate (off by default: it costs CPU on fan-out){driver}",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="least severe log level shown (default: info)",
    )
    parser.add_argument(
        "--access-log",
        action="store_true",
        help="log every HTTP request (tok=, rt=, prt= and pu= values are redacted)",
    )
    parser.add_argument(
        "--header-timeout",
        type=_seconds,
        default=10.0,
        help="seconds a connection may take to send a request's headers before it is closed (default: 10)",
    )
    parser.add_argument(
        "--max-header-size",
        type=_header_bytes,
        default=65536,
        help="bytes of request line and headers a request may have, else 431 (default: 65536)",
    )
    parser.add_argument(
        "--gc-threshold",
        type=_positive,
        default=GC_THRESHOLD,
        help=f"young-generation threshold of Python's garbage collector (default: {GC_THRESHOLD:,}; "
        "Python's own is 700, see docs/ops.md)",
    )
    if demo:
        return
    parser.add_argument(
        "--ws-max-size",
        type=_positive,
        default=None,
        help="largest WebSocket message uvicorn reads for the app's own sockets and --asgi-ws "
        "(default: the hub's max_frame_size, refused with close 1009 as soon as the header announces more; "
        "not below max_frame_size where uvicorn reads the hub's WebSockets)",
    )
    parser.add_argument(
        "--native-ws-path",
        type=_ws_path,
        default=None,
        help="path of the hub's ws endpoint when the hub is mounted inside an app (e.g. /ladder/ws); "
        "the app must have a `hub` attribute",
    )
    parser.add_argument(
        "--asgi-ws",
        action="store_true",
        help="serve Ladder's WebSockets through ASGI instead of the native driver",
    )


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, got {text!r}")
    return value


def _worker_timeout(text: str) -> float:
    value = _seconds(text)
    if not 1 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"must be from 1 to 3600 seconds, got {text!r}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a port number, got {text!r}") from None
    if not 0 <= value <= 65535:  # (uvicorn took 99999 as 34463, and 65536 as any free port)
        raise argparse.ArgumentTypeError(f"must be from 0 to 65535, got {value}")
    return value


def _ws_path(text: str) -> str:
    if not (text.startswith("/") and text.endswith("/ws")):
        raise argparse.ArgumentTypeError(
            f"must be the path of the hub's ws endpoint, its mount path and /ws (e.g. /ladder/ws), "
            f"got {text!r}"
        )
    return text


def _header_bytes(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of bytes, got {text!r}") from None
    if value > _MOST:
        raise argparse.ArgumentTypeError(f"must be at most {_MOST:,}, got {value:,}")
    if value < SMALLEST_HEADERS:
        raise argparse.ArgumentTypeError(
            f"must be at least {SMALLEST_HEADERS} (a request line and its Host header need more), got {value}"
        )
    return value


SMALLEST_HEADERS: Final = 1024


def _positive(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    if value > _MOST:  # (the collector's threshold is a C int: larger ended in a traceback)
        raise argparse.ArgumentTypeError(f"must be at most {_MOST:,}, got {value:,}")
    return value


_MOST: Final = 2**31 - 1


def build() -> str:
    """"compiled" when the hot paths are C extensions (the wheels built with mypyc), else
    "pure Python" (a build from source, or a platform without compiled wheels)."""
    compiled = (native.__file__ or "").endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
    return "compiled" if compiled else "pure Python"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ladder", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"ladder {__version__} ({build()})")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{serve,demo}")
    serve = commands.add_parser(
        "serve",
        help="serve a Ladder hub, or an ASGI app with a `hub` attribute (module:attribute)",
        description="Serve a Ladder hub, or an ASGI app with a `hub` attribute, under uvicorn.",
    )
    serve.add_argument("app", help="module:attribute, e.g. myapp:hub or myapp:app")
    _common(serve, demo=False)
    serve.add_argument(
        "--node-lease",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="seconds a node may go without refreshing its lease (paused, or its event loop blocked) "
        "before another node may declare it dead and its sessions lost (default: the hub's, 10; "
        "0.5 to 3600; the Redis engine only)",
    )
    serve.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="processes serving the one port, each a node of the cluster (default: 1); "
        "more than one needs the Redis engine (--engine redis://...)",
    )
    serve.add_argument(
        "--worker-timeout",
        type=_worker_timeout,
        default=None,
        metavar="SECONDS",
        help=f"with --workers: a worker silent this long (paused, or its event loop blocked) is killed "
        f"and started again (default: {WORKER_TIMEOUT:g}; 1 to 3600)",
    )
    demo = commands.add_parser(
        "demo",
        help="the demo chat on http://127.0.0.1:8000",
        description="Run the demo chat (open it in two browser windows).",
    )
    _common(demo, demo=True)
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        args.ws_max_size = None
    workers = getattr(args, "workers", 1) > 1
    if getattr(args, "worker_timeout", None) is not None and not workers:
        raise SystemExit(
            "ladder serve: --worker-timeout applies to --workers N (N of 2 or more): one process has "
            "no parent watching it; add --workers 2 (on the Redis engine) or drop --worker-timeout"
        )
    logging.basicConfig(
        level=args.log_level.upper(),
        format=f"%(asctime)s %(levelname)s {'[%(process)d] ' if workers else ''}%(name)s: %(message)s",
    )
    if logging.getLogger().level > logging.DEBUG:
        # The websockets library logs every connection's opening ("connection open") at INFO:
        # at thousands of connections, the whole log. Its warnings and errors still show.
        logging.getLogger("websockets.server").setLevel(logging.WARNING)
    raised = raise_limit()  # (before any worker starts: they inherit it)
    if raised is not None:
        logging.getLogger("ladder").info(
            "file-descriptor limit raised from %d to %d (as high as the hard limit allows): "
            "each connection holds one",
            *raised,
        )
    unfit = problem()  # (before the app is imported: uvicorn's classes are needed only to serve it)
    if unfit is not None:
        raise SystemExit(f"ladder {args.command}: {unfit}")
    try:
        if args.command == "serve":
            app = load_app(args.app)
            if workers and worker_socket_spec() is None:
                serve_workers(app, args, argv)
            run(app, args)
        else:
            from .demo.app import app  # noqa: PLC0415

            run(app, args)
    except ConfigurationError as exc:  # (an --engine URL, say): the setting and the fix, no traceback
        raise SystemExit(f"ladder {args.command}: {exc}") from None
    except KeyboardInterrupt:
        # uvicorn re-raises the Ctrl-C it handled once the server has stopped cleanly.
        pass


if __name__ == "__main__":  # pragma: no cover
    main()
