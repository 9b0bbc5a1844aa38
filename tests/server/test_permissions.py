"""The permissions hook's answer: True allows, False refuses (``forbidden``), its own
``LadderError`` refuses with that code; anything else it raises or returns is the app's bug,
answered ``internal`` and logged naming the hook, the action and the channel (it was answered
``handler_error``, "the event handler failed", and logged as a handler's failure; a truthy
non-bool allowed)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from ladder import ChannelOptions, Identity
from ladder.protocol.errors import LadderError
from tests.server.harness import Peer, make_hub

FRAMES = {
    "subscribe": {"t": "sub", "ch": "{}"},
    "publish": {"t": "pub", "ch": "{}", "d": 1},
    "presence": {"t": "presence", "ch": "{}"},
    "history": {"t": "history", "ch": "{}"},
}


def permissions(identity: Identity, action: str, channel: str, options: ChannelOptions) -> Any:
    kind, _, _ = channel.partition(":")
    if kind == "boom":
        raise RuntimeError("a bug in the hook")
    if kind == "own":
        raise LadderError("room_full", "the app's own refusal")
    if kind == "no":
        return False
    return {"str": "yes", "none": None, "int": 1, "zero": 0}.get(kind, True)


def frame(action: str, channel: str) -> dict[str, Any]:
    return {key: value.format(channel) if key == "ch" else value for key, value in FRAMES[action].items()}


@pytest.fixture
async def peer() -> Peer:
    hub = make_hub(permissions=permissions, default_channel=ChannelOptions(presence=True, client_publish=True))
    return await Peer.open(hub)


@pytest.mark.parametrize("action", list(FRAMES))
async def test_a_hook_that_raises_is_internal_logged_with_its_name_and_traceback(
    peer: Peer, action: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ladder")
    answer = await peer.request(frame(action, "boom:1"))
    assert (answer["t"], answer["code"]) == ("err", "internal")
    assert answer["reason"] == f"the permissions hook failed for {action} (see the server log)"
    [record] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    said = record.getMessage()
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert said.startswith(f"the permissions hook {__name__}.permissions failed for {action} on 'boom:1'"), said
    assert "a bug in the hook" in caplog.text and "handler" not in said
    assert (await peer.request(frame(action, "fine:1")))["t"] == "reply", "the session goes on"


@pytest.mark.parametrize(("kind", "returned"), [("str", "str"), ("none", "NoneType"), ("int", "int"), ("zero", "int")])
async def test_an_answer_that_is_not_a_bool_is_internal_logged_with_what_it_was_and_the_fix(
    peer: Peer, kind: str, returned: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ladder")
    answer = await peer.request(frame("subscribe", f"{kind}:1"))
    assert (answer["t"], answer["code"]) == ("err", "internal")
    assert answer["reason"] == f"the permissions hook returned {returned} for subscribe, not True or False (see the server log)"
    [record] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert record.levelno == logging.ERROR
    assert record.getMessage().startswith(
        f"the permissions hook {__name__}.permissions returned {returned} "
    ) and "return True to allow or False to refuse" in record.getMessage()
    assert f"on '{kind}:1'" in record.getMessage()


async def test_true_allows_false_refuses_and_its_own_error_keeps_its_code(peer: Peer) -> None:
    assert (await peer.request(frame("publish", "fine:1")))["t"] == "reply"
    refused = await peer.request(frame("publish", "no:1"))
    assert (refused["code"], refused["reason"]) == ("forbidden", "publish on 'no:1' is not allowed")
    own = await peer.request(frame("history", "own:1"))
    assert (own["code"], own["reason"]) == ("room_full", "the app's own refusal")


async def test_a_bug_where_no_handler_runs_is_internal_not_a_handlers_failure(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A ``history`` frame failing in the engine (here made to raise) is the server's bug: it
    was answered ``handler_error``, "the event handler failed", and logged as "handler failed
    for HistoryQuery", when no event handler is involved. The session goes on."""
    hub = make_hub()
    engine = hub.engine

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("an engine bug")

    monkeypatch.setattr(engine, "history", broken)
    peer = await Peer.open(hub, "alice")
    try:
        answer = await peer.request({"t": "history", "ch": "room:1"})
        assert (answer["t"], answer["code"]) == ("err", "internal"), answer
        assert "HistoryQuery" in answer["reason"] and "an engine bug" not in answer["reason"]
        assert "handler failed" not in caplog.text
        assert "applying HistoryQuery from session" in caplog.text and "an engine bug" in caplog.text
        assert (await peer.request({"t": "sub", "ch": "room:1"}))["t"] == "reply", "the session goes on"
    finally:
        await hub.stop()
