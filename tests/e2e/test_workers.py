"""``ladder serve --workers N``: N processes on one port, one Ladder node each, on a real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import redis.asyncio as aioredis

from ladder import Client
from ladder.client import Connected, Publication
from ladder.server.workers import STARTUP_GRACE, restart_pause
from tests.support.redis import RedisServer
from tests.support.server import ROOT, LadderServer, child_env, free_port

RUNGS = ["websocket", "sse", "longpoll", "poll"]
CONFIG = {"heartbeat": 1.0, "session_ttl": 30.0, "poll_timeout": 5.0}


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def workers(redis: RedisServer, tmp_path: Path) -> Iterator[LadderServer]:
    with LadderServer(
        CONFIG, engine=redis.url, args=("--workers", "2"), log=tmp_path / "serve.log"
    ) as server:
        yield server


def children(pid: int) -> list[int]:
    """The worker processes of the parent ``pid``."""
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def node_of(session_id: str) -> str:
    """The node that opened a session (Redis engine session ids start with it)."""
    return session_id.split(".", 1)[0]


async def nodes_behind(url: str, within: float = 20.0) -> set[str]:
    """The nodes answering on the port, seen through fresh connections (new source ports),
    until two were seen or ``within`` seconds passed (the port answers as soon as the first
    worker listens; on a busy machine the second may take seconds more to start)."""
    seen: set[str] = set()
    deadline = time.monotonic() + within
    while len(seen) < 2 and time.monotonic() < deadline:
        async with httpx.AsyncClient(base_url=url) as http:
            seen.add((await http.get("/health")).json()["node"])
    return seen


async def test_two_workers_share_the_port_and_each_is_a_node(workers: LadderServer) -> None:
    assert workers.proc is not None
    pids = children(workers.proc.pid)
    assert len(pids) == 2, pids
    assert len(await nodes_behind(workers.url)) == 2, "new connections reach both workers"


async def test_a_worker_that_dies_is_started_again(workers: LadderServer) -> None:
    assert workers.proc is not None
    first = children(workers.proc.pid)
    # Past the startup grace: a death now is a crash to recover from, not a failed start.
    await asyncio.sleep(STARTUP_GRACE + 0.5)
    os.kill(first[0], signal.SIGKILL)
    async with asyncio.timeout(20):
        while True:
            current = children(workers.proc.pid)
            if len(current) == 2 and first[0] not in current:
                break
            await asyncio.sleep(0.05)
    assert first[1] in current, "the other worker was left alone"
    assert workers.proc.poll() is None
    assert len(await nodes_behind(workers.url)) == 2, "the new worker serves the port"


async def test_a_worker_that_stops_answering_is_killed_and_started_again(
    redis: RedisServer, tmp_path: Path
) -> None:
    """A worker paused (or its event loop blocked) kept its SO_REUSEPORT socket: the kernel
    queued a share of the new connections on it, unanswered for as long as it stayed stuck
    (a probe: 4 of 10 fresh /health requests timed out). Silent past --worker-timeout, it is
    killed, and started again."""
    log = tmp_path / "serve.log"
    args = ("--workers", "2", "--worker-timeout", "2")
    with LadderServer(CONFIG, engine=redis.url, args=args, log=log) as server:
        assert server.proc is not None
        first = children(server.proc.pid)
        assert len(await nodes_behind(server.url)) == 2
        stuck = first[0]
        os.kill(stuck, signal.SIGSTOP)
        stopped = time.monotonic()
        try:
            async with asyncio.timeout(20):
                while True:
                    current = children(server.proc.pid)
                    if len(current) == 2 and stuck not in current:
                        break
                    await asyncio.sleep(0.05)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(stuck, signal.SIGCONT)
        replaced = time.monotonic() - stopped
        print(f"\nthe stopped worker was replaced {replaced:.1f} s after SIGSTOP (--worker-timeout 2)")
        assert first[1] in current, "the other worker was left alone"
        assert replaced < 10
        said = log.read_text()
        assert f"(pid {stuck}) did not answer for" in said and "killed, to be started again" in said
        assert len(await nodes_behind(server.url)) == 2, "the new worker serves the port"
        async with httpx.AsyncClient(base_url=server.url, timeout=2) as http:
            answers = [(await http.get("/health")).status_code for _ in range(10)]
        assert answers == [200] * 10, "no connection waits on a stuck worker"


def alive(pid: int) -> bool:
    """Whether the process ``pid`` runs (or is paused): not gone, nor a zombie left for
    whoever adopted it to reap."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in {"Z", "X"}


def paused(pid: int) -> bool:
    """Whether the process ``pid`` is stopped by a signal (SIGSTOP took effect)."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "T"


async def test_a_worker_stuck_when_the_parent_is_stopped_is_killed_and_the_parent_exits(
    redis: RedisServer, tmp_path: Path
) -> None:
    """A worker paused (or its event loop blocked by a handler) does not act on the SIGTERM
    forwarded to it, and the watchdog was off once the shutdown began: the parent waited
    for it forever (a probe: still there 20 s after SIGTERM; a SIGKILL of the parent then
    left the worker behind). Silent past --worker-timeout, it is killed, and the parent
    exits with 0."""
    log = tmp_path / "serve.log"
    args = ("--workers", "2", "--worker-timeout", "2")
    with LadderServer(CONFIG, engine=redis.url, args=args, log=log) as server:
        assert server.proc is not None
        pids = children(server.proc.pid)
        assert len(await nodes_behind(server.url)) == 2, "both workers serve (and beat)"
        stuck, healthy = pids
        try:
            os.kill(stuck, signal.SIGSTOP)
            async with asyncio.timeout(5):
                while True:  # (process state: no event to await)
                    if paused(stuck):
                        break
                    await asyncio.sleep(0.01)
            server.proc.send_signal(signal.SIGTERM)
            started = time.monotonic()
            returncode = await asyncio.to_thread(server.proc.wait, 15)
            elapsed = time.monotonic() - started
        finally:
            for pid in pids:  # (the parent may have left them: not our children to reap)
                if alive(pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        said = log.read_text()
    print(f"\nthe parent exited {elapsed:.1f} s after SIGTERM, one worker paused (--worker-timeout 2)")
    assert returncode == 0
    assert not alive(stuck) and not alive(healthy), "no worker left behind"
    warned = [line for line in said.splitlines() if "ladder.workers" in line and "WARNING" in line]
    assert len(warned) == 1, said
    assert f"(pid {stuck}) did not answer for" in warned[0], warned
    assert "while stopping" in warned[0] and "started again" not in warned[0], warned


async def test_workers_whose_parent_is_killed_shut_down(redis: RedisServer, tmp_path: Path) -> None:
    """A parent killed outright (SIGKILL: nothing to forward) left its workers serving the
    port, unsupervised, and a new ``ladder serve --workers`` could not bind it. Each worker
    hears it at its next heartbeat (its pipe to the parent is broken) and shuts down
    gracefully."""
    log = tmp_path / "serve.log"
    with LadderServer(CONFIG, engine=redis.url, args=("--workers", "2"), log=log) as server:
        assert server.proc is not None
        parent = server.proc.pid
        pids = children(parent)
        assert len(await nodes_behind(server.url)) == 2, "both workers serve (and beat)"
        try:
            server.kill()
            killed = time.monotonic()
            async with asyncio.timeout(10):
                while True:
                    if not any(alive(pid) for pid in pids):
                        break
                    await asyncio.sleep(0.05)
            elapsed = time.monotonic() - killed
        finally:
            for pid in pids:
                if alive(pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        said = log.read_text()
    print(f"\nboth workers exited {elapsed:.1f} s after their parent was killed")
    for pid in pids:
        assert f"[{pid}] ladder.workers: the parent (pid {parent}) of this worker is gone" in said, said


def age_of(pid: int) -> float:
    """Seconds since the process ``pid`` started (from procfs)."""
    with open(f"/proc/{pid}/stat") as f:
        started = int(f.read().rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
    with open("/proc/uptime") as f:
        return float(f.read().split()[0]) - started


async def new_worker(server: LadderServer, old: set[int], gone: set[str]) -> tuple[int, str]:
    """The worker that replaced one of ``old``, once it serves: its pid and its node (not
    one of ``gone``)."""
    assert server.proc is not None
    url = server.url
    async with asyncio.timeout(30):
        while True:
            assert server.proc.poll() is None, "the server stopped"
            fresh = set(children(server.proc.pid)) - old
            if fresh:
                break
            await asyncio.sleep(0.02)
        while True:
            async with httpx.AsyncClient(base_url=url) as http:
                node = (await http.get("/health")).json()["node"]
            if node not in gone:
                return fresh.pop(), node


async def test_a_worker_killed_soon_after_it_served_is_started_again_with_a_pause_if_it_keeps_dying(
    redis: RedisServer, tmp_path: Path
) -> None:
    """A worker that served and was killed within 5 s of its start (the OOM killer, an
    operator) was taken for a startup failure: every worker was stopped. It is started again;
    killed again and again as soon as it serves, it is started after a pause that doubles,
    said once."""
    log = tmp_path / "serve.log"
    with LadderServer(CONFIG, engine=redis.url, args=("--workers", "2"), log=log) as server:
        assert server.proc is not None
        parent = server.proc.pid
        nodes = await nodes_behind(server.url)
        assert len(nodes) == 2, "both workers serve"
        pids = set(children(parent))
        victim = min(pids)
        for kill in range(3):
            age = age_of(victim)
            assert age < STARTUP_GRACE - 0.5, f"the worker took {age:.1f} s to serve: too slow to check"
            os.kill(victim, signal.SIGKILL)
            killed_at = time.monotonic()
            victim, node = await new_worker(server, pids, nodes)
            started_after = time.monotonic() - age_of(victim) - killed_at
            assert started_after >= restart_pause(kill + 1) - 0.1, "a pause before starting it again"
            pids, nodes = set(children(parent)), nodes | {node}
            assert len(pids) == 2 and server.proc.poll() is None, "the server goes on"
        said = log.read_text()
    assert "at startup" not in said, said
    lines = [line for line in said.splitlines() if "ladder.workers" in line and "exited with -9" in line]
    assert [line.split("; ", 1)[1] for line in lines] == [
        "starting it again", "starting it again in 1 s", "starting it again in 2 s"
    ], lines
    assert said.count("keeps exiting within 5 s of starting") == 1, said


def test_a_worker_that_fails_before_it_serves_stops_every_worker(redis: RedisServer) -> None:
    """A failure at startup would only repeat: every worker is stopped and the parent exits
    with 1, also when the worker took longer than 5 s to fail (it was started again and
    again)."""
    env = child_env(LADDER_TEST_FAIL_AFTER=str(STARTUP_GRACE + 1))
    failed = subprocess.run(
        [sys.executable, "-m", "ladder.cli", "serve", "tests.support.late_failing:hub", "--port",
         str(free_port()), "--workers", "2", "--engine", redis.url],
        check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert failed.returncode == 1, failed.stderr[-2000:]
    assert "at startup, before it served; stopping" in failed.stderr, failed.stderr[-2000:]
    assert "starting it again" not in failed.stderr


async def test_every_rung_subscribes_on_both_workers_and_publications_reach_all(
    workers: LadderServer,
) -> None:
    assert len(await nodes_behind(workers.url)) == 2, "both workers serve the port"
    clients: list[Client] = []
    subs: dict[str, list[object]] = {rung: [] for rung in RUNGS}
    try:
        # Clients of every rung until each rung has one and sessions were opened on both nodes.
        opened_on: set[str] = set()
        for attempt in range(40):
            rung = RUNGS[attempt % len(RUNGS)]
            if attempt >= len(RUNGS) and len(opened_on) == 2:
                break
            client = Client(workers.url, transports=[rung])
            clients.append(client)
            await client.connect()
            assert client.transport == rung
            sub = client.subscribe("feed:all")
            await sub.ready()
            subs[rung].append(sub)
            assert client.session_id is not None
            opened_on.add(node_of(client.session_id))
        assert len(opened_on) == 2, "sessions were opened on both workers"

        await clients[0].call("publish", {"channel": "feed:all", "count": 30})
        for rung, rung_subs in subs.items():
            for sub in rung_subs:
                got = await collect(sub, 30)
                assert [p.data["n"] for p in got] == list(range(30)), rung
    finally:
        for client in clients:
            await client.close()


async def test_a_websocket_session_resumes_on_either_worker_losing_and_doubling_nothing(
    workers: LadderServer, redis: RedisServer
) -> None:
    connected: list[Connected] = []
    nodes: set[str] = set()
    keys = aioredis.from_url(redis.url)

    async def holder(sid: str) -> str:
        """The node holding the session now: where it moved to (a key in Redis), else its origin."""
        moved: bytes | None = await keys.get(f"ladder:moved:{sid}")
        return moved.decode() if moved else node_of(sid)

    async with Client(workers.url, transports=["websocket"]) as client:
        client.on("connected", connected.append)
        sub = client.subscribe("feed:resume")
        await sub.ready()
        session = client.session_id
        await client.call(
            "publish", {"channel": "feed:resume", "count": 300, "interval": 0.01, "background": True}
        )
        got: list[Publication] = []
        for _ in range(30):  # every reconnect is a new TCP connection: either worker
            await client.call("echo", None)  # the session is live on this connection's worker
            assert client.session_id is not None
            nodes.add(await holder(client.session_id))
            got += await collect(sub, 5)
            if len(nodes) == 2 and len(connected) >= 4:
                break
            assert client._conn is not None
            client._conn.interrupt("test: connection dropped")
        got += await collect(sub, 300 - len(got))
        assert client.session_id == session, "the same session throughout"
    await keys.aclose()
    assert len(nodes) == 2, "the session was served by both workers"
    assert all(event.resumed for event in connected), "every reconnect resumed the session"
    assert [p.data["n"] for p in got] == list(range(300)), "every publication once, in order"


async def test_a_long_poll_session_resumes_on_either_worker(workers: LadderServer) -> None:
    """Every round on a fresh connection: the node answering it, a call, then the frames."""
    async with httpx.AsyncClient(base_url=workers.url) as http:
        opened = await http.get("/longpoll", params={"v": 1})
    welcome = orjson.loads(opened.content.split(b"\n")[0])
    sid, rt = welcome["sid"], {"X-Ladder-Rt": welcome["rt"]}
    nodes: set[str] = set()
    received: list[int] = []
    last_s = 0
    i = 0
    for round_ in range(20):
        async with httpx.AsyncClient(base_url=workers.url, timeout=10) as http:
            nodes.add((await http.get("/health")).json()["node"])
            i += 1
            call = {
                "t": "call",
                "i": i,
                "ev": "publish",
                "d": {"channel": "feed:lp", "count": 5, "start": 5 * round_},
            }
            frames: list[dict[str, object]] = []
            if round_ == 0:
                i += 1
                frames.append({"t": "sub", "i": i - 1, "ch": "feed:lp"})
                call["i"] = i
            sent = await http.post(
                f"/send?sid={sid}", headers=rt, content=b"\n".join(map(orjson.dumps, [*frames, call]))
            )
            assert sent.status_code == 204, sent.text
            while len(received) < 5 * (round_ + 1):
                polled = await http.get("/longpoll", params={"sid": sid, "ack": last_s}, headers=rt)
                assert polled.status_code == 200, polled.text
                for line in polled.content.split(b"\n"):
                    frame = orjson.loads(line) if line else {}
                    if isinstance(frame.get("s"), int) and frame["s"] > last_s:
                        last_s = frame["s"]
                        if frame["t"] == "pub":
                            received.append(frame["d"]["n"])
        if len(nodes) == 2 and round_ >= 3:
            break
    assert len(nodes) == 2, "the rounds reached both workers"
    assert received == list(range(len(received))), "every publication once, in order"


def serve(*args: str, port: int | None = None) -> subprocess.CompletedProcess[str]:
    env = child_env()
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "ladder.cli",
            "serve",
            "tests.support.apps:hub",
            "--port",
            str(port or free_port()),
            *args,
        ],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize("engine", [(), ("--engine", "memory://")])
def test_workers_on_the_memory_engine_are_refused_naming_the_fix(engine: tuple[str, ...]) -> None:
    refused = serve("--workers", "2", *engine)
    assert refused.returncode != 0
    assert "--workers 2 needs the Redis engine" in refused.stderr
    assert "--engine redis://" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_port_taken_by_another_reuse_port_server_is_refused() -> None:
    """The workers bind with SO_REUSEPORT; they must not silently share a port another
    server (say, a second ``ladder serve --workers``) already listens on."""
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # The parent refuses before it looks for Redis: no redis-server is needed here.
        refused = serve("--workers", "2", "--engine", "redis://127.0.0.1:1/0", port=port)
    assert refused.returncode == 1
    assert f"ladder serve: cannot listen on 127.0.0.1:{port}" in refused.stderr


def test_a_node_lease_on_the_memory_engine_is_refused_naming_the_fix() -> None:
    refused = serve("--node-lease", "2")
    assert refused.returncode == 1
    assert "--node-lease applies to the Redis engine" in refused.stderr and "--engine redis://" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_worker_timeout_that_cannot_work_is_refused() -> None:
    refused = serve("--workers", "2", "--worker-timeout", "0.5", "--engine", "redis://127.0.0.1:1/0")
    assert refused.returncode == 2 and "must be from 1 to 3600 seconds" in refused.stderr


def test_a_worker_timeout_without_workers_is_refused_naming_the_fix() -> None:
    """Before, it was accepted and did nothing: one process has no parent to watch it."""
    refused = serve("--worker-timeout", "5")
    assert refused.returncode == 1 and "--worker-timeout applies to --workers N" in refused.stderr
    assert "add --workers 2" in refused.stderr and "Traceback" not in refused.stderr


def test_workers_must_be_positive() -> None:
    refused = serve("--workers", "0")
    assert refused.returncode == 2 and "must be at least 1" in refused.stderr


async def test_sigterm_stops_every_worker_gracefully(redis: RedisServer, tmp_path: Path) -> None:
    server = LadderServer(CONFIG | {"poll_timeout": 25.0}, engine=redis.url, args=("--workers", "2"))
    with server:
        assert server.proc is not None
        pids = children(server.proc.pid)
        assert len(pids) == 2
        # One long poll held on each worker (sessions opened there, polled on the same connection).
        polls: list[asyncio.Task[bytes]] = []
        https: list[httpx.AsyncClient] = []
        on: set[str] = set()
        try:
            for _ in range(60):
                http = httpx.AsyncClient(base_url=server.url, timeout=30)
                welcome = orjson.loads((await http.get("/longpoll", params={"v": 1})).content.split(b"\n")[0])
                if node_of(welcome["sid"]) in on:
                    await http.aclose()
                    continue
                on.add(node_of(welcome["sid"]))
                https.append(http)
                query = {"sid": welcome["sid"], "ack": 0}
                polls.append(
                    asyncio.create_task(
                        http.get("/longpoll", params=query, headers={"X-Ladder-Rt": welcome["rt"]})
                    )
                )
                if len(on) == 2:
                    break
            assert len(on) == 2
            await asyncio.sleep(0.3)  # both polls are held by now (nothing to say for 25 s)
            assert not any(p.done() for p in polls)
            started = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            answers = await asyncio.wait_for(asyncio.gather(*polls), 10)
            returncode = await asyncio.to_thread(server.proc.wait, 10)
            elapsed = time.monotonic() - started
        finally:
            for http in https:
                await http.aclose()
    for answer in answers:
        frames = [orjson.loads(line) for line in answer.content.split(b"\n") if line]
        assert [f["code"] for f in frames if f.get("t") == "bye"] == ["shutting_down"]
    assert returncode == 0
    assert elapsed < 5.0, f"exited {elapsed:.1f} s after SIGTERM"
    gone = [not os.path.exists(f"/proc/{pid}") for pid in pids]  # noqa: ASYNC240 - procfs, no I/O wait
    assert all(gone), f"workers {pids} still there: {gone}"


async def collect(sub: object, count: int, timeout: float = 20.0) -> list[Publication]:
    out: list[Publication] = []
    if count <= 0:
        return out
    async with asyncio.timeout(timeout):
        async for pub in sub:  # type: ignore[attr-defined]
            out.append(pub)
            if len(out) == count:
                return out
    return out
