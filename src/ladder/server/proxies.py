"""Which peers' ``X-Forwarded-*`` headers the native WebSocket driver trusts in an app.

An app served by ``ladder serve`` has uvicorn read ``X-Forwarded-For`` and
``X-Forwarded-Proto`` from the peers in ``FORWARDED_ALLOW_IPS`` (``--forwarded-allow-ips``;
default loopback) for every request it serves, the mounted hub's HTTP rungs included. The
native driver takes the socket before uvicorn's middleware sees it, so it applies the same
list itself: otherwise, behind a TLS proxy, the page's own origin would pass on SSE and be
refused on the WebSocket, and every WebSocket would count as the proxy's address. (A hub
served alone trusts the headers only with ``Limits(trust_forwarded_for=True)``, on every
rung: ``ladder serve`` turns uvicorn's reading off there.)
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Any

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def proxy_trusted(config: Any, peer: str | None) -> bool:
    """Whether uvicorn's ``config`` trusts the forwarded headers of ``peer`` (an address)."""
    if peer is None or not getattr(config, "proxy_headers", False):
        return False
    allowed = getattr(config, "forwarded_allow_ips", None) or ""
    spec = allowed if isinstance(allowed, str) else ",".join(allowed)
    anyone, literals, networks = _parse(spec)
    if anyone or peer in literals:
        return True
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    return any(address in network for network in networks)


@functools.lru_cache(maxsize=8)
def _parse(spec: str) -> tuple[bool, frozenset[str], tuple[_Network, ...]]:
    """``FORWARDED_ALLOW_IPS`` as uvicorn reads it: ``*``, addresses and networks, by commas."""
    entries = [entry.strip() for entry in spec.split(",") if entry.strip()]
    networks: list[_Network] = []
    literals: set[str] = set()
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            literals.add(entry)
    return "*" in entries, frozenset(literals), tuple(networks)
