"""Redis URLs: checked when an engine is built, and shown without their password."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from urllib.parse import parse_qs, urlsplit

from ..errors import ConfigurationError

DEFAULT_PORT = 6379
"""The port a server listed without one is reached on (redis-py's, for ``rediss://`` too)."""


def shown(url: str) -> str:
    """``url`` as logs and errors show it: a password in it is replaced by ``***`` (an
    operator's log is read by more people than the server's secrets are)."""
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.partition(":")[0]
    return parts._replace(netloc=f"{user}:***@{hosts}").geturl()


def check_scheme(setting: str, url: object, schemes: tuple[str, ...]) -> str:
    """``url`` if it is a str with one of ``schemes``; else :class:`~ladder.ConfigurationError`
    naming them (an engine made by hand, ``RedisEngine(url)``, not from the hub's URL)."""
    if not isinstance(url, str):
        raise ConfigurationError(setting, f"{url!r} is not a URL (a str)", _SCHEMES_FIX)
    scheme = urlsplit(url).scheme
    if scheme not in schemes:
        raise ConfigurationError(
            setting,
            f"{shown(url)!r} is not a URL of this engine (its scheme is {scheme or 'missing'}; "
            f"it takes {', '.join(s + '://' for s in schemes)})",
            _SCHEMES_FIX,
        )
    return url


_SCHEMES_FIX = (
    'pass "redis://host:6379/0" ("rediss://" for TLS, "unix:///path/to/redis.sock") to '
    'RedisEngine, "redis://h1:6379,h2:6379/0" to ShardedEngine, "redis+cluster://h1:7000,h2:7000" '
    "to RedisClusterEngine; or give the URL to Ladder(engine=...), which picks the engine"
)


def hosts_of(url: str) -> list[str]:
    """The servers of a Redis URL as written (``h1:p1``, ``h2``), without credentials."""
    return [host.strip() for host in urlsplit(url).netloc.rpartition("@")[2].split(",")]


def same_server(host: str) -> tuple[str, int]:
    """What two entries of a list must differ in to be two servers, as far as the URL can
    tell: the host name without regard to case and the port with the default filled in
    (``127.0.0.1`` is ``127.0.0.1:6379``). Names that may resolve to one server
    (``localhost`` and ``127.0.0.1``) are told apart only when the servers answer (their
    ``run_id``, see :class:`~ladder.engine.shards.ShardedEngine`)."""
    named = urlsplit(f"//{host}")
    return (named.hostname or "", named.port or DEFAULT_PORT)


def check_redis_url(spec: str) -> None:
    """Refuse a Redis URL that names no server, one whose port or database is not a
    number, a list that gives a server a scheme or a database of its own, or one that lists
    a server twice, when the hub is built, not as redis-py's error (or a server taken for
    two) when it starts."""
    parts = urlsplit(spec)
    cluster = parts.scheme.endswith("+cluster")
    if parts.scheme == "unix":
        problem = _unix_problem(parts.path)
    else:
        hosts = hosts_of(spec)
        problem = _hosts_problem(hosts, cluster) or _database_problem(parts.netloc, parts.path, cluster)
        if not problem and parts.scheme in ("redis", "rediss"):
            problem = _twice_problem(hosts)
    if not problem:
        check_query(spec)
    if problem:
        raise ConfigurationError(
            "engine",
            f"{shown(spec)!r} is not a Redis URL: {problem}",
            'write "redis+cluster://h1:7000,h2:7000" (or "rediss+cluster://" for TLS)'
            if cluster
            else 'write "redis://host:6379/0" (or "rediss://" for TLS, "unix:///path/to/redis.sock", '
            '"redis://h1:6379,h2:6379/0" for several servers, "redis+cluster://h1:7000,h2:7000")',
        )


def _unix_problem(path: str) -> str:
    if not path:
        return "it names no socket file"
    if "," in path:
        return (
            "it lists several socket files, which are not supported: a unix URL names one "
            "socket (list several servers as redis://h1:6379,h2:6379/0)"
        )
    return ""


def _hosts_problem(hosts: list[str], cluster: bool) -> str:
    if len(hosts) > 1 and "" in hosts:
        server = "node" if cluster else "server"
        return f"the list has an empty entry (a comma with no {server} on one side): drop that comma"
    for host in hosts:
        try:
            named = urlsplit(f"//{host}")
            named.port  # noqa: B018 - raises ValueError for a port that is not one
        except ValueError:
            return f"the port of {host!r} is not a number from 0 to 65535"
        if not named.hostname:
            return f"{host!r} names no server" if host else "it names no server"
    return ""


def _database_problem(netloc: str, path: str, cluster: bool) -> str:
    """A list takes its scheme and database once: ``redis://h1:p1,rediss://h2:p2/0`` puts a
    second scheme (and ``redis://h1:p1/0,h2:p2/0`` a server) where the database goes. A
    cluster's list is told in its own form (it has only database 0)."""
    database = path.strip("/")
    server = "node" if cluster else "server"
    whole = "one scheme and one database for the whole list: redis://h1:p1,h2:p2/0"
    if path.startswith("//"):
        entry = netloc.rpartition(",")[2] + path
        if cluster:
            whole = "one scheme for the whole list: redis+cluster://h1:p1,h2:p2"
        return f"{entry!r} gives a {server} of the list a scheme of its own: {whole}"
    if "," in path:
        if cluster:
            whole = "a cluster has only database 0: redis+cluster://h1:p1,h2:p2"
        return f"{path!r} gives a {server} of the list a database of its own: {whole}"
    if database and not database.isdigit():
        return f"the database {database!r} is not a number"
    return ""


def _twice_problem(hosts: list[str]) -> str:
    seen: dict[tuple[str, int], str] = {}
    for host in hosts:
        server = same_server(host)
        if server in seen:
            first = seen[server]
            same = "" if first == host else f" ({first!r} and {host!r} are one server)"
            return f"it lists a server twice{same}: list each server once"
        seen[server] = host
    return ""


_OPTIONS = frozenset(("db", "client_name", "socket_keepalive", "socket_read_size"))
"""What a Redis URL's query may set: where the data is and how a connection is made. What
the engine decides itself (timeouts, pools, what is retried) is the engine's to set."""

_TLS_OPTIONS = frozenset(
    [
        "ssl_cert_reqs",
        "ssl_ca_certs",
        "ssl_ca_path",
        "ssl_ca_data",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_password",
        "ssl_ciphers",
        "ssl_check_hostname",
        "ssl_min_version",
        "ssl_include_verify_flags",
        "ssl_exclude_verify_flags",
    ]
)

_THE_ENGINES = {
    "prefix": ("the key prefix", "prefix"),
    "max_connections": ("the size of its pools", "max_connections"),
    "timeout": ("how long a command waits for a free connection", "pool_timeout"),
    "socket_timeout": (
        "how long a command waits for its answer (none on its pub/sub connection)",
        "command_timeout",
    ),
    "socket_connect_timeout": ("how long a connection may take to open", "connect_timeout"),
}
"""Options redis-py takes in a URL that are the engine's own settings: a URL's value would
override the engine's (a read timeout on its pub/sub connection, quiet for long, would
break it every few seconds)."""

_RETRIES = (
    "the engine chooses what is retried: a publication whose outcome is unknown is never sent "
    "again (it could be stored twice)"
)

_NEVER = {
    "retry_on_timeout": _RETRIES,
    "retry_on_error": _RETRIES,
    "health_check_interval": "the engine checks its connections itself",
    "protocol": "the engine speaks redis-py's default protocol (RESP2)",
    "legacy_responses": "the engine reads redis-py's default replies",
}

_WRITTEN = {"int": "a whole number", "float": "a number", "to_bool": "true or false"}


def check_query(url: str) -> None:
    """Refuse an option in a Redis URL's query that is not the URL's to set, or a value
    redis-py cannot read, when the engine is built. redis-py hands an option it does not know
    to each connection it opens (so ``?prefix=`` failed at start-up, a ``TypeError`` with a
    traceback), and one it knows overrides the engine's own setting."""
    parts = urlsplit(url)
    if not parts.query:
        return
    if parts.scheme.endswith("+cluster"):
        raise ConfigurationError(
            "engine",
            f"{shown(url)!r}: a Redis Cluster's URL takes no options (?{parts.query})",
            "drop the query, and pass options to RedisClusterEngine(url, ...)",
        )
    try:
        from redis.asyncio.connection import URL_QUERY_ARGUMENT_PARSERS  # noqa: PLC0415 - optional
    except ImportError:
        return  # (without redis-py the engine is refused as such)
    for name, values in parse_qs(parts.query, keep_blank_values=True).items():
        problem, fix = _option_problem(name, values[0], parts.scheme, URL_QUERY_ARGUMENT_PARSERS)
        if problem:
            raise ConfigurationError("engine", f"{shown(url)!r}: {problem}", fix)


def _option_problem(
    name: str, value: str, scheme: str, parsers: Mapping[str, Callable[[str], object]]
) -> tuple[str, str]:
    tls = scheme == "rediss"
    options = _OPTIONS - {"socket_keepalive"} if scheme == "unix" else _OPTIONS  # (no TCP there)
    if name in _THE_ENGINES:
        what, keyword = _THE_ENGINES[name]
        problem = f"{name} is not read from the URL: {what} is the engine's own setting"
        return problem, f"pass it to the engine: RedisEngine(url, {keyword}=...)"
    if name in _NEVER:
        return f"{name} is not taken: {_NEVER[name]}", f"drop {name} from the URL"
    if name == "socket_keepalive" and scheme == "unix":
        return f"{name} is an option of TCP, and a unix:// URL names a socket file", f"drop {name}"
    if name in _TLS_OPTIONS and not tls:
        problem = f"{name} is an option of TLS, and the URL is not rediss://"
        return problem, f"write rediss:// for TLS, or drop {name}"
    if name not in options and name not in _TLS_OPTIONS:
        known = sorted(options | (_TLS_OPTIONS if tls else frozenset()))
        return f"{name!r} is not an option of a Redis URL", f"drop it (the options are {', '.join(known)})"
    parser = parsers.get(name)
    try:
        if parser is not None:
            parser(value)
    except (TypeError, ValueError):
        written = _WRITTEN.get(getattr(parser, "__name__", ""), "redis-py documents it")
        return f"{name}={value!r} is not a value redis-py reads", f"write {name} as {written}"
    return "", ""
