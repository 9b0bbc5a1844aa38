"""S6: the Ladder Python client's time to first message (run with the project venv).

    python s6_ladder_client.py URL CAP_SECONDS

Default client settings (every rung, the staggered race, msgpack). The clock starts just
before ``connect`` (imports excluded) and stops when the reply to ``call("hi")`` arrives.
Prints ``ready``, waits for a line on stdin, then prints one JSON line: {"ms": ..., "transport": ...} or {"ms": null, "error": ...}.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from ladder import Client


async def main(url: str, cap: float) -> None:
    t0 = time.perf_counter()
    client = Client(url)
    result: dict[str, object]
    try:
        async with asyncio.timeout(cap):
            await client.connect()
            await client.call("hi")
        result = {"ms": (time.perf_counter() - t0) * 1000, "transport": client.transport}
    except TimeoutError:
        result = {"ms": None, "error": f"no reply within {cap:g} s", "transport": client.transport}
    except Exception as exc:
        result = {"ms": None, "error": repr(exc)}
    print(json.dumps(result), flush=True)
    try:
        async with asyncio.timeout(1.0):
            await client.close()
    except BaseException:
        pass


if __name__ == "__main__":
    # Imports are done: say so, and start when the harness says go (all clients at once).
    print("ready", flush=True)
    sys.stdin.readline()
    asyncio.run(main(sys.argv[1], float(sys.argv[2])))
