"""The demo as a person sees it, in real Chromium: it fits a phone (375 px) and a desktop
screen with nothing overflowing and the transport badge in view (screenshots taken; saved
over ``docs/demo-*.png`` only with ``LADDER_UPDATE_SCREENSHOTS=1``, so a test run leaves the
checkout as it was), it says in words when a proxy buffers the stream, and its server stops without
leaving tasks behind."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from tests.browser.conftest import Chat
from tests.support.server import ROOT, LadderServer

SCREENS = {
    "demo-375.png": {"width": 375, "height": 812},
    "demo-desktop.png": {"width": 1366, "height": 820},
    "demo-320.png": {"width": 320, "height": 640},  # the narrowest phones still sold (checked, not kept)
}
ROOMS = {"demo-375.png": "on-the-train", "demo-desktop.png": "office", "demo-320.png": "on-the-train"}
KEPT = {"demo-375.png", "demo-desktop.png"}


def layout_problems(page: Page) -> dict[str, Any]:
    """What overflows the viewport, and whether the badge is fully on screen and on top."""
    found: dict[str, Any] = page.evaluate(
        """() => {
            const width = document.documentElement.clientWidth;
            const wide = [...document.querySelectorAll('body *')]
                .filter(el => el.getBoundingClientRect().right > width + 0.5 && el.getClientRects().length)
                .filter(el => !el.closest('dialog'))
                .map(el => el.id || el.className || el.tagName);
            const badge = document.querySelector('#badge').getBoundingClientRect();
            const rung = document.querySelector('#badge-rung').getBoundingClientRect();
            const hit = document.elementFromPoint(rung.left + rung.width / 2, rung.top + rung.height / 2);
            return {
                scroll: document.documentElement.scrollWidth - width,
                wide: wide.slice(0, 5),
                badge_inside: badge.left >= 0 && badge.right <= width && badge.top >= 0,
                badge_on_top: !!hit && !!hit.closest('#badge'),
            };
        }"""
    )
    return found


@pytest.mark.parametrize("name", list(SCREENS))
def test_the_demo_fits_the_screen_and_its_screenshot_is_saved(
    browser: Browser, demo: LadderServer, name: str, tmp_path: Path
) -> None:
    viewport = SCREENS[name]
    people = []
    for nick in ("grace", "ada"):
        context = browser.new_context(viewport=viewport, device_scale_factor=1)  # type: ignore[arg-type]
        chat = Chat(context, context.new_page(), nick).goto(demo, ROOMS[name])
        chat.wait_transport("websocket")
        people.append(chat)
    grace, ada = people
    try:
        ada.wait_members({"ada", "grace"})
        grace.send("Morning! Is the train wifi still eating our WebSockets?")
        ada.send("It cuts them; the badge tells. Try the network panel.")
        ada.toggle("websocket")
        ada.wait_transport("sse")
        ada.send("…and I am on SSE now. Nothing lost.")
        ada.wait_messages(3)
        ada.page.evaluate("window.scrollTo(0, 0)")
        assert layout_problems(ada.page) == {
            "scroll": 0,
            "wide": [],
            "badge_inside": True,
            "badge_on_top": True,
        }
        assert ada.badge()[0] == "SSE"
        update = os.environ.get("LADDER_UPDATE_SCREENSHOTS") == "1"
        shot = (ROOT / "docs" if update and name in KEPT else tmp_path) / name
        ada.page.screenshot(path=str(shot))
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert not ada.errors and not grace.errors
    finally:
        for chat in people:
            chat.context.close()


def test_a_buffered_stream_is_named_in_words_on_the_badge(people: Callable[..., Chat]) -> None:
    alice = people("alice", "buffered-words", probe=60_000)
    alice.wait_transport("websocket")
    alice.toggle("websocket")
    alice.wait_transport("sse")
    alice.toggle("buffered")
    alice.wait_transport("longpoll")
    rung, why = alice.badge()
    assert rung == "Long polling"
    assert "a proxy buffers the event stream" in why, why
    assert "not proven" not in why


def test_the_demo_server_stops_without_pending_tasks(browser: Browser, tmp_path: Path) -> None:
    log = tmp_path / "demo.log"
    server = LadderServer(app="ladder.demo.app:app", log=log).start()
    contexts = []
    try:
        chats = []
        for nick, rung in (("ada", "websocket"), ("bob", "sse"), ("cy", "longpoll")):
            context = browser.new_context()
            contexts.append(context)
            chat = Chat(context, context.new_page(), nick).goto(
                server, "stopping", transports=rung, probe=500
            )
            chat.wait_transport(rung)
            chat.send(f"{nick} on {rung}")
            chats.append(chat)
        # A browser whose network panel blocks rungs: its requests go through the panel's guard.
        context = browser.new_context()
        contexts.append(context)
        dan = Chat(context, context.new_page(), "dan").goto(server, "stopping", probe=500)
        dan.wait_transport("websocket")
        dan.toggle("websocket")
        dan.wait_transport("sse")
        dan.toggle("buffered")
        dan.wait_transport("longpoll")
        dan.send("dan on longpoll")
        assert server.proc is not None
        server.proc.send_signal(signal.SIGINT)  # Ctrl-C, as a person stops `ladder demo`
        for context in contexts:
            context.close()
        contexts.clear()
        server.proc.wait(timeout=60)
    finally:
        for context in contexts:
            context.close()
        server.stop()
    text = log.read_text()
    assert "Task was destroyed but it is pending" not in text, text
    assert "Traceback" not in text, text
