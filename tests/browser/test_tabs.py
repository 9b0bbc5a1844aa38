"""Tabs sharing one connection (``connect(url, { share: true })``), in real Chromium against the
real server over HTTP/1.1: one SharedWorker holds the session for every tab of a browser
profile; each tab gets its own publications, exactly once, in order, also when the tab that
started the worker closes in the middle of a burst.

Each page is the hub's own ``/health`` (a same-origin document) that imports ``/client.js``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page

from ladder import Client
from tests.support.server import LadderServer, free_port

TABS = 12
BURST = 200

JOIN = """async ([channel, options]) => {
    window.ladder = await import('/client.js');
    window.got = [];
    window.errors = [];
    window.told = [];
    window.client = ladder.connect(location.origin, options);
    client.on("error", (e) => errors.push(e));
    client.on("open", (e) => told.push(["open", e.sessionId, e.resumed]));
    client.on("session_lost", (e) => told.push(["session_lost", e.reason]));
    client.on("close", (e) => told.push(["close", e.transport, e.reconnecting, e.reason]));
    window.states = [];
    client.on("state", (e) => states.push([e.state, e.reason]));
    const sub = client.subscribe(channel, (pub) => got.push(pub.data.n), options.sub ?? {});
    const late = new Promise((_, no) => setTimeout(() => no(new Error("not subscribed within 10 s")), 10000));
    await Promise.race([sub.ready(), late]);
    return { shared: client.shared === true, state: client.state };
}"""


@pytest.fixture
def hub() -> Iterator[LadderServer]:
    port = free_port()
    with LadderServer({"allowed_origins": [f"http://127.0.0.1:{port}"]}, port=port) as server:
        yield server


@pytest.fixture(params=["worker", "leader"])
def context(browser: Browser, request: pytest.FixtureRequest) -> Iterator[BrowserContext]:
    """A browser profile whose tabs share through a SharedWorker, or (as in a browser without
    one) through a leader tab elected with Web Locks and a BroadcastChannel."""
    context = browser.new_context()
    if request.param == "leader":
        context.add_init_script("delete window.SharedWorker")
    errors: list[str] = []
    context.on("page", lambda page: page.on("pageerror", lambda error: errors.append(str(error))))
    yield context
    context.close()
    assert not errors, f"uncaught errors in a page: {errors}"


def sessions(server: LadderServer) -> int:
    return sessions_at(server.url)


def sessions_at(hub: str) -> int:
    """How many sessions the hub holds (its health check says)."""
    with urllib.request.urlopen(f"{hub}/health", timeout=5) as response:
        health: dict[str, Any] = json.load(response)
    return int(health["sessions"])


def open_tabs(
    context: BrowserContext, server: LadderServer, count: int, channel: str, **options: Any
) -> list[Page]:
    pages = []
    for _ in range(count):
        page = context.new_page()
        page.goto(f"{server.url}/health")
        joined = page.evaluate(JOIN, [channel, {"transports": ["sse"], "share": True, **options}])
        assert joined["shared"], "sharing is available in Chromium"
        pages.append(page)
    for page in pages:
        page.wait_for_function(
            "n => client.tabs === n && client.transport === 'sse'", arg=count, timeout=10_000
        )
    return pages


def burst(page: Page, channel: str, **extra: Any) -> None:
    page.evaluate(
        "([channel, count, extra]) => client.call('publish', { channel, count, ...extra }, { timeout: 20000 })",
        [channel, BURST, extra],
    )


def test_twelve_tabs_on_sse_share_one_session_and_each_gets_the_burst_once_in_order(
    hub: LadderServer, context: BrowserContext
) -> None:
    pages = open_tabs(context, hub, TABS, "burst:a")
    assert sessions(hub) == 1, "one session for every tab"
    start = time.monotonic()
    burst(pages[0], "burst:a")
    for page in pages:
        page.wait_for_function("n => got.length >= n", arg=BURST, timeout=10_000)
    elapsed = time.monotonic() - start
    print(f"\n{TABS} tabs on SSE received {BURST} publications each in {elapsed:.2f} s")
    for page in pages:
        assert page.evaluate("got") == list(range(BURST)), "exactly once, in order"
        assert page.evaluate("errors") == []
    assert elapsed < 2.0, f"the burst took {elapsed:.2f} s to reach every tab"
    assert sessions(hub) == 1


def test_closing_the_first_tab_mid_burst_loses_and_doubles_nothing(
    hub: LadderServer, context: BrowserContext
) -> None:
    """The first tab started the worker, or was elected leader (it held the session)."""
    pages = open_tabs(context, hub, TABS, "burst:b")
    first, rest = pages[0], pages[1:]
    # Spaced out (about 1.5 s in all), so that the close lands in the middle of it.
    rest[0].evaluate(
        "() => client.call('publish', { channel: 'burst:b', count: 200, interval: 0.0075, background: true })"
    )
    rest[0].wait_for_function("got.length >= 40", timeout=10_000)
    first.close()
    assert rest[0].evaluate("got.length") < BURST, "closed mid-burst"
    for page in rest:
        page.wait_for_function("n => got.length >= n", arg=BURST, timeout=10_000)
        page.wait_for_function("n => client.tabs === n", arg=len(rest), timeout=10_000)
    for page in rest:
        assert page.evaluate("got") == list(range(BURST)), "nothing lost, nothing doubled"
    # A leader that closed said bye for its session; its successor holds the only one.
    wait_until(lambda: sessions(hub) == 1, "one session for the tabs left")
    # Each tab's first open is its first (not resumed); a leader that went away took its
    # transport with it, told as a tab's own client tells a lost connection (state
    # disconnected, then a close that pairs with the open, reconnecting: there was none), and
    # the new session as it tells one: session_lost, then open, not resumed.
    for page in rest:
        told = page.evaluate("told")
        assert told[0][0] == "open" and told[0][2] is False, told
        sessions_seen = [entry[1] for entry in told if entry[0] == "open"]
        if len(set(sessions_seen)) > 1:  # (a leader tab held it; a worker outlives the tab)
            assert [entry[0] for entry in told[1:]] == ["close", "session_lost", "open"], told
            close = told[1]
            assert close[1] is not None and close[2] is True, close
            assert close[3] == "the tab holding the shared connection went away", close
            assert told[-1][2] is False
            states = page.evaluate("states")
            lost = states.index(["disconnected", "the tab holding the shared connection went away"])
            assert states[-1][0] == "connected" and lost < len(states) - 1, states


def test_the_demo_shows_the_tabs_sharing_its_connection(browser: Browser, demo: LadderServer) -> None:
    """Three tabs of the demo in one browser: one session, a counter of the tabs sharing it,
    each tab its own room history (a later tab still gets the last messages on joining)."""
    context = browser.new_context()
    try:
        tabs = []
        for n in range(3):
            page = context.new_page()
            page.goto(f"{demo.url}/?nick=ada#shared")
            page.wait_for_function("window.demo !== undefined && demo.client.transport !== null")
            if n == 0:
                page.evaluate("Promise.all(['one', 'two'].map((t) => demo.send(t)))")
            page.wait_for_function("demo.messages().length >= 2", timeout=10_000)
            tabs.append(page)
        for page in tabs:
            page.wait_for_function(
                "document.querySelector('#badge-tabs').textContent === '3 tabs'", timeout=10_000
            )
            assert [m["text"] for m in page.evaluate("demo.messages()")] == ["one", "two"]
        assert sessions_at(f"{demo.url}/ladder") == 1, "one connection for the three tabs"
        tabs[0].close()
        tabs[1].wait_for_function(
            "document.querySelector('#badge-tabs').textContent === '2 tabs'", timeout=10_000
        )
        tabs[2].evaluate("demo.send('three')")
        for page in tabs[1:]:
            page.wait_for_function("demo.messages().length >= 3", timeout=10_000)
            assert [m["text"] for m in page.evaluate("demo.messages()")] == ["one", "two", "three"]
        for page in tabs[1:]:
            page.close()
        wait_until(lambda: sessions_at(f"{demo.url}/ladder") == 0, "the last tab closed ends the session")
    finally:
        context.close()


def test_a_frozen_leader_hands_over_and_catches_up_when_it_resumes(
    browser: Browser, hub: LadderServer
) -> None:
    """Without SharedWorker: the leader tab is frozen, and stops running code without a word. A
    visible tab notices the leader no longer answers and takes over within the 8 s
    docs/browser.md states; every tab gets the burst once, in order — the frozen one once it runs
    again.

    Chromium freezes a page with ``Page.setWebLifecycleState`` ``frozen``, sent here; but the
    headless Chromium of these tests leaves a visible page running (its timers fire, its
    BroadcastChannel answers) and fires no ``freeze``, so the debugger stops the page for real:
    a freeze without a ``freeze`` event, the case the followers must notice by themselves."""
    context = browser.new_context()
    context.add_init_script("delete window.SharedWorker")
    try:
        pages = open_tabs(context, hub, 3, "burst:c")
        leader, rest = pages[0], pages[1:]
        first_session = rest[0].evaluate("client.sessionId")
        cdp = context.new_cdp_session(leader)
        cdp.send("Page.setWebLifecycleState", {"state": "frozen"})
        cdp.send("Debugger.enable")
        cdp.send("Debugger.pause")
        start = time.monotonic()
        for page in rest:
            page.wait_for_function(
                "s => client.sessionId !== s && client.transport === 'sse'", arg=first_session, timeout=10_000
            )
        took = time.monotonic() - start
        print(f"\nanother tab took over {took:.1f} s after the leader stopped")
        assert took < 8.0, f"the frozen leader was replaced after {took:.1f} s"
        burst(rest[0], "burst:c")
        for page in rest:
            page.wait_for_function("n => got.length >= n", arg=BURST, timeout=10_000)
            assert page.evaluate("got") == list(range(BURST)), "nothing lost, nothing doubled"
        cdp.send("Debugger.resume")
        cdp.send("Page.setWebLifecycleState", {"state": "active"})
        leader.wait_for_function("n => got.length >= n", arg=BURST, timeout=10_000)
        assert leader.evaluate("got") == list(range(BURST)), "the resumed tab caught up, once, in order"
        leader.wait_for_function("n => client.tabs === n", arg=3, timeout=10_000)
        leader.wait_for_function("s => client.sessionId === s", arg=rest[0].evaluate("client.sessionId"))
        wait_until(lambda: sessions(hub) == 1, "the stopped leader's session ends once it runs again")
    finally:
        context.close()


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_a_worker_that_cannot_start_leaves_the_tabs_to_elect_a_leader(
    browser: Browser, hub: LadderServer
) -> None:
    """The worker's script refused (here: not served) is not a hang: the tabs share through
    a leader tab instead."""
    context = browser.new_context()
    context.route("**/worker.js", lambda route: route.fulfill(status=404, body="not here"))
    try:
        pages = open_tabs(context, hub, 2, "burst:d")
        assert [page.evaluate("client._link.kind") for page in pages] == ["leader", "leader"]
        burst(pages[1], "burst:d")
        for page in pages:
            page.wait_for_function("n => got.length >= n", arg=BURST, timeout=10_000)
            assert page.evaluate("got") == list(range(BURST))
        assert sessions(hub) == 1
    finally:
        context.close()


PARITY = """async ([module, cases]) => {
    const ladder = await import(module);
    const run = async ([url, options], share) => {
        const events = [];
        const t0 = performance.now();
        const client = ladder.connect(url, share ? options : { ...options, share: false });
        client.on("error", (e) => events.push(`error ${e.code}: ${e.reason}`));
        client.on("close", (e) => { if (!e.reconnecting) events.push(`close ${e.reason}`); });
        const pending = client.call("echo", 1, { timeout: 2000 }).then(() => "replied", (e) => e.code);
        const ready = await client.ready().then(() => "connected", (e) => e.code);
        const later = await client.call("echo", 2, { timeout: 1000 }).then(() => "replied", (e) => e.code);
        let emit = "accepted";
        try { client.emit("record", { key: "parity", value: 1 }); } catch (e) { emit = e.code; }
        // (a shared tab's persisted() rejected with the refusal, where a tab's own resolves)
        const persisted = await client.persisted().then(() => "resolved", (e) => e.code);
        const outcome = { events, ready, pending: await pending, later, emit, persisted, state: client.state, transport: client.transport, sessionId: client.sessionId };
        await client.close();
        return { shared: client.shared === true, outcome, took: performance.now() - t0 };
    };
    return Promise.all(cases.map(async (c) => ({ own: await run(c, false), shared: await run(c, true) })));
}"""


def test_a_shared_tab_gets_the_errors_and_state_a_tab_of_its_own_gets(
    browser: Browser, demo: LadderServer
) -> None:
    """A wrong URL, an origin the server refuses, a refused token: the same events, error codes
    and reasons, state, `ready()` and calls through the shared connection as without it."""
    port = free_port()
    config = {"allowed_origins": [f"http://127.0.0.1:{port}"], "require_token": True}
    with LadderServer(config, port=port) as server:
        context = browser.new_context()
        context.add_init_script("delete window.SharedWorker")  # leader tabs (the worker: test_edges)
        refused_origin = f"http://localhost:{port}"  # the hub allows 127.0.0.1 only
        try:
            results = []
            for page_url, module, cases in (
                (
                    f"{refused_origin}/health",
                    "/client.js",
                    [[refused_origin, {"token": "user:ada", "connectTimeout": 5000}]],
                ),
                (
                    f"{server.url}/health",
                    "/client.js",
                    [
                        [server.url, {"token": "user:ada", "transports": ["sse"]}],
                        [server.url, {"token": "nobody", "connectTimeout": 5000}],
                        # refused where the page cannot read why (the answer is asked by a POST)
                        [server.url, {"token": "nobody", "transports": ["sse"], "connectTimeout": 5000}],
                        [server.url, {"token": "nobody", "transports": ["websocket"], "connectTimeout": 5000}],
                    ],
                ),
                # The demo mounts its hub at /ladder: /wrong answers 404.
                (
                    f"{demo.url}/ladder/health",
                    "/ladder/client.js",
                    [
                        [f"{demo.url}/wrong", {"transports": ["sse"], "connectTimeout": 1000}],
                    ],
                ),
            ):
                page = context.new_page()
                page.goto(page_url)
                results += page.evaluate(PARITY, [module, cases])
        finally:
            context.close()
    wrong_origin, right, refused, refused_sse, refused_ws, wrong_url = results
    assert right["shared"]["outcome"]["ready"] == "connected", "the control case connects"
    assert wrong_origin["own"]["outcome"]["ready"] == "origin_not_allowed"
    assert refused["own"]["outcome"]["ready"] == "unauthorized"
    for hidden in (refused_sse, refused_ws):  # (was connect_failed, and retried for good)
        assert hidden["own"]["outcome"]["ready"] == "unauthorized", hidden
        assert hidden["own"]["outcome"]["state"] == "closed"
    assert wrong_url["own"]["outcome"]["ready"] == "connect_failed"
    for case in (wrong_origin, refused, refused_sse, refused_ws, wrong_url):
        own, shared = case["own"], case["shared"]
        assert (own["shared"], shared["shared"]) == (False, True)
        assert shared["outcome"] == own["outcome"], "the same events, errors and state"


SLOW_OUTBOX_LOCKS = """
    const request = navigator.locks.request.bind(navigator.locks);
    navigator.locks.request = (name, options, callback) => {
        if (callback === undefined) [options, callback] = [{}, options];
        return request(name, options, (lock) => {
            const held = callback(lock);
            if (!name.startsWith("ladder-outbox:") || !held || !held.then) return held;
            return held.then((value) => new Promise((resolve) => setTimeout(() => resolve(value), 1500)));
        });
    };
"""
"""An outbox's Web Lock is let go 1.5 s after its page gives it up (a busy or closing page)."""


@pytest.mark.parametrize("going", ["closed", "lock let go late"])
def test_emits_a_dead_leader_had_not_sent_are_sent_once_by_the_next_leader(
    browser: Browser, going: str
) -> None:
    """Leader tabs (no SharedWorker): the hub is down, a follower's 20 emits wait in the
    leader's outbox, the leader tab goes away; the other tab becomes leader and sends them once
    the hub is back, each applied once (the handler records them). The leader hands over only
    once its outbox is free to claim: with the lock let go late (its page still running, a
    ``pagehide`` dispatched), a leader that handed over at once left the emits unclaimed."""
    context = browser.new_context()
    context.add_init_script("delete window.SharedWorker")
    if going == "lock let go late":
        context.add_init_script(SLOW_OUTBOX_LOCKS)
    port = free_port()
    hub = LadderServer({"allowed_origins": [f"http://127.0.0.1:{port}"]}, port=port)
    options = {"transports": ["websocket"], "backoffMax": 300, "connectTimeout": None}
    try:
        with hub:
            leader, follower = open_tabs_on(context, hub, 2, options)
        follower.evaluate(
            "async () => { for (let n = 0; n < 20; n++) client.emit('record', { key: 'dead-leader', value: n }); await client.persisted(); }"
        )
        assert follower.evaluate("client.state") != "connected"
        if going == "closed":
            leader.close(run_before_unload=True)  # as a person closes it: pagehide runs
        else:
            leader.evaluate("window.dispatchEvent(new PageTransitionEvent('pagehide', { persisted: false }))")
        follower.wait_for_function("client._link.kind === 'leader' && client.tabs === 1", timeout=10_000)
        with hub:
            outcome: dict[str, Any] = follower.evaluate(
                """async () => {
                    await client.ready();
                    return { records: await client.call('records', 'dead-leader', { timeout: 10000 }), restored: client.restored };
                }"""
            )
    finally:
        context.close()
    assert outcome == {"records": list(range(20)), "restored": 20}, "each sent once by the next leader"


def test_every_tab_hears_restored_when_a_new_leader_takes_over_what_the_old_one_left(browser: Browser) -> None:
    """Leader tabs, the hub down: a follower's emits wait in the leader's outbox, and the leader
    goes. The next leader's client takes them over and sends them first, and every tab's
    ``restoredMessages`` changed with no event to say so (an app showing them as being sent
    learnt of them only by reading it again). Now each tab hears ``restored``, once."""
    context = browser.new_context()
    context.add_init_script("delete window.SharedWorker")
    port = free_port()
    hub = LadderServer({"allowed_origins": [f"http://127.0.0.1:{port}"]}, port=port)
    options = {"transports": ["websocket"], "backoffMax": 300, "connectTimeout": None}
    try:
        with hub:
            leader, *followers = open_tabs_on(context, hub, 3, options)
        for page in followers:
            page.evaluate(
                "() => { window.told = []; client.on('restored', (e) => told.push([e.count, e.messages.map((m) => m.data.value)])); }"
            )
        followers[0].evaluate(
            "async () => { for (let n = 0; n < 3; n++) client.emit('record', { key: 'handed', value: n }); await client.persisted(); }"
        )
        leader.close(run_before_unload=True)
        for page in followers:
            page.wait_for_function("told.length > 0 && client.tabs === 2", timeout=10_000)
        with hub:
            records = followers[1].evaluate("async () => { await client.ready(); return await client.call('records', 'handed', { timeout: 10000 }); }")
        told = [page.evaluate("told") for page in followers]
    finally:
        context.close()
    assert told == [[[3, [0, 1, 2]]], [[3, [0, 1, 2]]]], told
    assert records == [0, 1, 2]


def open_tabs_on(
    context: BrowserContext, server: LadderServer, count: int, options: dict[str, Any]
) -> list[Page]:
    """``count`` tabs sharing one connected client (``connect(url, options)``, the default)."""
    pages = []
    for _ in range(count):
        page = context.new_page()
        page.goto(f"{server.url}/health")
        page.evaluate(
            "async (options) => { window.ladder = await import('/client.js'); window.client = ladder.connect(location.origin, options); await client.ready(); }",
            options,
        )
        pages.append(page)
    for page in pages:
        page.wait_for_function("n => client.shared && client.tabs === n", arg=count, timeout=10_000)
    return pages


def _one_tab_then_hub_down(context: BrowserContext) -> tuple[LadderServer, Page, dict[str, Any]]:
    """A hub (stopped again) that one tab connected to, and the options that tab used: what
    the tab does next waits for the hub, started again with ``with hub:``."""
    port = free_port()
    hub = LadderServer({"allowed_origins": [f"http://127.0.0.1:{port}"]}, port=port)
    options: dict[str, Any] = {"transports": ["websocket"], "backoffMax": 300, "connectTimeout": None}
    with hub:
        [first] = open_tabs_on(context, hub, 1, options)
    return hub, first, options


def test_emits_of_a_closed_last_tab_are_sent_once_by_the_next_tab(context: BrowserContext) -> None:
    """As without sharing: the hub is down, the only tab emits 20 and closes; a tab opened once
    the hub is back sends them, each applied once — also when a SharedWorker held them."""
    hub, first, options = _one_tab_then_hub_down(context)
    first.evaluate(
        "async () => { for (let n = 0; n < 20; n++) client.emit('record', { key: 'last-tab', value: n }); await client.persisted(); }"
    )
    assert first.evaluate("client.state") != "connected"
    first.close(run_before_unload=True)  # as a person closes it: pagehide runs
    with hub:
        [second] = open_tabs_on(context, hub, 1, options)
        outcome: dict[str, Any] = second.evaluate(
            "async () => ({ records: await client.call('records', 'last-tab', { timeout: 10000 }), restored: client.restored })"
        )
    assert outcome == {"records": list(range(20)), "restored": 20}, "each sent once by the next tab"


def test_a_misspelt_option_throws_also_when_the_tab_would_share(context: BrowserContext, hub: LadderServer) -> None:
    """The options went to the worker (or the leader tab), where the throw reached no one:
    ``connect(url, {trasnports: [...]})`` returned a client that never connected, whose
    ``ready()`` and calls never settled."""
    page = context.new_page()
    page.goto(f"{hub.url}/health")
    thrown = page.evaluate(
        """async () => {
            const ladder = await import('/client.js');
            const tries = [{ trasnports: ["sse"] }, { timeout: 5 }, { transports: "sse" }];
            return tries.map((options) => {
                try { ladder.connect(location.origin, options); return "no error"; }
                catch (e) { return `${e.name}: ${e.message}`; }
            });
        }"""
    )
    assert thrown[0].startswith('TypeError: unknown option "trasnports"; the options are transports'), thrown
    assert thrown[1].startswith('TypeError: unknown option "timeout"'), thrown
    assert thrown[2].startswith("TypeError: transports must be an array of rung names"), thrown


def test_a_shared_tabs_subscribe_checks_its_arguments_as_a_tab_of_its_own_does(
    context: BrowserContext, hub: LadderServer
) -> None:
    """A shared client's ``subscribe`` checked nothing: ``{recent: -1}`` went to the shared
    connection, whose refusal reached no one, and the channel stayed stuck for that tab
    (``ready()`` pending, later publications undelivered); ``since`` of another shape was
    ignored and ``ready()`` said ``recovered: true``."""
    page = context.new_page()
    page.goto(f"{hub.url}/health")
    thrown = page.evaluate(
        """async () => {
            const ladder = await import('/client.js');
            const client = ladder.connect(location.origin, { transports: ["sse"] });
            const tries = [[null, { recent: -1 }], [{ recent: 3 }], [null, { recnt: 5 }], [null, { since: ["e", 2] }]];
            const said = tries.map((args) => {
                try { client.subscribe("room:args", ...args); return "no error"; }
                catch (e) { return `${e.name}: ${e.message}`; }
            });
            const sub = client.subscribe("room:args", null, { recent: 0 });
            await client.ready();
            const result = await Promise.race([sub.ready(), new Promise((r) => setTimeout(() => r("stuck"), 5000))]);
            return { shared: client.shared === true, said, ready: result === "stuck" ? result : result.channel };
        }"""
    )
    assert thrown["shared"], "the tab shares its connection"
    said = thrown["said"]
    assert said[0] == "RangeError: recent must be an integer from 0 to 10000, not -1", said
    assert said[1].startswith("TypeError: subscribe: the second argument is the listener"), said
    assert said[2].startswith('TypeError: subscribe: unknown option "recnt"'), said
    assert said[3].startswith("TypeError: since must be {epoch, offset}"), said
    assert thrown["ready"] == "room:args", "the channel works after the refused attempts"


def test_a_tab_knows_how_many_tabs_share_once_it_is_ready(context: BrowserContext, hub: LadderServer) -> None:
    """``client.tabs`` read right after ``await client.ready()`` said 0 in the second tab: the
    count came after the state that resolved ``ready()``."""
    pages = [context.new_page() for _ in range(3)]
    counts = []
    for page in pages:
        page.goto(f"{hub.url}/health")
        counts.append(
            page.evaluate(
                """async () => {
                    const ladder = await import('/client.js');
                    window.client = ladder.connect(location.origin, { transports: ["sse"] });
                    await client.ready();
                    return [client.shared === true, client.tabs];
                }"""
            )
        )
    assert counts == [[True, 1], [True, 2], [True, 3]], counts


def test_a_tab_that_joins_a_connection_already_up_hears_it_connect(context: BrowserContext, hub: LadderServer) -> None:
    """The second tab's client went from disconnected to connected without an event: a page
    that shows its state from ``state``, ``transport`` and ``open`` never showed it connected."""
    first, second = context.new_page(), context.new_page()
    for page in (first, second):
        page.goto(f"{hub.url}/health")
    track = """async () => {
        const ladder = await import('/client.js');
        window.seen = [];
        window.client = ladder.connect(location.origin, { transports: ["sse"] });
        for (const name of ["state", "transport", "open"]) client.on(name, (e) => seen.push([name, e]));
        await client.ready();
        return { shared: client.shared === true, state: client.state };
    }"""
    assert first.evaluate(track) == {"shared": True, "state": "connected"}
    assert second.evaluate(track) == {"shared": True, "state": "connected"}
    started = [name for name, event in first.evaluate("() => seen") if name != "state" or event["state"] != "connecting"]
    assert started == ["open", "state", "transport"], started  # (the first tab's, each once)
    seen = second.evaluate("() => seen")
    names = [name for name, _ in seen]
    assert names == ["open", "state", "transport"], seen
    assert seen[1][1]["state"] == "connected"
    assert seen[2][1]["old"] is None and seen[2][1]["new"] == "sse"
    assert seen[0][1]["transport"] == "sse" and seen[0][1]["sessionId"] == first.evaluate("() => client.sessionId")
    assert seen[0][1]["resumed"] is False  # (the tab's first session: nothing to resume)


def test_closing_a_shared_client_says_closed_as_a_tab_of_its_own_does(
    context: BrowserContext, hub: LadderServer
) -> None:
    """A tab's own client says ``state: closed`` then ``close``; a shared one said only
    ``close`` (its ``state`` became "closed" without a word)."""
    page = context.new_page()
    page.goto(f"{hub.url}/health")
    said = page.evaluate("""async () => {
        const ladder = await import('/client.js');
        const out = {};
        for (const share of [true, false]) {
            const client = ladder.connect(location.origin, { transports: ["sse"], share });
            await client.ready();
            const seen = [];
            client.on("state", (e) => seen.push(`state:${e.state}:${e.reason}`));
            client.on("close", (e) => seen.push(`close:${e.reason}`));
            await client.close();
            const later = await client.call("echo", 1).then(() => "answered", (e) => `${e.code}: ${e.reason}`);
            out[share ? "shared" : "own"] = { shared: client.shared === true, seen, later };
        }
        return out;
    }""")
    expected = ["state:closed:the client was closed", "close:the client was closed"]
    later = "closed: this client was closed"  # (a shared one said "the client was closed")
    assert said["shared"] == {"shared": True, "seen": expected, "later": later}, said
    assert said["own"] == {"shared": False, "seen": expected, "later": later}, said


def test_tabs_share_whatever_the_order_of_their_options_and_a_default_given_or_not(
    context: BrowserContext, hub: LadderServer
) -> None:
    """The connection was named after the options as written: ``{maxQueue: 5, outboxBytes:
    5000}`` and the same reversed, or ``{}`` and ``{openTimeout: 10000}`` (the default), gave
    a connection each."""
    groups = [
        [{"maxQueue": 5, "outboxBytes": 5000}, {"outboxBytes": 5000, "maxQueue": 5}],
        [{}, {"openTimeout": 10_000}],
    ]
    pages = []
    for group in groups:
        for options in group:
            page = context.new_page()
            page.goto(f"{hub.url}/health")
            page.evaluate(
                "async (options) => { window.ladder = await import('/client.js'); window.client = ladder.connect(location.origin, options); await client.ready(); }",
                options,
            )
            pages.append(page)
    for page in pages:
        page.wait_for_function("client.shared && client.tabs === 2", timeout=10_000)
    assert sessions(hub) == 2, "one connection for each group of tabs"


RESTORED = """async () => {
    await client.persisted();
    return client.restoredMessages.map((m) => [m.kind, Object.prototype.toString.call(m.data.value), Array.from(new Uint8Array(m.data.value))]);
}"""


def test_restored_bytes_come_back_as_a_uint8array_also_through_a_shared_connection(
    context: BrowserContext,
) -> None:
    """``restoredMessages`` of a shared connection held bytes in their JSON form
    (``{$b: base64}``): the tab had handed them over in it."""
    hub, first, options = _one_tab_then_hub_down(context)
    first.evaluate(
        """async () => {
            client.emit('record', { key: 'bytes', value: new Uint8Array([1, 2, 3]) });
            client.emit('record', { key: 'bytes', value: new Uint8Array([9]).buffer });
            await client.persisted();
        }"""
    )
    first.close(run_before_unload=True)  # as a person closes it: pagehide runs
    with hub:
        [second] = open_tabs_on(context, hub, 1, options)
        restored = second.evaluate(RESTORED)
    assert restored == [
        ["emit", "[object Uint8Array]", [1, 2, 3]],
        ["emit", "[object Uint8Array]", [9]],
    ]


def test_followers_hear_resubscribed_when_a_new_leader_starts_a_new_session(
    browser: Browser, hub: LadderServer
) -> None:
    """Leader tabs: the leader closed, the next one started a new session, and the other tabs
    followed their channels again in it without a ``resubscribed`` event (a tab's own client
    hears one for each channel in a new session)."""
    context = browser.new_context()
    context.add_init_script("delete window.SharedWorker")
    try:
        pages = open_tabs(context, hub, 3, "resub:a")
        leader, rest = pages[0], pages[1:]
        for page in rest:
            page.evaluate("() => { client.on('resubscribed', (e) => told.push(['resubscribed', e.channel, e.recovered])); }")
        burst(leader, "resub:a")
        for page in pages:
            page.wait_for_function("n => got.length >= n", arg=BURST, timeout=10_000)
        leader.close(run_before_unload=True)
        for page in rest:
            page.wait_for_function("told.some((e) => e[0] === 'resubscribed')", timeout=10_000)
        burst(rest[0], "resub:a", start=BURST)
        for page in rest:
            page.wait_for_function("n => got.length >= n", arg=2 * BURST, timeout=10_000)
            assert page.evaluate("got") == list(range(2 * BURST))
            told = page.evaluate("told")
            assert [entry[0] for entry in told] == ["open", "close", "session_lost", "open", "resubscribed"], told
            assert told[-1] == ["resubscribed", "resub:a", True]
    finally:
        context.close()


CONNECT_LATE = """async (options) => {
    window.ladder = await import('/client.js');
    const t0 = performance.now();
    window.client = ladder.connect(location.origin, options);
    window.errors = [];
    client.on("error", (e) => errors.push(e.code));
    const pending = new Promise((resolve) => setTimeout(() => resolve("still pending after 10 s"), 10000));
    const said = await Promise.race([client.ready().then(() => "connected", (e) => e.code), pending]);
    return { shared: client.shared === true, said, took: (performance.now() - t0) / 1000, errors };
}"""


@pytest.mark.parametrize("share", [False, True])
def test_a_tab_joining_while_the_connection_is_down_hears_connect_failed(
    context: BrowserContext, share: bool
) -> None:
    """A tab that joined a shared connection while it was down never heard ``connect_failed``,
    and its ``ready()`` stayed pending until the network was back (a tab of its own: rejected
    ``connectTimeout`` after it started). The tab that had connected hears nothing."""
    port = free_port()
    hub = LadderServer({"allowed_origins": [f"http://127.0.0.1:{port}"]}, port=port)
    options = {"transports": ["websocket"], "backoffMax": 300, "connectTimeout": 3000, "share": share}
    with hub:
        [first] = open_tabs_on(context, hub, 1, {**options, "share": True})
        first.evaluate("() => { window.errors = []; client.on('error', (e) => errors.push(e.code)); }")
        late = context.new_page()
        late.goto(f"{hub.url}/health")
        late.evaluate("async () => { window.ladder = await import('/client.js'); }")
    outcome = late.evaluate(CONNECT_LATE, options)
    assert outcome["shared"] is share
    assert outcome["said"] == "connect_failed", outcome
    assert outcome["errors"] == ["connect_failed"], outcome
    assert 2.9 <= outcome["took"] < 4.5, outcome
    assert "connect_failed" not in first.evaluate("() => errors"), "the tab that had connected was told nothing"
    with hub:  # (connected, a later ready() resolves)
        late.wait_for_function("client.state === 'connected'", timeout=10_000)
        assert late.evaluate("() => client.ready().then(() => 'resolved')") == "resolved"


@pytest.mark.parametrize("closing", ["first", "second"])
def test_close_in_a_shared_tab_drops_its_unsent_messages(context: BrowserContext, closing: str) -> None:
    """``close()`` in a tab that was not the last: its call rejected ``closed``, yet the shared
    connection sent its emit and its call once the hub was back. Now they are dropped, as a
    tab's own client drops them; the other tab's messages go out, once."""
    port = free_port()
    hub = LadderServer({"allowed_origins": [f"http://127.0.0.1:{port}"]}, port=port)
    options = {"transports": ["websocket"], "backoffMax": 300, "connectTimeout": None}
    with hub:
        pages = open_tabs_on(context, hub, 2, options)
    # The hub is gone once both tabs say so: a message sent before the connection heard it
    # would be written to the dead socket, sent, and so carried to the next session rather
    # than dropped (only unsent messages can be). (The test failed once in a full run, the
    # closed tab's emit and call applied; this is the reading of it, not a proven cause.)
    for page in pages:
        page.wait_for_function("client.state !== 'connected'", timeout=15_000)
    tab, other = pages if closing == "first" else pages[::-1]
    other.evaluate("async () => { client.emit('record', { key: 'closing', value: 'other before' }); await client.persisted(); }")
    said = tab.evaluate(
        """async () => {
            client.emit('record', { key: 'closing', value: 'closed emit' });
            const call = client.call('record', { key: 'closing', value: 'closed call' }).then(() => 'answered', (e) => e.code);
            await client.persisted();
            await client.close();
            return [client.state, await call];
        }"""
    )
    assert said == ["closed", "closed"]
    with hub:
        # (the leader closing: the other tab writes once the connection it shares is up again,
        # through the new leader, else its emit may meet the hand-over and be refused
        # leader_lost, as browser.md says: a tab count of 1 did not mean the hand-over was over)
        other.wait_for_function("client.tabs === 1 && client.state === 'connected'", timeout=15_000)
        records = other.evaluate(
            """async () => {
                client.emit('record', { key: 'closing', value: 'other after' });
                await client.persisted();
                return client.call('records', 'closing', { timeout: 10000 });
            }"""
        )
    assert records == ["other before", "other after"], "the closed tab's unsent messages were dropped"


def test_flush_in_a_shared_tab_resolves_once_the_shared_connection_had_everything_applied(
    context: BrowserContext, hub: LadderServer
) -> None:
    """The browser client had no ``flush()``: an app closing a tab after its emits lost them,
    with nothing to wait on. A shared tab's waits for the connection it shares."""
    pages = open_tabs_on(context, hub, 2, {"transports": ["websocket"]})
    said = pages[1].evaluate(
        """async () => {
            for (let n = 0; n < 20; n++) client.emit('record', { key: 'flushed', value: n });
            await client.flush({ timeout: 10000 });
            return client.state;
        }"""
    )
    assert said == "connected"

    async def applied() -> Any:
        async with Client(hub.url, transports=["websocket"]) as other:
            return await other.call("records", "flushed")

    with concurrent.futures.ThreadPoolExecutor(1) as thread:  # (Playwright's loop runs in this one)
        assert thread.submit(asyncio.run, applied()).result(30) == list(range(20)), "applied before flush() resolved"


def test_a_shared_tabs_refresh_checks_its_token_as_a_tab_of_its_own_does(
    context: BrowserContext, hub: LadderServer
) -> None:
    """``refresh(token)`` sent any value: an object, or a token over 8,192 characters, went to
    the server to be refused (``bad_frame``); both are the caller's ``TypeError`` now, in a
    shared tab as in a tab of its own, before anything is sent."""
    page = context.new_page()
    page.goto(f"{hub.url}/health")
    said = page.evaluate(
        """async () => {
            const ladder = await import('/client.js');
            const out = [];
            for (const shared of [true, false]) {
                const client = ladder.connect(location.origin, { transports: ["sse"], share: shared });
                await client.ready();
                out.push(client.shared === true);
                for (const token of ["x".repeat(8193), { user: "ada" }]) {
                    try { await client.refresh(token); out.push("no error"); }
                    catch (e) { out.push(`${e.name}: ${e.message.slice(0, 40)}`); }
                }
                await client.close();
            }
            return out;
        }"""
    )
    long = "TypeError: the token is 8193 characters: a server t"
    kind = "TypeError: refresh(token): token must be a string, "
    assert said == [True, long, kind, False, long, kind], said
