"""Client frame validation: every refusal names the problem."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ladder.protocol.codec import JSON
from ladder.protocol.errors import LadderError
from ladder.protocol.frames import (
    MAX_REFUSED_PER_BATCH,
    Call,
    Hello,
    Invalid,
    Ping,
    Previous,
    Refused,
    Subscribe,
    decode_client_frames,
    format_ids,
    parse_client_frame,
    parse_ids,
)


def test_valid_frames_parse_into_records() -> None:
    assert parse_client_frame({"t": "hello", "v": 1}) == Hello(v=1)
    assert parse_client_frame({"t": "sub", "i": 3, "ch": "a", "ep": "e", "off": 4}) == Subscribe(
        i=3, ch="a", epoch="e", offset=4
    )
    assert parse_client_frame({"t": "call", "i": 1, "ev": "x", "d": [1]}) == Call(i=1, ev="x", d=[1])


@pytest.mark.parametrize(
    ("frame", "code", "words"),
    [
        ([1, 2], "bad_frame", "map/object"),
        ({"x": 1}, "bad_frame", "'t'"),
        ({"t": "nope"}, "unknown_frame", "nope"),
        ({"t": "sub", "ch": "a"}, "bad_frame", "'i'"),
        ({"t": "sub", "i": 0, "ch": "a"}, "bad_frame", "'i'"),
        ({"t": "sub", "i": True, "ch": "a"}, "bad_frame", "'i'"),
        ({"t": "hello", "v": 2}, "unsupported_version", "version 2"),
        ({"t": "hello", "v": 1001}, "unsupported_version", "version 1001"),  # (was bad_frame: "between 0 and 1000")
        ({"t": "hello", "v": 1, "sid": "x"}, "bad_frame", "'rt'"),
        ({"t": "hello", "v": 1, "why": "a b"}, "bad_frame", "one word"),  # (was taken: "one word")
        ({"t": "hello", "v": 1, "why": "cut;drop"}, "bad_frame", "one word"),
        ({"t": "hello", "v": 1, "why": "x½"}, "bad_frame", "one word"),  # (numerics, not digits: taken)
        ({"t": "hello", "v": 1, "why": "x²"}, "bad_frame", "one word"),
        ({"t": "hello", "v": 1, "why": "x" * 17}, "bad_frame", "1 to 16"),
        ({"t": "ack", "s": -1}, "bad_frame", "'s'"),
        ({"t": "ack", "s": 2**60}, "bad_frame", "'s'"),
    ],
)
def test_unattributable_frames_raise(frame: Any, code: str, words: str) -> None:
    with pytest.raises(LadderError) as caught:
        parse_client_frame(frame)
    assert caught.value.code == code
    assert words in caught.value.reason


@pytest.mark.parametrize(
    ("frame", "words"),
    [
        ({"t": "sub", "i": 5, "ch": 7}, "'ch'"),
        ({"t": "sub", "i": 5, "ch": ""}, "'ch'"),
        ({"t": "sub", "i": 5, "ch": "x" * 256}, "'ch'"),
        ({"t": "sub", "i": 5, "ch": "a\x00b"}, "control"),
        ({"t": "sub", "i": 5, "ch": "a", "ep": "e"}, "together"),
        ({"t": "call", "i": 5, "ev": None}, "'ev'"),
        ({"t": "history", "i": 5, "ch": "a", "limit": 10**9}, "'limit'"),
    ],
)
def test_numbered_frames_with_bad_bodies_become_invalid_replies(frame: Any, words: str) -> None:
    parsed = parse_client_frame(frame)
    assert isinstance(parsed, Invalid) and parsed.i == 5
    assert parsed.error.code == "bad_frame" and words in parsed.error.reason


def test_batch_keeps_valid_frames_and_refuses_the_rest_in_their_places() -> None:
    """A refusal kept in its place is answered there (read first, it used up the message
    rate of the frames before it and was answered before their pongs)."""
    raw = b'{"t":"ping"}\n{"t":"zzz"}\n{"t":"emit","i":1,"ev":"e"}'
    frames = decode_client_frames(JSON, raw)
    assert [type(f).__name__ for f in frames] == ["Ping", "Refused", "Emit"]
    assert isinstance(frames[1], Refused) and frames[1].error.code == "unknown_frame"
    assert frames[1].error.__traceback__ is None, "kept without the frames it was raised in"


@given(
    st.dictionaries(
        st.sampled_from(["t", "i", "ch", "ev", "d", "v", "s", "ep", "off", "sid", "rt"]),
        st.none() | st.integers() | st.text() | st.booleans() | st.lists(st.integers()),
        max_size=6,
    )
)
def test_arbitrary_maps_are_parsed_or_refused_never_crash(frame: dict[str, Any]) -> None:
    try:
        parse_client_frame(frame)
    except LadderError as exc:
        assert exc.code in {"bad_frame", "unknown_frame", "unsupported_version"}


def test_a_hello_names_the_lost_session_and_the_messages_it_carries() -> None:
    hello = parse_client_frame({"t": "hello", "v": 1, "psid": "n.s", "prt": "r", "pids": "2,4-6"})
    assert isinstance(hello, Hello) and hello.prev == Previous("n.s", "r", (2, 4, 5, 6))
    assert format_ids([2, 4, 5, 6]) == "2,4-6" and parse_ids("2,4-6") == (2, 4, 5, 6)
    for bad in ("", "0", "3-2", "4,2", "2,2", "a", "1-", "-1", "1-99999999"):
        with pytest.raises(LadderError) as refused:
            parse_client_frame({"t": "hello", "v": 1, "psid": "n.s", "prt": "r", "pids": bad})
        assert refused.value.code == "bad_frame" and "pids" in refused.value.reason
    for partial in (
        {"psid": "n.s"},
        {"psid": "n.s", "pids": "1"},
        {"sid": "a", "rt": "b", "psid": "n.s", "prt": "r", "pids": "1"},
    ):
        with pytest.raises(LadderError):
            parse_client_frame({"t": "hello", "v": 1, **partial})


def test_a_hello_says_whose_the_lost_session_was_only_beside_it() -> None:
    """``pu``: any string up to 8,192 characters, ``""`` (anonymous) included; not a string,
    longer, or without the lost session it speaks of: ``bad_frame`` naming it."""
    lost = {"t": "hello", "v": 1, "psid": "n.s", "prt": "r", "pids": "1"}
    for said in ("alice", "", "x" * 8192, "line\nbreak"):
        hello = parse_client_frame({**lost, "pu": said})
        assert isinstance(hello, Hello) and hello.prev == Previous("n.s", "r", (1,), said)
    assert parse_client_frame(lost) == Hello(v=1, prev=Previous("n.s", "r", (1,), None))
    for bad in ({**lost, "pu": 7}, {**lost, "pu": "x" * 8193}, {"t": "hello", "v": 1, "pu": "alice"}):
        with pytest.raises(LadderError) as refused:
            parse_client_frame(bad)
        assert refused.value.code == "bad_frame" and "'pu'" in refused.value.reason


@pytest.mark.parametrize(
    "refused",
    ['{"t":"zzz"}', '{"t":"sub","i":%d,"ch":""}'],
    ids=["unknown type", "a numbered message with a field out of range"],
)
def test_a_batch_is_not_read_past_its_64th_refused_frame(refused: str) -> None:
    """Both kinds of refusal count (a field out of range used to be left out: a batch of 300
    such messages was read whole, each answered)."""
    lines = [refused % n if "%d" in refused else refused for n in range(1, 301)]
    frames = decode_client_frames(JSON, "\n".join([*lines, '{"t":"ping"}']))
    assert len(frames) == MAX_REFUSED_PER_BATCH + 1
    assert all(isinstance(frame, Invalid | Refused) for frame in frames)
    last = frames[-1]
    assert isinstance(last, Refused) and last.error.reason == "64 frames of this batch refused: the rest was not read"


def test_sixty_four_refused_frames_with_nothing_after_them_say_nothing_more() -> None:
    """Exactly 64 refused: the batch was read whole, so no "rest was not read" error about a
    rest that is not there; 63 and a ping: the ping is read."""
    frames = decode_client_frames(JSON, "\n".join(['{"t":"zzz"}'] * MAX_REFUSED_PER_BATCH))
    assert len(frames) == MAX_REFUSED_PER_BATCH
    assert all(isinstance(f, Refused) and f.error.code == "unknown_frame" for f in frames)
    frames = decode_client_frames(JSON, "\n".join(['{"t":"zzz"}'] * 63 + ['{"t":"ping"}']))
    assert [type(f) for f in frames] == [Refused] * 63 + [Ping]


@pytest.mark.parametrize("why", ["refused", "heartbeat", "probe_2", "x-y", "é٣"])
def test_a_hellos_why_is_any_one_word(why: str) -> None:
    """Not only the words the reference clients send: a newer client's word is counted as ``error``."""
    assert parse_client_frame({"t": "hello", "v": 1, "why": why}).why == why  # type: ignore[union-attr]
