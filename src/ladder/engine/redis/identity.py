"""What a Redis server says it is, asked when an engine first reaches it (and again after
each outage): its ``run_id`` (two entries of a list that reach one server) and whether it
is a cluster node. The wrong kind of server is refused with one line naming the fix,
instead of a traceback at start-up or commands that all fail later."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError, InvalidResponse, ResponseError

from ...errors import ConfigurationError
from ..urls import hosts_of, same_server, shown

__all__ = [
    "CREDENTIALS",
    "NOT_REDIS",
    "Identity",
    "Refusal",
    "identify",
    "is_a_cluster_node",
    "is_no_cluster",
    "no_such_database",
    "wrong_scheme",
]


@dataclass(frozen=True, slots=True)
class Identity:
    """A server's answer to ``INFO``: who it is (``run_id``, new at each restart) and whether
    cluster mode is on."""

    run_id: str
    cluster: bool


_NO_DATABASE = "DB index is out of range"
"""What Redis answers the ``SELECT`` of a connection to a database it does not have."""


async def identify(client: aioredis.Redis) -> Identity | Refusal | None:
    """Ask the server ``client`` reaches (``INFO``: its server and cluster sections); None
    if it refuses to say (``INFO`` not allowed to this user): nothing is refused then. A
    server without the URL's database refuses every connection: that is said (a
    :class:`Refusal`), not taken for an outage that never ends."""
    try:
        info = await client.info()
    except ResponseError as exc:
        if _NO_DATABASE in str(exc):
            return no_such_database(client.connection_pool.connection_kwargs.get("db", 0))
        return None
    except AuthenticationError as exc:  # (a ConnectionError to redis-py: it never ends by itself)
        return Refusal(f"this Redis refused the URL's credentials ({exc})", CREDENTIALS)
    except InvalidResponse as exc:
        return Refusal(f"what answers there does not speak Redis ({exc})", NOT_REDIS)
    return Identity(str(info.get("run_id", "")), bool(int(info.get("cluster_enabled", 0) or 0)))


CREDENTIALS = (
    "put the server's password in the URL, redis://:PASSWORD@host:port/0, or a user and its "
    "password, redis://USER:PASSWORD@host:port/0 (percent-encode what is not a letter or digit)"
)
NOT_REDIS = (
    "check the URL's host and port (they reach another kind of server), or its scheme (rediss:// for TLS)"
)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an engine cannot use the server it reached, and the fix."""

    problem: str
    fix: str

    def error(self, url: str) -> ConfigurationError:
        """The error ``start`` raises when the server answered then."""
        return ConfigurationError("engine", f"{shown(url)!r}: {self.problem}", self.fix)

    def text(self) -> str:
        return f"{self.problem}; {self.fix}"


def is_a_cluster_node(url: str) -> Refusal:
    """``redis://`` at a node of a Redis Cluster: every command on a key another node serves
    would fail (``MOVED``, ``CROSSSLOT``)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        better = "redis+cluster://host:port, naming some of the cluster's nodes"
    else:
        better = urlsplit(shown(url))._replace(scheme=f"{parts.scheme}+cluster", path="", query="").geturl()
    return Refusal("this Redis is a cluster node", f"use {better}")


def no_such_database(db: object) -> Refusal:
    """A database number the server does not have (``databases`` in its configuration, 16
    unless set otherwise: 0 to 15)."""
    return Refusal(
        f"this Redis has no database {db}",
        "use one it has (0 to its databases setting less one: 0 to 15 unless its redis.conf "
        "says otherwise), or raise databases in its redis.conf",
    )


def is_no_cluster(url: str, host: str, port: int) -> Refusal:
    """``redis+cluster://`` at a Redis that is not in cluster mode."""
    parts = urlsplit(shown(url))
    auth = parts.netloc.rpartition("@")[0]
    scheme = parts.scheme.removesuffix("+cluster")
    at = f"{auth}@" if auth else ""
    return Refusal(
        f"this Redis ({host}:{port}) is not a cluster",
        f"use {scheme}://{at}{host}:{port}/0 (or list several servers: {scheme}://h1:6379,h2:6379/0)",
    )


async def wrong_scheme(url: str, timeout: float) -> Refusal | None:
    """Why a server that did not answer the URL's scheme is refused, when it answers the
    other one: a plain Redis at a ``rediss://`` URL (its TLS handshake waits for bytes that
    Redis never sends: a timeout, taken for an outage without end) or a TLS port at a
    ``redis://`` URL (the connection reset at the first command). None when the other
    scheme fails too (the server is down, unreachable, or something else)."""
    parts = urlsplit(url)
    scheme, cluster = parts.scheme.removesuffix("+cluster"), parts.scheme.endswith("+cluster")
    if scheme not in ("redis", "rediss"):
        return None
    host, port = same_server(hosts_of(url)[0])
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            if scheme == "rediss":
                reader, writer = await asyncio.open_connection(host, port)
                writer.write(b"PING\r\n")  # (inline: any server speaking RESP answers it)
                if (await reader.readline())[:1] not in (b"+", b"-"):
                    return None
                problem, other = "this Redis does not speak TLS (it answered a plain PING)", "redis"
            else:
                tls = ssl.create_default_context()
                tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE  # (only asking what it speaks)
                reader, writer = await asyncio.open_connection(host, port, ssl=tls)
                problem, other = "this server speaks TLS (it completed a TLS handshake)", "rediss"
    except (OSError, TimeoutError, ssl.SSLError):
        return None
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
    better = urlsplit(shown(url))._replace(scheme=other + ("+cluster" if cluster else "")).geturl()
    if other == "rediss":
        better += " (?ssl_ca_certs=/path/to/ca.pem when its certificate is not from a public CA)"
    return Refusal(problem, f"use {better}")
