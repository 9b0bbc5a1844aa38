"""A node alive but not answering (SIGSTOP) loses its sessions after its lease, and fences
itself when it wakes.

Two ``ladder serve`` nodes on one redis-server, a lease of 2 s and a heartbeat of 1 s. A
client reaches node A through a TCP relay (a balancer); A is paused, the relay sends new
connections to B (as a balancer whose health check failed A would). The client's messages
sent before and during the pause are each applied once: the client notices the silence,
lands on B, B asks A for the session, gets no answer, finds A's lease lapsed and declares A
dead; the client is told ``unknown_session`` and starts a successor carrying its
unacknowledged messages. A, woken, applies nothing more for its old sessions: it logs that
it was declared dead, ends them, and serves new clients under the same node id.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import httpx

from ladder import Client
from ladder.client import SessionLost
from tests.deploy.lb import TcpRelay
from tests.support.redis import RedisServer
from tests.support.server import LadderServer
from tests.support.subscriptions import take
from tests.support.waiting import until

LEASE = 2.0
CONFIG = {"heartbeat": 1.0, "session_ttl": 30.0, "node_lease": LEASE}
FENCED = "another node declared it dead"


def _fenced_line(log: Path) -> str | None:
    return next((line for line in log.read_text().splitlines() if FENCED in line), None)


async def test_a_paused_node_loses_its_sessions_after_its_lease_and_fences_itself_when_woken(
    tmp_path: Path,
) -> None:
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    with RedisServer() as redis:
        a, b = (LadderServer(CONFIG, engine=redis.url, log=log) for log in logs)
        relay: TcpRelay | None = None
        with a, b:
            assert a.proc is not None
            relay = TcpRelay(a.port).start()
            try:
                await _pause_and_resume(a, b, relay, logs[0])
            finally:
                a.proc.send_signal(signal.SIGCONT)
                relay.stop()


async def _pause_and_resume(a: LadderServer, b: LadderServer, relay: TcpRelay, a_log: Path) -> None:
    assert a.proc is not None
    lost: asyncio.Queue[SessionLost] = asyncio.Queue()
    client = Client(f"http://127.0.0.1:{relay.port}", transports=["websocket"])
    client.on("session_lost", lost.put_nowait)
    async with client:
        node_a = await client.call("node")
        sub = client.subscribe("rec:lease")
        await sub.ready()
        for n in range(5):
            await client.emit("record", {"key": "lease", "value": n})
        await client.flush(timeout=10)
        old = (client.peer.sid, client.peer.token)

        a.proc.send_signal(signal.SIGSTOP)
        paused = time.monotonic()
        relay.target_port = b.port  # (the balancer's health check would find A silent)
        for n in range(5, 10):  # sent while A is paused: not acknowledged
            await client.emit("record", {"key": "lease", "value": n})
        why = await asyncio.wait_for(lost.get(), 30)
        moved = time.monotonic() - paused
        await client.flush(timeout=20)
        node_b = await client.call("node")
        got = await take(sub, 10, timeout=20)
        records = await client.call("records", "lease")
    print(f"\nsuccessor session on B {moved:.1f} s after A was paused ({why.reason})")
    assert node_b != node_a, "the client ended up on the other node"
    assert moved < 12, f"a successor session after {moved:.1f} s (lease {LEASE} s)"
    assert client.peer.sid != old[0], "a successor session"
    # (5-9 were sent while A was paused, never acknowledged: carried to the successor)
    assert records == list(range(10)), "each message applied once: none lost, none twice"
    assert [p.data for p in got] == list(range(10)) and [p.offset for p in got] == list(range(1, 11))

    a.proc.send_signal(signal.SIGCONT)
    woken = time.monotonic()
    await until(lambda: _fenced_line(a_log), "A logged that it was declared dead")
    print(f"A fenced itself {time.monotonic() - woken:.2f} s after SIGCONT")
    line = _fenced_line(a_log)
    print(line)
    assert line is not None and "WARNING" in line and "ladder.cluster" in line and "its 1 sessions were ended" in line, line

    async with Client(a.url, transports=["websocket"]) as fresh:
        assert await fresh.call("node") == node_a, "A serves new sessions under the same node id"
        assert await fresh.call("records", "lease") == list(range(10)), "A applied nothing after waking"
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.get(f"{a.url}/poll", params={"sid": old[0], "ack": 0}, headers={"x-ladder-rt": old[1]})
        metrics = (await http.get(f"{a.url}/metrics")).text
    assert answer.status_code == 404 and answer.json()["code"] == "unknown_session", answer.text
    assert 'ladder_cluster_total{kind="fenced"} 1.0' in metrics
