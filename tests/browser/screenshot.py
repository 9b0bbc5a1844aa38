"""Take docs/demo.png: the real demo in real Chromium, WebSocket blocked so the badge shows SSE.

Run it with ``.venv/bin/python -m tests.browser.screenshot [output.png]`` (not a test; it starts
its own demo server on a free loopback port and stops it).
"""

from __future__ import annotations

import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

from tests.browser.conftest import LABELS, launch
from tests.support.server import ROOT, LadderServer

CONVERSATION = [
    ("ada", "Morning! Is the train wifi still eating our WebSockets?"),
    ("grace", "Every proxy on this line does. Try the network panel on the right."),
    ("ada", "Blocking WebSocket now…"),
]


def main(out: Path) -> None:
    with LadderServer(app="ladder.demo.app:app") as server, sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            pages = {}
            for nick in ("grace", "ada"):
                context = browser.new_context(viewport={"width": 1360, "height": 820}, device_scale_factor=1)
                page = context.new_page()
                page.goto(f"{server.url}/?nick={nick}&probe=60000#lobby")
                page.wait_for_function("demo.client.transport === 'websocket'")
                pages[nick] = page
            ada, grace = pages["ada"], pages["grace"]
            ada.wait_for_function("document.querySelectorAll('#members li').length === 2")
            for nick, text in CONVERSATION:
                pages[nick].evaluate("text => demo.send(text)", text)
            with ada.expect_response(lambda r: r.url.endswith("/net")):
                ada.get_by_text(LABELS["websocket"]).click()
            ada.wait_for_function("demo.client.transport === 'sse'")
            ada.evaluate("demo.send('…and I am on SSE. Nothing lost.')")
            grace.evaluate("demo.send('Seen it. Switch it back on and watch it climb up again.')")
            ada.wait_for_function("demo.messages().length === 5")
            grace.type("#text", "nice")  # grace is typing…
            ada.wait_for_function("document.querySelector('#typing').textContent.includes('grace')")
            ada.screenshot(path=str(out))
        finally:
            browser.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "demo.png")
