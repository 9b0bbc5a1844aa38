"""The Ladder hub the benchmarks run: ``ladder serve ladder_app:hub`` (cwd = bench/).

The handlers mirror, one for one, the python-socketio app (``peers/psio_app.py``) and the
Node Socket.IO server (``peers/node/server.js``), so every server does the same work:

* ``pub``  (emit) ``{"ch": channel, "d": data}``: publish ``data`` to ``channel``
           (S2 fan-out, S5 per-client delivery). Socket.IO: ``io.to(room).emit("msg", d)``.
* ``chat`` (emit) ``{"ch": room, "d": data}``: the same, named for S3's chat rooms.
* ``rpc``  (call) data: returns data unchanged (S4). Socket.IO: an event with an ack.
* ``hi``   (call): returns ``"hi"`` (S6, the first message after connecting).

Channels named ``open:*`` also take clients' own publications (``pub`` frames, no handler:
``client_publish``), which S9 compares with publications made by the ``pub`` handler.

The two handlers that only compute (``rpc``, ``hi``) are plain functions on every server,
as Socket.IO's are callbacks: each server's cheapest form of such a handler (Ladder applies
a plain handler's call as it reads it, with no task; python-socketio still starts a task
per event). ``pub`` and ``chat`` wait for the publication, so they are ``async``.

Subscribing is Ladder's own ``sub`` frame (Socket.IO: a ``join`` event with an ack).
Settings come from ``BENCH_LADDER`` (JSON of ``Ladder`` keyword arguments), e.g. a shorter
heartbeat for the idle-footprint scenario. ``BENCH_REDIS_URL``, when set, selects the Redis
engine (``redis://127.0.0.1:<port>/0``), as ``ladder serve --engine`` would: S7 runs several
such processes on one Redis. Otherwise the engine is the default, memory. Channel options
are the defaults (history of 100 publications per channel): what an application gets
without configuring anything.

Ladder's abuse limits are switched off here, and only they: every simulated client comes
from 127.0.0.1 (the per-address session and request limits would refuse the 1001st
connection and pace the rest), and the benchmark's publisher stands in for server code
sending thousands of messages a second (the per-session message rate would refuse it).
python-socketio and Socket.IO have no such limits to switch off.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import signal
from typing import Any

from ladder import ChannelOptions, Context, Ladder, Limits

_UNLIMITED = {
    "message_rate": 0,
    "request_rate": 0,
    "max_sessions": 1_000_000,
    "max_sessions_per_address": 1_000_000,
    "max_sessions_per_user": 1_000_000,
}


def _limits(overrides: dict[str, Any]) -> Limits:
    known = {f.name for f in dataclasses.fields(Limits)}
    return Limits(**{k: v for k, v in {**_UNLIMITED, **overrides}.items() if k in known})


_config: dict[str, Any] = json.loads(os.environ.get("BENCH_LADDER", "{}"))
_config["limits"] = _limits(_config.get("limits", {}))
_config["channels"] = {"open:*": ChannelOptions(client_publish=True)}
if os.environ.get("BENCH_REDIS_URL"):
    _config["engine"] = os.environ["BENCH_REDIS_URL"]
hub = Ladder(**_config)


@hub.on("pub")
async def pub(ctx: Context, data: Any) -> None:
    await hub.publish(data["ch"], data["d"])


@hub.on("chat")
async def chat(ctx: Context, data: Any) -> None:
    await hub.publish(data["ch"], data["d"])


@hub.on("rpc")
def rpc(ctx: Context, data: Any) -> Any:
    return data


@hub.on("hi")
def hi(ctx: Context, data: Any) -> str:
    return "hi"


# The harness sends SIGUSR2 before reading memory figures (all three servers collect then).
signal.signal(signal.SIGUSR2, lambda *_: gc.collect())
