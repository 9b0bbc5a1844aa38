"""Setting mistakes are refused when the object is built, naming the setting and the fix."""

from __future__ import annotations

import logging
import sys
from typing import Any

import pytest

from ladder import (
    JWT,
    BlockingPublisher,
    ChannelOptions,
    ConfigurationError,
    Ladder,
    LadderError,
    Limits,
    Publisher,
)
from ladder.engine import create_engine
from ladder.engine.memory import MemoryEngine
from ladder.engine.redis import RedisEngine
from ladder.engine.shards import ShardedEngine


def test_channel_options_given_as_a_dict_are_refused_at_construction() -> None:
    with pytest.raises(ConfigurationError) as caught:
        Ladder(channels={"room:*": {"history_size": 200, "presence": True}})  # type: ignore[dict-item]
    error = caught.value
    assert error.setting == "channels['room:*']"
    assert "ChannelOptions(history_size=..., presence=...)" in str(error)
    assert isinstance(error, ValueError)


def test_default_channel_and_bad_values_are_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"^default_channel: got a dict"):
        Ladder(default_channel={"presence": True})  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"^channels: got a list"):
        Ladder(channels=[ChannelOptions()])  # type: ignore[arg-type]


def test_limits_of_the_wrong_type_or_negative_are_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"^Limits\(max_frame_size=\.\.\.\): '64k' is a str"):
        Limits(max_frame_size="64k")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"^Limits\(message_rate=\.\.\.\): 'x' is a str, not a number; pass a number$"):
        Limits(message_rate="x")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"^Limits\(message_rate=\.\.\.\): -1 is out of range"):
        Limits(message_rate=-1)
    assert Limits(message_rate=0, max_queue=5).max_queue == 5
    # (10 bytes was taken: every stream's session dropped as a slow consumer at once)
    with pytest.raises(ConfigurationError, match=r"^Limits\(max_queue_bytes=\.\.\.\): 10 bytes cannot work .*pass at least 1024"):
        Limits(max_queue_bytes=10)


def test_an_unknown_engine_url_names_the_setting_and_the_choices() -> None:
    with pytest.raises(
        ConfigurationError, match=r'^engine: unknown engine URL \'redis2://x\'; use "memory://"'
    ):
        Ladder(engine="redis2://x")
    with pytest.raises(ConfigurationError, match=r"^engine: int is not an engine"):
        create_engine(3)  # type: ignore[arg-type]


def test_a_missing_redis_extra_names_the_distribution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "ladder.engine.redis", raising=False)
    monkeypatch.setitem(sys.modules, "redis", None)  # as if `redis` were not installed
    with pytest.raises(ConfigurationError) as caught:
        Ladder(engine="redis://127.0.0.1:6379/0")
    assert not isinstance(caught.value, LadderError)
    assert caught.value.setting == "engine"
    assert "pip install 'ladder-rt[redis]'" in str(caught.value)


def test_a_redis_cluster_on_a_redis_py_without_sharded_pub_sub_names_the_upgrade(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The `redis` extra allows redis-py 5.0.2, whose asyncio client (like every one before
    8.0) has no SSUBSCRIBE: a Redis Cluster engine was built, then failed at every round of its
    listener ('PubSub' object has no attribute 'ssubscribe') and never became healthy."""
    from redis.asyncio.client import PubSub  # noqa: PLC0415

    monkeypatch.delattr(PubSub, "ssubscribe")  # as redis-py 5.0.2 to 7.4
    with pytest.raises(ConfigurationError) as caught:
        Ladder(engine="redis+cluster://127.0.0.1:7000")
    assert caught.value.setting == "engine"
    assert "a Redis Cluster needs redis-py 8.0 or newer" in str(caught.value)
    assert "pip install -U 'redis[hiredis]>=8'" in caught.value.fix


def test_a_redis_cluster_on_a_redis_py_lacking_what_the_engine_imports_names_the_upgrade(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """redis-py 5.0.2 to 7.0 also lack ``RedisClusterUnreachableError``, which the engine's
    modules import: the ImportError was reported as the missing extra ("install it with
    pip install 'ladder-rt[redis]'"), to a user who had it."""
    import redis.exceptions  # noqa: PLC0415
    from redis.asyncio.client import PubSub  # noqa: PLC0415

    monkeypatch.delattr(PubSub, "ssubscribe")
    monkeypatch.delattr(redis.exceptions, "RedisClusterUnreachableError")
    for name in [m for m in sys.modules if m.startswith("ladder.engine.rediscluster")]:
        monkeypatch.delitem(sys.modules, name)  # (imported afresh, as in a new process)
    with pytest.raises(ConfigurationError) as caught:
        Ladder(engine="redis+cluster://127.0.0.1:7000")
    assert "a Redis Cluster needs redis-py 8.0 or newer" in str(caught.value)
    assert "pip install -U 'redis[hiredis]>=8'" in caught.value.fix
    assert "ladder-rt[redis]" not in str(caught.value)


ENGINE_MISTAKES = [
    ("MemoryEngine(sweep_every=...)", lambda: MemoryEngine(sweep_every=0), "pass a number > 0"),
    ("MemoryEngine(sweep_every=...)", lambda: MemoryEngine(sweep_every=-1), "pass a number > 0"),
    ("RedisEngine(sweep_every=...)", lambda: RedisEngine("redis://127.0.0.1:6379/0", sweep_every=0), "> 0"),
    ("RedisEngine(command_timeout=...)", lambda: RedisEngine("redis://h/0", command_timeout=0), "> 0"),
    ("RedisEngine(max_connections=...)", lambda: RedisEngine("redis://h/0", max_connections=2.5), "pass an int"),
    ("engine", lambda: RedisEngine("foo://x"), "to RedisEngine"),
    ("engine", lambda: RedisEngine(123), "to RedisEngine"),  # type: ignore[arg-type]
    ("engine", lambda: RedisEngine("redis+cluster://h:7000"), "to RedisClusterEngine"),
    ("engine", lambda: ShardedEngine("unix:///tmp/r.sock"), "to ShardedEngine"),
    # (a session id is "<node id>.<random>", read up to its first dot: web.1's were node web's)
    ("RedisEngine(node_id=...)", lambda: RedisEngine("redis://h/0", node_id="web.1"), "letters, digits"),
    ("RedisEngine(node_id=...)", lambda: RedisEngine("redis://h/0", node_id=""), "or None for a random one"),
    ("RedisEngine(node_id=...)", lambda: RedisEngine("redis://h/0", node_id=7), "letters, digits"),  # type: ignore[arg-type]
    ("ShardedEngine(node_id=...)", lambda: ShardedEngine("redis://a,b/0", node_id="a b"), "letters, digits"),
    ("RedisEngine(prefix=...)", lambda: RedisEngine("redis://h/0", prefix=5), "a non-empty str"),  # type: ignore[arg-type]
    ("RedisEngine(prefix=...)", lambda: RedisEngine("redis://h/0", prefix="{app}"), "without braces"),
    ("ShardedEngine(prefix=...)", lambda: ShardedEngine("redis://a,b/0", prefix=""), "a non-empty str"),
    ("engine", lambda: create_engine("memory://x"), 'pass "memory://"'),
    ("engine", lambda: create_engine("memory://?idle_ttl=60"), "MemoryEngine(idle_ttl=...)"),
]


def test_engine_names_that_can_be_carried_are_taken() -> None:
    engine = RedisEngine("redis://h/0", node_id="web-1_A", prefix="my:app")
    assert (engine.prefix, engine._link.node_id) == ("my:app", "web-1_A")
    assert all(isinstance(create_engine(url), MemoryEngine) for url in ("memory://", "MEMORY://", "memory:///"))


def test_a_clock_that_is_no_function_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"^clock: got 5, not a function; pass a function returning seconds"):
        Ladder(clock=5)  # type: ignore[arg-type]


@pytest.mark.parametrize(("setting", "make", "fix"), ENGINE_MISTAKES)
def test_an_engine_built_by_hand_refuses_what_cannot_work_naming_it(setting: str, make: Any, fix: str) -> None:
    """An engine's period or timeout of 0 was accepted (a sweep every 0 s spun a core; every
    command failed), and a URL of another scheme or type was redis-py's ValueError or an
    AttributeError when the engine started."""
    with pytest.raises(ConfigurationError) as caught:
        make()
    assert caught.value.setting == setting
    assert fix in caught.value.fix


def test_a_missing_jwt_extra_names_the_distribution(monkeypatch: pytest.MonkeyPatch) -> None:
    from ladder import JWT  # noqa: PLC0415

    monkeypatch.setitem(sys.modules, "jwt", None)
    with pytest.raises(ConfigurationError, match=r"pip install 'ladder-rt\[jwt\]'") as caught:
        JWT("secret")
    assert caught.value.setting == "authenticate"


def test_a_publisher_on_the_memory_engine_is_refused_as_reaching_nobody() -> None:
    with pytest.raises(ConfigurationError, match="reaches nobody") as caught:
        Publisher("memory://")
    assert "redis://" in caught.value.fix and "hub.publish()" in caught.value.fix
    with pytest.raises(ConfigurationError, match=r"^engine: a BlockingPublisher on the memory engine") as blocking:
        BlockingPublisher("memory://")  # (it named "a Publisher", which the user did not make)
    assert 'BlockingPublisher("redis://' in blocking.value.fix


def test_hub_settings_that_cannot_work_are_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"^allowed_origins: got 'https://app.example', not a list"):
        Ladder(allowed_origins="https://app.example")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"^allowed_origins: 'app.example' is not an origin"):
        Ladder(allowed_origins=["app.example"])
    with pytest.raises(
        ConfigurationError, match=r"^allowed_origins: 'https://app.example/chat' is not an origin"
    ):
        Ladder(allowed_origins=["https://app.example/chat"])
    with pytest.raises(ConfigurationError, match=r"^transports: got 'websocket'"):
        Ladder(transports="websocket")
    with pytest.raises(ConfigurationError, match=r"^transports: got \['websocket', 'smoke-signals'\]"):
        Ladder(transports=["websocket", "smoke-signals"])
    with pytest.raises(ConfigurationError, match=r"^session_ttl: '120' is a str"):
        Ladder(session_ttl="120")  # type: ignore[arg-type]
    hub = Ladder(
        allowed_origins=["*", "https://app.example", "http://127.0.0.1:8000/"],
        transports=["sse", "websocket"],
    )
    assert hub.transports == ("websocket", "sse")


def test_settings_that_cannot_work_are_refused_when_the_hub_is_built() -> None:
    """Each was taken: a frame limit of 0 refused every message, an authenticate that is not a
    function failed every connection with a traceback on the server and ``internal`` on the
    client, an empty JWT key failed every token the same way, a heartbeat of 0 pinged on
    every tick."""
    with pytest.raises(ConfigurationError, match=r"^Limits\(max_frame_size=\.\.\.\): 0 cannot work"):
        Limits(max_frame_size=0)
    with pytest.raises(ConfigurationError, match=r"^Limits\(max_frame_size=\.\.\.\): 10 bytes .*at least 1024 \(the default is 65536\)$"):
        Limits(max_frame_size=10)  # (it was taken: every call and subscribe then failed, frame_too_large)
    with pytest.raises(ConfigurationError, match=r"^Limits\(max_post_size=\.\.\.\): 4096 is below max_frame_size"):
        Limits(max_post_size=4096)
    with pytest.raises(ConfigurationError, match=r"^heartbeat: 0 cannot work; pass 0\.05 to 3600 seconds$"):
        Ladder(heartbeat=0)  # (one table gives both ends: the fix names the range, not "above 0")
    with pytest.raises(ConfigurationError, match=r"^authenticate: got a str, not a function"):
        Ladder(authenticate="secret")  # type: ignore[arg-type]
    from ladder import JWT  # noqa: PLC0415 - PyJWT is optional

    with pytest.raises(ConfigurationError, match=r"^authenticate: JWT\(key=\.\.\.\) got an empty key"):
        JWT("")
    assert Limits(message_rate=0, request_rate=0).message_rate == 0  # 0 there: no limit
    with pytest.raises(ConfigurationError, match=r"^Limits\(shard_hold=\.\.\.\): 86400 s is out of range.*pass 0 \(no wait\) to 3600 seconds \(the default is 10\)$"):
        Limits(shard_hold=86400)
    assert Limits(shard_hold=0).shard_hold == 0 and Limits().shard_hold == 10.0


def test_settings_taken_without_a_word_then_failing_every_request_are_refused() -> None:
    """Each was accepted, then every subscribe failed as ``handler_error``, every client was
    refused (``too_many_sessions``) or told to wait forever (``rate_limited``), or the hub
    failed at startup with redis-py's words, or every valid JWT was refused."""
    from ladder import JWT  # noqa: PLC0415

    with pytest.raises(ConfigurationError, match=r"^permissions: got a str, not a function"):
        Ladder(permissions="x")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"^limits: got a dict .*; write Limits\(max_frame_size=\.\.\.\)"):
        Ladder(limits={"max_frame_size": 10})  # type: ignore[arg-type]
    for name in ("max_sessions", "max_sessions_per_address", "max_sessions_per_user", "max_subscriptions"):
        with pytest.raises(ConfigurationError, match=rf"^Limits\({name}=\.\.\.\): 0 cannot work"):
            Limits(**{name: 0})
    with pytest.raises(ConfigurationError, match=r"^Limits\(message_burst=\.\.\.\): 0 cannot work with message_rate=100"):
        Limits(message_burst=0)
    with pytest.raises(ConfigurationError, match=r"^Limits\(request_burst=\.\.\.\): 0\.5 cannot work"):
        Limits(request_burst=0.5)
    assert Limits(message_rate=0, message_burst=0).message_burst == 0, "no limit at all: no burst needed"
    for url, problem in [
        ("redis:/x", "it names no server"),
        ("redis://127.0.0.1:notaport/0", "the port of '127.0.0.1:notaport' is not a number"),
        ("redis://127.0.0.1:6379/x", "the database 'x' is not a number"),
        ("redis://h1:6379,h2:bad/0", "the port of 'h2:bad'"),
        ("unix://", "it names no socket file"),
    ]:
        with pytest.raises(ConfigurationError, match=rf"^engine: .* is not a Redis URL: {problem}"):
            Ladder(engine=url)
    with pytest.raises(ConfigurationError) as secret:
        Ladder(engine="redis://:s3cret@127.0.0.1:x/0")
    assert "s3cret" not in str(secret.value) and "redis://:***@127.0.0.1:x/0" in str(secret.value)
    with pytest.raises(ConfigurationError, match=r"algorithms=\['HS256'\]"):
        JWT("secret", algorithms="HS256")  # type: ignore[arg-type]


def test_a_redis_url_option_that_is_not_the_url_s_to_set_is_refused_when_the_engine_is_built() -> None:
    """redis-py hands an option it does not know to each connection it opens: ``?prefix=``
    or a misspelt option failed only at start-up, a ``TypeError`` with a traceback. One it
    knows overrode the engine's own setting: ``socket_timeout`` on its pub/sub connection,
    which may be quiet for long, ``retry_on_timeout`` on publications never to be sent twice."""
    from ladder.engine.redis import RedisEngine  # noqa: PLC0415 - the redis extra

    own = "is the engine's own setting; pass it to the engine"
    for url, problem in [
        ("redis://127.0.0.1:6379/0?prefix=app", rf"prefix is not read from the URL: the key prefix {own}: RedisEngine\(url, prefix=\.\.\.\)"),
        ("redis://h1:6379,h2:6379/0?socket_timeout=5", rf".* {own}: RedisEngine\(url, command_timeout=\.\.\.\)"),
        ("redis://127.0.0.1/0?max_connections=5", rf".* {own}: RedisEngine\(url, max_connections=\.\.\.\)"),
        ("redis://127.0.0.1/0?retry_on_timeout=true", "retry_on_timeout is not taken: .* never sent again"),
        ("redis://127.0.0.1/0?sockettimeout=1", "'sockettimeout' is not an option of a Redis URL; drop it .*client_name"),
        ("redis://127.0.0.1/0?socket_read_size=big", "socket_read_size='big' is not a value redis-py reads; .* a whole number"),
        ("redis://127.0.0.1/0?ssl_cert_reqs=none", "ssl_cert_reqs is an option of TLS.*; write rediss://"),
        ("redis://127.0.0.1/0?decode_responses=1", "'decode_responses' is not an option"),
        ("unix:///run/redis.sock?socket_keepalive=true", "socket_keepalive is an option of TCP"),
    ]:
        with pytest.raises(ConfigurationError, match=rf"^engine: '.*': {problem}"):
            Ladder(engine=url)
    with pytest.raises(ConfigurationError, match="prefix is not read from the URL"):
        RedisEngine("redis://127.0.0.1:6379/0?prefix=app")
    for url in ["redis://127.0.0.1/0?client_name=app&socket_keepalive=true", "rediss://127.0.0.1/0?ssl_cert_reqs=none"]:
        Ladder(engine=url)  # (where the data is and how to reach it: the URL's to say)


def test_handler_and_push_names_no_client_can_use_are_refused_at_once() -> None:
    hub = Ladder()

    def chat(ctx: object, data: object) -> None: ...

    with pytest.raises(TypeError, match=r'write @hub.on\("chat"\) above chat'):
        hub.on(chat)  # type: ignore[arg-type]
    for bad in ("", 123, "a\nb", "x" * 256):
        with pytest.raises(ValueError, match="is not an event name a client can use"):
            hub.on(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"hub.on\('chat'\) registers a function, not str"):
        hub.on("chat")("not a function")  # type: ignore[arg-type]
    assert hub.on("chat.send")(chat) is chat
    assert hub.on("chat.send")(chat) is chat  # (the same function again: nothing changes)

    def other(ctx: object, data: object) -> None: ...

    # A second handler for one event replaced the first without a word.
    with pytest.raises(ConfigurationError, match=r"^hub.on\('chat.send'\): .*chat handles 'chat.send' already, and .*other would replace it"):
        hub.on("chat.send")(other)


async def test_hub_queries_refuse_what_a_client_query_would() -> None:
    hub = Ladder()
    with pytest.raises(ValueError, match="is not an event name"):
        await hub.send("sid", "", None)
    with pytest.raises(ValueError, match="is not a channel name"):
        await hub.history("")
    with pytest.raises(ValueError, match=r"limit must be an int from 1 to 10000, not -1"):
        await hub.history("room:a", limit=-1)
    with pytest.raises(ValueError, match="is not a channel name"):
        await hub.presence("")


def test_a_blocking_publishers_timeout_must_be_seconds_above_0() -> None:
    for bad in (0, -1, "5", float("inf")):
        with pytest.raises(ConfigurationError, match=r"^timeout: .* is not a number of seconds above 0"):
            BlockingPublisher("redis://127.0.0.1:9/0", timeout=bad)  # type: ignore[arg-type]


def test_jwt_settings_no_token_could_pass_are_refused_when_built() -> None:
    """Each was taken: a client's token then got ``500 internal`` with PyJWT's traceback in the
    log (a secret given for RS256, "none", a private key), or every token was refused
    (an unknown algorithm), or ``leeway`` ran the other way."""
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415 - with PyJWT[crypto]
    from cryptography.hazmat.primitives.asymmetric import ec, rsa  # noqa: PLC0415

    from ladder import JWT  # noqa: PLC0415

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    p256 = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    secret = "s3cret-for-tests-only-0123456789abcdef"
    for key, kwargs, said in [
        (secret, {"algorithms": ["RS256"]}, r"cannot verify RS256 tokens, which need an RSA public key"),
        (secret, {"algorithms": ["HS256", "RS256"]}, r"cannot verify RS256 tokens"),
        (public_pem, {}, r"cannot verify HS256 tokens, which need the shared secret"),
        (private_pem, {"algorithms": ["RS256"]}, r"is a private key.*pass the public key in PEM"),
        (p256, {"algorithms": ["ES384"]}, r"cannot verify ES384 tokens, .*curve"),
        (public_pem, {"algorithms": ["RS256", "ES256"]}, r"cannot verify ES256 tokens"),
        (secret, {"algorithms": ["none"]}, r'algorithms=\["none"\]\) would accept unsigned tokens'),
        (secret, {"algorithms": ["FOO"]}, r"'FOO'\]\) is not an algorithm PyJWT knows; use one of \['ES256'"),
        (secret, {"algorithms": ["hs256"]}, r"the names are case-sensitive"),
    ]:
        with pytest.raises(ConfigurationError, match=said) as caught:
            JWT(key, **kwargs)
        assert caught.value.setting == "authenticate"
        assert "<generator" not in str(caught.value)
    with pytest.raises(ConfigurationError, match=r"^JWT\(leeway=\.\.\.\): -5 is out of range"):
        JWT(secret, leeway=-5)
    # Options of the wrong kind were taken, and every token then refused ``unauthorized``
    # ("Issuer param must be str", "the token has no 5 claim").
    for kwargs, said in [
        ({"issuer": 5}, r"^authenticate: JWT\(issuer=5\) cannot work; pass the \"iss\" your tokens carry"),
        ({"audience": 5}, r"JWT\(audience=5\) cannot work; pass the \"aud\" your tokens carry"),
        ({"audience": []}, r"JWT\(audience=\[\]\) cannot work"),
        ({"user_claim": 5}, r"JWT\(user_claim=5\) cannot work; pass the name of the claim holding the user id"),
        ({"info_claim": ""}, r"JWT\(info_claim=''\) cannot work"),
        ({"require_expiry": "no"}, r"JWT\(require_expiry='no'\) cannot work; pass True or False"),
    ]:
        with pytest.raises(ConfigurationError, match=said):
            JWT(secret, **kwargs)
    JWT(secret, audience=["a", "b"], issuer="https://auth.example.com", info_claim="name", require_expiry=False)
    assert JWT(public_pem, algorithms=["RS256", "PS256"]).algorithms == ["RS256", "PS256"]
    assert JWT(p256.decode(), algorithms=["ES256"]).algorithms == ["ES256"]


@pytest.mark.parametrize(("name", "most"), [("sse_padding", 65536), ("gzip_min_size", 1048576)])
def test_a_size_setting_is_whole_bytes_up_to_its_most(name: str, most: int) -> None:
    """``sse_padding=1.5`` was taken and every SSE request then failed (a TypeError, the
    connection dropped without a response); ``10**9`` sent a GB at the start of every stream.
    ``gzip_min_size=1.5`` and ``10**12`` (gzip turned off without a word) were taken alike:
    each is an int of bytes, like every other size."""
    with pytest.raises(ConfigurationError, match=rf"^{name}: 1\.5 is a float, not a whole number; pass an int$"):
        Ladder(**{name: 1.5})
    with pytest.raises(ConfigurationError, match=rf"^{name}: True is a bool"):
        Ladder(**{name: True})
    with pytest.raises(ConfigurationError, match=rf"^{name}: -1 is out of range"):
        Ladder(**{name: -1})
    huge = 10**12
    with pytest.raises(ConfigurationError, match=rf"^{name}: {huge} bytes is over the most, {most}.*at most {most}"):
        Ladder(**{name: huge})
    for fine in (0, 1024, most):
        Ladder(**{name: fine})


def test_a_history_ttl_below_a_second_is_taken() -> None:
    assert ChannelOptions(history_ttl=0.5).history_ttl == 0.5




def test_any_origin_with_an_authenticate_hook_warns_once_at_build(caplog: pytest.LogCaptureFixture) -> None:
    """Any site's pages can open sessions carrying their visitors' cookies: with a hook that
    reads them, that is cross-site WebSocket hijacking. A token the page presents is not sent
    by the browser on its own, so JWT is quiet, and so is an anonymous hub."""

    def by_cookie(request: object) -> str:
        return "someone"

    with caplog.at_level(logging.WARNING, "ladder"):
        Ladder(allowed_origins=["*"], authenticate=by_cookie)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and 'allowed_origins=["*"]' in warned[0] and "list the origins" in warned[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, "ladder"):
        Ladder(allowed_origins=["*"])
        Ladder(allowed_origins=["*"], authenticate=JWT("k" * 32))
        Ladder(allowed_origins=["https://app.example"], authenticate=by_cookie)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_negative_value_is_told_the_same_range_as_0_where_0_cannot_work() -> None:
    """``heartbeat=-1`` was told "pass a finite number >= 0", and then 0 was refused: the fix
    named a value that does not work. Where 0 cannot work, a negative value hears the range."""
    from ladder.server.config import _ABOVE_ZERO, HUB_TIMINGS  # noqa: PLC0415

    def fix_for(make: Any) -> str:
        with pytest.raises(ConfigurationError) as refused:
            make()
        return str(refused.value).split("; ", 1)[1]

    for name in HUB_TIMINGS:
        if name in ("node_lease",):
            continue  # (settable apart, with its own words: tests/server/test_lease_settings.py)
        told = {fix_for(lambda value=value, name=name: Ladder(**{name: value})) for value in (-1, 0, float("nan"))}
        assert len(told) == 1 and ">= 0" not in told.pop(), name
    for name in _ABOVE_ZERO:
        told = {fix_for(lambda value=value, name=name: Limits(**{name: value})) for value in (-1, 0)}
        assert told == {"pass a number above 0 (see its default)"}, name
