"""Shared measurement helpers: payloads, opening many clients, windows, percentiles."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from . import profile
from .clients import BaseClient, Stats, close_pools, now
from .servers import LOAD_CORE, SERVER_CORE, Group, Server, core_busy, self_cpu
from .wire import ConnClosed

# ---------------------------------------------------------------------------------------
# Payloads: the same data for every server. {"ts": <perf_counter>, "n": <int>, "pad": "x…"}
# sized so its compact JSON is the nominal size (±2 bytes as the numbers' lengths vary).
# ---------------------------------------------------------------------------------------

_PADS: dict[int, str] = {}


def pad_for(size: int) -> str:
    pad = _PADS.get(size)
    if pad is None:
        base = len(orjson.dumps({"ts": 12345.678901234, "n": 10000, "pad": ""}))
        pad = _PADS[size] = "x" * max(0, size - base)
    return pad


def payload(size: int, n: int) -> dict[str, Any]:
    return {"ts": now(), "n": n, "pad": pad_for(size)}


# ---------------------------------------------------------------------------------------


RETRIES = [0]
"""Connection attempts retried so far (a retried session may linger on the server until its TTL)."""


async def open_clients(
    make: Callable[[int], BaseClient],
    n: int,
    *,
    channel: Callable[[int], str] | None = None,
    concurrency: int = 200,
    start: int = 0,
    owned: list[BaseClient] | None = None,
    deadline: float = 90.0,
) -> tuple[list[BaseClient], int]:
    """Connect clients ``start .. start+n-1`` (and join ``channel(i)``); returns (clients, failures).

    A client that fails is retried twice (a 10k-connection burst can overflow a listen
    backlog); what still fails is counted, not fatal. Every client made is appended to
    ``owned`` at once, so the caller can close them all even if this is cancelled; the
    whole phase gives up after ``deadline`` seconds (a saturated server).
    """
    sem = asyncio.Semaphore(concurrency)
    clients: list[BaseClient] = []
    failures = 0

    async def one(i: int) -> None:
        nonlocal failures
        async with sem:
            for attempt in range(3):
                if attempt:
                    RETRIES[0] += 1
                client = make(i)
                if owned is not None:
                    owned.append(client)
                try:
                    async with asyncio.timeout(20):
                        await client.connect()
                        if channel is not None:
                            await client.join(channel(i))
                    clients.append(client)
                    return
                except (OSError, ConnClosed, TimeoutError):
                    client.close()
                    await asyncio.sleep(0.2)
            failures += 1

    try:
        async with asyncio.timeout(deadline):
            await asyncio.gather(*(one(i) for i in range(start, start + n)))
    except TimeoutError:
        raise TimeoutError(
            f"only {len(clients)} of {n} clients connected within {deadline:g} s (server saturated?)"
        ) from None
    return clients, failures


def close_all(clients: Sequence[BaseClient]) -> None:
    for client in clients:
        with contextlib.suppress(Exception):
            client.close()
    close_pools()


class Window:
    """Server CPU, load-generator CPU and deliveries over one measurement window."""

    def __init__(self, server: Server | Group, stats: Stats, label: str = "window") -> None:
        self.server = server
        self.stats = stats
        self.label = label
        self.recording: profile.Recording | profile.Recordings | None = None

    def start(self) -> None:
        self.recording = profile.start(self.server, self.label)
        self.t0 = now()
        self.cpu0 = self.server.cpu()
        self.each0 = self.server.cpu_each() if isinstance(self.server, Group) else None
        self.lg0 = self_cpu()
        self.d0 = self.stats.delivered
        self.acks0 = self.stats.acks
        self.cores0 = core_busy()
        self.stats.lat = type(self.stats.lat)("d")

    def stop(self) -> dict[str, Any]:
        dt = now() - self.t0
        cpu = self.server.cpu() - self.cpu0
        lg = self_cpu() - self.lg0
        delivered = self.stats.delivered - self.d0
        lat = sorted(self.stats.lat)
        cores = core_busy()
        path = self.recording.stop() if self.recording is not None else None
        each: dict[str, Any] = {}
        if isinstance(self.server, Group) and self.each0 is not None:
            # Several processes measured as one (S7): each one's CPU share over the window.
            each["member_util"] = [(b - a) / dt
                                   for a, b in zip(self.each0, self.server.cpu_each(), strict=True)]
        busy0 = (cores.get(SERVER_CORE, 0) - self.cores0.get(SERVER_CORE, 0)) / dt
        busy1 = (cores.get(LOAD_CORE, 0) - self.cores0.get(LOAD_CORE, 0)) / dt
        return {
            "seconds": dt,
            "server_cpu_s": cpu,
            "server_util": cpu / dt,
            "lg_util": lg / dt,
            # Other processes on the machine (it is shared): busy time of each core beyond
            # what the server (core 0) and the load generator (core 1) used themselves.
            "other_on_server_core": max(0.0, busy0 - cpu / dt),
            "other_on_load_core": max(0.0, busy1 - lg / dt),
            "delivered": delivered,
            "per_s": delivered / dt,
            "cpu_us_per_delivery": cpu * 1e6 / delivered if delivered else None,
            "client_acks": self.stats.acks - self.acks0,
            **latency(lat),
            **each,
            **({"profile": str(path)} if path is not None else {}),
        }


def pct(sorted_values: Sequence[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def latency(sorted_seconds: Sequence[float]) -> dict[str, Any]:
    def ms(v: float | None) -> float | None:
        return None if v is None else round(v * 1000, 3)

    return {
        "samples": len(sorted_seconds),
        "p50_ms": ms(pct(sorted_seconds, 0.50)),
        "p99_ms": ms(pct(sorted_seconds, 0.99)),
        "max_ms": ms(sorted_seconds[-1] if sorted_seconds else None),
    }


async def settle(seconds: float) -> None:
    gc.collect()
    await asyncio.sleep(seconds)


def wall() -> float:
    return time.monotonic()
