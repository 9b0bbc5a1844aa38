"""S8: delivery under churn (the reliability method AnyCable published for Socket.IO and others).

Every client has its own channel (Socket.IO: its own room) and receives a steady stream,
``rate`` messages a second (default 2), from a publisher on the server's WebSocket that is
never cut. Every client's connection is killed from the client side about every 15 s
(period drawn uniformly from 13.5-16.5 s, first kill at a random phase) with an RST
(SO_LINGER 0: the server sees a reset, a dead connection, not a close), and the client
stays offline 2 s before it reconnects:

* Ladder (every rung): it resumes its session, as ``ladder.Client`` does: a resume hello
  (``sid`` + ``rt`` + ``ack`` = the highest ``s`` it delivered) on a new connection of the
  same rung; the server replays what the client has not acknowledged. If the session were
  gone (``resumed: false``), it would subscribe again (counted as ``sessions_lost``).
* Socket.IO with connection state recovery: it reconnects as socket.io-client does, the
  namespace CONNECT carrying its ``pid`` and the offset of the last event it received; the
  server restores the rooms and replays the missed packets (``recovered``), else the client
  joins its room again.
* Socket.IO by default: it reconnects and joins its room again (what an app does on
  ``connect``); what was emitted meanwhile is gone.

Figures, per configuration:

* ``delivered``: distinct messages received / messages published, summed over all clients,
  after publishing stopped and every client was back (the run then waits up to 10 s for
  stragglers);
* ``duplicates``: messages an application would see twice (the same ``n`` on one client).
  Ladder's clients drop repeated ``s`` as ``ladder.Client`` does, so a duplicate here is one
  the protocol failed to recognise;
* ``replay latency``: for each message published while its client was offline or
  reconnecting, the time from the moment the client began to reconnect (the end of its 2 s
  offline period, or the publication, whichever is later) to the message's arrival;
  ``missed e2e`` is the same messages' publish → arrival time (it includes the offline 2 s);
* ``e2e``: publish → arrival of every other message.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from array import array
from typing import Any

import orjson
from lg import servers
from lg.clients import LadderPoll, LadderSSE, LadderWS, SioWS, Stats, now
from lg.measure import close_all, latency, pad_for
from lg.wire import ConnClosed, HTTPConn, WSConn

CONFIGS = (
    ("ladder", "websocket"),
    ("ladder", "sse"),
    ("ladder", "longpoll"),
    ("ladder", "poll"),
    ("node", "websocket"),
    ("node-recovery", "websocket"),
)


class Progress:
    """Distinct messages received by all clients; ``done`` is set once ``target`` is reached."""

    def __init__(self) -> None:
        self.distinct = 0
        self.target = float("inf")
        self.done = asyncio.Event()

    def expect(self, target: int) -> None:
        self.target = target
        if self.distinct >= target:
            self.done.set()


class Tracker:
    """One client's view: which messages arrived, how often, and when it was offline."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.counts: dict[int, int] = {}
        self.gaps: list[tuple[float, float]] = []
        """(killed at, began to reconnect at) of every offline period."""
        self.online_at = 0.0
        """When the last reconnection completed (messages published before it were missed)."""
        self.replay = array("d")
        self.reconnect = array("d")
        """Seconds from the end of each offline period to the resumed (or rejoined) session."""
        self.missed_e2e = array("d")
        self.e2e = array("d")

    def got(self, n: int, ts: float) -> None:
        t = now()
        self.counts[n] = self.counts.get(n, 0) + 1
        if self.counts[n] > 1:
            return
        progress = self.progress
        progress.distinct += 1
        if progress.distinct >= progress.target:
            progress.done.set()
        for killed, back in reversed(self.gaps):
            if ts >= killed:
                if ts < max(back, self.online_at):
                    self.replay.append(t - max(ts, back))
                    self.missed_e2e.append(t - ts)
                    return
                break
        self.e2e.append(t - ts)


# -- clients that can be killed and come back ---------------------------------------------


class _LadderResume:
    """Kill / resume for the Ladder rungs (mixed into the load generator's clients)."""

    tracker: Tracker
    channel: str
    sessions_lost = 0

    def _track(self, frame: dict[str, Any]) -> None:
        d = frame["d"]
        self.tracker.got(d["n"], d["ts"])

    def _fresh_welcome(self) -> None:
        self.welcome = asyncio.get_running_loop().create_future()  # type: ignore[misc]

    async def _after_welcome(self) -> None:
        welcome = await self.welcome  # type: ignore[has-type]
        self.acked_s = self.last_s  # type: ignore[attr-defined] # the hello's ack acknowledged it all
        if not welcome.get("resumed"):
            self.sessions_lost += 1
            self.last_s = self.acked_s = 0  # type: ignore[attr-defined]
            await self.join(self.channel)  # type: ignore[attr-defined]


class RLadderWS(_LadderResume, LadderWS):
    def kill(self) -> None:
        self.alive = False
        self._cancel_ack_timer()
        if self.ws is not None:
            self.ws.abort()

    async def resume(self) -> None:
        self._fresh_welcome()
        self.ws = WSConn("/ws", self.port, self._on_message, self._lost)
        await self.ws.start()
        self.alive = True
        self._send([{"t": "hello", "v": 1, "sid": self.sid, "rt": self.rt, "ack": self.last_s}])
        await self._after_welcome()


class RLadderSSE(_LadderResume, LadderSSE):
    def kill(self) -> None:
        self.alive = False
        self._cancel_ack_timer()
        if self.conn is not None:
            self.conn.abort()

    async def resume(self) -> None:
        self._fresh_welcome()
        self._buf = b""
        self.conn = await HTTPConn.connect(self.port)
        self.conn.on_close = self._lost
        self.alive = True
        response = await self.conn.stream(
            f"/sse?v=1&sid={self.sid}&ack={self.last_s}", self._on_body,
            {"Accept": "text/event-stream", "X-Ladder-Rt": self.rt},
        )
        if response.status != 200:
            raise ConnClosed(f"sse: HTTP {response.status}")
        await self._after_welcome()


class RLadderPoll(_LadderResume, LadderPoll):
    def kill(self) -> None:
        self.alive = False
        self._cancel_ack_timer()
        if self.conn is not None:
            self.conn.abort()
        self._cancel_tasks()

    async def resume(self) -> None:
        self._fresh_welcome()
        self.conn = await HTTPConn.connect(self.port)
        self.conn.on_close = self._lost
        self.alive = True
        await self._get(f"v=1&sid={self.sid}&ack={self.last_s}&open=1", {"X-Ladder-Rt": self.rt})
        await self._after_welcome()
        self.interval = 0.05
        self._spawn(self._loop())


class RSioWS(SioWS):
    """Socket.IO over WebSocket, reconnecting as socket.io-client does (with ``pid`` and
    ``offset`` when the server offered recovery)."""

    tracker: Tracker
    channel: str
    sessions_lost = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pid: str | None = None
        self.offset: str | None = None
        self.recovered = False

    def _track(self, packet: bytes) -> None:
        args = orjson.loads(packet[2:])
        d = args[1]
        if len(args) > 2 and isinstance(args[-1], str):
            self.offset = args[-1]  # the recovery offset the server appends to every event
        self.tracker.got(d["n"], d["ts"])

    def _opened(self) -> None:
        if self.pid is not None and self.offset is not None:
            self._send_packets([b"40" + orjson.dumps({"pid": self.pid, "offset": self.offset})])
        else:
            self._send_packets([b"40"])

    def _packet(self, p: bytes) -> None:
        if p[:2] == b"40" and len(p) > 2:
            pid = orjson.loads(p[2:]).get("pid")
            self.recovered = pid is not None and pid == self.pid
            self.pid = pid
        super()._packet(p)

    def kill(self) -> None:
        self.alive = False
        if self.ws is not None:
            self.ws.abort()

    async def resume(self) -> None:
        self.connected = asyncio.get_running_loop().create_future()
        self.recovered = False
        self.ws = WSConn("/socket.io/?EIO=4&transport=websocket", self.port, self._on_message, self._lost)
        await self.ws.start()
        self.alive = True
        await self.connected
        if not self.recovered:
            if self.pid is not None and self.offset is not None:
                self.sessions_lost += 1
            await self.join(self.channel)


def _make(kind: str, transport: str, port: int, stats: Stats) -> Any:
    if kind == "ladder":
        if transport == "websocket":
            return RLadderWS(port, stats)
        if transport == "sse":
            return RLadderSSE(port, stats)
        return RLadderPoll(port, stats, hold=transport == "longpoll")
    return RSioWS(port, stats)


# -- the run ------------------------------------------------------------------------------


async def _connect(client: Any, sem: asyncio.Semaphore) -> None:
    async with sem:
        for attempt in range(3):
            try:
                async with asyncio.timeout(20):
                    await client.connect()
                    await client.join(client.channel)
                return
            except (OSError, ConnClosed, TimeoutError):
                client.kill()
                if attempt == 2:
                    raise
                await asyncio.sleep(0.3)


async def _churn(client: Any, rng: random.Random, stop_at: float, period: float, offline: float,
                 counters: dict[str, int]) -> None:
    """Kill ``client``'s connection about every ``period`` s, keep it offline ``offline`` s, bring it back."""
    tracker: Tracker = client.tracker
    await asyncio.sleep(min(rng.uniform(0, period), max(0.0, stop_at - now())))
    while now() + offline < stop_at:
        killed = now()
        client.kill()
        counters["kills"] += 1
        await asyncio.sleep(offline)
        back = now()
        tracker.gaps.append((killed, back))
        while True:
            try:
                async with asyncio.timeout(10):
                    await client.resume()
                break
            except (OSError, ConnClosed, TimeoutError):
                counters["reconnect_failures"] += 1
                client.kill()
                await asyncio.sleep(0.5)
        tracker.online_at = now()
        tracker.reconnect.append(tracker.online_at - back)
        next_kill = killed + rng.uniform(0.9, 1.1) * period
        await asyncio.sleep(max(0.0, min(next_kill, stop_at) - now()))


async def s8(cfg: Any, kind: str, transport: str) -> dict[str, Any]:
    """One configuration: ``cfg.s8_clients`` clients, ``cfg.s8_seconds`` of churn."""
    n, rate = cfg.s8_clients, cfg.s8_rate
    settings = {"node": {"recovery": True}} if kind == "node-recovery" else None
    server = servers.start("node" if kind.startswith("node") else "ladder", cfg.logdir, settings=settings)
    stats = Stats()
    owned: list[Any] = []
    rng = random.Random(8)
    counters = {"kills": 0, "reconnect_failures": 0}
    progress = Progress()
    try:
        clients = []
        for i in range(n):
            client = _make(kind if kind == "ladder" else "sio", transport, server.port, stats)
            client.channel = f"u:{i}"
            client.tracker = Tracker(progress)
            client.on_pub = client._track
            owned.append(client)
            clients.append(client)
        sem = asyncio.Semaphore(50)
        await asyncio.gather(*(_connect(c, sem) for c in clients))
        pub = _make("ladder" if kind == "ladder" else "sio", "websocket", server.port, Stats())
        owned.append(pub)
        async with asyncio.timeout(20):
            await pub.connect()
        pad = pad_for(100)
        published = [0] * n

        def send(k: int) -> None:
            i = k % n
            pub.emit("pub", {"ch": f"u:{i}", "d": {"ts": now(), "n": published[i], "pad": pad}})
            published[i] += 1

        cpu0, lg0, t0, busy0 = server.cpu(), servers.self_cpu(), now(), servers.core_busy()
        stop_at = t0 + cfg.s8_seconds
        churn = [asyncio.create_task(_churn(c, rng, stop_at, cfg.s8_period, cfg.s8_offline, counters))
                 for c in clients]
        sent = 0
        while now() < stop_at:
            due = int((now() - t0) * rate * n)
            while sent < due:
                send(sent)
                sent += 1
            await asyncio.sleep(0.002)
        await asyncio.gather(*churn)  # every client is back online
        seconds = now() - t0
        cpu = server.cpu() - cpu0
        lg = servers.self_cpu() - lg0
        busy = servers.core_busy()
        # The machine is shared: how much of each core other processes used meanwhile.
        other_server = (busy[servers.SERVER_CORE] - busy0[servers.SERVER_CORE] - cpu) / seconds
        other_load = (busy[servers.LOAD_CORE] - busy0[servers.LOAD_CORE] - lg) / seconds
        total = sum(published)
        progress.expect(total)  # stragglers: up to 10 s more
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await progress.done.wait()
        distinct = sum(len(c.tracker.counts) for c in clients)
        dups = sum(v - 1 for c in clients for v in c.tracker.counts.values() if v > 1)

        def merged(attr: str) -> list[float]:
            out: list[float] = []
            for c in clients:
                out.extend(getattr(c.tracker, attr))
            return sorted(out)

        replay, missed, e2e = merged("replay"), merged("missed_e2e"), merged("e2e")
        reconnect = merged("reconnect")
        full = sum(1 for c, p in zip(clients, published, strict=True) if len(c.tracker.counts) >= p)
        return {
            "server": kind, "transport": transport, "clients": n, "rate_per_client": rate,
            "seconds": seconds, "period_s": cfg.s8_period, "offline_s": cfg.s8_offline,
            "published": total, "delivered": distinct, "delivered_ratio": distinct / total if total else None,
            "duplicates": dups, "clients_complete": full, "kills": counters["kills"],
            "reconnect_failures": counters["reconnect_failures"],
            "sessions_lost": sum(c.sessions_lost for c in clients),
            "replay": latency(replay), "reconnect": latency(reconnect), "missed_e2e": latency(missed), "e2e": latency(e2e),
            "server_util": cpu / seconds, "lg_util": lg / seconds,
            "other_on_server_core": max(0.0, other_server), "other_on_load_core": max(0.0, other_load), "errors": stats.errors,
        }
    finally:
        server.stop()
        for client in owned:
            with contextlib.suppress(Exception):
                client.kill()
        close_all(owned)


def summary(rec: dict[str, Any]) -> str:
    """One line for the console."""
    replay = rec["replay"]
    return (f"{rec['server']}/{rec['transport']}: delivered {100 * (rec['delivered_ratio'] or 0):.2f} % "
            f"({rec['delivered']}/{rec['published']}), duplicates {rec['duplicates']}, "
            f"replay p50/p99 {replay['p50_ms']}/{replay['p99_ms']} ms, reconnect p50/p99 "
            f"{rec['reconnect']['p50_ms']}/{rec['reconnect']['p99_ms']} ms, e2e p50/p99 "
            f"{rec['e2e']['p50_ms']}/{rec['e2e']['p99_ms']} ms, kills {rec['kills']}, "
            f"sessions lost {rec['sessions_lost']}, server CPU {rec['server_util']:.2f}, "
            f"load generator CPU {rec['lg_util']:.2f}, others on the server's core "
            f"{rec['other_on_server_core']:.2f} and on the load generator's {rec['other_on_load_core']:.2f}")
