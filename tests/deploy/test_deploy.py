"""The shipped ``deploy/`` configs, run for real in front of three nodes on Redis.

For nginx, HAProxy and nginx with TLS: the Python client works on every rung through them with
no affinity (requests land on nodes that do not hold the session), idle streams and long polls
outlive Ladder's real heartbeat and hold, a node that lost Redis gets no traffic, browsers'
same-origin checks pass (Host and X-Forwarded-Proto are passed on), oversized bodies are refused
by Ladder with its documented error rather than by the proxy, and the TLS config serves HTTP/2.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ssl
import time
from typing import Any

import httpx
import orjson
import pytest
import websockets
from playwright.sync_api import sync_playwright

from ladder import Client
from tests.browser.conftest import launch
from tests.deploy.conftest import Deployment, report
from tests.support.subscriptions import take

RUNGS = ["websocket", "sse", "longpoll", "poll"]
BALANCERS = ["nginx", "haproxy", "nginx-tls"]
MESSAGES = 200
EMITS = 50


def served_for_others(deployment: Deployment) -> int:
    return sum(deployment.health(i).json()["served_for_others"] for i in range(3))


@pytest.mark.parametrize("balancer", BALANCERS)
async def test_every_rung_through_the_load_balancer_exactly_once(
    deployment: Deployment, balancer: str
) -> None:
    url, tls = deployment.entry(balancer)
    channel = f"deploy:{balancer}"
    before = served_for_others(deployment)
    started = time.perf_counter()
    async with contextlib.AsyncExitStack() as stack:
        clients = {
            rung: await stack.enter_async_context(Client(url, transports=[rung], ssl_context=tls))
            for rung in RUNGS
        }
        connected = time.perf_counter() - started
        subs = {rung: client.subscribe(channel) for rung, client in clients.items()}
        for sub in subs.values():
            await sub.ready()
        admin = await stack.enter_async_context(Client(deployment.direct(0), transports=["websocket"]))
        await admin.call(
            "publish", {"channel": channel, "count": MESSAGES, "interval": 0.005, "background": True}
        )

        async def emit_all(rung: str, client: Client) -> None:
            for n in range(EMITS):
                await client.emit("record", {"key": f"{balancer}-{rung}", "value": n})

        received, _ = await asyncio.gather(
            asyncio.gather(*(take(sub, MESSAGES) for sub in subs.values())),
            asyncio.gather(*(emit_all(rung, client) for rung, client in clients.items())),
        )
        for client in clients.values():
            await client.flush(timeout=30)
        records = {rung: await admin.call("records", f"{balancer}-{rung}") for rung in RUNGS}
        rungs_used = {rung: client.transport for rung, client in clients.items()}
    forwarded = served_for_others(deployment) - before
    took = time.perf_counter() - started
    report(
        f"{balancer}: 4 rungs connected in {connected:.2f} s; {MESSAGES} publications and {EMITS} emits "
        f"per rung exactly once in {took:.1f} s; {forwarded} requests served by a node for another"
    )
    assert rungs_used == {rung: rung for rung in RUNGS}, "every rung works through the proxy"
    for rung, got in zip(RUNGS, received, strict=True):
        assert [p.offset for p in got] == list(range(1, MESSAGES + 1)), f"{rung}: once each, in order"
        assert records[rung] == list(range(EMITS)), f"{rung}: every emit applied once, in order"
    assert forwarded > 10, "no affinity: HTTP requests landed on nodes that did not hold the session"


@pytest.mark.parametrize("balancer", BALANCERS)
async def test_a_publication_crosses_the_balancer_on_sse_as_it_is_made(
    deployment: Deployment, balancer: str
) -> None:
    """One publication at a time to an SSE subscriber through the balancer: each must pass
    as it is written. HAProxy held every event about 200 ms (it sends a chunked response
    with MSG_MORE, waiting for more, unless ``option http-no-delay``), where a node direct
    or nginx took 2-5 ms: not "unbuffered" for a chat."""
    url, tls = deployment.entry(balancer)
    channel = f"latency:{balancer}"
    async with Client(url, transports=["sse"], ssl_context=tls) as client, Client(
        deployment.direct(0), transports=["websocket"]
    ) as admin:
        sub = client.subscribe(channel)
        await sub.ready()
        took = []
        for _ in range(15):
            started = time.perf_counter()
            await admin.call("publish", {"channel": channel, "count": 1, "interval": 0})
            await take(sub, 1)
            took.append(time.perf_counter() - started)
    took.sort()
    report(f"{balancer}: one publication to SSE, median {took[7] * 1000:.1f} ms, slowest {took[-1] * 1000:.1f} ms")
    assert took[7] < 0.1, f"{balancer} holds SSE events: median {took[7] * 1000:.0f} ms (2-5 ms without)"


async def idle_websocket(url: str, tls: ssl.SSLContext | None, origin: str) -> float:
    """Open a WebSocket, say nothing, and return when the server's heartbeat ping arrived."""
    ws_url = url.replace("http", "ws", 1) + "/ws"
    async with websockets.connect(ws_url, ssl=tls, origin=origin) as ws:  # type: ignore[arg-type]
        await ws.send('{"t":"hello","v":1}')
        assert orjson.loads(await ws.recv())["t"] == "welcome"
        opened = time.perf_counter()
        frame = orjson.loads(await asyncio.wait_for(ws.recv(), 40))
        idle = time.perf_counter() - opened
        assert frame == {"t": "ping"}, frame
        await ws.send('{"t":"pong"}\n{"t":"ping","n":7}')
        assert orjson.loads(await asyncio.wait_for(ws.recv(), 5)) == {"t": "pong", "n": 7}, "still open"
        await ws.send('{"t":"bye"}')
        return idle


async def idle_sse(http: httpx.AsyncClient, url: str) -> float:
    """Open an SSE stream and return when the first heartbeat after the welcome arrived."""
    async with http.stream("GET", url + "/sse", params={"v": 1}, timeout=httpx.Timeout(5, read=40)) as r:
        assert r.status_code == 200
        events: list[dict[str, Any]] = []
        opened = 0.0
        buffer = b""
        async for chunk in r.aiter_raw():
            buffer += chunk
            *blocks, buffer = buffer.split(b"\n\n")
            for block in blocks:
                for line in block.split(b"\n"):
                    if line.startswith(b"data: "):
                        events.append(orjson.loads(line[6:]))
                        if len(events) == 1:
                            opened = time.perf_counter()
            if len(events) >= 2:
                break
        assert [e["t"] for e in events[:2]] == ["welcome", "ping"], events
        idle = time.perf_counter() - opened
        await http.post(
            url + "/send",
            params={"sid": events[0]["sid"]},
            headers={"x-ladder-rt": events[0]["rt"]},
            content=b'{"t":"bye"}',
        )
        return idle


async def idle_long_poll(http: httpx.AsyncClient, url: str) -> float:
    """Hold a long poll on a quiet session for the server's full hold time; return its length."""
    opened = await http.get(url + "/poll", params={"v": 1})
    welcome = orjson.loads(opened.content.split(b"\n")[0])
    auth = {"x-ladder-rt": welcome["rt"]}
    started = time.perf_counter()
    held = await http.get(
        url + "/longpoll", params={"sid": welcome["sid"], "ack": 0}, headers=auth, timeout=40
    )
    took = time.perf_counter() - started
    assert (held.status_code, held.content) == (200, b""), (held.status_code, held.text[:200])
    await http.post(url + "/send", params={"sid": welcome["sid"]}, headers=auth, content=b'{"t":"bye"}')
    return took


async def test_idle_streams_and_long_polls_outlive_the_heartbeat_and_the_hold(deployment: Deployment) -> None:
    """Ladder's defaults (heartbeat 20 s, hold 25 s) against each config's read timeouts, for real:
    a quiet WebSocket and SSE stream get their first ping after 20 s, and a long poll is held 25 s,
    without the proxy cutting them."""

    async def through(balancer: str) -> tuple[float, float, float]:
        url, tls = deployment.entry(balancer)
        async with httpx.AsyncClient(verify=tls or True, timeout=10) as http:
            ws, sse, poll = await asyncio.gather(
                idle_websocket(url, tls, deployment.origin(balancer)),
                idle_sse(http, url),
                idle_long_poll(http, url),
            )
        return ws, sse, poll

    results = await asyncio.gather(*(through(name) for name in BALANCERS))
    for name, (ws, sse, poll) in zip(BALANCERS, results, strict=True):
        report(
            f"{name}: idle WebSocket pinged after {ws:.1f} s, idle SSE after {sse:.1f} s, "
            f"long poll held {poll:.1f} s, none cut"
        )
        assert ws > 18 and sse > 18, "the streams really were idle until the 20 s heartbeat"
        assert poll > 24, "the long poll was held for the server's 25 s, not cut by the proxy"


BROWSER_CLIENTS = """
async ({ mount, channel }) => {
  const { connect } = await import(mount + "/client.js");
  const rungs = ["websocket", "sse", "longpoll", "poll"];
  // Each client its own connection (share: false): the page's resource timings must show the rungs'
  // requests, and Playwright's ignore_https_errors does not reach a SharedWorker's WebSocket.
  const clients = rungs.map((rung) => connect(mount, { transports: [rung], share: false }));
  const received = rungs.map(() => []);
  const subs = clients.map((c, i) => c.subscribe(channel, (pub) => received[i].push(pub.offset)));
  await Promise.all(subs.map((sub) => sub.ready()));
  window.T = { clients, received, rungs };
  return clients.map((c) => c.transport);
}
"""

BROWSER_EMITS = """
async ({ key, count }) => {
  return Promise.all(T.clients.map(async (client, i) => {
    for (let n = 0; n < count; n++) client.emit("record", { key: `${key}-${T.rungs[i]}`, value: n });
    // Applied in order per session: once this call is answered, every emit before it was applied.
    return client.call("records", `${key}-${T.rungs[i]}`);
  }));
}
"""


def test_browser_over_tls_and_http2_on_every_rung(deployment: Deployment) -> None:
    """Chromium through deploy/nginx-tls.conf: HTTPS + HTTP/2 for the HTTP rungs, WSS for WebSocket,
    the same-origin check passing (Host and X-Forwarded-Proto https reach the node), every rung
    exactly once both ways."""
    channel = "deploy:browser-tls"
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            context = browser.new_context(ignore_https_errors=True)  # the throwaway CA is not installed
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(deployment.origin("nginx-tls") + "/")
            started = time.perf_counter()
            transports = page.evaluate(BROWSER_CLIENTS, {"mount": "/api/realtime", "channel": channel})
            connected = time.perf_counter() - started
            assert transports == RUNGS, transports

            async def publish() -> None:
                async with Client(deployment.direct(0), transports=["websocket"]) as admin:
                    await admin.call("publish", {"channel": channel, "count": MESSAGES, "interval": 0.002})

            with concurrent.futures.ThreadPoolExecutor(1) as pool:  # Playwright owns this thread's loop
                pool.submit(asyncio.run, publish()).result(timeout=60)
            page.wait_for_function(f"T.received.every((r) => r.length >= {MESSAGES})", timeout=30_000)
            received = page.evaluate("T.received")
            records = page.evaluate(BROWSER_EMITS, {"key": "tls-browser", "count": EMITS})
            protocols = page.evaluate(
                """mount => performance.getEntriesByType("resource")
                    .filter((e) => e.name.includes(mount + "/") && !e.name.endsWith("client.js"))
                    .map((e) => e.nextHopProtocol)""",
                "/api/realtime",
            )
            page.evaluate("Promise.all(T.clients.map((c) => c.close()))")
            context.close()
        finally:
            browser.close()
    report(
        f"nginx-tls + Chromium: 4 rungs connected in {connected:.2f} s; HTTP rungs over "
        f"{sorted(set(protocols))}; {MESSAGES} publications and {EMITS} emits per rung exactly once"
    )
    assert not errors, errors
    for rung, got, applied in zip(RUNGS, received, records, strict=True):
        assert got == list(range(1, MESSAGES + 1)), f"{rung}: once each, in order"
        assert applied == list(range(EMITS)), f"{rung}: every emit applied once, in order"
    assert protocols and set(protocols) == {"h2"}, f"HTTP/2 for every HTTP request: {protocols}"


async def lb_health(http: httpx.AsyncClient, url: str, rounds: int) -> list[tuple[int, str]]:
    out = []
    for _ in range(rounds):
        response = await http.get(url + "/health")
        out.append((response.status_code, response.json().get("node", "?")))
    return out


async def node3_healthy_again(http: httpx.AsyncClient, deployment: Deployment, what: str) -> None:
    """Node 3's /health answers 200 within 15 s; else the failure shows its last answer (the
    engine's state says whether its listener or its command connections are at fault)."""
    last: list[httpx.Response] = []

    async def healthy() -> bool:
        last[:] = [await http.get(deployment.direct(2) + "/health")]
        return last[0].status_code == 200

    try:
        await wait_until(healthy, 15, what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; its last /health: {last[0].status_code} {last[0].text[:600]}") from None


async def wait_until(check: Any, timeout: float, what: str) -> None:
    """Poll a condition on the servers (there is no event to await across processes)."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.2)


async def test_a_node_that_lost_redis_gets_no_traffic_and_comes_back(deployment: Deployment) -> None:
    """HAProxy's active check on <mount>/health takes node 3 out while it cannot reach Redis (and
    puts it back after); nginx's retry on 503 keeps its health answers on the healthy nodes. Clients
    on every rung keep working through both meanwhile."""
    lost = deployment.node_ids[2]
    haproxy = deployment.haproxy
    async with httpx.AsyncClient(timeout=10) as http:

        async def node3_status() -> int:
            return (await http.get(deployment.direct(2) + "/health")).status_code

        downs = haproxy.log().count("node3 is DOWN")
        ups = haproxy.log().count("node3 is UP")
        deployment.relay.cut()
        cut = time.perf_counter()
        try:
            await wait_until(
                lambda: _is(node3_status, 503), 10, "node 3 reports 503 on /health without Redis"
            )

            async def marked_down() -> bool:
                return haproxy.log().count("node3 is DOWN") > downs

            await wait_until(marked_down, 15, "haproxy's health check marks node 3 DOWN")
            report(
                f"haproxy: health check took node 3 (no Redis) out {time.perf_counter() - cut:.1f} s after the cut"
            )
            for name in ("nginx", "haproxy"):
                url = deployment.entry(name)[0]
                answers = await lb_health(http, url, 12)
                assert all(status == 200 for status, _ in answers), (name, answers)
                assert lost not in {node for _, node in answers}, (name, answers)
                for rung in RUNGS:
                    async with Client(url, transports=[rung]) as client:
                        assert (await client.call("echo", rung))["data"] == rung
                        if name == "haproxy":  # nginx has passive checks only
                            assert await client.call("node") != lost, "no new session on the DOWN node"
        finally:
            deployment.relay.restore()
        restored = time.perf_counter()
        await node3_healthy_again(http, deployment, "node 3 healthy again once Redis is reachable")

        async def marked_up() -> bool:
            return haproxy.log().count("node3 is UP") > ups

        await wait_until(marked_up, 15, "haproxy's health check marks node 3 UP again")
        for name in ("nginx", "haproxy"):
            url = deployment.entry(name)[0]

            async def back(url: str = url) -> bool:
                return lost in {node for _, node in await lb_health(http, url, 6)}

            await wait_until(back, 20, f"{name} sends requests to node 3 again")
            report(
                f"{name}: node 3 back in rotation {time.perf_counter() - restored:.1f} s after Redis returned"
            )


async def _is(status: Any, expected: int) -> bool:
    return bool(await status() == expected)


async def test_a_node_without_redis_refuses_new_sessions(deployment: Deployment) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        deployment.relay.cut()
        try:

            async def status() -> int:
                return (await http.get(deployment.direct(2) + "/health")).status_code

            await wait_until(lambda: _is(status, 503), 10, "node 3 reports 503 without Redis")
            opened = await http.get(deployment.direct(2) + "/poll", params={"v": 1})
            assert (opened.status_code, opened.json().get("code")) == (503, "engine_unavailable"), (
                opened.text[:120]
            )
        finally:
            deployment.relay.restore()
            await node3_healthy_again(http, deployment, "node 3 healthy again")


@pytest.mark.parametrize("balancer", BALANCERS)
async def test_browser_rules_origin_and_body_size_through_the_proxy(
    deployment: Deployment, balancer: str
) -> None:
    """Same-origin needs Host (with its port) and the scheme passed on; a body over Ladder's limit
    but under the proxy's gets Ladder's documented refusal, not the proxy's HTML page."""
    url, tls = deployment.entry(balancer)
    origin = deployment.origin(balancer)
    async with httpx.AsyncClient(verify=tls or True, timeout=10) as http:
        own = await http.get(url + "/poll", params={"v": 1}, headers={"origin": origin})
        assert own.status_code == 200, (own.status_code, own.text)
        welcome = orjson.loads(own.content.split(b"\n")[0])
        foreign = await http.get(url + "/poll", params={"v": 1}, headers={"origin": "https://evil.example"})
        assert (foreign.status_code, foreign.json()["code"]) == (403, "origin_not_allowed")
        big = await http.post(
            url + "/send",
            params={"sid": welcome["sid"]},
            headers={"x-ladder-rt": welcome["rt"], "origin": origin},
            content=b"x" * 1_500_000,
        )
        assert big.status_code == 413 and big.json()["code"] == "frame_too_large", big.text[:200]
    ws_url = url.replace("http", "ws", 1) + "/ws"
    async with websockets.connect(ws_url, ssl=tls, origin=origin) as ws:  # type: ignore[arg-type]
        await ws.send('{"t":"hello","v":1}')
        assert orjson.loads(await ws.recv())["t"] == "welcome", "the upgrade with the page's own Origin"
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(ws_url, ssl=tls, origin="https://evil.example")  # type: ignore[arg-type]
    assert refused.value.response.status_code == 403


@pytest.mark.parametrize("balancer", BALANCERS)
async def test_metrics_are_not_public_through_the_proxy(deployment: Deployment, balancer: str) -> None:
    """Ladder answers /metrics at any path ending in it (a prefix may be kept): a proxy rule on
    the exact path let /x/metrics through. The shipped configs match the ending (decoded)."""
    url, tls = deployment.entry(balancer)
    async with httpx.AsyncClient(verify=tls or True, timeout=10) as http:
        for path in ("/metrics", "/x/metrics", "/metrics/", "/%6detrics"):
            response = await http.get(url + path)
            assert response.status_code == 403, (path, response.status_code, response.text[:80])
        for path in ("/metrics//", "/metrics%2F%2F", "//metrics///"):  # nginx merges slashes, HAProxy not
            response = await http.get(url + path)
            assert response.status_code in (403, 404), (path, response.status_code, response.text[:80])
            assert "ladder_" not in response.text, path
        assert (await http.get(url + "/health")).status_code == 200
        direct = await http.get(deployment.direct(0) + "/metrics")
    assert direct.status_code == 200 and "ladder_connections" in direct.text  # scraped directly


async def use_node3(deployment: Deployment, tag: str, clients: int) -> list[str]:
    """``clients`` sessions on node 3 at once, each subscribing and publishing (several Redis
    connections in use at the same time); what each got."""

    async def one(n: int) -> str:
        try:
            async with Client(deployment.direct(2), transports=["websocket"]) as client:
                await asyncio.wait_for(client.subscribe(f"pool:{tag}-{n}").ready(), 10)
                await client.publish(f"open:pool-{tag}", n)
                return "ok"
        except Exception as exc:
            return getattr(exc, "code", type(exc).__name__)

    return list(await asyncio.gather(*(one(n) for n in range(clients))))


async def test_after_a_redis_blip_every_command_works_again(deployment: Deployment) -> None:
    async with httpx.AsyncClient(timeout=10) as http:

        async def status() -> int:
            return (await http.get(deployment.direct(2) + "/health")).status_code

        assert await use_node3(deployment, "warm", 16) == ["ok"] * 16, "a pool of connections in use"
        deployment.relay.cut()  # every connection reset, as a network blip does
        try:
            await wait_until(lambda: _is(status, 503), 10, "node 3 notices")
        finally:
            deployment.relay.restore()
        await node3_healthy_again(http, deployment, "node 3 healthy again")
        results = await use_node3(deployment, "after", 16)
    report(
        f"node 3 after a Redis blip (healthy again): {results.count('ok')}/16 subscribe+publish ok, {results}"
    )
    assert results == ["ok"] * 16
