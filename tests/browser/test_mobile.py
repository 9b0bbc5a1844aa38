"""What browsers do to a page, in real Chromium against the real server: a reload while
messages wait offline (the durable outbox), the back/forward cache, a frozen tab, and a socket
killed without a close (``SilentRelay``). Each bound asserted here is the one docs/browser.md
states ("Mobile and background").

The pages are plain static files (``site``: no ``Cache-Control: no-store``, which would keep a
page out of the back/forward cache) that import the client from the hub, cross-origin. The
browser is launched with the back/forward cache on (Playwright switches it off by default).
"""

from __future__ import annotations

import functools
import shutil
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Error, Page, sync_playwright

import ladder
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.browser.silent_relay import SilentRelay
from tests.support.server import LadderServer, free_port


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class Site:
    """Static pages on a free loopback port, reachable as two sites (127.0.0.1 and localhost)."""

    def __init__(self, root: Path) -> None:
        (root / "index.html").write_text("<!doctype html><title>page</title><p>a page</p>\n")
        # A copy of the client, for a page that must load while the hub is down.
        shutil.copytree(Path(ladder.__file__).parent / "static", root / "client", ignore=shutil.ignore_patterns("*.py"))
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def other_origin(self) -> str:
        return f"http://localhost:{self.port}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    served = Site(tmp_path_factory.mktemp("site"))
    yield served
    served.stop()


@pytest.fixture(scope="module")
def hub(site: Site) -> Iterator[LadderServer]:
    with LadderServer({"allowed_origins": [site.origin, site.other_origin]}) as server:
        yield server


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, ignore_default_args=["--disable-back-forward-cache"]
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def context(chromium: Browser) -> Iterator[BrowserContext]:
    context = chromium.new_context()
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    assert not errors, f"uncaught errors in the page: {errors}"


START = """async ([hub, options, module]) => {
    window.ladder = await import(module ?? hub + '/client.js');
    window.got = [];
    window.client = ladder.connect(hub, { connectTimeout: null, ...options });
}"""


def start(page: Page, site: Site, hub: str, **options: Any) -> None:
    """Open the site's page and connect a client to ``hub`` (with ``options``)."""
    page.goto(f"{site.origin}/index.html")
    page.evaluate(START, [hub, options])


def publish(hub: LadderServer, site: Site, chromium: Browser, channel: str, count: int) -> None:
    """Publish ``{"n": 0..count-1}`` to ``channel`` from another browser context."""
    context = chromium.new_context()
    try:
        page = context.new_page()
        page.goto(f"{site.origin}/index.html")
        page.evaluate(
            """async ([hub, data]) => {
                const { connect } = await import(hub + '/client.js');
                const c = connect(hub, { transports: ['websocket'], outbox: false });
                await c.call('publish', data, { timeout: 10000 });
                await c.close();
            }""",
            [hub.url, {"channel": channel, "count": count}],
        )
    finally:
        context.close()


# -- the durable outbox ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case", ["websocket: reload offline", "longpoll: reload offline", "websocket: online, reload at once"]
)
def test_messages_emitted_offline_are_applied_once_after_a_reload(
    context: BrowserContext, page: Page, site: Site, hub: LadderServer, case: str
) -> None:
    """50 emits while the browser is offline, then the page reloads: each applied exactly once.

    Whether the old page is really gone by the time the network is back is Chromium's business
    (after a failed reload the old page sometimes lives on, reconnects and sends them itself);
    either way nothing is lost or doubled. The next test pins the hand-over itself."""
    rung, how = case.split(": ")
    key = f"reload-{rung}-{how.replace(' ', '-').replace(',', '')}"
    # The tab's own connection (share: false): Playwright's set_offline does not reach a SharedWorker.
    options = {"transports": [rung], "verifyTimeout": 500, "share": False}
    start(page, site, hub.url, **options)
    page.evaluate("client.ready()")
    context.set_offline(True)
    page.evaluate("key => { for (let n = 0; n < 50; n++) client.emit('record', { key, value: n }); }", key)
    if how == "reload offline":
        with pytest.raises(Error, match="ERR_INTERNET_DISCONNECTED"):
            page.reload()
        context.set_offline(False)
        start(page, site, hub.url, **options)
    else:
        context.set_offline(False)  # the old page may well send some before it goes
        page.reload()
        page.evaluate(START, [hub.url, options])
    outcome: dict[str, Any] = page.evaluate(
        """async (key) => {
            await client.ready();
            return { records: await client.call('records', key, { timeout: 10000 }), storage: client.outboxStorage };
        }""",
        key,
    )
    assert outcome["records"] == list(range(50)), "each applied exactly once, in order"
    assert outcome["storage"] == "indexeddb"


# Another page of the same origin holds a readwrite transaction on the outbox's store, so the
# client's own write waits behind it, as a slow disk would make it wait.
BLOCK_OUTBOX = """() => new Promise((ready) => {
    const opening = indexedDB.open('ladder', 1);
    opening.onupgradeneeded = () => opening.result.createObjectStore('outbox', { keyPath: 'owner' });
    opening.onsuccess = () => {
        const store = opening.result.transaction('outbox', 'readwrite').objectStore('outbox');
        window.blocking = true;
        const spin = () => { if (window.blocking) store.get('none').onsuccess = spin; };
        spin();
        ready();
    };
})"""


def test_messages_emitted_as_the_page_goes_are_kept_when_their_write_cannot_finish(
    context: BrowserContext, page: Page, site: Site, hub: LadderServer
) -> None:
    """50 emits, then a reload while their IndexedDB write still waits: the write dies with the
    page (and nothing went on the wire, which waits for it), but the record stashed at
    ``pagehide`` reaches the next page, which sends each once."""
    options = {"transports": ["websocket"], "share": False}
    start(page, site, hub.url, **options)
    page.evaluate("client.ready().then(() => client.persisted())")
    blocker = context.new_page()
    blocker.goto(f"{site.origin}/index.html")
    blocker.evaluate(BLOCK_OUTBOX)
    page.evaluate("() => { for (let n = 0; n < 50; n++) client.emit('record', { key: 'going', value: n }); }")
    assert page.evaluate("client._outbox.pending"), "the write waits behind the other page's transaction"
    page.reload()
    blocker.evaluate("window.blocking = false")
    page.evaluate(START, [hub.url, options])
    outcome: dict[str, Any] = page.evaluate(
        """async () => {
            await client.ready();
            return { records: await client.call('records', 'going', { timeout: 10000 }), restored: client.restored };
        }"""
    )
    assert outcome == {"records": list(range(50)), "restored": 50}
    assert page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('ladder:'))") == [], "the stash is gone"


@pytest.mark.parametrize("rung", ["websocket", "sse"])
def test_a_reloaded_page_sends_what_the_previous_page_could_not(page: Page, site: Site, rung: str) -> None:
    """The hub is unreachable (the page's own site is up): 50 emits wait, the page reloads for
    real, the hub comes back: the new page takes the 50 over and each is applied once."""
    port = free_port()
    hub = LadderServer({"allowed_origins": [site.origin]}, port=port)
    module = f"{site.origin}/client/client.js"  # the page loads while the hub is down
    with hub:
        page.goto(f"{site.origin}/index.html")
        page.evaluate(START, [hub.url, {"transports": [rung]}, module])
        page.evaluate("client.ready()")
    page.evaluate("() => { for (let n = 0; n < 50; n++) client.emit('record', { key: 'down', value: n }); }")
    page.evaluate("client.persisted()")
    page.reload()
    page.evaluate(START, [hub.url, {"transports": [rung]}, module])
    with hub:
        outcome: dict[str, Any] = page.evaluate(
            """async () => {
                await client.ready();
                const records = await client.call('records', 'down', { timeout: 10000 });
                return { records, restored: client.restored };
            }"""
        )
    assert outcome == {"records": list(range(50)), "restored": 50}


def test_a_tab_that_closed_with_unsent_messages_is_drained_by_another_tab(
    context: BrowserContext, site: Site, hub: LadderServer
) -> None:
    """Another tab of the same browser takes over what a closed tab left (its Web Lock is free)."""
    first = context.new_page()
    # Each tab's own connection (share: false): the point is one tab draining another's outbox.
    start(first, site, hub.url, transports=["websocket"], share=False)
    first.evaluate("client.ready()")
    context.set_offline(True)
    first.evaluate("() => { for (let n = 0; n < 20; n++) client.emit('record', { key: 'closed-tab', value: n }); }")
    first.evaluate("client.persisted()")
    first.close()
    context.set_offline(False)
    second = context.new_page()
    start(second, site, hub.url, transports=["websocket"], share=False)
    outcome: dict[str, Any] = second.evaluate(
        """async () => {
            await client.ready();
            return { restored: client.restored, records: await client.call('records', 'closed-tab', { timeout: 10000 }) };
        }"""
    )
    assert outcome == {"restored": 20, "records": list(range(20))}


def test_without_indexeddb_the_outbox_is_kept_in_memory_and_says_so(
    context: BrowserContext, page: Page, site: Site, hub: LadderServer
) -> None:
    context.add_init_script("Object.defineProperty(window, 'indexedDB', { value: undefined })")
    start(page, site, hub.url, transports=["websocket"])
    outcome: dict[str, Any] = page.evaluate(
        """async () => {
            await client.ready();
            for (let n = 0; n < 5; n++) client.emit('record', { key: 'memory', value: n });
            const records = await client.call('records', 'memory', { timeout: 10000 });
            return { storage: client.outboxStorage, reason: client.outboxReason, records };
        }"""
    )
    assert outcome["storage"] == "memory"
    assert "IndexedDB is not available" in outcome["reason"]
    assert outcome["records"] == list(range(5))


# -- mobile and background ---------------------------------------------------------------------


def test_a_page_restored_from_the_back_forward_cache_resumes_and_gets_what_it_missed(
    chromium: Browser, page: Page, site: Site, hub: LadderServer
) -> None:
    """docs/browser.md: missed messages arrive within 2 s of ``pageshow``."""
    start(page, site, hub.url, transports=["websocket"])
    page.evaluate(
        """async () => {
            window.shows = [];
            addEventListener('pageshow', (e) => shows.push({ persisted: e.persisted, at: performance.now() }));
            client.subscribe('bfcache', (pub) => got.push({ n: pub.data.n, at: performance.now() }));
            await client.ready();
            window.firstSession = client.sessionId;
        }"""
    )
    page.goto(f"{site.other_origin}/index.html")  # another site: the page goes into the cache
    publish(hub, site, chromium, "bfcache", 20)
    page.go_back(wait_until="commit")  # a page restored from the cache fires no load event
    page.wait_for_function("window.got && got.length >= 20", timeout=10_000)
    outcome: dict[str, Any] = page.evaluate(
        "({ shows, got, same: client.sessionId === firstSession, transport: client.transport })"
    )
    assert [show["persisted"] for show in outcome["shows"]] == [True], "restored from the back/forward cache"
    assert [pub["n"] for pub in outcome["got"]] == list(range(20)), "each missed message once, in order"
    assert outcome["same"], "the same session, resumed"
    took = outcome["got"][-1]["at"] - outcome["shows"][0]["at"]
    print(f"back/forward cache: missed messages {took:.0f} ms after pageshow")
    assert took < 2000, f"missed messages arrived {took:.0f} ms after pageshow"


def test_a_socket_killed_without_a_close_is_noticed_and_the_session_resumed(
    chromium: Browser, page: Page, site: Site
) -> None:
    """docs/browser.md: silent for 1.5 x hb + 1 s, the transport is dropped; the missed messages
    follow within 1.5 x hb + 3 s. With hb = 1 s: 4.5 s."""
    with (
        LadderServer({"allowed_origins": [site.origin], "heartbeat": 1.0}) as server,
        SilentRelay(server.port) as relay,
    ):
        start(page, site, relay.url, transports=["websocket"])
        page.evaluate(
            """async () => {
                client.subscribe('killed', (pub) => got.push({ n: pub.data.n, at: Date.now() }));
                await client.ready();
                await client.subscribe('killed').ready();
                window.firstSession = client.sessionId;
            }"""
        )
        assert relay.swallow() >= 1, "the WebSocket (and the connections that fetched the modules)"
        killed = time.time() * 1000
        publish(server, site, chromium, "killed", 10)
        page.wait_for_function("got.length >= 10", timeout=15_000)
        outcome: dict[str, Any] = page.evaluate("({ got, same: client.sessionId === firstSession })")
    assert [pub["n"] for pub in outcome["got"]] == list(range(10))
    assert outcome["same"], "the session resumed: nothing was lost with the socket"
    took = outcome["got"][-1]["at"] - killed
    print(f"killed socket (hb 1 s): missed messages {took:.0f} ms after it died")
    assert took < 4500, f"recovered {took:.0f} ms after the socket died"


def test_a_frozen_tab_whose_socket_died_recovers_on_resume(chromium: Browser, page: Page, site: Site) -> None:
    """A tab frozen (Page Lifecycle ``freeze``) while its socket was killed silently: on
    ``resume`` the client checks at once instead of waiting out the heartbeat (20 s here).
    docs/browser.md: recovered within 2 x verifyTimeout + 2.5 s of ``resume`` (4.5 s here).

    Headless Chromium does not freeze a page on demand (``Page.setWebLifecycleState`` leaves
    a visible page running), so the page gets the two events the browser fires, ``freeze``
    and later ``resume``; the socket is dead for real."""
    with (
        LadderServer({"allowed_origins": [site.origin]}) as server,
        SilentRelay(server.port) as relay,
    ):
        start(page, site, relay.url, transports=["websocket"], verifyTimeout=1000)
        page.evaluate(
            """async () => {
                client.subscribe('frozen', (pub) => got.push({ n: pub.data.n, at: Date.now() }));
                await client.subscribe('frozen').ready();
                window.firstSession = client.sessionId;
                document.dispatchEvent(new Event('freeze'));
            }"""
        )
        relay.swallow()
        publish(server, site, chromium, "frozen", 10)
        resumed = time.time() * 1000
        page.evaluate("document.dispatchEvent(new Event('resume'))")
        page.wait_for_function("got.length >= 10", timeout=15_000)
        outcome: dict[str, Any] = page.evaluate("({ got, same: client.sessionId === firstSession })")
    assert [pub["n"] for pub in outcome["got"]] == list(range(10))
    assert outcome["same"], "the session resumed"
    took = outcome["got"][-1]["at"] - resumed
    print(f"frozen tab (verifyTimeout 1 s): missed messages {took:.0f} ms after resume")
    assert took < 4500, f"recovered {took:.0f} ms after resume"


# -- the same through a shared connection ------------------------------------------------------


@pytest.mark.parametrize("mode", ["worker", "leader"])
def test_a_shared_tab_restored_from_the_back_forward_cache_gets_what_it_missed(
    chromium: Browser, demo: LadderServer, mode: str
) -> None:
    """The demo's page (same origin as its hub: its tabs share by default) goes into the cache
    and comes back: the 20 messages sent meanwhile arrive once, in order, within 2 s of
    ``pageshow`` (docs/browser.md), through a SharedWorker or as the leader tab."""
    context = chromium.new_context()
    if mode == "leader":
        context.add_init_script("delete window.SharedWorker")
    try:
        page = context.new_page()
        page.goto(f"{demo.url}/?nick=ada#bf-{mode}")
        page.wait_for_function("window.demo !== undefined && demo.client.transport !== null")
        page.evaluate("() => { window.shows = []; addEventListener('pageshow', (e) => shows.push({ persisted: e.persisted, at: performance.now() })); }")
        assert page.evaluate("demo.client.shared === true"), "shared by default"
        page.goto(f"http://localhost:{demo.port}/elsewhere")  # another site: the page goes into the cache
        sender = chromium.new_context()
        try:
            other = sender.new_page()
            other.goto(f"{demo.url}/?nick=bob&share=0#bf-{mode}")
            other.wait_for_function("window.demo !== undefined && demo.client.transport !== null")
            other.evaluate("Promise.all([...Array(20).keys()].map((n) => demo.send(`m${n}`)))")
        finally:
            sender.close()
        page.go_back(wait_until="commit")
        page.wait_for_function("window.demo && demo.messages().length >= 20", timeout=10_000)
        outcome: dict[str, Any] = page.evaluate("({ shows, texts: demo.messages().map((m) => m.text), now: performance.now() })")
    finally:
        context.close()
    assert [show["persisted"] for show in outcome["shows"]] == [True], "restored from the back/forward cache"
    assert outcome["texts"] == [f"m{n}" for n in range(20)], "each missed message once, in order"
    took = outcome["now"] - outcome["shows"][0]["at"]
    print(f"back/forward cache, shared ({mode}): missed messages within {took:.0f} ms of pageshow")
    assert took < 2000, f"missed messages arrived {took:.0f} ms after pageshow"


def test_a_shared_connection_whose_socket_is_killed_silently_resumes(chromium: Browser) -> None:
    """The SharedWorker's WebSocket killed without a close (``SilentRelay``): noticed and the
    session resumed within 1.5 x hb + 3 s (4.5 s with hb = 1 s), as for a tab's own."""
    with (
        LadderServer({"allowed_origins": ["*"], "heartbeat": 1.0}) as server,
        SilentRelay(server.port) as relay,
    ):
        context = chromium.new_context()
        try:
            page = context.new_page()
            page.goto(f"{relay.url}/health")  # the page, its client and its hub on the relay's origin
            page.evaluate(
                """async () => {
                    window.ladder = await import('/client.js');
                    window.got = [];
                    window.client = ladder.connect(location.origin, { transports: ['websocket'], connectTimeout: null });
                    await client.subscribe('killed-shared', (pub) => got.push({ n: pub.data.n, at: Date.now() })).ready();
                    window.firstSession = client.sessionId;
                }"""
            )
            assert page.evaluate("client.shared && client._link.kind") == "worker"
            relay.swallow()
            killed = time.time() * 1000
            context_publish(chromium, server, "killed-shared", 10)
            page.wait_for_function("got.length >= 10", timeout=15_000)
            outcome: dict[str, Any] = page.evaluate("({ got, same: client.sessionId === firstSession })")
        finally:
            context.close()
    assert [pub["n"] for pub in outcome["got"]] == list(range(10))
    assert outcome["same"], "the session resumed: nothing was lost with the socket"
    took = outcome["got"][-1]["at"] - killed
    print(f"killed socket, shared (hb 1 s): missed messages {took:.0f} ms after it died")
    assert took < 4500, f"recovered {took:.0f} ms after the socket died"


def context_publish(chromium: Browser, server: LadderServer, channel: str, count: int) -> None:
    """Publish ``{"n": 0..count-1}`` from a page of the hub's own origin in another context."""
    context = chromium.new_context()
    try:
        page = context.new_page()
        page.goto(f"{server.url}/health")
        page.evaluate(
            """async (data) => {
                const { connect } = await import('/client.js');
                const c = connect(location.origin, { transports: ['websocket'], share: false, outbox: false });
                await c.call('publish', data, { timeout: 10000 });
                await c.close();
            }""",
            {"channel": channel, "count": count},
        )
    finally:
        context.close()
