"""What ``ladder serve`` needs of uvicorn is checked before it serves: the installed uvicorn
passes; one too old, or one without a method Ladder overrides or calls, is refused in one
line naming the version installed and the one to install (at ``ladder serve`` and at import
of ``ladder.server.serving``); one without the private methods of the quiet request parsing
is served through uvicorn's own, still with Ladder's JSON refusal, and said in one WARNING."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState

from ladder.server import uvicorn_needs
from ladder.server.serving import HeaderTimeoutHttp
from ladder.server.uvicorn_needs import MINIMUM, TESTED, parse_fallback, problem, require
from tests.support.server import ROOT, child_env

INSTALL_RANGE = f"pip install 'uvicorn[standard]>={MINIMUM},<={TESTED}'"


def test_the_installed_uvicorn_has_everything_ladder_uses() -> None:
    print(f"\nuvicorn {uvicorn.__version__}")
    assert problem() is None and parse_fallback() is None
    require()
    assert HeaderTimeoutHttp.quiet_parse
    assert uvicorn_needs._version(uvicorn.__version__) >= uvicorn_needs._version(MINIMUM)


def test_the_versions_checked_are_the_ones_declared_and_tested() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"uvicorn[standard]>={MINIMUM}" in declared
    assert f"uvicorn=={TESTED}" in (ROOT / "scripts" / "constraints.txt").read_text().splitlines()


def test_a_uvicorn_without_a_method_ladder_overrides_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(WebSocketsSansIOProtocol, "send_receive_event_to_app")
    said = problem()
    print(f"\n{said}")
    assert said == (
        f"uvicorn {uvicorn.__version__} lacks WebSocketsSansIOProtocol.send_receive_event_to_app, which "
        f"Ladder uses (tested with uvicorn {MINIMUM} to {TESTED}): {INSTALL_RANGE}, or a Ladder release "
        f"that supports uvicorn {uvicorn.__version__}"
    )
    with pytest.raises(ImportError) as raised:
        require()
    assert str(raised.value) == said


def _run(code: str) -> subprocess.CompletedProcess[str]:
    """``code`` in a Python of its own that believes uvicorn 0.34.3 is installed."""
    prelude = "import uvicorn; uvicorn.__version__ = '0.34.3'; "
    return subprocess.run(
        [sys.executable, "-c", prelude + code],
        cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=60, check=False,
    )


def test_ladder_serve_on_an_older_uvicorn_exits_with_one_line_before_importing_the_app() -> None:
    done = _run("from ladder.cli import main; main(['serve', 'no_such_module:hub'])")
    print(f"\n{done.stderr}")
    assert done.returncode == 1
    assert done.stderr == (
        f"ladder serve: Ladder needs uvicorn>={MINIMUM}, and uvicorn 0.34.3 is installed: "
        f"pip install 'uvicorn[standard]>={MINIMUM}'\n"
    )


def test_importing_the_serving_module_on_an_older_uvicorn_says_which_to_install() -> None:
    done = _run("import ladder.server.serving")
    last = done.stderr.strip().splitlines()[-1]
    print(f"\n{last}")
    assert done.returncode == 1
    assert last == (
        f"ImportError: Ladder needs uvicorn>={MINIMUM}, and uvicorn 0.34.3 is installed: "
        f"pip install 'uvicorn[standard]>={MINIMUM}'"
    )


class Transport(asyncio.Transport):
    """What a protocol writes, and whether it closed."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


class Said(logging.Handler):
    """What uvicorn logs (its ``uvicorn.error`` logger does not propagate once configured)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def uvicorn_said() -> Iterator[list[str]]:
    handler, logger = Said(), logging.getLogger("uvicorn.error")
    logger.addHandler(handler)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)


async def _refusal(data: bytes) -> tuple[bytes, bool]:
    """What ``HeaderTimeoutHttp`` answers ``data`` with, and whether it closed."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("not a request the app sees")

    config = uvicorn.Config(app, lifespan="off", log_config=None)  # (the logging as it is)
    config.load()
    protocol = HeaderTimeoutHttp(config=config, server_state=ServerState(), app_state={}, _loop=asyncio.get_running_loop())
    transport = Transport()
    protocol.connection_made(transport)
    try:
        protocol.data_received(data)
    finally:
        protocol.connection_lost(None)
    return bytes(transport.written), transport.closed


async def test_without_the_private_parse_methods_uvicorn_parses_and_ladder_still_refuses_in_json(
    monkeypatch: pytest.MonkeyPatch, uvicorn_said: list[str]
) -> None:
    monkeypatch.delattr(HttpToolsProtocol, "_should_upgrade")
    warning = parse_fallback()
    print(f"\n{warning}")
    assert warning is not None and warning.startswith(f"uvicorn {uvicorn.__version__} lacks HttpToolsProtocol._should_upgrade:")
    assert warning.endswith(f"{INSTALL_RANGE}, or a Ladder release that supports uvicorn {uvicorn.__version__}")
    assert problem() is None, "served all the same"
    monkeypatch.setattr(HeaderTimeoutHttp, "quiet_parse", False)
    answer, closed = await _refusal(b"NOT HTTP AT ALL\r\n\r\n")
    too_large, _ = await _refusal(b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and closed
    assert orjson.loads(body) == {"t": "err", "code": "bad_request", "reason": "not a valid HTTP/1.1 request"}
    assert too_large.startswith(b"HTTP/1.1 431 ")
    assert "Invalid HTTP request received." in uvicorn_said, "uvicorn's own parsing, with its WARNING"


async def test_with_them_a_request_that_is_not_http_is_refused_without_uvicorns_warning(
    uvicorn_said: list[str],
) -> None:
    answer, closed = await _refusal(b"NOT HTTP AT ALL\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ") and closed
    assert uvicorn_said == []

