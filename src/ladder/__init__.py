"""Ladder: real-time messaging for Python web apps whose connections survive any network.

``from ladder import Ladder, Client``. Installed as ``ladder-rt`` (``pip install ladder-rt``),
imported as ``ladder``. Names are imported on first use, so that the sans-I/O core
(``ladder.protocol``) can be imported without the server or the client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .client import Client as Client
    from .engine.base import ChannelOptions as ChannelOptions
    from .engine.base import Member as Member
    from .engine.base import Publication as Publication
    from .errors import ConfigurationError as ConfigurationError
    from .protocol.errors import LadderError as LadderError
    from .publisher import BlockingPublisher as BlockingPublisher
    from .publisher import Publisher as Publisher
    from .server.auth import AuthRequest as AuthRequest
    from .server.auth import Identity as Identity
    from .server.config import Limits as Limits
    from .server.context import Context as Context
    from .server.hub import Ladder as Ladder
    from .server.jwt import JWT as JWT

_LAZY = {
    "AuthRequest": "ladder.server.auth",
    "BlockingPublisher": "ladder.publisher",
    "ConfigurationError": "ladder.errors",
    "ChannelOptions": "ladder.engine.base",
    "Client": "ladder.client",
    "Context": "ladder.server.context",
    "Identity": "ladder.server.auth",
    "JWT": "ladder.server.jwt",
    "Ladder": "ladder.server.hub",
    "LadderError": "ladder.protocol.errors",
    "Limits": "ladder.server.config",
    "Member": "ladder.engine.base",
    "Publication": "ladder.engine.base",
    "Publisher": "ladder.publisher",
}

__all__ = [
    "JWT",
    "AuthRequest",
    "BlockingPublisher",
    "ChannelOptions",
    "Client",
    "ConfigurationError",
    "Context",
    "Identity",
    "Ladder",
    "LadderError",
    "Limits",
    "Member",
    "Publication",
    "Publisher",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ladder' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
