"""``ladder serve`` and plain uvicorn around a hub: shutdown, logs, origins, the CLI itself."""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Generator
from pathlib import Path

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from ladder import LadderError, __version__
from ladder.cli import GC_THRESHOLD, build_parser
from ladder.client import Client
from tests.support.metrics import metric, wait_for_metric
from tests.support.redis import RedisServer
from tests.support.server import ROOT, LadderServer, child_env, free_port, stop_process, wait_for_port

FOREIGN = "http://evil.example"


def sse_frames(raw: bytes) -> list[dict[str, object]]:
    frames = []
    for block in raw.split(b"\n\n"):
        for line in block.split(b"\n"):
            if line.startswith(b"data: "):
                frames.append(orjson.loads(line[6:]))
    return frames


# -- graceful shutdown -----------------------------------------------------------------------


async def test_sigterm_ends_streams_and_long_polls_with_bye_shutting_down_and_exits(tmp_path: Path) -> None:
    server = LadderServer({"heartbeat": 20.0, "poll_timeout": 25.0}, log=tmp_path / "server.log")
    with server:
        assert server.proc is not None
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            opened = await http.get("/longpoll", params={"v": 1})
            welcome = orjson.loads(opened.content.split(b"\n")[0])
            poll_query = {"sid": welcome["sid"], "rt": welcome["rt"], "ack": 0}
            sse_open = asyncio.Event()
            sse_raw = b""

            async def stream() -> None:
                nonlocal sse_raw
                async with http.stream("GET", "/sse", params={"v": 1}) as response:
                    async for chunk in response.aiter_bytes():
                        sse_raw += chunk
                        if any(f.get("t") == "welcome" for f in sse_frames(sse_raw)):
                            sse_open.set()

            async def long_poll() -> bytes:
                response = await http.get("/longpoll", params=poll_query)
                return response.content

            sse = asyncio.create_task(stream())
            poll = asyncio.create_task(long_poll())
            await asyncio.wait_for(sse_open.wait(), 10)
            await wait_for_metric(http, server.url, "ladder_connections", 1, transport="longpoll")
            assert not poll.done()  # held (nothing to say for 25 s)
            started = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(sse, 10)  # the stream ended...
            polled = await asyncio.wait_for(poll, 10)
            returncode = await asyncio.to_thread(server.proc.wait, 10)
            elapsed = time.monotonic() - started
        byes = [f for f in sse_frames(sse_raw) if f.get("t") == "bye"]
        assert [b["code"] for b in byes] == ["shutting_down"], sse_raw[-300:]
        poll_byes = [orjson.loads(line) for line in polled.split(b"\n") if line]
        assert [f["code"] for f in poll_byes if f.get("t") == "bye"] == ["shutting_down"]
        assert returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it is done
        assert elapsed < 5.0, f"exited {elapsed:.1f} s after SIGTERM"  # it was > 60 s


async def test_sigterm_ends_a_long_poll_held_for_another_node(tmp_path: Path) -> None:
    """A long poll landing on a node that does not hold its session is forwarded to the owner
    and held here meanwhile; on SIGTERM it kept this process alive until the owner answered
    (up to ``poll_timeout``): it now ends at once with ``bye shutting_down``."""
    config = {"heartbeat": 20.0, "poll_timeout": 25.0}
    with RedisServer() as redis:
        owner = LadderServer(config, engine=redis.url, log=tmp_path / "owner.log")
        other = LadderServer(config, engine=redis.url, log=tmp_path / "other.log")
        with owner, other:
            assert other.proc is not None
            async with httpx.AsyncClient(timeout=30) as http:
                opened = await http.get(f"{owner.url}/longpoll", params={"v": 1})
                welcome = orjson.loads(opened.content.split(b"\n")[0])
                query = {"sid": welcome["sid"], "rt": welcome["rt"], "ack": 0}
                poll = asyncio.create_task(http.get(f"{other.url}/longpoll", params=query))
                # Forwarded and held at the owner (which has nothing to say for 25 s).
                await wait_for_metric(http, owner.url, "ladder_connections", 1, transport="longpoll")
                assert not poll.done()
                started = time.monotonic()
                other.proc.send_signal(signal.SIGTERM)
                polled = await asyncio.wait_for(poll, 30)
                await asyncio.to_thread(other.proc.wait, 30)
                elapsed = time.monotonic() - started
                frames = [orjson.loads(line) for line in polled.content.split(b"\n") if line]
                assert [f.get("code") for f in frames if f.get("t") == "bye"] == ["shutting_down"], frames
                assert elapsed < 5.0, f"exited {elapsed:.1f} s after SIGTERM"
                # The session lives on at its owner: the client polls again there.
                again = await http.get(f"{owner.url}/poll", params=query)
                assert again.status_code == 200


# -- logs ------------------------------------------------------------------------------------


class PlainUvicorn:
    """``uvicorn tests.support.apps:hub`` with uvicorn's default logging; stderr to a file."""

    def __init__(self, log: Path, config: dict[str, object] | None = None) -> None:
        self.port = free_port()
        self.log = log
        self.config = config or {}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> PlainUvicorn:
        env = child_env(LADDER_TEST_CONFIG=json.dumps(self.config))
        cmd = [sys.executable, "-m", "uvicorn", "tests.support.apps:hub", "--port", str(self.port)]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        wait_for_port(self.port, proc=self.proc)
        return self

    def __exit__(self, *exc: object) -> None:
        stop_process(self.proc)


async def _refusals(url: str) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        assert (await http.get("/poll", params={"v": 99})).json()["code"] == "unsupported_version"
        for _ in range(3):
            refused = await http.get("/poll", params={"v": 1}, headers={"origin": FOREIGN})
            assert refused.json()["code"] == "origin_not_allowed"
        assert (await http.get("/health")).status_code == 200  # a request after them: logged by now


def _check_ladder_lines(log: str) -> None:
    assert "refused on poll" in log and "unsupported_version" in log, log
    warnings = [line for line in log.splitlines() if "refused origin" in line]
    assert len(warnings) == 1, log  # once per origin, not once per request
    assert "WARNING" in warnings[0] and FOREIGN in warnings[0] and "allowed_origins" in warnings[0]


async def test_ladder_log_lines_show_under_plain_uvicorn(tmp_path: Path) -> None:
    log = tmp_path / "uvicorn.log"
    with PlainUvicorn(log) as server:
        await _refusals(server.url)
    _check_ladder_lines(log.read_text())


async def test_ladder_log_lines_show_under_ladder_serve(tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    with LadderServer({}, log=log, args=("--log-level", "info")) as server:
        await _refusals(server.url)
    _check_ladder_lines(log.read_text())


async def test_tokens_are_redacted_from_the_access_log(tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    with LadderServer({}, log=log, args=("--log-level", "info", "--access-log")) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            opened = await http.get("/poll", params={"v": 1, "tok": "SECRET-JWT"})
            welcome = orjson.loads(opened.content.split(b"\n")[0])
            await http.get("/poll", params={"sid": welcome["sid"], "rt": welcome["rt"], "tok": "SECRET-JWT"})
            async with http.stream(
                "GET", "/sse", params={"sid": welcome["sid"], "rt": welcome["rt"], "tok": "SECRET-JWT"}
            ) as response:
                async for _ in response.aiter_bytes():
                    break
            await http.get("/health")
    text = log.read_text()
    assert "GET /poll?" in text and "tok=[redacted]" in text and "rt=[redacted]" in text, text
    assert "SECRET-JWT" not in text
    assert welcome["rt"] not in text


# -- origins ---------------------------------------------------------------------------------


async def test_client_js_carries_cors_headers_for_allowed_origins_only(server: LadderServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        allowed = await http.get("/client.js", headers={"origin": "http://allowed.example"})
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "http://allowed.example"
        assert "Origin" in allowed.headers["vary"]
        types = await http.get("/client.d.ts", headers={"origin": "http://allowed.example"})
        assert types.headers["access-control-allow-origin"] == "http://allowed.example"
        foreign = await http.get("/client.js", headers={"origin": FOREIGN})
        assert foreign.status_code == 200  # a script anyone may read; only the CORS grant differs
        assert "access-control-allow-origin" not in foreign.headers
        plain = await http.get("/client.js")
        assert "access-control-allow-origin" not in plain.headers


async def test_health_answers_head_as_get_for_balancers_that_check_with_it(server: LadderServer) -> None:
    """HEAD was ``404 not_found`` (and logged as a refusal): a balancer checking with HEAD
    would have taken every node out."""
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        head = await http.head("/health")
        get = await http.get("/health")
    assert head.status_code == get.status_code == 200
    assert head.content == b""


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["serve", "no_such_module:hub"], "no module named 'no_such_module'"),
        (["serve", "ladder:no_such_hub"], "ladder has no attribute 'no_such_hub'"),
        (["serve", "tests.support.apps:hub", "--engine", "memory"], "engine: unknown engine URL 'memory'"),
        (["serve", "tests.support.apps:hub", "--header-timeout", "0"], "must be a number of seconds above 0"),
        (["serve", "json:loads", "--workers", "2"], "--workers 2 needs a Ladder hub, and function 'json:loads'"),
        (
            ["serve", "json:loads", "--workers", "2", "--engine", "redis://127.0.0.1:9/0"],
            "--workers 2 and --engine need a Ladder hub",
        ),
    ],
)
def test_ladder_serve_mistakes_are_one_line_not_a_traceback(argv: list[str], said: str) -> None:
    command = [sys.executable, "-m", "ladder.cli", *argv]
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode != 0
    assert said in done.stderr and "Traceback" not in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("spec", "said"),
    [
        (
            "tests.support.apps:hub.limits",
            "ladder serve: tests.support.apps:hub.limits is a Limits, not an ASGI app or a Ladder hub: "
            "name the hub (module:hub) or the ASGI app that serves it (module:app)",
        ),
        (
            "tests.support.apps",
            "ladder serve: expected module:attribute, got 'tests.support.apps': name the hub or the app "
            "in its module, e.g. tests.support.apps:hub",
        ),
        (
            "json:loads",
            "ladder serve: json:loads is a function that is not async (an ASGI app is awaited as "
            "app(scope, receive, send)), not an ASGI app or a Ladder hub: name the hub (module:hub) "
            "or the ASGI app that serves it (module:app)",
        ),
    ],
)
def test_serving_what_is_not_an_app_is_one_line_and_status_1(spec: str, said: str) -> None:
    """A Limits was handed to uvicorn, which failed at startup with a lifespan traceback and
    status 3; a spec without a colon said so without the ``ladder serve:`` of every other
    message, and without the fix. A callable that cannot be an ASGI app (``json:loads``)
    went to uvicorn the same way."""
    done = ladder("serve", spec, "--port", "0")
    assert done.returncode == 1 and done.stderr.strip() == said, (done.returncode, done.stderr)


def test_a_factory_that_returns_no_app_is_one_line_and_status_1() -> None:
    """README: anything but a hub, an ASGI app or a factory of one is refused in one line. A
    factory returning 42 passed the check (it may be a factory) and failed in uvicorn's
    lifespan with a traceback, status 3."""
    done = ladder("serve", "tests.support.apps:factory_of_no_app", "--port", "0")
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert done.stderr.strip().splitlines()[-1] == (
        "ladder serve: tests.support.apps:factory_of_no_app() returned 42, not an ASGI app or a "
        "Ladder hub: return the app (or the hub) it makes"
    ), done.stderr
    assert "Traceback" not in done.stderr


def test_what_can_be_an_asgi_app_is_served_and_what_cannot_is_named() -> None:
    """The check before uvicorn refuses only what uvicorn could not serve: the frameworks'
    apps, ``async def app(scope, receive, send)``, objects with an async ``__call__``, ASGI 2
    classes and what uvicorn takes for an app factory (called with no arguments) pass; a
    plain function, an async one of the wrong arity, or a partial or bound method (uvicorn
    takes them for ASGI 2 and calls them with the scope alone) are named."""
    import functools  # noqa: PLC0415

    from django.core.handlers.asgi import ASGIHandler  # noqa: PLC0415
    from fastapi import FastAPI  # noqa: PLC0415
    from starlette.applications import Starlette  # noqa: PLC0415
    from starlette.middleware.cors import CORSMiddleware  # noqa: PLC0415

    from ladder.server.servable import not_asgi  # noqa: PLC0415

    async def app(scope: object, receive: object, send: object) -> None: ...

    async def two(scope: object, receive: object) -> None: ...

    def plain(scope: object, receive: object, send: object) -> None: ...

    class Asgi3:
        async def __call__(self, scope: object, receive: object, send: object) -> None: ...

    class Asgi2:
        def __init__(self, scope: object) -> None: ...

        async def __call__(self, receive: object, send: object) -> None: ...

    class Made:  # (served as module:Made, uvicorn makes one: a factory)
        async def __call__(self, scope: object, receive: object, send: object) -> None: ...

    class Awaited:
        def __init__(self, scope: object, receive: object, send: object) -> None: ...

        def __await__(self) -> Generator[None, None, None]:
            yield

    def factory() -> Starlette:
        return Starlette()

    class Sync:
        def __call__(self, scope: object, receive: object, send: object) -> None: ...

    starlette = Starlette()
    django = object.__new__(ASGIHandler)  # (its __init__ needs Django's settings; its shape does not)
    apps = (starlette, FastAPI(), CORSMiddleware(starlette), django, app, Asgi3(), Asgi2, Made, Awaited, factory)
    for served in apps:
        assert not_asgi(served) is None, served
    for bad, said in [
        (json.loads, "a function that is not async"),
        (plain, "a function that is not async"),
        (two, "an async function that does not take (scope, receive, send)"),
        (functools.partial(app, None), "a partial of an async function, which uvicorn calls with the scope alone"),
        (Asgi3().__call__, "a bound method of an async function, which uvicorn calls with the scope alone"),
        (Asgi2(None), "an object (Asgi2) whose async __call__ does not take (scope, receive, send)"),
        (Sync(), "an object (Sync) whose __call__ is not async"),
        (len, "a function that is not async"),
        (json.JSONDecodeError, "a class that is not made with (scope) alone"),
    ]:
        problem = not_asgi(bad)
        assert problem is not None and problem.startswith(said), (bad, problem)


async def test_a_preflight_without_an_origin_is_refused_in_words(server: LadderServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        refused = await http.options("/send")
    assert refused.status_code == 403
    body = refused.json()
    assert body["code"] == "origin_not_allowed" and "without an Origin header" in body["reason"], body


async def test_a_preflight_from_the_hubs_own_origin_is_not_called_refused() -> None:
    """A hub with no ``allowed_origins`` answered a preflight from its own origin (which a
    browser never sends: same-origin requests need none) with 403 "origin … is not allowed";
    it now gets 204 with no CORS grant, and a foreign origin is refused as before."""
    with LadderServer({"allowed_origins": None}) as hub:
        own = hub.url.split("//", 1)[1].split("/", 1)[0]
        async with httpx.AsyncClient(base_url=hub.url, timeout=10) as http:
            ask = {"access-control-request-method": "POST"}
            same = await http.options("/send", headers={"origin": f"http://{own}", **ask})
            foreign = await http.options("/send", headers={"origin": "http://evil.example", **ask})
    assert same.status_code == 204 and "access-control-allow-origin" not in same.headers, same.headers
    assert foreign.status_code == 403 and foreign.json()["code"] == "origin_not_allowed"


async def test_every_module_client_js_imports_is_served_like_client_js(server: LadderServer) -> None:
    """client.js imports the modules beside it: each one, followed from client.js's own
    imports, is served under the mount as JavaScript, with the same CORS grant."""
    origin = {"origin": "http://allowed.example"}
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        seen: set[str] = set()
        pending = ["client.js"]
        while pending:
            name = pending.pop()
            seen.add(name)
            response = await http.get(f"/{name}", headers=origin)
            assert response.status_code == 200, name
            assert response.headers["content-type"].startswith("text/javascript"), name
            assert response.headers["access-control-allow-origin"] == "http://allowed.example", name
            imported = re.findall(r'^(?:import|export) .* from "\./([a-z]+\.js)";$', response.text, re.M)
            pending += [module for module in imported if module not in seen]
        assert {"driver.js", "core.js", "websocket.js", "sse.js", "polling.js"} <= seen
        foreign = await http.get("/core.js", headers={"origin": FOREIGN})
        assert foreign.status_code == 200 and "access-control-allow-origin" not in foreign.headers
        missing = await http.get("/nothing.js")
        assert missing.status_code == 404


# -- the CLI ---------------------------------------------------------------------------------


def ladder(*args: str) -> subprocess.CompletedProcess[str]:
    env = child_env()
    return subprocess.run(
        [sys.executable, "-m", "ladder.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_help_is_plain_text_and_every_option_has_help() -> None:
    top = ladder("--help")
    assert top.returncode == 0 and "``" not in top.stdout and "ladder serve" in top.stdout
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.choices and isinstance(a.choices, dict))
    assert isinstance(subparsers.choices, dict)
    for name, sub in subparsers.choices.items():
        for action in sub._actions:
            assert action.help, f"ladder {name} {action.option_strings or action.dest} has no help"
    serve = ladder("serve", "--help")
    assert "``" not in serve.stdout
    for option in ("--host", "--port", "--engine", "--header-timeout", "--native-ws-path", "--asgi-ws"):
        assert option in serve.stdout


def test_cli_version_names_the_build() -> None:
    shown = ladder("--version")
    build = "compiled" if os.environ.get("LADDER_COMPILED") else "pure Python"  # see scripts/test
    assert shown.returncode == 0 and shown.stdout.strip() == f"ladder {__version__} ({build})"


def test_demo_help_lists_only_options_that_apply() -> None:
    shown = ladder("demo", "--help")
    assert shown.returncode == 0
    for option in ("--native-ws-path", "--asgi-ws", "--ws-max-size"):
        assert option not in shown.stdout
    assert "--port" in shown.stdout


def test_demo_help_claims_no_native_driver_for_its_websockets() -> None:
    """`ladder demo --help` said of --ws-deflate that WebSockets "then go through uvicorn's ASGI
    driver, not the native one"; the demo's always do (its network panel refuses and cuts them)."""
    from ladder.cli import find_hub, websocket_protocol  # noqa: PLC0415
    from ladder.demo.app import app  # noqa: PLC0415
    from ladder.server.serving import AsgiWebSocket  # noqa: PLC0415

    assert websocket_protocol(app, find_hub(app), build_parser().parse_args(["demo"])) is AsgiWebSocket
    shown = ladder("demo", "--help")
    assert "--ws-deflate" in shown.stdout
    assert "native" not in shown.stdout
    assert "not the native one" in ladder("serve", "--help").stdout


async def test_demo_refuses_a_websocket_elsewhere_than_its_hub_as_the_hub_does(tmp_path: Path) -> None:
    """The README's quick-start client pointed at the demo (not its /ladder) met an HTTP 500,
    and the server logged "ASGI callable returned without completing handshake"."""
    log = tmp_path / "demo.log"
    with LadderServer(app="ladder.demo.app:app", log=log) as server:
        with pytest.raises(InvalidStatus) as refused:
            async with ws_connect(f"ws://127.0.0.1:{server.port}/ws"):
                pass
        assert refused.value.response.status_code == 404
        assert orjson.loads(refused.value.response.body or b"") == {
            "t": "err",
            "code": "not_found",
            "reason": f"no such endpoint: the demo's Ladder hub is at {server.url}/ladder (the client's URL)",
        }
        client = Client(server.url, transports=["websocket"], connect_timeout=1.0)
        with pytest.raises(LadderError) as failed:
            await client.connect()
        assert failed.value.code == "connect_failed"
        said = f"websocket: no Ladder endpoint at ws://127.0.0.1:{server.port}/ws (HTTP 404): check the mount path"
        assert said in failed.value.reason
    assert "handshake" not in log.read_text()


@pytest.mark.parametrize(("args", "threshold"), [((), GC_THRESHOLD), (("--gc-threshold", "700"), 700)])
async def test_serve_sets_the_collector_up_for_held_requests(args: tuple[str, ...], threshold: int) -> None:
    """What was loaded at start-up is frozen, and young collections wait for
    ``--gc-threshold`` net allocations (default 50,000; 700 is Python's own)."""
    with LadderServer(args=args) as server:
        async with Client(server.url, transports=["websocket"]) as client:
            collector = await client.call("collector")
    assert collector["threshold"] == threshold
    assert collector["frozen"] > 1000


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("0", "must be at least 1"),
        ("lots", "must be a whole number"),
        # (past a C int: an OverflowError's traceback, exit 1)
        ("2147483648", "must be at most 2,147,483,647, got 2,147,483,648"),
    ],
)
def test_gc_threshold_must_be_a_positive_whole_number(value: str, says: str) -> None:
    refused = ladder("serve", "tests.support.apps:hub", "--gc-threshold", value, "--port", "1")
    assert refused.returncode == 2 and f"--gc-threshold: {says}" in refused.stderr, refused.stderr


@pytest.mark.parametrize("command", ["serve", "demo"])
def test_an_address_in_use_is_one_line_naming_the_fix(command: str) -> None:
    """It was uvicorn's ``[Errno 98] error while attempting to bind``, after "Application
    startup complete" (and the demo a user starts twice meets it first)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = ["serve", "tests.support.apps:hub"] if command == "serve" else ["demo"]
        done = ladder(*argv, "--port", str(port))
    assert done.returncode == 1
    said = f"ladder {command}: cannot listen on 127.0.0.1:{port}: Address already in use"
    assert said in done.stderr and "--port N" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert "startup complete" not in done.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--port", "99999"), "--port: must be from 0 to 65535, got 99999"),  # (was port 34463)
        (("--port", "-1"), "--port: must be from 0 to 65535, got -1"),
        (("--ws-max-size", "-5"), "--ws-max-size: must be at least 1"),  # (was: every message 1009)
    ],
)
def test_a_port_or_message_size_out_of_range_is_refused(args: tuple[str, ...], says: str) -> None:
    refused = ladder("serve", "tests.support.apps:hub", *args)
    assert refused.returncode == 2 and says in refused.stderr, refused.stderr


@pytest.mark.parametrize(
    ("host", "says"),
    [("10.255.255.1", "is not an address of this machine: check --host"), ("nosuch.invalid", "check --host")],
)
def test_a_host_it_cannot_listen_on_is_named_not_taken_for_a_busy_port(host: str, says: str) -> None:
    """It was "is another server, or another demo, running there?" whatever the cause."""
    done = ladder("serve", "tests.support.apps:hub", "--host", host, "--port", "0")
    assert done.returncode == 1 and says in done.stderr and "another server" not in done.stderr, done.stderr


def test_a_process_of_its_own_says_where_it_listens(tmp_path: Path) -> None:
    """It binds its socket itself (for the line above), so it says what uvicorn says of its own."""
    log = tmp_path / "serve.log"
    with LadderServer({}, log=log, args=("--log-level", "info")) as server:
        assert httpx.get(f"{server.url}/health").status_code == 200
    assert f"Uvicorn running on http://127.0.0.1:{server.port}" in log.read_text()


def serve_after(prelude: str, *args: str, log: Path) -> subprocess.Popen[bytes]:
    """``ladder *args`` in a process that runs the Python lines of ``prelude`` first."""
    launcher = "\n".join(["import platform, sys", prelude, "from ladder.cli import main", "main()"])
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-c", launcher, *args], cwd=ROOT, env=child_env(), stdout=out, stderr=subprocess.STDOUT
        )


@pytest.mark.parametrize(
    ("prelude", "loop", "said"),
    [
        ("", "uvloop", None),
        (
            "sys.modules['uvloop'] = None",  # (as where it is not installed)
            "asyncio",
            "WARNING ladder: event loop: asyncio's own, as uvloop cannot be imported (",
        ),
        (
            "sys.modules['uvloop'] = None; platform.python_implementation = lambda: 'PyPy'",
            "asyncio",
            "INFO ladder: event loop: asyncio's own (uvloop does not run on PyPy)",
        ),
    ],
)
async def test_serve_runs_on_uvloop_where_it_is_installed_and_on_asyncio_elsewhere(
    tmp_path: Path, prelude: str, loop: str, said: str | None
) -> None:
    """uvloop was required: where uvicorn[standard] does not install it (Windows, Cygwin,
    PyPy) ``ladder serve`` died at start with an ImportError. The native WebSocket driver
    serves on either loop."""
    port = free_port()
    log = tmp_path / "serve.log"
    proc = serve_after(prelude, "serve", "tests.support.apps:hub", "--port", str(port), log=log)
    try:
        wait_for_port(port, proc=proc)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            assert (await http.get("/health")).status_code == 200
        async with Client(f"http://127.0.0.1:{port}", transports=["websocket"]) as client:
            running = await client.call("event_loop")
            assert client.transport == "websocket"
    finally:
        stop_process(proc)
    text = log.read_text()
    assert running == loop
    assert "Traceback" not in text, text
    if said is None:
        assert "event loop:" not in text, text
    else:
        assert said in text and text.count("event loop:") == 1, text


def test_native_ws_path_without_a_hub_is_refused_naming_the_fix() -> None:
    refused = ladder("serve", "tests.support.plain_app:app", "--native-ws-path", "/ladder/ws", "--port", "1")
    assert refused.returncode != 0
    assert "--native-ws-path" in refused.stderr and "hub" in refused.stderr, refused.stderr


# -- the file-descriptor limit ------------------------------------------------------------------


def test_serve_raises_its_descriptor_limit_to_the_hard_one_and_says_so(tmp_path: Path) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    log = tmp_path / "server.log"
    with LadderServer(log=log, args=("--log-level", "info"), nofile=(256, hard)) as server:
        assert server.proc is not None
        limits = Path(f"/proc/{server.proc.pid}/limits").read_text()
    assert re.search(rf"Max open files\s+{hard}\s+{hard}", limits), limits
    assert f"file-descriptor limit raised from 256 to {hard} (as high as the hard limit allows)" in log.read_text()


async def test_serve_warns_naming_the_fix_as_connections_near_its_descriptor_limit(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with LadderServer(log=log, nofile=(100, 100)) as server:
        clients = [Client(server.url, transports=["websocket"]) for _ in range(85)]
        try:
            await asyncio.gather(*(client.connect() for client in clients))
            deadline = time.monotonic() + 15  # (the node looks every 5 s)
            while "file descriptors are in use" not in log.read_text():
                assert time.monotonic() < deadline, log.read_text()
                await asyncio.sleep(0.1)
        finally:
            await asyncio.gather(*(client.close() for client in clients))
        async with Client(server.url, transports=["websocket"]) as late:  # (it serves on)
            assert late.state == "connected"
    said = log.read_text()
    assert said.count("file descriptors are in use") == 1
    assert re.search(r"WARNING.* (9\d|100) of the process's 100 file descriptors are in use", said), said
    assert "ulimit -n" in said and "--workers" in said


async def test_a_redis_outage_is_logged_once_and_not_as_a_bug(tmp_path: Path) -> None:
    """Redis killed under a node holding a presence member: the node's clock refreshed that
    member every round and logged ``ERROR tick failed`` with a traceback each time; the
    listener logged a WARNING at every reconnection attempt. One WARNING says it: unhealthy."""
    log = tmp_path / "server.log"
    with RedisServer() as redis, LadderServer({"presence_ttl": 1.5}, engine=redis.url, log=log) as server:
        async with Client(server.url, transports=["websocket"]) as client:
            await client.subscribe("chat:outage").ready()
            redis.stop()
            async with httpx.AsyncClient(base_url=server.url) as http:
                deadline = time.monotonic() + 20
                while (health := (await http.get("/health")).json()).get("reconnects", 0) < 7:
                    assert time.monotonic() < deadline, health
                    await asyncio.sleep(0.1)
            # (the presence entry's refresh was due several times meanwhile: every 0.5 s)
    said = log.read_text()
    assert "tick failed" not in said and "Traceback" not in said, said
    assert said.count("redis engine unhealthy") == 1, said
    assert said.count("redis listener lost its connection") == 1, said


def test_a_node_that_starts_without_redis_says_it_is_unhealthy(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    nothing = f"redis://127.0.0.1:{free_port()}/0"
    with LadderServer(engine=nothing, log=log) as server:
        deadline = time.monotonic() + 15
        while "redis engine unhealthy" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        assert httpx.get(server.url + "/health").status_code == 503
    said = log.read_text()
    assert said.count("redis engine unhealthy") == 1 and "Connection refused" in said, said
    assert "redis listener lost its connection" not in said, said


async def test_a_node_without_redis_is_reconnected_to_ever_more_slowly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis down, a client with messages to send: the node welcomed it, closed with 1011
    (its messages cannot be recorded), and the client came back within [0, 0.5 s), 3-5 times a
    second for the whole outage (41 welcomes in 10 s). The close reason now names the refusal
    (``engine_unavailable: …``) and the client's pause doubles from the second one."""
    monkeypatch.setattr(random, "random", lambda: 0.5)  # pauses of 0.25, 0.25, 0.5, 1, 2 s
    log = tmp_path / "server.log"
    with RedisServer() as redis, LadderServer(engine=redis.url, log=log) as server:
        client = Client(server.url, transports=["websocket"])
        welcomes: list[float] = []
        ended: list[str] = []
        client.on("connected", lambda e: welcomes.append(time.monotonic()))
        client.on("disconnected", lambda e: ended.append(e.reason))
        async with client:
            redis.stop()
            down = time.monotonic()
            while time.monotonic() < down + 4:
                await client.emit("echo", "while Redis is down")
                await asyncio.sleep(0.1)
    during = [at for at in welcomes if at > down]
    assert 2 <= len(during) <= 6, f"{len(during)} welcomes in 4 s: {during}"
    refused = [reason for reason in ended if "engine_unavailable: " in reason]
    assert refused and all("(1011 engine_unavailable: " in reason for reason in refused), ended


async def test_a_post_refused_while_redis_is_down_is_logged_and_counted_once(tmp_path: Path) -> None:
    """It was logged twice (``refused on send (<session>)``, then ``(<address>)``) and
    counted twice in ``ladder_errors_total``."""
    log = tmp_path / "server.log"
    with RedisServer() as redis, LadderServer(engine=redis.url, log=log, args=("--log-level", "info")) as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            opened = await http.get("/poll", params={"v": "1"})
            welcome = next(f for f in map(orjson.loads, opened.text.splitlines()) if f["t"] == "welcome")
            redis.stop()
            async with asyncio.timeout(15):
                while (await http.get("/health")).status_code != 503:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)  # (the node's heartbeat notices; /health says)
            before = metric((await http.get("/metrics")).text, "ladder_errors_total", code="engine_unavailable")
            refused = await http.post(
                "/send",
                params={"sid": welcome["sid"], "rt": welcome["rt"]},
                content=b'{"t":"emit","i":1,"ev":"echo","d":1}',
                headers={"content-type": "application/json"},
            )
            assert refused.status_code == 503 and refused.json()["code"] == "engine_unavailable", refused.text
            after = metric((await http.get("/metrics")).text, "ladder_errors_total", code="engine_unavailable")
    assert after - before == 1
    lines = [line for line in log.read_text().splitlines() if "refused on send" in line]
    assert len(lines) == 1, lines


async def test_a_node_without_redis_does_not_walk_the_client_down_the_ladder(tmp_path: Path) -> None:
    """Redis down, a client on every rung with messages to send: each connection was welcomed,
    then closed with 1011 ``engine_unavailable``, and the client took three of those for cuts
    and stepped down, WebSocket to SSE to long polling to short polling within 30 s. The
    rung carried the server's refusal: the client stays on WebSocket (and backs off)."""
    log = tmp_path / "server.log"
    with RedisServer() as redis, LadderServer(engine=redis.url, log=log) as server:
        client = Client(server.url)
        changes: list[str] = []
        ended: list[str] = []
        client.on("transport", lambda e: changes.append(f"{e.old} -> {e.new} ({e.reason})"))
        client.on("disconnected", lambda e: ended.append(e.reason))
        async with client:
            assert client.transport == "websocket"
            redis.stop()
            while sum("engine_unavailable: " in reason for reason in ended) < 5:
                await client.emit("echo", "while Redis is down")
                await asyncio.sleep(0.1)
            assert changes == ["None -> websocket (connected)"], changes
            redis.start()
            assert (await client.call("echo", "back", timeout=15))["data"] == "back"
            assert client.transport == "websocket", changes


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("tests.support.mounted:app", "--native-ws-path", "api/realtime/ws"), "must be the path of the hub's ws endpoint"),
        (("tests.support.mounted:app", "--native-ws-path", "/api/realtime"), "its mount path and /ws"),
        (("tests.support.mounted:app", "--native-ws-path", "/api/realtime/ws", "--asgi-ws"), "drop one"),
        (("tests.support.mounted:app", "--native-ws-path", "/api/realtime/ws", "--ws-deflate"), "drop one"),
        (("tests.support.apps:hub", "--native-ws-path", "/ws"), "a hub served alone has its WebSockets at /ws"),
        (
            ("tests.support.mounted:app", "--native-ws-path", "/ws"),
            "mounts the hub at /api/realtime: pass --native-ws-path /api/realtime/ws",
        ),
        (("tests.support.apps:hub", "--asgi-ws", "--ws-max-size", "100"), "--ws-max-size 100 is below the hub's max_frame_size (65536)"),
        (("tests.support.mounted:app", "--ws-max-size", "100"), "pass --ws-max-size 65536 or more"),
        (("tests.support.apps:hub", "--max-header-size", "10"), "must be at least 1024"),
        (("tests.support.apps:hub", "--max-header-size", "0"), "must be at least 1024"),
    ],
)
def test_websocket_and_header_options_that_cannot_work_are_refused_before_serving(
    args: tuple[str, ...], said: str
) -> None:
    """Each was taken: a path without its slash or its /ws (the native driver then served
    nothing the hub answers), a path that is not where the app's routes mount the hub (its
    WebSockets went through ASGI), a path with --asgi-ws (ignored), a path for a hub served alone
    (its /ws then went through ASGI), 10 bytes of headers (every request, /health's too, 431),
    a --ws-max-size below the hub's max_frame_size where uvicorn reads the hub's WebSockets
    (every message between the two closed 1009, resent on every reconnect, for ever)."""
    refused = ladder("serve", *args, "--port", "1")
    assert refused.returncode != 0
    assert said in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
