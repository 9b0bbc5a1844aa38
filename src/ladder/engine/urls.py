"""Redis URLs: checked when an engine is built, and shown without their password."""

from __future__ import annotations

from urllib.parse import urlsplit

from ..errors import ConfigurationError


def shown(url: str) -> str:
    """``url`` as logs and errors show it: a password in it is replaced by ``***`` (an
    operator's log is read by more people than the server's secrets are)."""
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.partition(":")[0]
    return parts._replace(netloc=f"{user}:***@{hosts}").geturl()


def check_redis_url(spec: str) -> None:
    """Refuse a Redis URL that names no server, or one whose port or database is not a
    number, when the hub is built, not as redis-py's error when it starts."""
    parts = urlsplit(spec)
    problem = ""
    if parts.scheme == "unix":
        problem = "" if parts.path else "it names no socket file"
    else:
        for host in parts.netloc.rpartition("@")[2].split(","):
            try:
                named = urlsplit(f"//{host}")
                named.port  # noqa: B018 - raises ValueError for a port that is not one
            except ValueError:
                problem = f"the port of {host!r} is not a number from 0 to 65535"
                break
            if not named.hostname:
                problem = f"{host!r} names no server" if host else "it names no server"
                break
        database = parts.path.strip("/")
        if not problem and database and not database.isdigit():
            problem = f"the database {database!r} is not a number"
    if problem:
        raise ConfigurationError(
            "engine",
            f"{shown(spec)!r} is not a Redis URL: {problem}",
            'write "redis://host:6379/0" (or "rediss://" for TLS, "unix:///path/to/redis.sock", '
            '"redis://h1:6379,h2:6379/0" for several servers, "redis+cluster://h1:7000,h2:7000")',
        )
