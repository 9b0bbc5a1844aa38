"""The browser client at the edges, in real Chromium against real servers: a value that cannot
be encoded, an offline queue beyond the rate burst, a page whose origin the server refuses.

Each page is the hub's own ``/health`` (a same-origin document) that imports ``/client.js``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page

from tests.browser.silent_relay import SilentRelay
from tests.support.server import LadderServer, free_port


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


def open_page(page: Page, server: LadderServer) -> None:
    page.goto(f"{server.url}/health")
    page.evaluate("async () => { window.ladder = await import('/client.js'); }")


@pytest.mark.parametrize("rung", ["websocket", "longpoll"])
def test_a_value_that_cannot_be_encoded_throws_and_wedges_nothing(page: Page, rung: str) -> None:
    port = free_port()
    with LadderServer({"allowed_origins": [f"http://127.0.0.1:{port}"]}, port=port) as server:
        open_page(page, server)
        outcome: dict[str, Any] = page.evaluate(
            """async (rung) => {
                const client = ladder.connect(location.origin, { transports: [rung] });
                await client.ready();
                const out = {};
                try { client.emit("record", { key: "big", value: 10n }); } catch (e) { out.emit = `${e.name}: ${e.message}`; }
                const loop = { a: 1 }; loop.self = loop;
                try { await client.call("echo", loop, { timeout: 5000 }); } catch (e) { out.call = `${e.name}: ${e.message}`; }
                try { await client.publish("open:x", [1n]); } catch (e) { out.publish = `${e.name}: ${e.message}`; }
                // What the server could not decode (its whole batch refused after the message
                // took an id): a lone surrogate, data nested past 1,024 levels.
                try { await client.call("echo", "a\\ud800b", { timeout: 5000 }); } catch (e) { out.surrogate = `${e.name}: ${e.message}`; }
                let deep = 1; for (let n = 0; n < 1100; n++) deep = [deep];
                try { await client.call("echo", deep, { timeout: 5000 }); } catch (e) { out.deep = `${e.name}: ${e.message}`; }
                for (let n = 0; n < 3; n++) client.emit("record", { key: `after-${rung}`, value: n });
                out.echo = (await client.call("echo", "still here", { timeout: 5000 })).data;
                out.records = await client.call("records", `after-${rung}`, { timeout: 5000 });
                out.transport = client.transport;
                await client.close();
                return out;
            }""",
            rung,
        )
    assert outcome["emit"].startswith("TypeError: cannot send a BigInt at d.value")
    assert outcome["call"].startswith("TypeError: cannot send an Object that contains itself at d.self")
    assert outcome["publish"].startswith("TypeError: cannot send a BigInt at d[0]")
    assert outcome["surrogate"].startswith("TypeError: cannot send a string with a lone surrogate at d")
    assert outcome["deep"].startswith("TypeError: cannot send arrays and objects nested more than 254 deep at d[0]")
    assert outcome["echo"] == "still here" and outcome["records"] == [0, 1, 2]
    assert outcome["transport"] == rung, "still connected, on the same rung"


@pytest.mark.parametrize("rung", ["websocket", "sse", "longpoll", "poll"])
def test_an_offline_queue_beyond_the_rate_burst_is_applied_once_in_order(page: Page, rung: str) -> None:
    """300 emits queued while the hub is down (default limits: burst 200, 100 per second): all
    applied exactly once, in order, once it is up."""
    with LadderServer({"allowed_origins": ["*"]}) as pages:
        open_page(page, pages)
        port = free_port()
        hub = f"http://127.0.0.1:{port}"
        page.evaluate(
            """([hub, rung]) => {
                window.errors = [];
                window.client = ladder.connect(hub, { transports: [rung], backoffMax: 300, connectTimeout: null });
                client.on("error", (e) => errors.push(e));
                for (let n = 0; n < 300; n++) client.emit("record", { key: `queue-${rung}`, value: n });
                window.records = client.call("records", `queue-${rung}`, { timeout: null });
            }""",
            [hub, rung],
        )
        assert page.evaluate("client.state") != "connected"
        with LadderServer({"allowed_origins": [pages.url]}, port=port):
            outcome: dict[str, Any] = page.evaluate(
                """async () => {
                    const records = await window.records;
                    const out = { records, errors, sessionId: client.sessionId };
                    await client.close();
                    return out;
                }"""
            )
    assert outcome["records"] == list(range(300)), "each applied once, in order"
    assert outcome["errors"] == [], "nothing refused for good"


def test_a_page_whose_origin_is_refused_gets_a_fatal_error_not_a_loop(page: Page) -> None:
    # The test hub allows only http://allowed.example: the page's own origin is refused. Its
    # WebSocket upgrade is refused, its same-origin GETs carry no Origin and open sessions, and
    # every POST is refused with origin_not_allowed.
    with LadderServer() as server:
        open_page(page, server)
        requests: list[str] = []
        page.on("request", lambda request: requests.append(request.url))
        outcome: dict[str, Any] = page.evaluate(
            """async () => {
                const errors = [];
                const client = ladder.connect(location.origin, { connectTimeout: null });
                client.on("error", (e) => errors.push(e));
                const pending = client.call("echo", 1, { timeout: 20000 }).catch((e) => e.code);
                const ready = await client.ready().then(() => "connected", (e) => e.code);
                const later = await client.call("echo", 2).catch((e) => e.code);
                return { errors, ready, pending: await pending, later, state: client.state };
            }"""
        )
        settled = len(requests)
        page.wait_for_timeout(3000)  # a loop would keep opening sessions meanwhile
        more = requests[settled:]
    assert outcome["state"] == "closed"
    assert [e["code"] for e in outcome["errors"]] == ["origin_not_allowed"]
    reason = outcome["errors"][0]["reason"]
    assert f"does not allow requests from {server.url}" in reason and "allowed_origins" in reason
    assert outcome["ready"] == outcome["pending"] == outcome["later"] == "origin_not_allowed"
    assert more == [], f"no reconnect loop: {more}"


@pytest.mark.parametrize(
    ("allowed", "offered", "args"),
    [
        (["websocket"], ["sse", "longpoll", "poll"], ()),  # refused at the hello: readable
        (["websocket", "sse"], ["longpoll", "poll"], ("--asgi-ws",)),  # both refusals hidden
    ],
)
def test_transports_the_server_does_not_offer_fail_at_once_naming_the_fix(
    page: Page, allowed: list[str], offered: list[str], args: tuple[str, ...]
) -> None:
    """A page allowed only rungs the server switched off retried them until connectTimeout,
    then for as long as it lived (a browser hides why an upgrade or a stream was refused)."""
    port = free_port()
    config = {"transports": offered, "allowed_origins": [f"http://127.0.0.1:{port}"]}
    with LadderServer(config, port=port, args=args) as server:
        open_page(page, server)
        requests: list[str] = []
        page.on("request", lambda request: requests.append(request.url))
        outcome: dict[str, Any] = page.evaluate(
            """async (allowed) => {
                const errors = [];
                const started = performance.now();
                const client = ladder.connect(location.origin, { transports: allowed });
                client.on("error", (e) => errors.push(e));
                const ready = await client.ready().then(() => "connected", (e) => `${e.code}: ${e.reason}`);
                const later = await client.call("echo", 1).catch((e) => e.code);
                return { errors, ready, later, state: client.state, took: performance.now() - started };
            }""",
            allowed,
        )
        settled = len(requests)
        page.wait_for_timeout(2000)  # a loop would keep trying meanwhile
        more = requests[settled:]
    assert outcome["took"] < 3000, outcome
    reason = (
        f"this client allows only {', '.join(allowed)} (its transports option) and the server offers "
        f"only {', '.join(offered)} (its transports setting)"
    )
    assert outcome["ready"].startswith(f"unsupported_transport: {reason}"), outcome
    assert [e["code"] for e in outcome["errors"]] == ["unsupported_transport"]
    assert outcome["errors"][0]["reason"].startswith(reason)
    assert outcome["later"] == "unsupported_transport" and outcome["state"] == "closed"
    assert more == [], f"no reconnect loop: {more}"


@pytest.mark.parametrize("rung", ["websocket", "sse"])
def test_the_server_ending_the_session_closes_the_client(page: Page, rung: str) -> None:
    """hub.disconnect (a bye with session_closed) ends the browser client for good, as it ends
    the Python client: no new session, no error event, pending calls fail with
    session_closed and later ones with closed (protocol §9.4)."""
    port = free_port()
    with LadderServer({"allowed_origins": [f"http://127.0.0.1:{port}"]}, port=port) as server:
        open_page(page, server)
        outcome: dict[str, Any] = page.evaluate(
            """async (rung) => {
                const client = ladder.connect(location.origin, { transports: [rung] });
                await client.ready();
                const first = client.sessionId;
                const errors = [];
                client.on("error", (e) => errors.push(e.code));
                const closed = new Promise((resolve) => client.on("close", (e) => { if (!e.reconnecting) resolve(e); }));
                const kicked = client.call("kick", null, { timeout: 5000 }).then(() => "replied", (e) => e.code);
                const event = await Promise.race([closed, new Promise((resolve) => setTimeout(() => resolve(null), 5000))]);
                await new Promise((resolve) => setTimeout(resolve, 1500));  // no event to await: a reconnect would be done by now
                let later = null;
                try { client.emit("record", { key: "after", value: 1 }); } catch (e) { later = e.code; }
                const kickedAs = await Promise.race([kicked, new Promise((resolve) => setTimeout(() => resolve("pending"), 5000))]);
                return { first, now: client.sessionId, state: client.state, reason: event?.reason ?? null, kicked: kickedAs, later, errors };
            }""",
            rung,
        )
        assert outcome["state"] == "closed", outcome
        assert outcome["now"] == outcome["first"], "no new session"
        assert (outcome["reason"] or "").startswith("session_closed"), outcome
        assert outcome["later"] == "closed" and outcome["errors"] == [], outcome
        assert outcome["kicked"] in ("replied", "session_closed"), outcome


@pytest.mark.parametrize("transports", [None, ["websocket"], ["sse"]])
def test_a_cross_origin_page_the_server_refuses_is_told_so_and_gives_up(
    page: Page, transports: list[str] | None
) -> None:
    """A page on one origin, the hub on another that does not allow it: the refusals carried
    no CORS headers, so the page could not read them; it retried blind until
    ``connect_failed`` (and on, every few seconds). The refusal is readable now: the client
    gives up at once with ``origin_not_allowed``, naming ``allowed_origins``. A browser hides
    a refused upgrade or event stream whatever the headers: a client on those rungs alone
    looped ("cannot connect"); it asks by an empty POST, whose refusal it can read."""
    options = {"share": False, "connectTimeout": 8000, **({"transports": transports} if transports else {})}
    with LadderServer({}) as server:  # allows http://allowed.example only
        page.goto(f"http://localhost:{server.port}/health")
        outcome: dict[str, Any] = page.evaluate(
            """async ([hub, options]) => {
                const ladder = await import('/client.js');
                const client = ladder.connect(hub, options);
                const failed = await client.ready().then(() => null, (e) => ({ code: e.code, reason: e.message }));
                let later = null;
                try { await client.call("echo", 1); } catch (e) { later = e.code; }
                return { failed, later, state: client.state };
            }""",
            [f"http://127.0.0.1:{server.port}", options],
        )
    assert outcome["failed"]["code"] == "origin_not_allowed", outcome
    assert "allowed_origins" in outcome["failed"]["reason"], outcome
    assert outcome["later"] == "origin_not_allowed" and outcome["state"] == "closed", outcome


def test_a_token_function_is_refreshed_over_the_live_session(page: Page) -> None:
    """4 s tokens: the browser client had no refresh, so each session ended at its token's
    expiry (a tab's own client: session_lost; a shared one: token_expired, for good). Now a
    `token` function is called halfway through each token's life and sent as a `refresh`,
    and the session outlives its tokens; such a client keeps a connection of its own."""
    import time  # noqa: PLC0415

    import jwt  # noqa: PLC0415

    secret = "s3cret-for-tests-only-0123456789abcdef"
    start = int(time.time())
    tokens = [
        jwt.encode({"sub": "ada", "aud": "chat", "exp": start + 4 + 2 * k}, secret, algorithm="HS256")
        for k in range(12)
    ]
    port = free_port()
    config = {"jwt": {"key": secret, "audience": "chat"}, "allowed_origins": [f"http://127.0.0.1:{port}"]}
    with LadderServer(config, port=port) as server:
        open_page(page, server)
        outcome: dict[str, Any] = page.evaluate(
            """async (tokens) => {
                let k = 0;
                const client = ladder.connect(location.origin, { token: () => tokens[Math.min(k++, tokens.length - 1)] });
                const events = [];
                for (const name of ["close", "session_lost", "error"]) client.on(name, (e) => events.push(name));
                await client.ready();
                const session = client.sessionId;
                await new Promise((resolve) => setTimeout(resolve, 7000));
                const echo = (await client.call("echo", 1, { timeout: 5000 })).user;
                const out = { shared: client.shared === true, events: [...events], same: client.sessionId === session, calls: k, echo };
                await client.close();
                return out;
            }""",
            tokens,
        )
    assert outcome["events"] == [] and outcome["same"], outcome
    assert outcome["echo"] == "ada" and not outcome["shared"], outcome
    assert 4 <= outcome["calls"] <= 8, outcome


@pytest.mark.parametrize("rung", ["websocket", "sse"])
def test_a_stream_the_servers_queue_cannot_hold_unacknowledged_keeps_the_session(page: Page, rung: str) -> None:
    """A server keeping at most 16 unacknowledged frames or 1 MB: 100 small publications at
    100 a second, then 20 of 300 kB at 50 a second. The client acked every 32 frames, past
    both bounds, and was dropped as a slow consumer; it now acks before half of either fills
    (``lim.queue``, ``lim.qbytes``)."""
    port = free_port()
    config = {"allowed_origins": [f"http://127.0.0.1:{port}"], "limits": {"max_queue": 16, "max_queue_bytes": 1_000_000}}
    with LadderServer(config, port=port) as server:
        open_page(page, server)
        outcome: dict[str, Any] = page.evaluate(
            """async (rung) => {
                const client = ladder.connect(location.origin, { transports: [rung] });
                await client.ready();
                const first = client.sessionId;
                const lost = [];
                client.on("session_lost", (e) => lost.push(e.reason));
                const got = [];
                let done;
                const all = new Promise((resolve) => (done = resolve));
                const sub = client.subscribe("stream:feed", (pub) => { got.push(pub.data.n); if (got.length === 120) done(); });
                await sub.ready();
                await client.call("publish", { channel: "stream:feed", count: 100, interval: 0.01 }, { timeout: 20000 });
                await client.call("publish", { channel: "stream:feed", count: 20, start: 100, pad: 300000, interval: 0.02 }, { timeout: 20000 });
                await Promise.race([all, new Promise((resolve) => setTimeout(resolve, 20000))]);
                const out = { got, lost, same: client.sessionId === first, transport: client.transport };
                await client.close();
                return out;
            }""",
            rung,
        )
    assert outcome["got"] == list(range(120)), f"{len(outcome['got'])} received"
    assert outcome["lost"] == [] and outcome["same"], outcome["lost"]
    assert outcome["transport"] == rung


CONNECT_AS = """async ([url, user]) => {
    window.refused = [];
    window.ladder = await import('/client.js');
    window.client = ladder.connect(url, { token: "user:" + user, share: false, transports: ["websocket"] });
    client.on("error", (e) => refused.push([e.code, e.reason]));
    await client.ready();
    return client.user;
}"""

EMIT_AND_KEEP = "async () => { client.emit('record', { key: 'carried', value: 'by alice' }); await client.persisted(); }"

CARRIED = """async () => {
    const records = await client.call("records", "carried", { timeout: 10000 });
    return { restored: client.restored, refused, records };
}"""


def _next_page_as(context: BrowserContext, hub: LadderServer, url: str, user: str) -> dict[str, Any]:
    """A new page signed in as ``user`` (taking over what the last one left): what it restored,
    the errors it heard, and what the handler recorded of the carried message."""
    page = context.new_page()
    page.goto(f"{hub.url}/health")
    assert page.evaluate(CONNECT_AS, [url, user]) == user
    outcome: dict[str, Any] = page.evaluate(CARRIED)
    return outcome


def _carried_outcome_is_right(outcome: dict[str, Any], next_user: str) -> None:
    if next_user == "bob":
        refusal = ["forbidden", "written in a session of another user: not applied"]
        assert outcome == {"restored": 1, "refused": [refusal], "records": []}, outcome
    else:
        assert outcome == {"restored": 1, "refused": [], "records": ["by alice"]}, outcome


@pytest.mark.parametrize("next_user", ["bob", "alice"])
def test_messages_a_page_left_unsent_are_not_sent_as_the_next_users(browser: Browser, next_user: str) -> None:
    """Alice's page emits on a connection that went silent, and closes; the next page, signed
    in as ``next_user``, takes her unsent message over. Bob's session refuses it
    (``forbidden``, not applied): it was applied as his before. Alice's own next page sends it."""
    port = free_port()
    context = browser.new_context()
    config = {"require_token": True, "allowed_origins": [f"http://127.0.0.1:{port}"]}
    try:
        with LadderServer(config, port=port) as hub, SilentRelay(hub.port) as relay:
            page = context.new_page()
            page.goto(f"{hub.url}/health")
            assert page.evaluate(CONNECT_AS, [relay.url, "alice"]) == "alice"
            assert relay.swallow() == 1  # (the server keeps her session: it hears nothing more)
            page.evaluate(EMIT_AND_KEEP)
            page.close(run_before_unload=True)
            outcome = _next_page_as(context, hub, relay.url, next_user)
    finally:
        context.close()
    _carried_outcome_is_right(outcome, next_user)


@pytest.mark.parametrize("next_user", ["bob", "alice"])
def test_messages_a_page_left_are_not_applied_as_the_next_users_once_the_server_forgot_its_session(
    browser: Browser, next_user: str
) -> None:
    """As above, but the server that knew alice's session is gone (restarted on the memory
    engine; the same as her session's ttl running out): it can no longer tell whose the
    carried message was, and applied it as bob's. The page kept her user with the message,
    and the next page's hello says it (``pu``): bob's session refuses it."""
    port = free_port()
    context = browser.new_context()
    config = {"require_token": True, "allowed_origins": [f"http://127.0.0.1:{port}"]}
    try:
        with LadderServer(config, port=port) as hub:
            page = context.new_page()
            page.goto(f"{hub.url}/health")
            assert page.evaluate(CONNECT_AS, [hub.url, "alice"]) == "alice"
        page.evaluate(EMIT_AND_KEEP)
        page.close(run_before_unload=True)
        with LadderServer(config, port=port) as hub:
            outcome = _next_page_as(context, hub, hub.url, next_user)
    finally:
        context.close()
    _carried_outcome_is_right(outcome, next_user)


def test_messages_given_back_when_the_engine_went_away_are_written_again_on_every_rung(page: Page) -> None:
    """Messages queued behind one whose handler ran as the engine went away are given back
    (protocol §4). On the polling rungs nothing told the client (its POST answered 204, a short
    poll with no transport to end): they were never written again, and every later message
    waited behind them. Each rung: an outage of 0.3 s, then two messages and a call in the
    same batch; the call answers once both were applied, once each, in order."""
    port = free_port()
    config = {"allowed_origins": [f"http://127.0.0.1:{port}"]}
    with LadderServer(config, port=port, app="tests.e2e.edges_app:hub") as server:
        open_page(page, server)
        outcome: dict[str, Any] = page.evaluate(
            """async () => {
                const out = {};
                for (const rung of ["websocket", "sse", "longpoll", "poll"]) {
                    const client = ladder.connect(location.origin, { transports: [rung], backoffMax: 500 });
                    await client.ready();
                    const key = `given-back:${rung}`;
                    client.emit("outage", 0.3);
                    client.emit("record", { key, value: "b" });
                    client.emit("record", { key, value: "c" });
                    out[rung] = await client.call("records", key, { timeout: 15000 }).catch((e) => e.code);
                    await client.close();
                }
                return out;
            }"""
        )
    assert outcome == {rung: ["b", "c"] for rung in ("websocket", "sse", "longpoll", "poll")}, outcome
