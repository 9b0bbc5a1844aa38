"""The end-to-end test hub (:mod:`tests.support.apps`) plus handlers for the edge cases of
``test_client_edges``: a handler publishing data no encoding can carry."""

from __future__ import annotations

import datetime
from typing import Any

from ladder import Context
from tests.support.apps import hub

__all__ = ["hub"]


@hub.on("publish_datetime")
async def publish_datetime(ctx: Context, data: Any) -> None:
    """A handler bug: publishing a ``datetime`` (neither JSON nor msgpack carries it)."""
    await hub.publish("edges:dates", {"when": datetime.datetime.now(datetime.UTC)})
