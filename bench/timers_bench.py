"""What the clock costs with many sessions: the longest stop of the event loop per kind of tick.

A hub in this process (memory engine, a fake clock) holds ``--sessions`` detached sessions,
each subscribed to a channel of its own (``room:*`` channels with presence, one in
``--presence-every``; history off) and each having applied one message (a record). The clock
then moves forward in one-second ticks, as the node's ticker does, and each kind of tick is
timed: an ordinary one (nothing due), the presence refresh (every ``presence_ttl`` / 3), the
once-a-minute visit of every session, and the memory engine's sweep (every 5 s).

    .venv/bin/python bench/timers_bench.py [--sessions 100000]
    PYTHONPATH=<other checkout>/src .venv/bin/python bench/timers_bench.py   # the same, for that code

Not part of ``bench/run``: it measures one process's Python, with no sockets.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
from typing import Any

import ladder
from ladder import ChannelOptions, Ladder
from ladder.engine.memory import MemoryEngine
from ladder.protocol.codec import JSON
from ladder.protocol.frames import Hello, decode_client_frames
from ladder.server.auth import AuthRequest
from ladder.server.hub import internals


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def main(args: argparse.Namespace) -> None:
    clock = Clock()
    hub = Ladder(
        engine=MemoryEngine(clock=clock),
        clock=clock,
        session_ttl=3600.0,
        channels={
            "room:*": ChannelOptions(presence=True, history_size=0),
            "u:*": ChannelOptions(history_size=0),
        },
    )
    await hub.start()
    node = internals(hub)
    node._ticker.cancel()  # type: ignore[union-attr]  # the bench moves the clock itself
    request = AuthRequest(headers={}, cookies={}, token=None, client="bench", transport="websocket")
    started = time.perf_counter()
    for n in range(args.sessions):
        session, resumed = await node.router.open(Hello(v=1), request)
        att = node.gateway.attach(session, "websocket", streaming=True, ack=0, resumed=resumed)
        channel = f"room:{n}" if n % args.presence_every == 0 else f"u:{n}"
        frames = decode_client_frames(JSON, JSON.encode({"t": "sub", "i": 1, "ch": channel}))
        await node.inbound.receive(session, att, frames)
        session.state.detach(att, clock.now)
    built = time.perf_counter() - started
    await node.tick(clock.now)  # (what the sessions' opening left due, all at once: not timed)
    gc.collect()
    gc.freeze()  # as ladder serve does (and its young threshold): the collector is not measured here
    gc.set_threshold(50_000)
    print(f"ladder {ladder.__version__} from {ladder.__file__}")
    print(f"{args.sessions:,} sessions built in {built:.1f} s; {hub.stats()}")

    worst: dict[str, float] = {}
    presence_every = node.settings.presence_ttl / 3
    for second in range(1, args.seconds + 1):
        clock.now += 1.0
        kind = "ordinary"
        if second % 60 == 0:
            kind = "minute"
        elif abs(second % presence_every) < 1.0:
            kind = "presence refresh"
        began = time.perf_counter()
        await node.tick(clock.now)
        took = time.perf_counter() - began
        worst[kind] = max(worst.get(kind, 0.0), took)
        if args.verbose and took > 0.001:
            print(f"    second {second}: {kind} {took * 1000:.1f} ms")
        if second % 5 == 0:
            began = time.perf_counter()
            hub.engine.sweep(clock.now)  # type: ignore[attr-defined]
            took = time.perf_counter() - began
            worst["engine sweep"] = max(worst.get("engine sweep", 0.0), took)
    for kind, took in worst.items():
        print(f"  longest {kind} tick: {took * 1000:.1f} ms")
    await hub.stop()


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--presence-every", type=int, default=10, help="one session in N joins presence")
    parser.add_argument("--seconds", type=int, default=130, help="ticks (one a second) to run")
    parser.add_argument("--verbose", action="store_true", help="print every tick over 1 ms")
    return parser.parse_args()


if __name__ == "__main__":
    args: Any = parse()
    asyncio.run(main(args))
