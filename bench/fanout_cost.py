"""When each subscriber's bytes leave the server, for one publication, without sockets.

S10's fan-out latency is measured by a load generator that reads 1,000 sockets on the other
core, so it mixes the server's order of work with the generator's and the machine's. This
harness shows the server's part alone: ``--subs`` native WebSocket connections of the
benchmark hub (``ladder_app``: memory engine, the ``pub`` handler) with fake transports, all
subscribed to one channel, and one more that sends ``pub`` events one at a time. For each
publication it records, per subscriber, the time from the publisher's frame reaching
``data_received`` to that subscriber's ``write``:

    .venv/bin/python bench/fanout_cost.py [--subs 1000] [--encoding json|msgpack]
    PYTHONPATH=build/compiled .venv/bin/python bench/fanout_cost.py ...     # the compiled build

It prints the medians over ``--pubs`` publications of the first, median and last write
(µs after the frame arrived) and of µs per delivery (the last write ÷ subscribers). The
fake transport's ``write`` costs nothing, so this is the Python side alone (the real
``write`` system call of each subscriber comes on top).
``--pause`` (S10's 50 ms by default) leaves the loop idle between publications, as a paced
publisher does; ``--pause 0`` shows what the same work costs with warm caches.

``--sockets`` gives every connection a real loopback TCP socket and the event loop's own
transport instead (the other ends are read only for the welcome, the subscription's answer
and the last subscriber's frame; their buffers hold the rest): it prints the CPU time of
each whole fan-out per delivery, the system calls and the transport's layers included,
which is what the server pays in S10 (where the generator reads on another core).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import socket
import sys
import time
from pathlib import Path
from statistics import median
from types import SimpleNamespace
from typing import Any

import call_cost
from call_cost import UPGRADE, client_frame, message

HERE = Path(__file__).resolve().parent


class Transport(call_cost.Transport):
    """Also records when it was last written (the harness waits for the last subscriber's write)."""

    def __init__(self) -> None:
        super().__init__()
        self.at = 0

    def write(self, data: bytes) -> None:
        self.at = time.perf_counter_ns()
        super().write(data)


async def start_hub() -> Any:
    """``ladder_app``'s hub, started and served by the native driver."""
    sys.path.insert(0, str(HERE))
    from ladder_app import hub  # noqa: PLC0415 - after the path is set

    from ladder.server.native import NativeWebSocket  # noqa: PLC0415

    await hub.start()
    NativeWebSocket.hub = hub
    return hub


def native() -> Any:
    from ladder.server.native import NativeWebSocket  # noqa: PLC0415

    return NativeWebSocket(None, SimpleNamespace(connections=set()), {}, _loop=asyncio.get_running_loop())


def subscribe(binary: bool) -> bytes:
    return client_frame(message([{"t": "sub", "ch": "bench", "i": 1}], binary), binary)


def publication(n: int, binary: bool) -> bytes:
    """The publisher's ``n``-th message (its id is ``n + 1``)."""
    frames = [{"t": "emit", "ev": "pub", "d": {"ch": "bench", "d": {"n": n, "pad": "x" * 70}}, "i": n + 1}]
    return client_frame(message(frames, binary), binary)


def acknowledge(conns: list[Any], n: int, ack_every: int, binary: bool) -> None:
    """Before publication ``n``, every ``ack_every`` publications (a client's timer: about 20
    at S10's pace), each subscriber acknowledges what it got (its subscription's answer is 1)."""
    if n and n % ack_every == 0:
        ack = client_frame(message([{"t": "ack", "s": n + 1}], binary), binary)
        for conn in conns:
            conn.data_received(ack)


async def connect(binary: bool) -> tuple[Any, Transport]:
    conn = native()
    transport = Transport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    conn.data_received(UPGRADE)
    welcome = transport.written()
    conn.data_received(client_frame(message([{"t": "hello", "v": 1}], binary), binary))
    await welcome
    return conn, transport


async def connect_socket(binary: bool, listener: socket.socket) -> tuple[Any, socket.socket]:
    """A connection on a real loopback socket: (the protocol, the client's end)."""
    loop = asyncio.get_running_loop()
    client = socket.create_connection(listener.getsockname())
    client.setblocking(False)
    accepted, _ = listener.accept()
    conn = native()
    await loop.connect_accepted_socket(lambda: conn, accepted)
    conn.data_received(UPGRADE)
    await loop.sock_recv(client, 65536)  # the 101
    conn.data_received(client_frame(message([{"t": "hello", "v": 1}], binary), binary))
    await loop.sock_recv(client, 65536)  # the welcome
    return conn, client


async def run_sockets(subs: int, pubs: int, binary: bool, ack_every: int, pause: float) -> list[float]:
    """CPU ns per delivery of each fan-out, on real sockets (see ``--sockets``)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 2 * subs + 100)), hard))
    hub = await start_hub()
    loop = asyncio.get_running_loop()
    listener = socket.create_server(("127.0.0.1", 0), backlog=subs + 10)
    subscribers = []
    for _ in range(subs):
        conn, client = await connect_socket(binary, listener)
        conn.data_received(subscribe(binary))
        await loop.sock_recv(client, 65536)
        subscribers.append((conn, client))
    publisher, _ = await connect_socket(binary, listener)
    last = subscribers[-1][1]
    results = []
    for n in range(pubs):
        acknowledge([conn for conn, _ in subscribers], n, ack_every, binary)
        frame = publication(n, binary)
        await asyncio.sleep(pause)
        start = time.process_time_ns()
        publisher.data_received(frame)
        await loop.sock_recv(last, 65536)  # the last subscriber's frame: the fan-out is done
        results.append((time.process_time_ns() - start) / subs)
    await hub.stop()
    for _conn, client in subscribers:
        client.close()
    listener.close()
    return results


async def run(
    subs: int, pubs: int, binary: bool, ack_every: int, pause: float
) -> list[tuple[float, float, float]]:
    hub = await start_hub()
    subscribers = []
    for _ in range(subs):
        conn, transport = await connect(binary)
        subscribed = transport.written()
        conn.data_received(subscribe(binary))
        await subscribed
        subscribers.append((conn, transport))
    publisher, _ = await connect(binary)
    results = []
    last = subscribers[-1][1]
    for n in range(pubs):
        acknowledge([conn for conn, _ in subscribers], n, ack_every, binary)
        done = last.written()
        frame = publication(n, binary)
        await asyncio.sleep(pause)  # (and the acks' loop turns run before the clock starts)
        start = time.perf_counter_ns()
        publisher.data_received(frame)
        await done
        ats = sorted(t.at - start for _, t in subscribers)
        results.append((ats[0] / 1e3, ats[len(ats) // 2] / 1e3, ats[-1] / 1e3))
    await hub.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encoding", choices=("json", "msgpack"), default="json")
    parser.add_argument("--subs", type=int, default=1_000)
    parser.add_argument("--pubs", type=int, default=200)
    parser.add_argument("--ack-every", type=int, default=20)
    parser.add_argument(
        "--pause", type=float, default=0.05, help="seconds between publications (S10: 0.05; 0: back to back)"
    )
    parser.add_argument("--sockets", action="store_true", help="real loopback sockets (see above)")
    args = parser.parse_args()
    try:
        import uvloop  # noqa: PLC0415

        uvloop.install()
    except ImportError:
        pass
    if args.sockets:
        per = asyncio.run(run_sockets(args.subs, args.pubs, args.encoding == "msgpack", args.ack_every, args.pause))
        print(
            f"{args.encoding}, {args.subs:,} subscribers on sockets, {len(per) - args.pubs // 4} publications: "
            f"{median(per[args.pubs // 4 :]) / 1e3:.2f} CPU-µs per delivery (median)"
        )
        return
    results = asyncio.run(run(args.subs, args.pubs, args.encoding == "msgpack", args.ack_every, args.pause))[
        args.pubs // 4 :
    ]
    first, mid, last = (median(r[k] for r in results) for k in range(3))
    print(
        f"{args.encoding}, {args.subs:,} subscribers, {len(results)} publications (medians): "
        f"first write {first:,.0f} µs, median {mid:,.0f} µs, last {last:,.0f} µs; "
        f"{last / args.subs:.2f} µs per delivery; median ÷ last {mid / last:.2f}"
    )


if __name__ == "__main__":
    main()
