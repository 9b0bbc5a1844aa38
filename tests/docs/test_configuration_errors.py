"""Setting mistakes are refused when the object is built, naming the setting and the fix."""

from __future__ import annotations

import sys

import pytest

from ladder import ChannelOptions, ConfigurationError, Ladder, LadderError, Limits, Publisher
from ladder.engine import create_engine


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
    with pytest.raises(ConfigurationError, match=r"^channels\['room:\*'\]\.history_size: -1 is out of range"):
        Ladder(channels={"room:*": ChannelOptions(history_size=-1)})
    with pytest.raises(ConfigurationError, match=r"^channels\['room:\*'\]\.presence: 'yes' is not a bool"):
        Ladder(channels={"room:*": ChannelOptions(presence="yes")})  # type: ignore[arg-type]
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
    with pytest.raises(ConfigurationError, match=r"^heartbeat: 0 cannot work"):
        Ladder(heartbeat=0)
    with pytest.raises(ConfigurationError, match=r"^authenticate: got a str, not a function"):
        Ladder(authenticate="secret")  # type: ignore[arg-type]
    from ladder import JWT  # noqa: PLC0415 - PyJWT is optional

    with pytest.raises(ConfigurationError, match=r"^authenticate: JWT\(key=\.\.\.\) got an empty key"):
        JWT("")
    assert Limits(message_rate=0, request_rate=0).message_rate == 0  # 0 there: no limit
