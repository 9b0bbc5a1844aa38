"""The test hub (``tests.support.apps``) with the chaos suite's handlers.

``apply0``, ``apply20`` and ``apply50`` await 0, 20 or 50 ms (a handler doing I/O), then record
the message they applied: one line ``<key> <value> <node> <pid>`` appended to the file named by
``LADDER_CHAOS_RECORD``, with one ``write`` on a file opened ``O_APPEND``. The file is shared by
every node and outlives any of them (a SIGKILL included), and its line order is the order in
which the cluster applied the messages.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from ladder import Context
from tests.support.apps import hub

_RECORD = os.open(os.environ["LADDER_CHAOS_RECORD"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def _apply(delay: float) -> Any:
    async def apply(ctx: Context, data: Any) -> Any:
        if delay:
            await asyncio.sleep(delay)  # the handler's own work, during which a session may move
        os.write(_RECORD, f"{data['key']} {data['value']} {hub.engine.node_id} {os.getpid()}\n".encode())
        return data["value"]

    return apply


for _ms in (0, 20, 50):
    hub.on(f"apply{_ms}")(_apply(_ms / 1000))

__all__ = ["hub"]
