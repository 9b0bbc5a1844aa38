"""Reading a test server's Prometheus metrics (``GET <mount>/metrics``)."""

from __future__ import annotations

import asyncio

import httpx


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in the Prometheus text format (0 when absent)."""
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        sample, value = line.rsplit(" ", 1)
        sample_name, _, sample_labels = sample.partition("{")
        if sample_name != name:
            continue
        present = ",".join(sorted(sample_labels.rstrip("}").split(","))) if sample_labels else ""
        if present == wanted:
            return float(value)
    return 0.0


async def wait_for_metric(
    http: httpx.AsyncClient, url: str, name: str, value: float, *, timeout: float = 10.0, **labels: str
) -> None:
    """Poll ``url``'s metrics until ``name`` (with ``labels``) reads ``value``: the server is
    another process, so no event crosses over."""
    async with asyncio.timeout(timeout):
        while metric((await http.get(f"{url}/metrics")).text, name, **labels) != value:  # noqa: ASYNC110 - another process's state
            await asyncio.sleep(0.05)
