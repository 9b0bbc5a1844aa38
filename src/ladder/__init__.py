"""Ladder: real-time messaging for Python web apps whose connections survive any network."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .engine.base import ChannelOptions, Member, Publication
from .protocol.errors import LadderError
from .server.auth import AuthRequest, Identity
from .server.config import Limits
from .server.hub import Context, Ladder

if TYPE_CHECKING:
    from .client import Client

__all__ = [
    "AuthRequest",
    "ChannelOptions",
    "Client",
    "Context",
    "Identity",
    "Ladder",
    "LadderError",
    "Limits",
    "Member",
    "Publication",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # The client pulls in httpx and websockets; a server-only import should not pay for them.
    if name == "Client":
        from .client import Client  # noqa: PLC0415

        return Client
    raise AttributeError(name)
