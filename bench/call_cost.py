"""What one call costs the native WebSocket driver, without sockets or neighbours.

The per-call figures of S10 move by 30 % between repetitions on this shared machine, so a
change to the call path cannot be judged by them. This harness drives one native connection
of the benchmark hub (``ladder_app``: memory engine, the plain ``rpc`` handler) with a fake
transport: a masked WebSocket frame carrying a ``call`` of a ~100-byte map and the ``ack``
the load generator sends with it, through ``data_received``, the loop turn that flushes the
reply, to the transport's ``write``.

    .venv/bin/python bench/call_cost.py [--encoding json|msgpack] [--ack]  # µs per call (per lone ack)
    .venv/bin/python bench/call_cost.py --callgrind [--encoding ...]       # instructions per call
    PYTHONPATH=build/compiled .venv/bin/python bench/call_cost.py ...       # the compiled build

``--callgrind`` runs this script twice under ``valgrind --tool=callgrind`` (``--calls`` 500
and 2,000) and prints the difference of the two totals divided by 1,500: instructions per
call, start-up and warm-up cancelled, independent of the machine's load. It includes the
loop turn in which the reply is written and the harness's wait for it (a future the write
resolves): the same for any two builds compared.

``--ack`` measures a lone ``ack`` message instead (what each subscriber of a channel sends
about once a second, all of them together): after one call, to have a frame to
acknowledge, the same ack again and again, each read and applied within ``data_received``
(nothing is written back).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from io import BytesIO
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgpack
import orjson

HERE = Path(__file__).resolve().parent
UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
MASK = b"\x37\xfa\x21\x3d"


def mask(payload: bytes) -> bytes:
    return bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))


def message(frames: list[dict[str, Any]], binary: bool) -> bytes:
    if binary:
        return b"".join(msgpack.packb(f) for f in frames)
    return b"\n".join(orjson.dumps(f) for f in frames)


class Transport:
    def __init__(self) -> None:
        self.last = b""
        self.wrote: asyncio.Future[None] | None = None
        """Resolved by the next write (what the harness waits for)."""

    def write(self, data: bytes) -> None:
        self.last = data
        if self.wrote is not None and not self.wrote.done():
            self.wrote.set_result(None)

    def written(self) -> asyncio.Future[None]:
        self.wrote = asyncio.get_running_loop().create_future()
        return self.wrote

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.limits = (high, low)

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        """(The driver reads a busy connection in slices: paused after each, resumed the next
        loop turn; the harness feeds it one call at a time anyway.)"""

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 50000) if name == "peername" else None


async def run(calls: int, binary: bool, warmup: int, ack: bool = False) -> float:
    """Seconds per call (per lone ack) over ``calls`` of them after ``warmup``."""
    sys.path.insert(0, str(HERE))
    from ladder_app import hub  # noqa: PLC0415 - after the path is set

    from ladder.server.native import NativeWebSocket  # noqa: PLC0415

    await hub.start()
    NativeWebSocket.hub = hub
    conn = NativeWebSocket(None, SimpleNamespace(connections=set()), {}, _loop=asyncio.get_running_loop())
    transport = Transport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    conn.data_received(UPGRADE)
    assert transport.last.startswith(b"HTTP/1.1 101"), transport.last

    welcome = transport.written()
    conn.data_received(client_frame(message([{"t": "hello", "v": 1}], binary), binary))
    await welcome
    data = {"ts": 1733300000.123456, "pad": "x" * 70}
    if ack:
        return await acks(conn, transport, calls, binary, warmup, data)
    # Built beforehand, as many for any --calls up to 2,000, so that the difference between
    # two counts is the server's: call n acknowledges the replies before it (the session's
    # frames 1 … n), as the load generator's calls do.
    total = warmup + calls
    inbound = [
        client_frame(
            message(
                [{"t": "call", "ev": "rpc", "d": data, "i": n + 1}] + ([{"t": "ack", "s": n}] if n else []),
                binary,
            ),
            binary,
        )
        for n in range(warmup + max(calls, 2_000))
    ][:total]
    started = 0.0
    for n, frame in enumerate(inbound):
        if n == warmup:
            started = time.perf_counter()
        answered = transport.written()
        conn.data_received(frame)
        await answered
    elapsed = time.perf_counter() - started
    last = transport.last
    body = last[4:] if last[1] == 126 else last[2:]
    frames = list(msgpack.Unpacker(BytesIO(body))) if binary else [orjson.loads(x) for x in body.split(b"\n")]
    [reply] = [f for f in frames if f["t"] == "reply"]  # (with the control ack of the call)
    assert reply["t"] == "reply" and reply["s"] == total and reply["d"] == data, reply  # every ack applied
    await hub.stop()
    return elapsed / calls


async def acks(conn: Any, transport: Transport, count: int, binary: bool, warmup: int, data: Any) -> float:
    from ladder_app import hub  # noqa: PLC0415 - after the path is set (run)

    answered = transport.written()
    conn.data_received(client_frame(message([{"t": "call", "ev": "rpc", "d": data, "i": 1}], binary), binary))
    await answered
    total = warmup + count
    inbound = [client_frame(message([{"t": "ack", "s": 1}], binary), binary)] * (warmup + max(count, 2_000))
    started = 0.0
    for n, frame in enumerate(inbound[:total]):
        if n == warmup:
            started = time.perf_counter()
        conn.data_received(frame)
    elapsed = time.perf_counter() - started
    assert not conn.closing, "the connection was closed"
    await hub.stop()
    return elapsed / count


def client_frame(payload: bytes, binary: bool) -> bytes:
    """One masked, unfragmented client frame (RFC 6455 §5.2)."""
    n = len(payload)
    head = bytes([0x82 if binary else 0x81])
    head += bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big")
    return head + MASK + mask(payload)


def instructions(calls: int, encoding: str, ack: bool) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        cmd = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            str(Path(__file__).resolve()),
            "--calls",
            str(calls),
            "--warmup",
            "200",
            "--encoding",
            encoding,
            *(["--ack"] if ack else []),
        ]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ)
        text = out.read_text()
    found = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.M)
    assert found is not None, "no totals in callgrind's output"
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encoding", choices=("json", "msgpack"), default="json")
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--warmup", type=int, default=2_000)
    parser.add_argument("--callgrind", action="store_true", help="instructions per call under valgrind")
    parser.add_argument("--ack", action="store_true", help="a lone ack message instead of a call")
    args = parser.parse_args()
    what = "lone ack" if args.ack else "call"
    if args.callgrind:
        small, large = instructions(500, args.encoding, args.ack), instructions(2_000, args.encoding, args.ack)
        print(f"{args.encoding}: {(large - small) / 1_500:,.0f} instructions per {what}")
        return
    try:
        import uvloop  # noqa: PLC0415

        uvloop.install()
    except ImportError:
        pass
    per_call = asyncio.run(run(args.calls, args.encoding == "msgpack", args.warmup, args.ack))
    if args.calls >= 1_000:
        print(f"{args.encoding}: {per_call * 1e6:.2f} µs per {what} ({args.calls:,} of them)")


if __name__ == "__main__":
    main()
