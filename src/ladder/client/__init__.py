"""The Python asyncio client."""

from __future__ import annotations

from .client import TRANSPORTS, Client
from .events import (
    Connected,
    Disconnected,
    Event,
    Presence,
    Push,
    Resubscribed,
    ResyncNeeded,
    ServerError,
    SessionLost,
    TransportChanged,
)
from .subscription import Publication, SubscribeResult, Subscription

__all__ = [
    "TRANSPORTS",
    "Client",
    "Connected",
    "Disconnected",
    "Event",
    "Presence",
    "Publication",
    "Push",
    "Resubscribed",
    "ResyncNeeded",
    "ServerError",
    "SessionLost",
    "SubscribeResult",
    "Subscription",
    "TransportChanged",
]
