"""The Python asyncio client."""

from __future__ import annotations

from .client import TRANSPORTS, Client
from .events import (
    Connected,
    Disconnected,
    Event,
    Presence,
    ProbeResult,
    Push,
    Resubscribed,
    ResyncNeeded,
    ServerError,
    SessionLost,
    StateChanged,
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
    "ProbeResult",
    "Publication",
    "Push",
    "Resubscribed",
    "ResyncNeeded",
    "ServerError",
    "SessionLost",
    "StateChanged",
    "SubscribeResult",
    "Subscription",
    "TransportChanged",
]
