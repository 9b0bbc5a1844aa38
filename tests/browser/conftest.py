"""Real headless Chromium (Debian's ``/usr/bin/chromium``, driven by Playwright) against the real
demo server (``ladder serve ladder.demo.app:app`` on a free loopback port). Nothing downloads a
browser. Each test opens fresh browser contexts (separate cookies, storage and sockets: separate
"people") and uses its own chat room.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.support.server import LadderServer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LABELS = {
    "websocket": "Block WebSocket",
    "sse": "Block SSE",
    "buffered": "Buffer streams",
    "offline": "Offline",
}


def launch(playwright: Any) -> Browser:
    """Chromium as the tests use it. ``launch`` gives the browser a fresh, temporary user-data
    directory of its own (Playwright refuses ``--user-data-dir`` here for that reason)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/setup test (it installs Debian's chromium)")
    browser: Browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    return browser


@pytest.fixture(scope="module")
def demo() -> Iterator[LadderServer]:
    with LadderServer(app="ladder.demo.app:app") as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = launch(playwright)
        try:
            yield chromium
        finally:
            chromium.close()


class Chat:
    """One person in the demo chat: a browser context with one page, plus helpers."""

    def __init__(self, context: BrowserContext, page: Page, nick: str) -> None:
        self.context = context
        self.page = page
        self.nick = nick
        self.errors: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    def goto(self, server: LadderServer, room: str, **params: Any) -> Chat:
        # One connection per tab unless a test asks for sharing (share=1): these tests drive a
        # tab's own connection (Playwright's emulated offline does not reach a SharedWorker).
        query = urlencode({"nick": self.nick, "share": "0", **{k: str(v) for k, v in params.items()}})
        self.page.goto(f"{server.url}/?{query}#{room}")
        self.page.wait_for_function("window.demo !== undefined")
        return self

    # -- what the page shows --------------------------------------------------------------

    def transport(self) -> str | None:
        value: str | None = self.page.evaluate("demo.client.transport")
        return value

    def wait_transport(self, rung: str, timeout: float = 15.0) -> None:
        self.page.wait_for_function(
            "rung => demo.client.transport === rung", arg=rung, timeout=timeout * 1000
        )

    def badge(self) -> tuple[str, str]:
        return self.page.inner_text("#badge-rung"), self.page.inner_text("#badge-why")

    def messages(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.page.evaluate("demo.messages()")
        return found

    def wait_messages(self, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        self.page.wait_for_function("n => demo.messages().length >= n", arg=count, timeout=timeout * 1000)
        return self.messages()

    def wait_members(self, nicks: set[str], timeout: float = 10.0) -> None:
        self.page.wait_for_function(
            """want => {
                const shown = [...document.querySelectorAll('#members li')].map(li => li.textContent);
                return shown.length === want.length && want.every(n => shown.includes(n));
            }""",
            arg=sorted(nicks),
            timeout=timeout * 1000,
        )

    def log(self) -> str:
        return self.page.inner_text("#log")

    # -- what a person does ---------------------------------------------------------------

    def toggle(self, block: str) -> None:
        """Click a switch of the network panel and wait until the server confirmed it."""
        with self.page.expect_response(lambda r: r.url.endswith("/net") and r.request.method == "POST"):
            self.page.get_by_text(LABELS[block]).click()

    def send(self, *texts: str) -> list[int]:
        """Send messages (without waiting between them); returns their offsets once applied."""
        offsets: list[int] = self.page.evaluate(
            "texts => Promise.all(texts.map(t => demo.send(t))).then(rs => rs.map(r => r.offset))",
            list(texts),
        )
        return offsets

    def start_sending(self, *texts: str) -> None:
        """Send messages in the background; :meth:`sent` waits for their offsets."""
        self.page.evaluate(
            "texts => { window.sending = Promise.all(texts.map(t => demo.send(t))); }", list(texts)
        )

    def sent(self) -> list[int]:
        offsets: list[int] = self.page.evaluate("window.sending.then(rs => rs.map(r => r.offset))")
        return offsets


@pytest.fixture
def people(browser: Browser, demo: LadderServer) -> Iterator[Callable[..., Chat]]:
    """``people(nick, room, **url_params)`` opens the chat as a new person (own context)."""
    contexts: list[BrowserContext] = []
    chats: list[Chat] = []

    def open_chat(nick: str, room: str, **params: Any) -> Chat:
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        contexts.append(context)
        chat = Chat(context, context.new_page(), nick).goto(demo, room, **params)
        chats.append(chat)
        return chat

    yield open_chat
    errors = {chat.nick: chat.errors for chat in chats if chat.errors}
    for context in contexts:
        context.close()
    assert not errors, f"uncaught errors in the page: {json.dumps(errors)}"
