"""The browser client in real Chromium, through the demo chat and its network panel.

Every rung forced, chat across two people, exactly once and in order; stepping down when a
rung is blocked (for real, by the demo server's network panel) and climbing back; offline and
online; a buffered stream detected; the rung remembered per tab; a closed tab leaving at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.browser.conftest import Chat

RUNGS = ["websocket", "sse", "longpoll", "poll"]
BADGE = {"websocket": "WebSocket", "sse": "SSE", "longpoll": "Long polling", "poll": "Polling"}


def texts(messages: list[dict[str, Any]]) -> list[str]:
    return [m["text"] for m in messages]


def assert_exactly_once_in_order(messages: list[dict[str, Any]], first: int = 1) -> None:
    offsets = [m["offset"] for m in messages]
    assert offsets == list(range(first, first + len(messages))), "each message once, in channel order"


@pytest.mark.parametrize("rung", RUNGS)
def test_each_rung_forced_chat_exactly_once(people: Callable[..., Chat], rung: str) -> None:
    room = f"forced-{rung}"
    alice = people("alice", room, transports=rung)
    bob = people("bob", room, transports=rung)
    alice.wait_transport(rung)
    bob.wait_transport(rung)
    assert alice.badge()[0] == BADGE[rung]
    alice.wait_members({"alice", "bob"})
    bob.wait_members({"alice", "bob"})

    # Both talk at once, without waiting for each other.
    alice.start_sending(*(f"alice {n}" for n in range(10)))
    bob.start_sending(*(f"bob {n}" for n in range(10)))
    offsets = sorted(alice.sent() + bob.sent())
    assert offsets == list(range(1, 21))

    seen_by_alice = alice.wait_messages(20)
    seen_by_bob = bob.wait_messages(20)
    assert seen_by_alice == seen_by_bob, "both see the same conversation"
    assert_exactly_once_in_order(seen_by_alice)
    said = texts(seen_by_alice)
    assert [t for t in said if t.startswith("alice")] == [f"alice {n}" for n in range(10)]
    assert [t for t in said if t.startswith("bob")] == [f"bob {n}" for n in range(10)]
    assert alice.page.locator("#outbox li").count() == 0, "nothing left pending"
    assert alice.transport() == rung and bob.transport() == rung


def climb_while_talking(climber: Chat, talker: Chat, rung: str) -> int:
    """``talker`` sends ``tick N`` every 60 ms while ``climber`` unblocks ``rung`` and climbs
    back to it; returns how many ticks were sent (at least 5, some after the handover)."""
    talker.page.evaluate(
        """() => {
            window.ticks = [];
            let n = 0;
            window.ticker = setInterval(() => window.ticks.push(demo.send(`tick ${n++}`)), 60);
        }"""
    )
    climber.toggle(rung)
    climber.wait_transport(rung, timeout=30)
    talker.page.wait_for_function("window.ticks.length >= 5")
    ticks: int = talker.page.evaluate(
        "() => { clearInterval(window.ticker); return Promise.all(window.ticks).then(t => t.length); }"
    )
    return ticks


def test_websocket_blocked_works_over_sse_then_climbs_back(people: Callable[..., Chat]) -> None:
    alice = people("alice", "climb", probe=500)
    bob = people("bob", "climb")
    alice.wait_transport("websocket")

    alice.toggle("websocket")
    alice.wait_transport("sse")
    rung, why = alice.badge()
    assert rung == "SSE"
    assert "websocket: cannot connect" in why
    alice.send("alice over sse")
    bob.send("bob to alice on sse")
    assert texts(alice.wait_messages(2)) == ["alice over sse", "bob to alice on sse"]

    # Bob keeps talking while Alice's client notices WebSocket is back and hands over to it.
    ticks = climb_while_talking(alice, bob, "websocket")
    rung, why = alice.badge()
    assert (rung, why) == ("WebSocket", "websocket works again (probe succeeded)")

    everything = bob.wait_messages(2 + ticks)
    assert alice.wait_messages(2 + ticks) == everything
    assert_exactly_once_in_order(everything)
    assert texts(everything)[2:] == [f"tick {n}" for n in range(ticks)]
    log = alice.log()
    assert "SSE → WebSocket: websocket works again (probe succeeded)" in log


def test_websocket_and_sse_blocked_works_over_long_polling_then_climbs_to_sse(
    people: Callable[..., Chat],
) -> None:
    alice = people("alice", "longpoll", probe=500)
    bob = people("bob", "longpoll")
    alice.wait_transport("websocket")
    alice.toggle("websocket")
    alice.wait_transport("sse")
    alice.toggle("sse")
    alice.wait_transport("longpoll")
    assert "sse: cannot open the stream" in alice.badge()[1]
    alice.wait_members({"alice", "bob"})

    alice.start_sending(*(f"alice {n}" for n in range(5)))
    bob.start_sending(*(f"bob {n}" for n in range(5)))
    alice.sent()
    bob.sent()
    seen = alice.wait_messages(10)
    assert bob.wait_messages(10) == seen
    assert_exactly_once_in_order(seen)
    assert alice.transport() == "longpoll"

    # SSE comes back, while Bob keeps talking. Long polling goes on delivering while the probe's
    # stream opens and proves itself (the server sends the proof's pong on every transport of
    # the session, so a poll issued meanwhile cannot take it); the handover loses and doubles
    # nothing.
    ticks = climb_while_talking(alice, bob, "sse")
    assert alice.badge() == ("SSE", "sse works again (probe succeeded)")
    assert "probe SSE: sse: stream buffered" not in alice.log()
    bob.send("after the climb")
    everything = bob.wait_messages(11 + ticks)
    assert alice.wait_messages(11 + ticks) == everything
    assert_exactly_once_in_order(everything)
    assert texts(everything)[10:] == [f"tick {n}" for n in range(ticks)] + ["after the climb"]


def test_offline_then_online_gets_the_missed_messages(people: Callable[..., Chat]) -> None:
    alice = people("alice", "offline", verify=1000)
    bob = people("bob", "offline")
    alice.wait_transport("websocket")
    bob.send("before")
    alice.wait_messages(1)
    session: str = alice.page.evaluate("demo.client.sessionId")
    alice.page.evaluate("() => { window.opened = []; demo.client.on('open', e => window.opened.push(e)); }")

    alice.context.set_offline(True)
    bob.send(*(f"while going away {n}" for n in range(3)))  # into a socket that no longer delivers
    alice.page.wait_for_function("demo.client.state !== 'connected'", timeout=10_000)
    bob.send(*(f"while away {n}" for n in range(3)))
    assert texts(alice.messages()) == ["before"]

    alice.context.set_offline(False)  # the browser fires `online`: the client reconnects at once
    seen = alice.wait_messages(7, timeout=10)
    assert seen == bob.wait_messages(7)
    assert_exactly_once_in_order(seen)
    missed = [f"while going away {n}" for n in range(3)] + [f"while away {n}" for n in range(3)]
    assert texts(seen)[1:] == missed
    opened = alice.page.evaluate("window.opened")
    assert opened and opened[0]["resumed"] is True and opened[0]["sessionId"] == session


@pytest.mark.parametrize("share", [0, 1], ids=["own connection", "shared connection"])
def test_a_message_sent_offline_and_carried_over_a_reload_shows_as_sending_then_once(
    people: Callable[..., Chat], share: int
) -> None:
    """Sent offline, then the page reloaded before it could go: the new page's client takes it
    over (`restoredMessages`) and the page shows it as being sent until the room shows it,
    once. Before, it went out and reached the room but the page showed nothing meanwhile."""
    alice = people("alice", f"carried-{share}", share=share)
    alice.wait_transport("websocket")
    alice.toggle("offline")
    alice.page.wait_for_function("demo.client.state !== 'connected'", timeout=10_000)
    alice.page.evaluate("() => { demo.send('sent while away').catch(() => {}); }")
    alice.page.evaluate("demo.client.persisted()")
    alice.page.reload()
    alice.page.wait_for_function("window.demo !== undefined")
    alice.page.wait_for_function(  # still offline: shown as being sent
        "() => [...document.querySelectorAll('#outbox li.pending')].some(li => li.textContent.includes('sent while away'))",
        timeout=10_000,
    )
    assert alice.messages() == [] and alice.page.evaluate("demo.client.restored") == 1
    alice.toggle("offline")  # back online: the carried message goes out first
    seen = alice.wait_messages(1, timeout=15)
    assert texts(seen) == ["sent while away"]
    alice.page.wait_for_function("document.querySelectorAll('#outbox li').length === 0", timeout=10_000)
    assert texts(alice.messages()) == ["sent while away"], "once"
    assert "sending 1 message left by the page before" in alice.log()


def test_a_buffered_stream_is_detected(people: Callable[..., Chat]) -> None:
    alice = people("alice", "buffered", probe=500)
    alice.wait_transport("websocket")
    alice.toggle("websocket")
    alice.wait_transport("sse")
    alice.toggle("buffered")  # cuts the stream; the next one's bytes are held back after the welcome
    alice.wait_transport("longpoll")
    alice.page.wait_for_function(
        "document.querySelector('#log').textContent.includes('stream buffered by something on the way')",
        timeout=15_000,
    )
    assert alice.transport() == "longpoll", "a buffered stream is never used"
    assert alice.send("still here") == [1]
    assert texts(alice.wait_messages(1)) == ["still here"]

    # A second tab that may only use SSE cannot connect, and says why.
    only_sse = alice.context.new_page()
    only_sse.goto(alice.page.url.replace("?", "?transports=sse&"))
    only_sse.wait_for_function(
        "window.demo && (demo.client.lastFailure || '').includes('sse: stream buffered')", timeout=15_000
    )
    assert only_sse.evaluate("demo.client.state") != "connected"


def test_the_winning_rung_is_remembered_for_the_tab(people: Callable[..., Chat]) -> None:
    alice = people("alice", "remember", probe=500)
    alice.wait_transport("websocket")
    alice.toggle("websocket")
    alice.wait_transport("sse")
    rungs = alice.page.evaluate("demo.client.rungs.join(',')")
    key = "ladder.rung:" + alice.page.url.split("/?")[0] + "/ladder|" + rungs
    assert alice.page.evaluate("key => sessionStorage.getItem(key)", key) == "sse"

    alice.page.reload()
    alice.page.wait_for_function("window.demo !== undefined")
    alice.wait_transport("sse")
    assert alice.page.evaluate("demo.client.lastChange") == {
        "old": None,
        "new": "sse",
        "reason": "connected",
    }, "started at SSE: WebSocket was not tried first"
    alice.toggle("websocket")
    alice.wait_transport("websocket", timeout=30)  # and it still probes up


@pytest.mark.parametrize("rung", ["websocket", "sse", "longpoll"])
def test_closing_a_tab_ends_its_session_at_once(people: Callable[..., Chat], rung: str) -> None:
    alice = people("alice", f"pagehide-{rung}", transports=rung)
    bob = people("bob", f"pagehide-{rung}")
    alice.wait_transport(rung)
    bob.wait_members({"alice", "bob"})
    alice.page.close()  # pagehide: the client says bye, so presence updates now, not after the TTL
    bob.wait_members({"bob"}, timeout=5)
