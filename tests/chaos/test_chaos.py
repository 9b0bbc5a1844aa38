"""The chaos suite: one client per rung through a faulty balancer over three nodes on Redis.

Each scenario (``pytest tests/chaos -k kill``) runs the four rungs at once, each forced with
``transports=[rung]``: the server publishes to each client's channel at a steady rate while the
client sends numbered messages (emits, every tenth a call) to handlers that await 0, 20 or
50 ms and record what they applied; the balancer cuts every connection 100-700 ms after it
opened; the scenario's fault strikes meanwhile. Then the faults are healed, the traffic stops,
every client catches up, and both directions are counted by id (``ledger.py``): 0 lost,
0 doubled, in order, except publications a ``resync`` announced. See README.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from ladder import ChannelOptions, Client, Ladder, LadderError
from ladder.client import Subscription
from tests.chaos.cluster import GRACE, ChaosCluster
from tests.chaos.conftest import report
from tests.chaos.ledger import (
    Downstream,
    MsgFigures,
    PubFigures,
    count_messages,
    count_publications,
    died_unrecorded,
    read_records,
)

RUNGS = ["websocket", "sse", "longpoll", "poll"]
PUB_RATE = 25.0
"""Publications per second to each client's channel."""
MSG_RATE = 20.0
"""Messages per second each client sends."""
DELAYS = (0, 20, 50)
"""Milliseconds the handler of message ``v`` awaits: ``DELAYS[v % 3]``."""
CALL_EVERY = 10
"""Every tenth message is a call (its reply is checked), the others emits."""
QUEUED = 200
"""Messages each client sends while every node is down."""
CUTS = (0.1, 0.7)
"""Every client connection is cut this many seconds (uniformly random) after it opened."""
DRAIN = 20.0
"""Seconds the clients have, once the faults are healed, to deliver and receive everything."""
GAP_LIMIT = 10.0
"""Longest a client may go without a connection in ``stuck-in-rotation`` (two of three nodes
healthy all along): with the default backoff (cap 5 s, two immediate retries, forgiven by any
welcome) it is about a second; before, 16-30 s."""


@dataclass
class Rung:
    """One client on one rung, and what it saw."""

    rung: str
    client: Client
    key: str
    channel: str
    sub: Subscription | None = None
    reader: asyncio.Task[None] | None = None
    seen: Downstream = field(default_factory=Downstream)
    sent: int = 0
    refused: set[int] = field(default_factory=set)
    calls: dict[int, asyncio.Task[Any]] = field(default_factory=dict)
    events: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    stuck: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    down_at: float | None = None
    longest_down: float = 0.0
    """Longest time without a connection (seconds), connect to connect."""

    def listen(self) -> None:
        client = self.client
        for name in ("session_lost", "disconnected", "connected"):
            client.on(name, self._counter(name))
        client.on("disconnected", lambda _event: self._down(True))
        client.on("connected", lambda _event: self._down(False))
        client.on("error", lambda event: self.errors.update([str(event.code)]))
        client.on("resync", self._on_resync)

    def _down(self, down: bool) -> None:
        now = time.perf_counter()
        if down and self.down_at is None:
            self.down_at = now
        elif not down and self.down_at is not None:
            self.longest_down = max(self.longest_down, now - self.down_at)
            self.down_at = None

    def gap(self) -> float:
        """Longest time without a connection, counting one still going on."""
        now = time.perf_counter()
        return max(self.longest_down, 0.0 if self.down_at is None else now - self.down_at)

    def _counter(self, name: str) -> Callable[[Any], None]:
        def count(_event: Any) -> None:
            self.events[name] += 1

        return count

    def _on_resync(self, event: Any) -> None:
        if event.channel == self.channel and self.sub is not None:
            self.seen.resync(self.sub.position)
            self.changed.set()

    def _on_pub(self, pub: Any) -> None:
        """Called in the client's own order of events (a resync between two publications stays
        between them, which buffering the publications for an iterator would not keep)."""
        self.seen.pub(pub.epoch, pub.offset)
        self.changed.set()

    async def subscribe(self) -> None:
        self.sub = self.client.subscribe(self.channel, on_publication=self._on_pub)
        ready = await self.sub.ready()
        self.seen.start = (ready.epoch, ready.offset)
        self.reader = asyncio.create_task(self._watch(self.sub))

    async def _watch(self, sub: Subscription) -> None:
        """With a callback nothing is buffered: iterating only ends, with the subscription."""
        try:
            async for _ in sub:
                pass
        except LadderError as exc:
            self.stuck.append(f"the subscription ended: {exc}")

    async def stop_reading(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader

    async def send_next(self) -> None:
        """Send message ``sent`` (an emit, or a call whose reply is collected later)."""
        async with self.lock:
            value = self.sent
            self.sent += 1
            event = f"apply{DELAYS[value % len(DELAYS)]}"
            data = {"key": self.key, "value": value}
            try:
                if value % CALL_EVERY == CALL_EVERY - 1:
                    self.calls[value] = asyncio.create_task(self.client.call(event, data, timeout=None))
                    await asyncio.sleep(0)  # the call takes its message id before the next message
                    if self.calls[value].done() and self.calls[value].exception() is not None:
                        self.refused.add(value)
                else:
                    await self.client.emit(event, data)
            except LadderError as exc:  # refused by the client itself (queue_full): never sent
                self.refused.add(value)
                self.errors.update([f"client:{exc.code}"])


@dataclass
class Run:
    """A scenario in progress: what its fault script can use and what it noted."""

    cluster: ChaosCluster
    rungs: dict[str, Rung]
    sending: asyncio.Event
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    cut_off: set[str] = field(default_factory=set)
    """Ids of nodes cut off from Redis: ops.md allows their clients' messages to be applied
    twice (once there, unrecorded; once by a new session, after ``session_lost``)."""
    records_lost: bool = False
    """Redis lost its data (restart without persistence), the records of what sessions
    applied with it: ops.md allows a message to be applied twice after ``session_lost``."""

    def note(self, text: str) -> None:
        self.notes.append(text)

    async def owners(self) -> dict[str, int | None]:
        found = await asyncio.gather(*(self.cluster.owner(r.client) for r in self.rungs.values()))
        return dict(zip(self.rungs, found, strict=True))

    async def busiest(self) -> int:
        """The node holding most of the clients' sessions now."""
        owners = Counter(i for i in (await self.owners()).values() if i is not None)
        return owners.most_common(1)[0][0] if owners else 0


class Publisher:
    """Publishes ``{"n": n}`` to every channel at PUB_RATE from a hub of its own, straight on Redis
    (not through any node or relay); remembers the ``(epoch, offset)`` of each confirmed one."""

    def __init__(self, redis_url: str, channels: list[str]) -> None:
        self.hub = Ladder(engine=redis_url, channels={"*": ChannelOptions(history_size=10_000)})
        self.published: dict[str, list[tuple[str, int]]] = {channel: [] for channel in channels}
        self.failed = 0

    def last(self, channel: str) -> tuple[str, int] | None:
        done = self.published[channel]
        return done[-1] if done else None

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        n = 0
        while not stop.is_set():
            for channel, done in self.published.items():
                try:
                    async with asyncio.timeout(2.0):
                        pub = await self.hub.publish(channel, {"n": n})
                    done.append((pub.epoch, pub.offset))
                except (LadderError, TimeoutError, OSError):
                    self.failed += 1  # Redis away: the outcome is unknown, the next one is tried
            n += 1
            due += 1 / PUB_RATE
            await asyncio.sleep(max(0.0, due - loop.time()))  # the publishing rate


# -- the scenarios' faults -------------------------------------------------------------------


async def cuts_only(run: Run) -> None:
    run.cluster.lb.set_latency(0.02)
    await asyncio.sleep(8.0)  # the scenario's length: cuts and 20 ms of latency, nothing else


SETTLE = 10.0
"""Seconds the kill scenario waits for every client to hold a session on a running node."""


async def kill_owners(run: Run) -> None:
    """SIGKILL the node holding a client's session (the busiest one) until every rung's owner
    was killed twice; each killed node is restarted at once (it is down while it starts).

    Before each kill the clients get up to SETTLE seconds to hold a session on a running node
    again (read in Redis), so that each kill hits a live session; a client that does not is
    reported (and its rung may then see fewer than two kills).
    """
    cluster = run.cluster
    kills: Counter[str] = Counter()
    for _ in range(8):
        todo = [rung for rung in RUNGS if kills[rung] < 2]
        if not todo:
            break
        await asyncio.sleep(0.5)  # traffic on the healed cluster before the next kill
        deadline = time.perf_counter() + SETTLE
        while True:
            where = dict(
                zip(
                    todo,
                    await asyncio.gather(*(cluster.locate(run.rungs[r].client) for r in todo)),
                    strict=True,
                )
            )
            owners = {rung: cluster.node_ids.get(node or "") for rung, node in where.items()}
            if all(index is not None for index in owners.values()) or time.perf_counter() > deadline:
                break
            await asyncio.sleep(0.25)  # sessions live in other processes: polled
        candidates = Counter(index for index in owners.values() if index is not None)
        unsettled = [rung for rung, index in owners.items() if index is None]
        if unsettled:
            run.note(
                f"{'+'.join(unsettled)} without a session on a running node {SETTLE:g} s after the last kill"
            )
        if not candidates:
            break
        index = candidates.most_common(1)[0][0]
        victims = [rung for rung, owner in owners.items() if owner == index]
        kills.update(victims)
        await cluster.kill(index)
        run.note(f"SIGKILL node {index} (owner of {'+'.join(victims)})")
        await cluster.start_node(index)  # down while it starts again (1-3 s)
    short = [rung for rung in RUNGS if kills[rung] < 2]
    if short:
        run.note(f"owner killed fewer than twice for {'+'.join(short)}")


async def nothing(cluster: ChaosCluster) -> None:
    return None


@dataclass(frozen=True)
class Scenario:
    name: str
    faults: Callable[[Run], Awaitable[None]]
    prepare: Callable[[ChaosCluster], Awaitable[None]] = nothing
    """Run before the cluster is healed and the clients connect (Redis's persistence)."""
    gap_limit: float | None = None
    """Longest a client may go without a connection (the backoff policy), if asserted."""


def redis_restart(mode: str) -> Scenario:
    async def prepare(cluster: ChaosCluster) -> None:
        await cluster.set_persistence(mode)

    async def restart(run: Run) -> None:
        await asyncio.sleep(3.0)
        started = time.perf_counter()
        await asyncio.to_thread(run.cluster.redis.restart)
        run.records_lost = mode == "none"
        run.note(f"Redis ({mode}) restarted in {time.perf_counter() - started:.1f} s")
        await asyncio.sleep(5.0)  # traffic after the restart

    return Scenario(f"redis-restart-{mode}", restart, prepare)


def redis_cut(how: str) -> Callable[[Run], Awaitable[None]]:
    async def cut(run: Run) -> None:
        await asyncio.sleep(2.0)
        index = await run.busiest()
        run.cut_off.update(node for node, i in run.cluster.node_ids.items() if i == index)
        link = run.cluster.links[index]
        {"refuse": link.refuse, "reset": link.reset, "stall": link.stall}[how]()
        await asyncio.sleep(5.0)  # the length of the outage
        link.heal()
        healthy = await run.cluster.wait_healthy(index, 15.0)
        if healthy is None:
            run.problems.append(f"node {index} still unhealthy 15 s after its Redis link healed ({how})")
        else:
            run.note(f"node {index} cut off from Redis 5 s ({how}); healthy {healthy:.1f} s after")
        await asyncio.sleep(2.0)  # traffic after the outage

    return cut


async def stuck_node(run: Run) -> None:
    await asyncio.sleep(1.0)
    index = await run.busiest()
    lb = run.cluster.lb
    lb.stuck(index)
    run.note(f"node {index} stuck in rotation for 6 s (503 or reset), then out 2 s")
    await asyncio.sleep(6.0)  # stuck: in rotation, answering errors
    lb.stuck(index, False)
    lb.take_out(index)
    await asyncio.sleep(2.0)  # out of rotation (a health check noticed)
    lb.take_out(index, False)
    await asyncio.sleep(2.0)  # back


async def all_down(run: Run) -> None:
    await asyncio.sleep(2.0)
    run.sending.clear()
    cluster = run.cluster
    down = time.perf_counter()
    await asyncio.gather(*(cluster.kill(i) for i in range(len(cluster.nodes))))

    async def burst(rung: Rung) -> None:
        for _ in range(QUEUED):
            await rung.send_next()

    await asyncio.gather(*(burst(r) for r in run.rungs.values()))
    await asyncio.sleep(max(0.0, 10.0 - (time.perf_counter() - down)))  # every node down 10 s
    await asyncio.gather(*(cluster.start_node(i) for i in range(len(cluster.nodes))))
    run.note(f"every node SIGKILLed, {QUEUED} messages per client queued, restarted after 10 s")
    run.sending.set()
    await asyncio.sleep(3.0)  # traffic after the restart


async def sigterm_each(run: Run) -> None:
    """A rolling restart. No cuts meanwhile: each SIGTERM meets long-lived streams and polls."""
    cluster = run.cluster
    cluster.lb.cut_after(None)
    for index in range(len(cluster.nodes)):
        await asyncio.sleep(1.5)  # traffic between two restarts
        took = await cluster.terminate(index)
        if took is None:
            run.problems.append(f"node {index} had not exited {GRACE:g} s after SIGTERM (killed)")
        else:
            run.note(f"node {index} exited {took:.1f} s after SIGTERM")
        await cluster.start_node(index)
    await asyncio.sleep(2.0)


SCENARIOS = [
    Scenario("cuts", cuts_only),
    Scenario("kill-owner-twice", kill_owners),
    redis_restart("none"),
    redis_restart("aof"),
    redis_restart("rdb"),
    Scenario("redis-link-refused", redis_cut("refuse")),
    Scenario("redis-link-reset", redis_cut("reset")),
    Scenario("redis-link-stall", redis_cut("stall")),
    Scenario("stuck-in-rotation", stuck_node, gap_limit=GAP_LIMIT),
    Scenario("all-down-10s", all_down),
    Scenario("sigterm-each", sigterm_each),
]

HEADER = (
    f"{'scenario':19s} {'rung':9s} | {'pubs':>5s} {'recv':>5s} {'lost':>4s} {'ann':>4s} {'dbl':>3s} {'ooo':>3s} "
    f"| {'msgs':>4s} {'appl':>4s} {'lost':>4s} {'dbl':>3s} {'ooo':>3s} {'call!':>5s} "
    f"| {'rsync':>5s} {'slost':>5s} {'conn':>4s} {'gap':>5s} | notes"
)


def row(
    scenario: str,
    r: Rung,
    pubs: PubFigures,
    msgs: MsgFigures,
    *,
    calls_failed: Counter[str],
) -> str:
    extra = []
    if lost := msgs.lost_ids:
        shown = ",".join(map(str, lost[:12])) + (",..." if len(lost) > 12 else "")
        extra.append(f"lost message ids {shown}")
    if pubs.silent_epoch_changes:
        extra.append(f"{pubs.silent_epoch_changes} epoch changes without resync")
    if msgs.strays:
        extra.append(f"{msgs.strays} never-sent values applied")
    if msgs.announced_doubles:
        extra.append(
            f"{msgs.announced_doubles} applied twice after session_lost (Redis data lost, a node cut "
            "off from Redis, or SIGKILLed between a handler's effect and its record: ops.md)"
        )
    if calls_failed:
        extra.append("calls failed: " + ", ".join(f"{code} {n}" for code, n in sorted(calls_failed.items())))
    if r.errors:
        extra.append("error events: " + ", ".join(f"{code} {n}" for code, n in sorted(r.errors.items())))
    extra += r.stuck + r.reasons
    return (
        f"{scenario:19s} {r.rung:9s} | {pubs.published:5d} {pubs.received:5d} {pubs.lost:4d} {pubs.announced:4d} "
        f"{pubs.doubled:3d} {pubs.reordered:3d} | {msgs.sent:4d} {msgs.applied:4d} {msgs.lost:4d} {msgs.doubled:3d} "
        f"{msgs.reordered:3d} {sum(calls_failed.values()):5d} | {pubs.resyncs:5d} {r.events['session_lost']:5d} "
        f"{r.events['connected']:4d} {r.gap():5.1f} | {'; '.join(extra)}"
    )


_header_shown: list[bool] = []


def describe(client: Client) -> str:
    peer = client.peer
    return (
        f"state={client.state} transport={client.transport} unacknowledged={len(peer.outbox)} "
        f"written_up_to={peer.cursor} delivered_up_to={peer.inbox.applied}"
    )


async def drain(r: Rung, target: tuple[str, int] | None, cluster: ChaosCluster) -> None:
    """Wait, at most DRAIN seconds, until ``r`` has everything; what it lacks goes to ``r.stuck``."""
    if r.client.state == "closed":
        r.stuck.append("the client closed itself")
        return
    deadline = asyncio.get_running_loop().time() + DRAIN

    async def acknowledged() -> None:
        try:
            async with asyncio.timeout_at(deadline):
                await r.client.flush()
        except TimeoutError:
            r.stuck.append(f"messages unacknowledged after {DRAIN:g} s ({describe(r.client)})")

    async def received() -> None:
        try:
            async with asyncio.timeout_at(deadline):
                while target is not None:
                    position = r.seen.position()
                    if position is not None and position[0] == target[0] and position[1] >= target[1]:
                        break
                    r.changed.clear()
                    await r.changed.wait()
        except TimeoutError:
            r.stuck.append(f"publications stopped at {r.seen.position()}, last published {target}")

    await asyncio.gather(acknowledged(), received())
    # A last message, applied after every other (in order): once it is recorded, so are they.
    with contextlib.suppress(LadderError):
        await r.client.emit("apply0", {"key": r.key, "value": "end"})
    until = max(deadline, asyncio.get_running_loop().time() + 3.0)
    while not any(value == "end" for value, _, _ in read_records(cluster.record).get(r.key, [])):
        if asyncio.get_running_loop().time() > until:
            r.stuck.append("the final message was not applied")
            break
        await asyncio.sleep(0.05)  # another process's file: polled
    if r.calls:
        _, pending = await asyncio.wait(
            r.calls.values(), timeout=max(1.0, until - asyncio.get_running_loop().time())
        )
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("scenario", [pytest.param(s, id=s.name) for s in SCENARIOS])
async def test_chaos(chaos: ChaosCluster, scenario: Scenario) -> None:
    cluster = chaos
    await scenario.prepare(cluster)
    problems = await cluster.heal()
    assert not problems, f"the cluster did not come up before the scenario: {problems}"
    tag = f"{scenario.name}-{time.monotonic_ns()}"
    publisher = Publisher(cluster.redis.url, [f"chaos:{tag}:{rung}" for rung in RUNGS])
    rungs: dict[str, Rung] = {}
    checks = asyncio.create_task(cluster.health_checks())
    try:
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(publisher.hub.stop)
            for rung in RUNGS:
                client = Client(cluster.url, transports=[rung], remember=False)  # default backoff
                r = Rung(rung, client, key=f"{tag}:{rung}", channel=f"chaos:{tag}:{rung}")
                r.listen()
                rungs[rung] = r
                stack.push_async_callback(client.close)
                stack.push_async_callback(r.stop_reading)
                async with asyncio.timeout(30):  # no faults yet: this takes well under a second
                    await client.connect()
                    await r.subscribe()
            sending = asyncio.Event()
            sending.set()
            run = Run(cluster, rungs, sending)
            stop = asyncio.Event()

            async def send(r: Rung) -> None:
                while not stop.is_set():
                    await sending.wait()
                    try:
                        async with asyncio.timeout(30):
                            await r.send_next()
                    except TimeoutError:
                        r.stuck.append(f"a message blocked the sender for 30 s ({describe(r.client)})")
                        return
                    await asyncio.sleep(1 / MSG_RATE)  # the client's pace

            traffic = [asyncio.create_task(publisher.run(stop))] + [
                asyncio.create_task(send(r)) for r in rungs.values()
            ]
            cuts_before = cluster.lb.stats().get("cuts", 0)
            cluster.lb.cut_after(CUTS)
            started = time.perf_counter()
            try:
                await scenario.faults(run)
            finally:
                stop.set()
                sending.set()
                await asyncio.gather(*traffic, return_exceptions=True)
                problems = await cluster.heal()
                run.problems += problems
            faulty = time.perf_counter() - started
            await asyncio.gather(*(drain(r, publisher.last(r.channel), cluster) for r in rungs.values()))
            drained = time.perf_counter() - started - faulty
            records = read_records(cluster.record)
            final = {rung: f"{describe(r.client)} session={r.client.session_id}" for rung, r in rungs.items()}
            cuts = cluster.lb.stats().get("cuts", 0) - cuts_before
    finally:
        checks.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await checks
        await cluster.heal()

    if not _header_shown:
        report(HEADER)
        _header_shown.append(True)
    failures: list[str] = []
    for rung, r in rungs.items():
        pubs = count_publications(publisher.published[r.channel], r.seen)
        mine = records.get(r.key, [])
        applied = [int(value) for value, _node, _pid in mine if value != "end"]
        first_on: dict[int, str] = {}
        for recorded, node, _pid in mine:
            if recorded != "end":
                first_on.setdefault(int(recorded), node)
        excused: set[int] = set()
        if r.events["session_lost"]:
            excused = {v for v, node in first_on.items() if run.records_lost or node in run.cut_off}
            # A process SIGKILLed after a handler's side effect, before its record (ops.md).
            excused |= died_unrecorded(mine, cluster.killed)
        msgs = count_messages(r.sent, applied, r.refused, excused)
        calls_failed: Counter[str] = Counter()
        answers_lost = 0
        for value, task in r.calls.items():
            if value in r.refused:
                continue
            if task.cancelled():
                calls_failed["no reply"] += 1
            elif (exc := task.exception()) is not None:
                code = getattr(exc, "code", type(exc).__name__)
                if code == "session_closed" and run.records_lost and r.events["session_lost"]:
                    answers_lost += 1  # applied before Redis lost its record of the answer (ops.md)
                    continue
                if not calls_failed[code]:
                    r.reasons.append(f"call failed with {exc}")
                calls_failed[code] += 1
            elif task.result() != value:
                calls_failed["wrong reply"] += 1
        if answers_lost:
            r.reasons.append(f"{answers_lost} calls failed with session_closed: answers lost with Redis's data")
        if scenario.gap_limit is not None and r.gap() > scenario.gap_limit:
            r.stuck.append(f"{r.gap():.1f} s without a connection (at most {scenario.gap_limit:g} s)")
        broken = pubs.broken + msgs.broken + sum(calls_failed.values()) + len(r.stuck)
        if broken:
            r.reasons.append(f"at the end: {final[rung]}")
        report(row(scenario.name, r, pubs, msgs, calls_failed=calls_failed))
        if broken:
            failures.append(
                f"{rung}: publications lost {pubs.lost} doubled {pubs.doubled} reordered {pubs.reordered} "
                f"silent epoch changes {pubs.silent_epoch_changes}; messages lost {msgs.lost} doubled "
                f"{msgs.doubled} reordered {msgs.reordered}; calls failed {dict(calls_failed)}; {r.stuck}"
            )
    report(
        f"{'':19s} {scenario.name}: faults {faulty:.1f} s, drained in {drained:.1f} s, "
        f"{cuts} cuts, {publisher.failed} publishes refused while Redis was away; "
        + "; ".join(run.notes + run.problems)
    )
    assert not run.problems and not failures, "\n".join(run.problems + failures)
