"""The client walks the ladder through a hostile network (issue acceptance scenarios).

Every test runs the real server behind a fault-injecting proxy on its own event loop,
with the client's default settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from ladder import Client, LadderError
from ladder.client import ServerError, Subscription, TransportChanged
from tests.net.conftest import Network
from tests.support.server import LadderServer


@pytest.fixture
async def ticker(backend: LadderServer) -> AsyncIterator[str]:
    """A channel the server publishes to every 20 ms (straight to the server, not via the proxy)."""
    async with Client(backend.url, transports=["websocket"]) as admin:
        await admin.call(
            "publish", {"channel": "tick:a", "count": 100_000, "interval": 0.02, "background": True}
        )
        yield "tick:a"


async def time_to_first_message(url: str, channel: str) -> tuple[str | None, float, Client]:
    """Seconds from ``connect()`` until the first publication arrives, and the rung it used."""
    client = Client(url)
    started = time.perf_counter()
    await client.connect()
    sub = client.subscribe(channel)
    async with asyncio.timeout(30):
        await anext(sub)
    return client.transport, time.perf_counter() - started, client


@pytest.mark.parametrize(
    ("blocks", "rung", "bound"),
    [
        ({"refuse": {"ws"}}, "sse", 1.5),
        ({"blackhole": {"ws"}}, "sse", 1.5),
        ({"refuse": {"ws", "sse"}}, "longpoll", 3.0),
        ({"blackhole": {"ws", "sse"}}, "longpoll", 3.0),
        ({"blackhole": {"ws", "sse", "longpoll"}}, "poll", 5.0),
    ],
    ids=["ws-refused", "ws-blackholed", "ws+sse-refused", "ws+sse-blackholed", "only-polling"],
)
async def test_first_message_on_the_best_working_rung_fast(
    net: Network, ticker: str, blocks: dict[str, set[str]], rung: str, bound: float
) -> None:
    net.set(**blocks)
    transport, seconds, client = await time_to_first_message(net.url, ticker)
    try:
        print(f"\n{blocks} -> {transport} in {seconds:.3f} s (bound {bound} s)")
        assert transport == rung
        assert seconds < bound
    finally:
        await client.close()


async def test_an_open_websocket_is_used_at_once(net: Network, ticker: str) -> None:
    transport, seconds, client = await time_to_first_message(net.url, ticker)
    await client.close()
    print(f"\nno blocks -> {transport} in {seconds:.3f} s")
    assert transport == "websocket" and seconds < 1.0


async def test_a_buffered_stream_is_abandoned_for_long_polling(net: Network, ticker: str) -> None:
    net.set(refuse={"ws"}, buffer={"sse"})
    transport, seconds, client = await time_to_first_message(net.url, ticker)
    try:
        print(f"\nws refused, sse buffered -> {transport} in {seconds:.3f} s")
        assert transport == "longpoll"
        sub = client.subscribe(ticker)
        received = [pub.offset async for pub in take(sub, 10)]
        assert received == sorted(received) and len(set(received)) == 10, "messages flow"
    finally:
        await client.close()


async def test_a_stream_that_shows_its_welcome_then_buffers_fails_verification() -> None:
    """Some proxies flush the first write and hold the rest: the pong never comes back."""
    with LadderServer({"heartbeat": 5.0}, app="tests.support.apps:sse_first_write_only") as server:
        # Default stagger: long-polling wins the race while SSE is still waiting for its pong.
        changes: list[TransportChanged] = []
        client = Client(server.url, transports=["sse", "longpoll"])
        client.on("transport", changes.append)
        async with client:
            assert client.transport == "longpoll"
            assert changes[0].reason.startswith("sse: not open after"), changes
        # Long-polling held back: SSE itself must be declared broken, within the proof's bound.
        changes = []
        client = Client(server.url, transports=["sse", "longpoll"], stagger=(0.0, 30.0), remember=False)
        client.on("transport", changes.append)
        started = time.perf_counter()
        async with client:
            took = time.perf_counter() - started
            assert client.transport == "longpoll"
        print(f"\nbuffered SSE detected; on long-polling after {took:.2f} s: {changes[0].reason}")
        assert "sse: stream buffered" in changes[0].reason
        # No pong within 1 s of its ping's answer (protocol §9.2): before the 2.5 s verify
        # timeout, and not after a connect timeout.
        assert 0.9 < took < 2.5, took


async def take(sub: Subscription, count: int, timeout: float = 30.0) -> AsyncIterator[object]:
    async with asyncio.timeout(timeout):
        n = 0
        async for pub in sub:
            yield pub
            n += 1
            if n >= count:
                return


async def test_back_on_websocket_after_the_block_is_lifted_without_loss(
    net: Network, backend: LadderServer
) -> None:
    net.set(refuse={"ws"})
    changes: asyncio.Queue[TransportChanged] = asyncio.Queue()
    client = Client(net.url)
    client.on("transport", changes.put_nowait)
    async with client, Client(backend.url) as admin:
        assert client.transport == "sse"
        assert (await changes.get()).new == "sse"
        sub = client.subscribe("feed:lift")
        await sub.ready()
        await admin.call(
            "publish", {"channel": "feed:lift", "count": 100_000, "interval": 0.01, "background": True}
        )
        received: list[int] = []
        flowing, climbed_back = asyncio.Event(), asyncio.Event()

        async def consume() -> None:
            """Until 200 publications arrived over WebSocket, once it climbed back."""
            left = 200
            async for pub in sub:
                received.append(pub.offset)
                if len(received) == 50:
                    flowing.set()
                left -= climbed_back.is_set()
                if not left:
                    return

        consumer = asyncio.create_task(consume())
        await asyncio.wait_for(flowing.wait(), 10)  # some messages flow over SSE first
        lifted = time.perf_counter()
        net.clear()
        async with asyncio.timeout(60):
            while (change := await changes.get()).new != "websocket":
                pass
        climbed = time.perf_counter() - lifted
        climbed_back.set()
        await asyncio.wait_for(consumer, 30)
        print(f"\nback on websocket {climbed:.2f} s after the block was lifted: {change.reason}")
        assert client.transport == "websocket"
        assert received == list(range(1, len(received) + 1)), "nothing lost or doubled across the switch"


RUNGS = ["websocket", "sse", "longpoll", "poll"]
MESSAGES = 5000
EMITS = 300


async def run_chaos(
    net: Network, backend: LadderServer, client: Client, channel: str, during: object = None
) -> tuple[list[int], list[object]]:
    """Publish MESSAGES while the proxy cuts every connection after 100-500 ms and the client
    emits EMITS messages; return the offsets received and what the server's handler recorded."""
    async with Client(backend.url) as admin:
        sub = client.subscribe(channel)
        await sub.ready()
        net.set(cut_after=(0.1, 0.5))
        await admin.call(
            "publish", {"channel": channel, "count": MESSAGES, "interval": 0.001, "background": True}
        )

        async def emit() -> None:
            for n in range(EMITS):
                await client.emit("record", {"key": channel, "value": n})
                await asyncio.sleep(0.01)

        emitter = asyncio.create_task(emit())
        stages = asyncio.create_task(during(net)) if callable(during) else None  # type: ignore[arg-type]
        received = [pub.offset async for pub in take(sub, MESSAGES, timeout=240)]  # type: ignore[attr-defined]
        await emitter
        if stages is not None:
            await stages
        net.clear()
        await client.flush(timeout=60)
        return received, await admin.call("records", channel)


@pytest.mark.parametrize("rung", RUNGS)
async def test_exactly_once_in_order_while_connections_are_cut(
    net: Network, backend: LadderServer, rung: str
) -> None:
    async with Client(net.url, transports=[rung]) as client:
        started = time.perf_counter()
        received, recorded = await run_chaos(net, backend, client, f"chaos:{rung}")
        cuts = net.stats()["cuts"]
    print(
        f"\n{rung}: {MESSAGES} messages and {EMITS} emits through {cuts} cuts in {time.perf_counter() - started:.1f} s"
    )
    assert cuts >= 5, "the connections really were cut"
    assert received == list(range(1, MESSAGES + 1)), "every publication exactly once, in order"
    assert recorded == list(range(EMITS)), "every emit applied exactly once, in order"


async def test_exactly_once_while_forced_between_rungs(net: Network, backend: LadderServer) -> None:
    used: list[str] = []
    moved = asyncio.Event()

    def record(change: TransportChanged) -> None:
        used.append(change.new)
        moved.set()

    async def on(rung: str) -> None:
        """Wait until the client is on `rung` (a probe may have to climb to it first)."""
        async with asyncio.timeout(60):
            while client.transport != rung:
                moved.clear()
                await moved.wait()

    async def stages(net: Network) -> None:
        await on("websocket")
        for blocks, expected in (
            ({"ws"}, "sse"),
            ({"ws", "sse"}, "longpoll"),
            ({"ws", "sse", "longpoll"}, "poll"),
            (set(), "websocket"),
        ):
            await asyncio.sleep(1.0)  # messages and cuts on this rung before the next block
            net.set(refuse=set(blocks))
            net.cut_all()
            await on(expected)

    client = Client(net.url, probe_delay=0.5, probe_max_delay=2.0)
    client.on("transport", record)
    async with client:
        received, recorded = await run_chaos(net, backend, client, "chaos:moving", during=stages)
    print(f"\nrungs used, in order: {used}")
    assert {"websocket", "sse", "longpoll", "poll"} <= set(used), "the client really moved between every rung"
    assert received == list(range(1, MESSAGES + 1))
    assert recorded == list(range(EMITS))


async def test_a_silent_transport_is_detected_by_heartbeat_and_replaced(net: Network) -> None:
    with LadderServer({"heartbeat": 1.0}) as server:
        network = Network(server.port)
        try:
            drops: asyncio.Queue[object] = asyncio.Queue()
            connects: asyncio.Queue[object] = asyncio.Queue()
            client = Client(network.url, transports=["websocket"])
            client.on("disconnected", drops.put_nowait)
            client.on("connected", connects.put_nowait)
            async with client:
                first = client.session_id
                network.set(latency=30.0)  # the connection stays open but nothing gets through
                drop = await asyncio.wait_for(drops.get(), 10)
                assert "heartbeat" in drop.reason, drop  # type: ignore[attr-defined]
                network.set(latency=0.0)
                await asyncio.wait_for(connects.get(), 5)  # the first connect
                await asyncio.wait_for(connects.get(), 10)  # the reconnect after the silence
                assert client.session_id == first, "the same session resumed after the silence"
                assert (await client.call("echo", 1))["data"] == 1
        finally:
            network.stop()


async def test_repeated_short_lived_connections_step_down_with_a_reason(net: Network) -> None:
    changes: asyncio.Queue[TransportChanged] = asyncio.Queue()
    client = Client(net.url, transports=["websocket", "sse"], probe_delay=60.0, probe_max_delay=60.0)
    client.on("transport", changes.put_nowait)
    async with client:
        assert (await changes.get()).new == "websocket"
        net.set(cut_after=(0.05, 0.15))
        change = await asyncio.wait_for(changes.get(), 20)
    assert (change.old, change.new) == ("websocket", "sse")
    assert "websocket: cut 3 times in a row" in change.reason, change.reason


async def test_a_websocket_that_silently_stops_forwarding_is_stepped_down_from() -> None:
    """A proxy passes the upgrade and the welcome, then forwards nothing, closing nothing:
    each connection is dropped by the silence watchdog after its limit (1.5 x hb + 1 s =
    2.5 s here, 31 s by default), more than the stable time (2 s here, 10 s by default), so
    it was never counted as a cut and the client went back to it for ever. A connection
    dropped for its silence worked only until it went quiet: three such step down."""
    with LadderServer({"heartbeat": 1.0}) as server:
        network = Network(server.port)
        try:
            network.set(stall_ws_after=0.3)
            changes: asyncio.Queue[TransportChanged] = asyncio.Queue()
            drops: list[str] = []
            client = Client(network.url, transports=["websocket", "sse"], stable_after=2.0, probe_delay=60.0, probe_max_delay=60.0)
            client.on("transport", changes.put_nowait)
            client.on("disconnected", lambda e: drops.append(e.reason))  # type: ignore[attr-defined]
            async with client:
                assert (await changes.get()).new == "websocket"
                change = await asyncio.wait_for(changes.get(), 30)
                assert (change.old, change.new) == ("websocket", "sse")
                assert "websocket: cut 3 times in a row" in change.reason, change.reason
                assert len(drops) == 3 and all("heartbeat" in d or "nothing received" in d for d in drops), drops
                assert (await client.call("echo", 1))["data"] == 1
        finally:
            network.stop()


async def test_a_websocket_whose_client_frames_are_swallowed_is_cut_and_left() -> None:
    """The client heard the server's pings through a proxy that dropped only what the client
    sent: the server closed each connection after two heartbeats unheard (4408
    ``heartbeat_timeout``), each had lived past ``stable_after``, and the client came back
    to the same rung for ever, its calls timing out."""
    with LadderServer({"heartbeat": 0.5}) as server:
        network = Network(server.port)
        try:
            network.set(stall_ws_after=0.3, stall_ws_up_only=True)
            changes: asyncio.Queue[TransportChanged] = asyncio.Queue()
            client = Client(network.url, transports=["websocket", "sse"], stable_after=1.0, probe_delay=60.0, probe_max_delay=60.0)
            client.on("transport", changes.put_nowait)
            async with client:
                assert (await changes.get()).new == "websocket"
                change = await asyncio.wait_for(changes.get(), 30)
                assert (change.old, change.new) == ("websocket", "sse")
                assert "websocket: cut 3 times in a row (last: websocket: closed by the server (4408 heartbeat_timeout" in change.reason, change.reason
                assert (await client.call("echo", 1))["data"] == 1
        finally:
            network.stop()


async def test_a_proxys_413_splits_the_posts_and_one_message_too_large_ends_the_client() -> None:
    """A proxy refusing bodies over 2,000 bytes with a page: the client wrote the same POST
    again, dropped the rung after three tries, reconnected every 1.4 s for ever, and every
    message after the large one stayed unsent, with nothing said."""
    with LadderServer({"heartbeat": 1.0, "channels": {"rec:*": {"history_size": 100}}}) as server:
        network = Network(server.port)
        try:
            network.set(max_body=2000)
            errors: list[ServerError] = []
            client = Client(network.url, transports=["sse"])
            client.on("error", errors.append)
            values = [f"{n:02d}" + "x" * 150 for n in range(30)]
            for value in values:  # queued before connecting: one POST of 5 KB
                await client.emit("record", {"key": "split", "value": value})
            async with client:
                await client.flush(timeout=15)
                assert await client.call("records", "split") == values, "each once, in order"
                assert client.state == "connected"
                with pytest.raises(LadderError) as refused:
                    await client.call("echo", "y" * 3000, timeout=10)
                assert refused.value.code == "frame_too_large"
                assert "refused by something on the way with HTTP 413" in refused.value.reason
                assert "client_max_body_size" in refused.value.reason
                assert [e.code for e in errors] == ["frame_too_large"] and client.state == "closed"
                assert network.stats()["too_large"] <= 4, "halved each time, then given up"
        finally:
            network.stop()


async def test_a_proxy_cutting_held_long_polls_is_met_by_asking_for_a_shorter_hold() -> None:
    """A proxy whose read timeout (2.5 s here; 10-60 s in the wild) is shorter than the
    server's hold (6 s) answers every held long poll 504: the client reconnected after each,
    for ever. It now asks for three quarters of what the cut poll was held (protocol §3.5
    ``hold``) and keeps the one transport: one 504, then none, and nothing lost."""
    with LadderServer({"heartbeat": 20.0, "poll_timeout": 6.0}) as server:
        network = Network(server.port)
        try:
            network.set(read_timeout=2.5)
            client = Client(network.url, transports=["longpoll"])
            lost: list[str] = []
            client.on("disconnected", lambda e: lost.append(e.reason))
            async with client:
                sub = client.subscribe("chat:hold")
                await sub.ready()
                await asyncio.wait_for(_until_timed_out(network), 10)
                for n in range(3):  # three idle spells of 3 s: each poll would be cut at 2.5 s
                    await asyncio.sleep(3.0)
                    await client.publish("chat:hold", n)
                    async with asyncio.timeout(5):
                        assert (await anext(sub)).data == n
                assert network.stats()["timed_out"] == 1, network.stats()
                assert len(lost) <= 1, lost
                assert client.transport == "longpoll" and client.state == "connected"
        finally:
            network.stop()


async def _until_timed_out(network: Network) -> None:
    while not network.stats().get("timed_out"):  # noqa: ASYNC110 - the proxy runs in its own thread
        await asyncio.sleep(0.05)


async def test_an_expired_session_is_replaced_and_channels_recovered() -> None:
    with LadderServer({"heartbeat": 1.0, "session_ttl": 1.0}) as server:
        network = Network(server.port)
        try:
            events: list[object] = []
            client = Client(network.url, transports=["longpoll"], backoff_max=0.5)
            for name in ("session_lost", "resubscribed"):
                client.on(name, events.append)
            async with client, Client(server.url) as admin:
                sub = client.subscribe("feed:expire")
                await sub.ready()
                await admin.call("publish", {"channel": "feed:expire", "count": 3})
                got = [p.offset async for p in take(sub, 3)]  # type: ignore[attr-defined]
                first = client.session_id
                network.set(blackhole={"longpoll", "poll", "send"})
                network.cut_all()
                await admin.call("publish", {"channel": "feed:expire", "count": 3, "start": 3})
                async with asyncio.timeout(10):  # the server forgets the session after its 1 s TTL
                    while (await admin.call("stats"))["sessions"] > 1:  # noqa: ASYNC110 - server state, no event to await
                        await asyncio.sleep(0.1)
                network.clear()
                got += [p.offset async for p in take(sub, 3)]  # type: ignore[attr-defined]
                assert got == [1, 2, 3, 4, 5, 6], "what was published while away came from history, once"
                assert client.session_id != first
                kinds = [type(e).__name__ for e in events]
                assert kinds == ["SessionLost", "Resubscribed"], kinds
        finally:
            network.stop()


async def test_short_polling_slows_down_when_idle_and_speeds_up_for_traffic(
    net: Network, backend: LadderServer
) -> None:
    async with Client(net.url, transports=["poll"]) as client, Client(backend.url) as admin:
        sub = client.subscribe("feed:pace")
        await sub.ready()
        before = net.stats().get("requests:poll", 0)
        await asyncio.sleep(4.0)  # idle on purpose: this measures the pace of idle polling
        idle = net.stats().get("requests:poll", 0) - before
        await admin.call(
            "publish", {"channel": "feed:pace", "count": 150, "interval": 0.02, "background": True}
        )
        _ = [p async for p in take(sub, 1)]
        before = net.stats().get("requests:poll", 0)
        started = time.perf_counter()
        _ = [p async for p in take(sub, 149)]
        busy = net.stats().get("requests:poll", 0) - before
        busy_rate = busy / (time.perf_counter() - started)
    print(f"\nidle: {idle} polls in 4 s; busy: {busy_rate:.0f} polls/s")
    assert idle <= 8, "idle polling backs off towards the 2 s ceiling"
    assert busy_rate > 5, "polling speeds up while messages flow"


async def test_a_connected_client_runs_one_task(backend: LadderServer) -> None:
    before = len(asyncio.all_tasks())
    async with Client(backend.url, transports=["websocket"]) as client:
        await client.call("echo", 1)
        await asyncio.sleep(0.1)  # let finished helper tasks (flushes) complete
        assert len(asyncio.all_tasks()) - before == 1, [t.get_name() for t in asyncio.all_tasks()]


async def test_climbs_from_long_polling_back_to_sse(net: Network) -> None:
    """The probe's SSE proof (a POSTed ping) is answered on the new stream even while a long
    poll is the newest attachment."""
    net.set(refuse={"ws", "sse"})
    changes: asyncio.Queue[TransportChanged] = asyncio.Queue()
    client = Client(net.url, probe_delay=0.5, probe_max_delay=1.0)
    client.on("transport", changes.put_nowait)
    async with client:
        assert (await changes.get()).new == "longpoll"
        net.set(refuse={"ws"})
        change = await asyncio.wait_for(changes.get(), 20)
        assert (change.old, change.new) == ("longpoll", "sse"), change
        assert (await client.call("echo", 1))["data"] == 1


async def test_a_rung_climbed_to_by_a_probe_is_the_one_its_drops_count_against(
    net: Network, backend: LadderServer
) -> None:
    """On SSE while WebSocket was refused, then back on WebSocket by a probe: the connections
    that drop next are WebSocket's. The client counted them against SSE (it kept the
    transport it had started with): its ``disconnected`` events named SSE, it closed SSE
    again, and three quick WebSocket drops did not step it down (a fourth did)."""
    from ladder.client import Disconnected  # noqa: PLC0415

    net.set(refuse={"ws"})
    changes: asyncio.Queue[TransportChanged] = asyncio.Queue()
    drops: asyncio.Queue[Disconnected] = asyncio.Queue()
    connected: asyncio.Queue[object] = asyncio.Queue()
    client = Client(net.url)
    client.on("transport", changes.put_nowait)
    client.on("disconnected", drops.put_nowait)
    client.on("connected", connected.put_nowait)
    async with client:
        assert client.transport == "sse"
        net.clear()
        async with asyncio.timeout(30):
            while (await changes.get()).new != "websocket":
                pass
            while not connected.empty():  # (the first connection's)
                connected.get_nowait()
            for cut in range(1, 4):
                assert net.cut_all() >= 1
                drop = await drops.get()
                assert drop.transport == "websocket", (cut, drop)
                if cut < 3:
                    await connected.get()  # (again on WebSocket, the rung it stands on)
                    assert client.transport == "websocket"
            while (change := await changes.get()).new == "websocket":
                pass
        assert change.old == "websocket" and change.new == "sse", change
        assert "cut 3 times in a row" in change.reason, change.reason


async def test_a_hanging_upload_holds_no_caller_and_loses_nothing(net: Network) -> None:
    """Uploads (``POST send``) swallowed on the way: ``emit`` returns once queued, a call's
    ``timeout`` bounds its whole wait, and a call its caller cancels mid-write is written
    again all the same. (``emit`` waited for the POST, 41 s when it hung; ``call(timeout=1)``
    raised after the upload's retries, 40 s and more; a write cancelled by its caller was
    counted as written, and its messages waited until the connection changed.)"""
    async with Client(net.url, transports=["longpoll"]) as client:
        assert (await client.call("echo", 1))["data"] == 1
        net.set(blackhole={"send"})
        started = time.monotonic()
        await client.emit("record", {"key": "held", "value": 0})
        assert time.monotonic() - started < 0.5, "emit returns once queued"
        with pytest.raises(LadderError) as late:
            await client.call("echo", 2, timeout=1)
        assert late.value.code == "timeout"
        assert time.monotonic() - started < 3, "the call's timeout bounds its write too"
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(client.call("record", {"key": "held", "value": 1}), 0.2)
        net.clear()
        await client.flush(timeout=60)
        assert await client.call("records", "held") == [0, 1]
