"""One Ladder node (the test hub at ``/ladder`` plus a page, ``tests.hostile.app``) with Ladder's
default heartbeat (20 s) and long-poll hold (25 s), a channel it publishes to every 20 ms, and
headless Chromium (Debian's ``/usr/bin/chromium``; nothing downloads a browser)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, async_playwright

from ladder import Client
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.deploy.lb import loopback_limits
from tests.support.figures import Figures
from tests.support.server import LadderServer

TICKER = "tick:hostile"
FIGURES = Figures("hostile/: broken proxies, for real (nginx)")
report = FIGURES.report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    FIGURES.summary(terminalreporter)


BACKEND_CONFIG = {"allowed_origins": None, "session_ttl": 120.0, "limits": loopback_limits()}
"""Same-origin only (the page is served by the same node), Ladder's default timings."""


async def start_ticker(server: LadderServer) -> None:
    """Make ``server`` publish to TICKER every 20 ms for as long as it runs."""
    async with Client(server.url + "/ladder", transports=["websocket"]) as admin:
        await admin.call(
            "publish", {"channel": TICKER, "count": 1_000_000, "interval": 0.02, "background": True}
        )


@pytest.fixture(scope="module")
def backend() -> Iterator[LadderServer]:
    with LadderServer(BACKEND_CONFIG, app="tests.hostile.app:app") as server:
        asyncio.run(start_ticker(server))
        yield server


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not await asyncio.to_thread(Path(CHROMIUM).exists):
        pytest.fail(f"{CHROMIUM} is missing: run scripts/setup test (it installs Debian's chromium)")
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()
