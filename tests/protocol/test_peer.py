"""The client's side: resend after reconnect, renumbering for a new session, acks."""

from __future__ import annotations

import pytest

from ladder.protocol.errors import LadderError
from ladder.protocol.peer import PeerState


def test_hello_resumes_once_a_session_exists() -> None:
    peer = PeerState()
    assert peer.hello("tok") == {"t": "hello", "v": 1, "tok": "tok"}
    assert peer.welcome({"sid": "a", "rt": "r", "resumed": False}) == []
    peer.receive({"s": 1})
    assert peer.hello() == {"t": "hello", "v": 1, "sid": "a", "rt": "r", "ack": 1}


def test_unacknowledged_messages_are_written_again_on_a_new_transport() -> None:
    peer = PeerState()
    peer.welcome({"sid": "a", "rt": "r", "resumed": False})
    for n in range(3):
        peer.submit({"t": "emit", "d": n})
    assert [f["i"] for f in peer.unsent()] == [1, 2, 3]
    assert peer.unsent() == []
    peer.welcome({"sid": "a", "rt": "r", "resumed": True, "ack": 1})
    assert [f["i"] for f in peer.unsent()] == [2, 3]


def test_new_session_renumbers_what_is_kept() -> None:
    peer = PeerState()
    peer.welcome({"sid": "a", "rt": "r", "resumed": False})
    peer.submit({"t": "sub", "ch": "x"})
    peer.submit({"t": "emit", "d": "keep"})
    peer.on_ack(0)
    moved = peer.welcome({"sid": "b", "rt": "r2", "resumed": False}, keep=lambda f: f["t"] != "sub")
    assert moved == [(2, 1)]
    assert peer.unsent() == [{"t": "emit", "d": "keep", "i": 1}]


def test_queue_bound_raises_a_clear_error() -> None:
    peer = PeerState(max_queue=2)
    peer.submit({"t": "emit"})
    peer.submit({"t": "emit"})
    with pytest.raises(LadderError) as caught:
        peer.submit({"t": "emit"})
    assert caught.value.code == "queue_full"
    # (the same words in both clients, which both have flush() now)
    assert caught.value.reason == (
        "2 messages are waiting to be sent or acknowledged (the client's max_queue / maxQueue): "
        "wait until they are acknowledged (flush() waits for that) or raise the bound"
    )


def test_acks_are_batched() -> None:
    peer = PeerState()
    peer.welcome({"sid": "a", "rt": "r", "resumed": False})
    for s in (1, 2, 3):
        peer.receive({"s": s})
    assert peer.ack_frame(every=5) is None
    assert peer.ack_frame(every=3) == {"t": "ack", "s": 3}
    assert peer.ack_frame() is None


def test_a_new_session_after_a_lost_one_names_it_and_what_it_carries() -> None:
    peer = PeerState(carry=lambda frame: frame["t"] != "sub")
    peer.welcome({"t": "welcome", "sid": "S1", "rt": "R1", "resumed": False, "ack": 0})
    for frame in ({"t": "call"}, {"t": "emit"}, {"t": "sub"}, {"t": "call"}):
        peer.submit(frame)
    peer.on_ack(1)
    peer.forget_session()
    assert peer.hello() == {"t": "hello", "v": 1, "psid": "S1", "prt": "R1", "pids": "2,4", "pu": ""}
    moved = peer.welcome({"t": "welcome", "sid": "S2", "rt": "R2", "resumed": False, "ack": 0})
    assert moved == [(2, 1), (4, 2)], "renumbered in the order the hello named them"
    assert "psid" not in peer.hello(), "named only until a new session is adopted"
