"""A session's snapshot (what moves it to another process) round-trips exactly, through msgpack."""

from __future__ import annotations

import msgpack
from hypothesis import given
from hypothesis import strategies as st

from ladder.protocol.codec import JSON
from ladder.protocol.frames import Emit
from ladder.protocol.outframes import push_frame
from ladder.protocol.session import SessionLimits, SessionState

LIMITS = SessionLimits(inbox_window=64)


@given(
    pushes=st.lists(st.one_of(st.integers(-(2**53), 2**53), st.text(max_size=20)), max_size=30),
    acked=st.integers(0, 30),
    received=st.integers(0, 20),
    done=st.integers(0, 20),
)
def test_snapshot_round_trips_through_msgpack(
    pushes: list[object], acked: int, received: int, done: int
) -> None:
    state = SessionState("node.sid", "token", 5.0, LIMITS)
    for value in pushes:
        state.push(push_frame("n", value))
    state.on_ack(min(acked, len(pushes)))
    for i in range(1, received + 1):
        state.receive(Emit(i=i, ev="e", d=i))
    for i in range(1, min(done, received) + 1):
        state.finish(i)

    snapshot = msgpack.unpackb(msgpack.packb(state.snapshot()), raw=False)
    copy = SessionState.restore(snapshot, 99.0, LIMITS)

    assert copy.snapshot() == state.snapshot()
    assert (copy.sid, copy.token) == (state.sid, state.token)
    assert copy.outbox.acked == state.outbox.acked and copy.outbox.last == state.outbox.last
    assert copy.outbox.bytes == state.outbox.bytes
    original = [(s, f.decode(JSON, s)) for s, f in state.outbox.after(0)]
    assert [(s, f.decode(JSON, s)) for s, f in copy.outbox.after(0)] == original
    # Only what was applied moves: the rest was never acknowledged, so the client resends it.
    assert copy.inbox.done == copy.inbox.accepted == state.inbox.done
    assert copy.receive(Emit(i=state.inbox.done + 1, ev="e", d=None)) != []


def test_accepted_is_not_acknowledged_until_done() -> None:
    state = SessionState("sid", "rt", 0.0, LIMITS)
    att = state.attach("websocket", streaming=True, ack=0, now=0.0, greeting={"t": "welcome"})
    state.take(att, 0.0)
    assert len(state.receive(Emit(i=1, ev="e", d=None))) == 1
    control, _ = state.take(att, 0.0)
    assert not control, "accepted, still being applied: no ack yet"
    assert not state.has_output(att)
    state.finish(1)
    control, _ = state.take(att, 0.0)
    assert control == [{"t": "ack", "i": 1}]
