"""The test hub (``tests.support.apps``) with one more handler, for the soak's memory checks.

``heap`` answers with what the server process holds after a full garbage collection: the number
of objects the collector tracks and of memory blocks CPython's allocator has handed out. Unlike
RSS (which moves in allocator-sized steps and rarely goes down), both count exactly what is alive.
"""

from __future__ import annotations

import gc
import sys
from typing import Any

from ladder import Context
from tests.support.apps import hub


@hub.on("heap")
async def heap(ctx: Context, data: Any) -> dict[str, int]:
    gc.collect()
    return {"objects": len(gc.get_objects()), "blocks": sys.getallocatedblocks()}


__all__ = ["hub"]
