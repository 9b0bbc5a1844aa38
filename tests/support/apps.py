"""The hub the end-to-end tests run under a real uvicorn (``ladder serve tests.support.apps:hub``).

Its settings come from the ``LADDER_TEST_CONFIG`` environment variable (JSON of ``Ladder``
keyword arguments), so each test picks heartbeats, TTLs and limits without a new module.
Handlers let tests drive the server and look inside it over the wire.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
from typing import Any

from ladder import JWT, AuthRequest, ChannelOptions, Context, Identity, Ladder, LadderError, Limits
from ladder.server.hub import internals


def _config() -> dict[str, Any]:
    raw = os.environ.get("LADDER_TEST_CONFIG", "{}")
    config: dict[str, Any] = json.loads(raw)
    if "limits" in config:
        config["limits"] = Limits(**config["limits"])
    channels = config.pop("channels", None)
    config["channels"] = {pattern: ChannelOptions(**opts) for pattern, opts in (channels or {}).items()} or {
        "chat:*": ChannelOptions(presence=True, client_publish=True),
        "open:*": ChannelOptions(client_publish=True, history_size=10_000),
        "*": ChannelOptions(history_size=10_000),
    }
    config.setdefault("allowed_origins", ["http://allowed.example"])
    return config


def _token_check(request: AuthRequest) -> Identity | None:
    """With ``require_token``, the token ``user:<name>`` authenticates as <name>; the token
    ``hook-bug`` makes the hook return what no hook may (a bug of the app's: ``internal``)."""
    token = request.token or ""
    if token == "hook-bug":
        return 42  # type: ignore[return-value]
    return Identity(user=token[5:], info={"nick": token[5:]}) if token.startswith("user:") else None


def _private(identity: Identity, action: str, channel: str, options: ChannelOptions) -> bool:
    """With ``private_channels``: ``private:<user>`` is only for <user>; nobody publishes there.
    ``sealed:*`` is for anyone to follow from now on: its history and presence are for nobody."""
    if channel.startswith("private:"):
        return action != "publish" and channel == f"private:{identity.user}"
    if channel.startswith("sealed:"):
        return action == "subscribe"
    return action != "publish" or options.client_publish


_settings = _config()
_require_token = _settings.pop("require_token", False)
_jwt = _settings.pop("jwt", None)
_permissions = _private if _settings.pop("private_channels", False) else None
hub = Ladder(
    **_settings,
    authenticate=JWT(**_jwt) if _jwt else (_token_check if _require_token else None),
    permissions=_permissions,
)


@hub.on("echo")
async def echo(ctx: Context, data: Any) -> Any:
    return {"data": data, "user": ctx.user, "session": ctx.session_id}


@hub.on("record")
async def record(ctx: Context, data: Any) -> None:
    """Remember what arrived, per key, to check exactly-once delivery upstream.

    Kept in a channel's history, so it is shared by every node of a cluster.
    """
    await hub.publish(f"rec:{data['key']}", data["value"])


@hub.on("records")
async def records(ctx: Context, key: str) -> list[Any]:
    return [pub.data for pub in await hub.history(f"rec:{key}", limit=10_000)]


@hub.on("publish")
async def publish(ctx: Context, data: Any) -> dict[str, Any]:
    """Publish ``count`` messages ``{"n": i}`` to ``channel``, optionally spaced out."""
    channel, count = data["channel"], int(data.get("count", 1))
    interval = float(data.get("interval", 0))
    start = int(data.get("start", 0))

    async def run() -> None:
        for n in range(start, start + count):
            await hub.publish(channel, {"n": n, "pad": "x" * int(data.get("pad", 0))})
            if interval:
                await asyncio.sleep(interval)

    if data.get("background"):
        internals(hub).tasks.spawn(run(), "test-publisher")
        return {"started": True}
    await run()
    return {"published": count}


@hub.on("fail")
async def fail(ctx: Context, data: Any) -> None:
    if data == "ladder":
        raise LadderError("room_full", "the room is full", retry_after=2.5, details={"seats": 0})
    raise RuntimeError("boom")


@hub.on("push")
async def push(ctx: Context, data: Any) -> int:
    if data.get("user"):
        return await hub.send_user(data["user"], data["event"], data.get("data"))
    return int(await hub.send(ctx.session_id, data["event"], data.get("data")))


@hub.on("stats")
async def stats(ctx: Context, data: Any) -> dict[str, int]:
    return hub.stats()


@hub.on("collector")
async def collector(ctx: Context, data: Any) -> dict[str, int]:
    """How the serving process set its garbage collector up (``ladder serve --gc-threshold``)."""
    return {"threshold": gc.get_threshold()[0], "frozen": gc.get_freeze_count()}


@hub.on("event_loop")
async def event_loop(ctx: Context, data: Any) -> str:
    """The package of the serving process's event loop class: "uvloop" or "asyncio"."""
    return type(asyncio.get_running_loop()).__module__.partition(".")[0]


@hub.on("sleep")
async def sleep(ctx: Context, seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


@hub.on("nap")
async def nap(ctx: Context, seconds: float) -> float:
    """``sleep``, telling its caller first (a ``napping`` push) that its handler runs."""
    await hub.send(ctx.session_id, "napping", seconds)
    await asyncio.sleep(seconds)
    return seconds


@hub.on("kick")
async def kick(ctx: Context, session_id: str | None) -> bool:
    """End a session (the caller's by default) from the server side."""
    return await hub.disconnect(session_id or ctx.session_id, "kicked by the test")


@hub.on("drop")
async def drop(ctx: Context, session_id: str) -> bool:
    """Close a session as if it were a slow consumer (its client should come back)."""
    session = internals(hub).sessions.get(session_id)
    if session is not None:
        internals(hub).sessions.close(session, LadderError("slow_consumer"))
    return session is not None


async def sse_first_write_only(scope: Any, receive: Any, send: Any) -> None:
    """The hub behind a "proxy" that lets an SSE stream's first write through, then buffers.

    A stream that opens, shows its welcome and then delivers nothing more is the case the
    client's ping/pong verification exists for.
    """
    if scope["type"] != "http" or not scope.get("path", "").endswith("/sse"):
        await hub(scope, receive, send)
        return
    writes = 0
    held: list[Any] = []

    async def holding(message: Any) -> None:
        nonlocal writes
        if message["type"] == "http.response.body":
            writes += 1
            if writes > 1:
                held.append(message)
                if message.get("more_body", False):
                    return
                for kept in held:
                    await send(kept)
                return
        await send(message)

    await hub(scope, receive, holding)


@hub.on("publish_through")
async def publish_through(ctx: Context, data: Any) -> dict[str, Any]:
    """Publish ``{"n": i}`` for i in range(count) in the background, retrying each one while
    the engine is unavailable (a Redis restart), so that every n is eventually published."""
    channel, count, interval = data["channel"], int(data["count"]), float(data.get("interval", 0.005))

    async def run() -> None:
        for n in range(count):
            while True:
                try:
                    await hub.publish(channel, {"n": n})
                    break
                except LadderError:
                    await asyncio.sleep(0.05)
            await asyncio.sleep(interval)

    internals(hub).tasks.spawn(run(), "test-publisher")
    return {"node": hub.engine.node_id}


@hub.on("node")
async def node(ctx: Context, data: Any) -> str:
    return hub.engine.node_id


def factory_of_no_app() -> int:
    """An app factory (uvicorn calls it with no arguments) that returns what no server serves."""
    return 42
