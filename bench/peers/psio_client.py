"""S6: the python-socketio client's time to first message (run with bench/.peers/venv).

    python psio_client.py URL CAP_SECONDS

Default client settings (Engine.IO starts on HTTP long-polling and upgrades to WebSocket
when it can). The clock starts just before ``connect`` and stops when the ack of
``call("hi")`` arrives. Prints ``ready``, waits for a line on stdin, then prints one JSON line like s6_ladder_client.py.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import socketio


async def main(url: str, cap: float) -> None:
    sio = socketio.AsyncClient(logger=False, engineio_logger=False)
    t0 = time.perf_counter()
    result: dict[str, object]
    try:
        async with asyncio.timeout(cap):
            await sio.connect(url, retry=True, wait_timeout=cap)
            await sio.call("hi", timeout=cap)
        result = {"ms": (time.perf_counter() - t0) * 1000, "transport": sio.transport()}
    except TimeoutError:
        result = {"ms": None, "error": f"no reply within {cap:g} s"}
    except Exception as exc:
        result = {"ms": None, "error": repr(exc)}
    print(json.dumps(result), flush=True)
    try:
        async with asyncio.timeout(1.0):
            await sio.disconnect()
    except BaseException:
        pass


if __name__ == "__main__":
    # Imports are done: say so, and start when the harness says go (all clients at once).
    print("ready", flush=True)
    sys.stdin.readline()
    asyncio.run(main(sys.argv[1], float(sys.argv[2])))
