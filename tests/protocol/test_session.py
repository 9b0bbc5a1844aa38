"""The session state machine: attachments, replay, heartbeats, expiry, all with fake time."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from ladder.protocol.attachment import Attachment
from ladder.protocol.errors import LadderError
from ladder.protocol.frames import Emit
from ladder.protocol.outframes import push_frame
from ladder.protocol.reliable import OutboxOverflow
from ladder.protocol.session import TRANSITIONS, Phase, SessionLimits, SessionState

LIMITS = SessionLimits(ttl=10.0, heartbeat=2.0, poll_timeout=5.0, max_queue=5, max_queue_bytes=10_000)


def empty(taken: tuple[Any, Any]) -> bool:
    """Nothing to write: no control frame and no sequenced frame."""
    control, frames = taken
    return not control and not frames


def seqs(session: SessionState, att: object, now: float) -> list[int]:
    return [seq for seq, _ in session.take(att, now)[1]]  # type: ignore[arg-type]


def test_lifecycle_table_covers_exactly_the_legal_moves() -> None:
    assert (Phase.CLOSED, next(iter({e for _, e in TRANSITIONS}))) not in TRANSITIONS
    assert all(start is not Phase.CLOSED for start, _ in TRANSITIONS)


def test_new_attachment_replays_from_the_clients_ack() -> None:
    s = SessionState("s", "t", 0.0, LIMITS)
    a = s.attach("websocket", streaming=True, ack=0, now=0.0)
    for n in range(3):
        s.push(push_frame("e", n))
    assert seqs(s, a, 1.0) == [1, 2, 3]
    b = s.attach("sse", streaming=True, ack=1, now=2.0)
    assert seqs(s, a, 2.0) == [], "only the newest attachment receives frames"
    assert seqs(s, b, 2.0) == [2, 3], "the new transport starts after the client's ack"
    s.detach(b, 3.0)
    s.push(push_frame("e", 4))
    assert seqs(s, a, 3.0) == [4], "the standby takes over from its own position"


def test_standby_replays_from_ack_after_the_active_one_fails() -> None:
    s = SessionState("s", "t", 0.0, LIMITS)
    a = s.attach("websocket", streaming=True, ack=0, now=0.0)
    b = s.attach("sse", streaming=True, ack=0, now=0.0)
    s.push(push_frame("e", 1))
    assert seqs(s, b, 1.0) == [1]  # written to b, but b dies before the client reads it
    s.detach(b, 1.0)
    assert seqs(s, a, 1.0) == [1]


def test_a_newer_attachment_releases_a_held_poll() -> None:
    s = SessionState("s", "t", 0.0, LIMITS)
    woken: list[str] = []
    poll = s.attach("longpoll", streaming=False, ack=0, now=0.0)
    poll.wake = lambda: woken.append("poll")
    s.attach("websocket", streaming=True, ack=0, now=1.0)
    assert poll.closed and woken == ["poll"] and poll.close_error is None


def test_acks_and_welcome_flow_on_the_active_attachment() -> None:
    s = SessionState("s", "t", 0.0, LIMITS)
    a = s.attach("websocket", streaming=True, ack=0, now=0.0, greeting={"t": "welcome"})
    s.receive(Emit(i=1, ev="e", d=None))
    s.finish(1)  # applied
    control, _ = s.take(a, 0.0)
    assert control == [{"t": "welcome"}, {"t": "ack", "i": 1}]
    assert empty(s.take(a, 0.0)), "an ack is sent once"


def test_polls_carry_an_ack_only_when_it_is_news() -> None:
    """Each poll is a new attachment; an old ack must not complete a held long poll."""
    s = SessionState("s", "t", 0.0, LIMITS)
    first = s.attach("longpoll", streaming=False, ack=0, now=0.0, greeting={"t": "welcome"})
    s.receive(Emit(i=1, ev="e", d=None))
    s.finish(1)  # applied
    assert s.take(first, 0.1)[0] == [{"t": "welcome"}, {"t": "ack", "i": 1}]
    s.detach(first, 0.1)
    held = s.attach("longpoll", streaming=False, ack=0, now=0.2)
    assert not s.has_output(held) and empty(s.take(held, 0.2)), "the ack is no news"
    s.receive(Emit(i=2, ev="e", d=None))
    s.finish(2)  # applied
    assert s.has_output(held) and s.take(held, 0.3)[0] == [{"t": "ack", "i": 2}]


def _held_after_a_lost_ack() -> tuple[SessionState, Attachment]:
    """A session that applied message 1, whose poll answer with the ack was lost, and the
    next long poll held with nothing to say."""
    s = SessionState("s", "t", 0.0, LIMITS)
    s.receive(Emit(i=1, ev="e", d=None))
    s.finish(1)  # applied
    lost = s.attach("longpoll", streaming=False, ack=0, now=0.0)
    assert s.take(lost, 0.0)[0] == [{"t": "ack", "i": 1}]  # ... and never arrives
    s.detach(lost, 0.0)
    held = s.attach("longpoll", streaming=False, ack=0, now=0.1)
    assert empty(s.take(held, 0.1))
    return s, held


def test_a_long_poll_released_empty_repeats_the_ack() -> None:
    """A lost answer must not leave the client waiting forever for its ack."""
    s, held = _held_after_a_lost_ack()
    s.tick(0.1 + LIMITS.poll_timeout)
    assert held.closed and s.take(held, 5.1)[0] == [{"t": "ack", "i": 1}]
    s.detach(held, 5.1)
    short = s.attach("poll", streaming=False, ack=0, now=5.2)
    assert empty(s.take(short, 5.2)), "a short poll repeats it only after poll_timeout"
    s.detach(short, 5.2)
    later = s.attach("poll", streaming=False, ack=0, now=10.2)
    assert s.take(later, 10.2)[0] == [{"t": "ack", "i": 1}]


def test_a_long_poll_released_by_a_newer_one_repeats_the_ack() -> None:
    """protocol §3.5: released by a newer poll, the older answered empty (it was no longer
    the active attachment), so the client heard the ack only at the next poll_timeout."""
    s, held = _held_after_a_lost_ack()
    newer = s.attach("longpoll", streaming=False, ack=0, now=0.5)
    assert held.closed and s.take(held, 0.5)[0] == [{"t": "ack", "i": 1}]
    s.detach(held, 0.5)
    assert empty(s.take(newer, 0.5)), "the newer poll waits: nothing is news for it"


def test_a_session_sent_away_refuses_every_request_but_a_resume() -> None:
    """Sent away with no transport attached (between two polls), it told no one: a client
    whose messages were given back never wrote them again. Its next poll (or POST) is refused
    with the reason until a transport attaches with a welcome (the client resumed)."""
    s = SessionState("s", "t", 0.0, LIMITS)
    s.attach("poll", streaming=False, ack=0, now=0.0, greeting={"t": "welcome"})
    s.detach(s.attachments[0], 0.1)
    s.send_away(LadderError("engine_unavailable", "gone"))
    for _ in range(2):
        with pytest.raises(LadderError) as refused:
            s.attach("poll", streaming=False, ack=0, now=0.2)
        assert refused.value.code == "engine_unavailable"
        assert refused.value.reason == (
            "gone; the session's transports were ended: resume it (a hello with its sid) and send "
            "again every message after the welcome's ack"
        )
        with pytest.raises(LadderError):
            s.check_resumed()
    resumed = s.attach("poll", streaming=False, ack=0, now=0.3, greeting={"t": "welcome"})
    s.check_resumed()
    s.detach(resumed, 0.3)
    assert not s.attach("poll", streaming=False, ack=0, now=0.4).closed


def test_heartbeat_ping_and_dead_websocket() -> None:
    s = SessionState("s", "t", 0.0, LIMITS)
    a = s.attach("websocket", streaming=True, ack=0, now=0.0)
    s.tick(1.9)
    assert empty(s.take(a, 1.9))
    s.tick(2.0)
    assert s.take(a, 2.0)[0] == [{"t": "ping"}]
    a.last_heard = 2.0
    s.tick(2.0 + LIMITS.dead_after - 0.01)
    assert not a.closed
    s.tick(2.0 + LIMITS.dead_after)
    assert a.closed and a.close_error is not None and a.close_error.code == "heartbeat_timeout"


def test_a_websocket_streaming_steadily_to_a_quiet_client_is_pinged_not_dropped() -> None:
    """The server pinged only a stream it had not written to for a heartbeat, and dropped a
    WebSocket it had not heard from for ``dead_after``: a channel publishing every 0.8 s kept
    the stream busy (no ping) and the client quiet (its acks wait for 256-512 frames or 1 s of
    quiet), so every such subscriber was closed ``heartbeat_timeout`` at 2 x hb + 1 s, and
    resumed, again and again. A client unheard for a heartbeat is pinged, busy or not."""
    s = SessionState("s", "t", 0.0, LIMITS)
    a = s.attach("websocket", streaming=True, ack=0, now=0.0)
    s.take(a, 0.0)
    pings: list[float] = []
    now = 0.0
    while now < 4 * LIMITS.dead_after:
        now = round(now + 0.5, 3)
        s.on_ack(s.outbox.last)
        s.push(push_frame("e", now))  # a frame written every 0.5 s: never quiet
        s.tick(now)
        control, _frames = s.take(a, now)
        if {"t": "ping"} in control:
            pings.append(now)
            a.heard(now + 0.01)  # the client answers each ping (its pong)
        due = s.due()
        assert due is not None and due <= now + LIMITS.heartbeat, "ticked in time to ping"
        assert not a.closed, f"dropped at {now} s though it answered every ping"
    assert pings and pings[0] == LIMITS.heartbeat, pings
    assert all(b - a <= LIMITS.heartbeat + 0.5 for a, b in itertools.pairwise(pings)), pings
    now += LIMITS.dead_after  # then it falls silent, pings unanswered: dropped
    s.tick(now - 0.01)
    s.tick(now)
    assert a.closed and a.close_error is not None and a.close_error.code == "heartbeat_timeout"


def test_long_poll_is_released_at_poll_timeout() -> None:
    s = SessionState("s", "t", 0.0, LIMITS)
    poll = s.attach("longpoll", streaming=False, ack=0, now=0.0)
    s.tick(4.9)
    assert not poll.closed
    s.tick(5.0)
    assert poll.closed and poll.close_error is None


def test_detached_session_expires_after_ttl() -> None:
    s = SessionState("s", "t", 0.0, LIMITS)
    a = s.attach("sse", streaming=True, ack=0, now=0.0)
    s.detach(a, 5.0)
    assert s.phase is Phase.DETACHED
    assert not s.tick(14.9)
    assert s.tick(15.0) and s.phase is Phase.CLOSED
    with pytest.raises(LadderError):
        s.attach("sse", streaming=True, ack=0, now=16.0)


def test_slow_consumer_overflow_and_close_tells_every_transport() -> None:
    s = SessionState("s", "t", 0.0, LIMITS)
    a = s.attach("websocket", streaming=True, ack=0, now=0.0)
    for n in range(5):
        s.push(push_frame("e", n))
    with pytest.raises(OutboxOverflow):
        s.push(push_frame("e", 5))
    s.close(LadderError("slow_consumer"))
    control, frames = s.take(a, 1.0)
    assert not frames and control[-1]["t"] == "bye" and control[-1]["code"] == "slow_consumer"
    assert a.closed and s.phase is Phase.CLOSED


def test_unsequenced_frames_a_client_does_not_read_are_bounded_and_its_bye_still_goes() -> None:
    """Errors and pongs wait on the transport until written; a client that reads nothing
    while sending junk (no message rate to end it) had them pile up without bound."""
    s = SessionState("s", "t", 0.0, LIMITS)
    a = s.attach("websocket", streaming=True, ack=0, now=0.0)
    s.take(a, 0.0)  # (the welcome)
    for n in range(LIMITS.max_queue * 3):
        s.send_control({"t": "err", "code": "unknown_frame", "n": n})
    s.close(LadderError("rate_limited", "persistent flooding"))
    control, _ = s.take(a, 1.0)
    assert [c.get("n") for c in control[:-1]] == list(range(LIMITS.max_queue))
    assert control[-1]["t"] == "bye" and control[-1]["code"] == "rate_limited"


@pytest.mark.parametrize("seed", range(20))
def test_the_active_attachment_is_always_the_newest_open_one(seed: int) -> None:
    """``active`` and ``done`` are fields kept beside ``attachments`` and ``inbox.done``
    (every write reads them): whatever transports come and go and messages are applied,
    ``active`` is the last attachment, a pushed frame wakes it and no other, and ``done`` is
    the inbox's, through a snapshot and a restore too."""
    import random  # noqa: PLC0415

    rng = random.Random(seed)
    s = SessionState("s", "t", 0.0, LIMITS)
    woken: list[object] = []
    now = 0.0

    def check() -> None:
        assert s.active is (s.attachments[-1] if s.attachments else None)
        assert s.done == s.inbox.done

    for _ in range(40):
        now += 0.1
        move = rng.choice(("attach", "attach", "detach", "push", "ack", "apply", "move"))
        if move == "attach":
            kind, streaming = rng.choice((("websocket", True), ("sse", True), ("longpoll", False), ("poll", False)))
            att = s.attach(kind, streaming=streaming, ack=s.outbox.acked, now=now)
            att.wake_with(lambda att=att: woken.append(att))
        elif move == "detach" and s.attachments:
            s.detach(rng.choice(s.attachments), now)
        elif move == "push" and len(s.outbox) < LIMITS.max_queue:
            woken.clear()
            s.push(push_frame("e", 0))
            assert woken == ([s.active] if s.active is not None else [])
        elif move == "ack":
            s.on_ack(s.outbox.last)
        elif move == "apply":
            for frame in s.receive(Emit(i=s.inbox.accepted + 1, ev="e", d=None)):
                s.finish(frame.i)
        elif move == "move" and not s.attachments:
            s = SessionState.restore(s.snapshot(), now, LIMITS)
        check()
    s.close(None)
    s.discard()
    check()
    assert s.active is None and s.done == 0


@pytest.mark.parametrize(
    ("error", "code"),
    [(LadderError("shutting_down"), "shutting_down"), (LadderError("session_moved"), "session_moved"),
     (LadderError("slow_consumer"), "slow_consumer"), (None, "session_closed")],
)
def test_attaching_to_a_closed_session_refuses_with_what_ended_it(error: LadderError | None, code: str) -> None:
    """As its ``bye`` said: a transport that arrives late must not hear ``session_closed`` (give
    up) for a session that ended because its server was going away."""
    s = SessionState("s", "t", 0.0, LIMITS)
    s.close(error)
    with pytest.raises(LadderError) as refused:
        s.attach("sse", streaming=True, ack=0, now=1.0)
    assert refused.value.code == code
