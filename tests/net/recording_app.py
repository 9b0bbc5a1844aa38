"""The test hub plus handlers that record every applied message in Redis (shared by all nodes).

``ladder serve tests.net.recording_app:hub``: the handlers of ``tests.support.apps`` and
``slow`` (await, then record), ``started`` (announce that a batch reached a node), ``begun``
(record that it began, then await) and
``fatal`` (record, then the node dies before the message's acknowledgement can be written).
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

from ladder import Context
from tests.support.apps import hub

__all__ = ["hub"]


@hub.on("slow")
async def slow(ctx: Context, data: Any) -> Any:
    """Await ``wait`` seconds, then record ``value`` under ``key`` (and its idempotency key)."""
    await asyncio.sleep(float(data.get("wait", 0.05)))
    await hub.publish(f"rec:{data['key']}", data["value"])
    return data["value"]


@hub.on("started")
async def started(ctx: Context, data: Any) -> None:
    await hub.publish(f"started:{data['key']}", ctx.session_id)


@hub.on("begun")
async def begun(ctx: Context, data: Any) -> Any:
    """Record that it began (this process's pid under ``key``), then await ``wait`` s."""
    await hub.publish(f"begun:{data['key']}", os.getpid())
    await asyncio.sleep(float(data["wait"]))
    return "finished"


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@hub.on("fatal")
async def fatal(ctx: Context, data: Any) -> Any:
    """Record, then let this process die at the last moment before the client can learn
    the message was applied: right after the idempotency record is written (or, with no
    such record, before anything else runs). Only the first time ``key`` is recorded."""
    key = f"rec:{data['key']}"
    again = bool(await hub.history(key))
    await hub.publish(key, data["value"])
    if again:  # applied a second time, on another node: record it and live on
        return {"applied": data["value"], "again": True}
    record = getattr(hub.engine, "record_applied", None)
    if record is None:
        asyncio.get_running_loop().call_soon(_die)
    else:

        async def record_then_die(*args: Any, **kwargs: Any) -> Any:
            result = await record(*args, **kwargs)
            _die()
            return result

        hub.engine.record_applied = record_then_die  # type: ignore[attr-defined]
    return {"applied": data["value"]}
