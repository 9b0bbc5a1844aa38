"""The python-socketio peer: the same handlers as ``bench/ladder_app.py``, served by uvicorn
with the settings ``ladder serve`` uses for ASGI WebSockets (uvloop, httptools, the
``websockets-sansio`` implementation, no permessage-deflate, no protocol-level WebSocket
pings since Engine.IO has its own, logging off). ``ladder serve`` itself serves its ``/ws``
endpoint with its native driver; the harness also measures it through ASGI (``--asgi-ws``).

Run by the harness with the peers' virtualenv (``bench/.peers/venv``), whose uvicorn,
uvloop, httptools and websockets are pinned to the project venv's versions:

    python psio_app.py PORT        (settings from BENCH_PSIO: {"ping_interval": s, ...})
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
from typing import Any

import socketio
import uvicorn

_config: dict[str, Any] = json.loads(os.environ.get("BENCH_PSIO", "{}"))

sio = socketio.AsyncServer(
    async_mode="asgi",
    cors_allowed_origins="*",
    logger=False,
    engineio_logger=False,
    http_compression=False,
    ping_interval=_config.get("ping_interval", 25),
    ping_timeout=_config.get("ping_timeout", 20),
)
app = socketio.ASGIApp(sio)


@sio.on("join")
async def join(sid: str, room: str) -> bool:
    await sio.enter_room(sid, room)
    return True


@sio.on("pub")
async def pub(sid: str, data: dict[str, Any]) -> None:
    await sio.emit("msg", data["d"], room=data["ch"])


@sio.on("chat")
async def chat(sid: str, data: dict[str, Any]) -> None:
    await sio.emit("msg", data["d"], room=data["ch"])


@sio.on("rpc")
def rpc(sid: str, data: Any) -> Any:
    return data  # a plain function, as in ladder_app.py: a handler that only computes


@sio.on("hi")
def hi(sid: str, data: Any = None) -> str:
    return "hi"


def main() -> None:
    port = int(sys.argv[1])
    signal.signal(signal.SIGUSR2, lambda *_: gc.collect())
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        ws_ping_interval=None,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_keep_alive=75,
    )


if __name__ == "__main__":
    main()
