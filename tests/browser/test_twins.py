"""The Python client and the browser client, side by side: the same scenario against one real
server tells the app the same events, in the same order, with the same reasons (protocol
§9.10; browser.md's events table maps the names: ``connected``/``open``,
``disconnected``/``close``). The one documented difference: the browser reports its first
``connecting``, the Python client (whose ``connect()`` is the app's own call) does not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from ladder import Client, LadderError
from tests.support.server import LadderServer, free_port

NAMES = {"connected": "open", "disconnected": "close"}
"""Python event names as the browser calls them."""


@pytest.fixture(scope="module")
def hub() -> Iterator[LadderServer]:
    port = free_port()
    config = {"allowed_origins": [f"http://127.0.0.1:{port}"], "require_token": True}
    with LadderServer(config, port=port) as server:
        yield server


@pytest.fixture
def page(browser: Browser, hub: LadderServer) -> Iterator[Page]:
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{hub.url}/health")
    yield page
    context.close()


def told(name: str, event: dict[str, Any]) -> str:
    """One event as the comparison reads it: its name, and the fields that say what happened."""
    if name == "state":
        return f"state {event['state']}: {event['reason']}" if event["state"] == "closed" else f"state {event['state']}"
    if name == "transport":
        return f"transport {event['old']} -> {event['new']}"
    if name == "open":
        return f"open resumed={str(event['resumed']).lower()}"
    if name == "close":
        return f"close {event['reason']}"
    if name == "error":
        return f"error {event['code']}"
    return name


async def python_run(url: str, token: str, drop: bool, rung: str = "websocket") -> list[str]:
    client = Client(url, token=token, transports=[rung], encoding="json", connect_timeout=5)
    seen: list[str] = []
    for name in ("connected", "disconnected", "transport", "session_lost", "error", "state"):
        client.on(name, lambda event, name=name: seen.append((NAMES.get(name, name), event)))
    try:
        await client.connect()
    except LadderError:
        return [told(name, vars_of(event)) for name, event in seen]
    if drop:
        second = asyncio.get_running_loop().create_future()
        client.on("connected", lambda event: second.done() or second.set_result(None))
        await client.call("drop", client.session_id)
        await asyncio.wait_for(second, 10)
    await client.close()
    return [told(name, vars_of(event)) for name, event in seen]


def vars_of(event: Any) -> dict[str, Any]:
    return {name: getattr(event, name) for name in event.__dataclass_fields__}


BROWSER_RUN = """async ([token, drop, rung]) => {
    const ladder = await import('/client.js');
    const seen = [];
    const client = ladder.connect(location.origin, { token, transports: [rung], share: false, connectTimeout: 5000 });
    for (const name of ["open", "close", "transport", "session_lost", "error", "state"]) {
        client.on(name, (event) => seen.push([name, { ...event }]));
    }
    try {
        await client.ready();
    } catch (error) {
        return seen;
    }
    if (drop) {
        const second = new Promise((resolve) => client.on("open", resolve));
        await client.call("drop", client.sessionId);
        await second;
    }
    await client.close();
    return seen;
}"""


def browser_run(page: Page, token: str, drop: bool, rung: str = "websocket") -> list[str]:
    seen = page.evaluate(BROWSER_RUN, [token, drop, rung])
    events = [told(name, event) for name, event in seen]
    assert events[0] == "state connecting", events  # (reported by the browser only: see above)
    return events[1:]


def both(
    hub: LadderServer, page: Page, token: str, *, drop: bool = False, rung: str = "websocket"
) -> tuple[list[str], list[str]]:
    with ThreadPoolExecutor(1) as thread:  # (its own event loop, beside Playwright's)
        python = thread.submit(asyncio.run, python_run(hub.url, token, drop, rung)).result(timeout=30)
    return python, browser_run(page, token, drop, rung)


def test_connecting_a_new_session_and_closing_tell_the_same_events_in_the_same_order(
    hub: LadderServer, page: Page
) -> None:
    """Connected, then the server drops the session (a slow consumer: the client starts a new
    one at once), then the app closes: the browser told ``state`` first and ``open`` last,
    the Python client ``connected`` first (which protocol §9.10 promises it: its first event);
    both now tell ``session_lost``, ``open``, ``state``, ``transport``, and ``close`` with the
    same reason."""
    python, browser = both(hub, page, "user:ada", drop=True)
    assert python == browser, (python, browser)
    assert python[:3] == ["open resumed=false", "state connected", "transport None -> websocket"]
    assert python[-5:] == [
        "session_lost",
        "open resumed=false",
        "state connected",
        "state closed: the client was closed",
        "close the client was closed",
    ], python


@pytest.mark.parametrize("rung", ["websocket", "sse"])
def test_a_refusal_before_any_transport_tells_the_same_events(hub: LadderServer, page: Page, rung: str) -> None:
    """A refused token: the browser also told ``close`` (``transport: null``) and put the code
    in it rather than in ``state``; ``close`` pairs with an ``open``, and ``state`` says why.
    On SSE, whose refusal a browser hides (the client asks why with a POST), it also told
    ``disconnected`` and ``connecting``, and raced once more, before the answer came."""
    python, browser = both(hub, page, "nobody", rung=rung)
    assert python == browser, (python, browser)
    assert python == [
        "error unauthorized",
        "state closed: unauthorized: the authenticate hook refused these credentials: check the token the client sends",
    ], python
