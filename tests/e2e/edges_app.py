"""The end-to-end test hub (:mod:`tests.support.apps`) plus handlers for the edge cases of
``test_client_edges``: a handler publishing data no encoding can carry, an engine outage."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

from ladder import Context
from tests.support.apps import hub

__all__ = ["hub"]


@hub.on("publish_datetime")
async def publish_datetime(ctx: Context, data: Any) -> None:
    """A handler bug: publishing a ``datetime`` (neither JSON nor msgpack carries it)."""
    await hub.publish("edges:dates", {"when": datetime.datetime.now(datetime.UTC)})


@hub.on("outage")
async def outage(ctx: Context, seconds: float) -> None:
    """The engine unreachable for ``seconds`` from now, as if Redis went away (the memory
    engine's own flag): what the session queued behind this message is given back, not
    applied (protocol §4)."""
    engine = hub.engine
    engine.healthy = False  # type: ignore[misc]
    asyncio.get_running_loop().call_later(seconds, setattr, engine, "healthy", True)
