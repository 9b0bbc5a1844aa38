"""The decoders (``ladder.protocol.codec`` and ``ladder.protocol.frames``) against hostile bytes.

For every input, through both codecs: the only exception is ``LadderError`` with ``bad_frame``
or ``frame_too_large``; every refused frame carries a documented code; and each decoded object
is classified as documented (protocol §4, §8): not a map or no string ``t`` → ``bad_frame``;
an unknown ``t`` → ``unknown_frame``; a numbered frame without a valid ``i`` → ``bad_frame``;
with a valid ``i`` it is always accepted, as itself or as an ``Invalid`` record answered with
an error reply to that id. Valid frames, built by construction, decode to what was sent.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ladder.protocol.codec import JSON, MSGPACK
from ladder.protocol.errors import ERRORS, LadderError
from ladder.protocol.frames import (
    MAX_ID,
    MAX_REFUSED_PER_BATCH,
    Ack,
    Bye,
    Call,
    Emit,
    Hello,
    HistoryQuery,
    Invalid,
    Ping,
    Pong,
    PresenceQuery,
    Publish,
    Refused,
    Subscribe,
    Unsubscribe,
    decode_client_frames,
    parse_client_frame,
)
from tests.fuzz.conftest import TALLY, TARGET, fuzz_settings
from tests.fuzz.strategies import Derive, bodies, encode_json, encode_msgpack, mutations

LIMIT = 65536
MUTATIONS = 4
DECODE_CODES = {"bad_frame", "frame_too_large"}
FRAME_CODES = {"bad_frame", "unknown_frame", "unsupported_version"}
CONTROL = {"hello", "ack", "ping", "pong", "bye"}


def classify(obj: Any) -> str:
    """Check one decoded object against the documented rules; the label to tally."""
    expected: str | None = None
    if not isinstance(obj, dict) or not isinstance(obj.get("t"), str):
        expected = "bad_frame"
    elif obj["t"] not in CONTROL and obj["t"] not in {
        "sub",
        "unsub",
        "pub",
        "emit",
        "call",
        "presence",
        "history",
        "refresh",
    }:
        expected = "unknown_frame"
    elif obj["t"] not in CONTROL:
        i = obj.get("i")
        if type(i) is not int or not 1 <= i <= MAX_ID:
            expected = "bad_frame"
    try:
        record = parse_client_frame(obj)
    except LadderError as exc:
        assert exc.code in FRAME_CODES, (obj, exc)
        if expected is not None:
            assert exc.code == expected, (obj, exc)
        else:
            assert obj["t"] in CONTROL, f"a numbered frame with a valid id was refused: {obj!r} {exc}"
        return exc.code
    assert expected is None, f"{obj!r} accepted, documented: {expected}"
    if isinstance(record, Invalid):
        assert record.i == obj["i"] and record.error.code in ERRORS, record
        return f"invalid #{record.error.code}"
    return "accepted"


def decode_everything(data: bytes) -> None:
    """One input through both codecs and the frame parser, tallied once, with an answer per codec
    and code: ``json accepted``, ``msgpack bad_frame``, ... (every code the input got)."""
    answers = []
    for codec in (JSON, MSGPACK):
        try:
            objects = codec.decode(data, LIMIT)
        except LadderError as exc:
            assert exc.code in DECODE_CODES, exc
            answers.append(f"{codec.name} {exc.code}")
            continue
        labels = {classify(obj).removeprefix("invalid #") for obj in objects[:8]} or {"empty"}
        answers += [f"{codec.name} {label}" for label in sorted(labels)]
    TALLY.count("decoders", answers[0])
    for answer in answers[1:]:
        TALLY.count("decoders", answer, inputs=0)


def check_pipeline(data: bytes) -> None:
    """decode_client_frames (what the transports call) agrees with the codec, and a WebSocket
    text message (a str) is handled like its bytes."""
    for codec in (JSON, MSGPACK):
        try:
            expected = len(codec.decode(data, LIMIT))
        except LadderError as exc:
            try:
                decode_client_frames(codec, data, LIMIT)
            except LadderError as again:
                assert again.code == exc.code
            else:
                raise AssertionError("decode_client_frames accepted what the codec refused") from None
            continue
        frames = decode_client_frames(codec, data, LIMIT)
        errors = [frame.error for frame in frames if isinstance(frame, Refused)]
        refused = errors + [frame.error for frame in frames if isinstance(frame, Invalid)]
        if len(refused) > MAX_REFUSED_PER_BATCH:  # read up to its 64th refused frame, then one more error
            assert len(refused) == MAX_REFUSED_PER_BATCH + 1 and len(frames) - 1 <= expected
        else:
            assert len(frames) == expected
        assert all(error.code in FRAME_CODES for error in errors), errors
    try:
        decode_client_frames(JSON, data.decode("utf-8", "replace"), LIMIT)
    except LadderError as exc:
        assert exc.code in DECODE_CODES, exc


DRAWN = 3
DERIVED = 120


def test_decoders_refuse_hostile_bytes_as_documented() -> None:
    @fuzz_settings(TARGET // (DRAWN * (1 + MUTATIONS) + DERIVED) + 1)
    @given(st.lists(bodies, min_size=DRAWN, max_size=DRAWN), st.integers(0, 2**32))
    def run(drawn: list[bytes], seed: int) -> None:
        derive = Derive(seed)
        inputs = [
            data for n, body in enumerate(drawn) for data in (body, *mutations(body, seed + n, MUTATIONS))
        ]
        inputs += [derive.body(drawn) for _ in range(DERIVED)]
        for n, data in enumerate(inputs):
            decode_everything(data)
            if n % 8 == 0:
                check_pipeline(data)

    run()
    # Oversized frames, by construction (too costly to generate byte by byte).
    for size in (LIMIT + 1, LIMIT * 2):
        big = {"t": "emit", "i": 1, "ev": "x", "d": "y" * size}
        for data in (encode_json(big), encode_msgpack(big)):
            for codec in (JSON, MSGPACK):
                try:
                    codec.decode(data, LIMIT)
                except LadderError as exc:
                    assert exc.code in DECODE_CODES
            with pytest.raises(LadderError) as refused:
                decode_client_frames(JSON if data.startswith(b"{") else MSGPACK, data, LIMIT)
            assert refused.value.code == "frame_too_large"
            TALLY.count("decoders", "oversized: frame_too_large")
    print(f"\ndecoders: {TALLY.inputs['decoders']} inputs")
    assert TALLY.inputs["decoders"] >= TARGET


names = st.text(
    st.characters(blacklist_categories=["Cc", "Cs", "Zl", "Zp", "Co", "Cn"]), min_size=1, max_size=255
).filter(str.isprintable)
ids = st.integers(1, MAX_ID)
data = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(-(2**53), 2**53), st.text(max_size=10), st.binary(max_size=10)
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.text(max_size=5).filter(lambda k: k != "$b"), children, max_size=3),
    ),
    max_leaves=6,
)
valid_frames = st.one_of(
    st.builds(lambda i, ch: ({"t": "sub", "i": i, "ch": ch}, Subscribe(i=i, ch=ch)), ids, names),
    st.builds(
        lambda i, ch, ep, off: (
            {"t": "sub", "i": i, "ch": ch, "ep": ep, "off": off},
            Subscribe(i=i, ch=ch, epoch=ep, offset=off),
        ),
        ids,
        names,
        names.filter(lambda s: len(s) <= 64),
        st.integers(0, MAX_ID),
    ),
    st.builds(lambda i, ch: ({"t": "unsub", "i": i, "ch": ch}, Unsubscribe(i=i, ch=ch)), ids, names),
    st.builds(
        lambda i, ch, d: ({"t": "pub", "i": i, "ch": ch, "d": d}, Publish(i=i, ch=ch, d=d)), ids, names, data
    ),
    st.builds(
        lambda i, ev, d: ({"t": "emit", "i": i, "ev": ev, "d": d}, Emit(i=i, ev=ev, d=d)), ids, names, data
    ),
    st.builds(
        lambda i, ev, d: ({"t": "call", "i": i, "ev": ev, "d": d}, Call(i=i, ev=ev, d=d)), ids, names, data
    ),
    st.builds(lambda i, ch: ({"t": "presence", "i": i, "ch": ch}, PresenceQuery(i=i, ch=ch)), ids, names),
    st.builds(
        lambda i, ch, n: ({"t": "history", "i": i, "ch": ch, "limit": n}, HistoryQuery(i=i, ch=ch, limit=n)),
        ids,
        names,
        st.integers(1, 10_000),
    ),
    st.builds(lambda s: ({"t": "ack", "s": s}, Ack(s=s)), st.integers(0, MAX_ID)),
    st.builds(lambda n: ({"t": "ping", "n": n}, Ping(n=n)), st.integers(0, MAX_ID)),
    st.just(({"t": "pong"}, Pong())),
    st.just(({"t": "bye"}, Bye())),
    st.builds(
        lambda ack: (
            {"t": "hello", "v": 1, "sid": "s", "rt": "r", "ack": ack},
            Hello(v=1, sid="s", rt="r", ack=ack),
        ),
        st.integers(0, MAX_ID),
    ),
)


def test_valid_frames_decode_to_what_was_sent() -> None:
    @fuzz_settings(400)
    @given(st.lists(valid_frames, min_size=1, max_size=8))
    def run(pairs: list[tuple[dict[str, Any], Any]]) -> None:
        sent = [frame for frame, _ in pairs]
        expected = [record for _, record in pairs]
        for codec, batch in (
            (JSON, JSON.join(JSON.encode(f) for f in sent)),
            (MSGPACK, b"".join(encode_msgpack(f) for f in sent)),
        ):
            frames = decode_client_frames(codec, batch, None)
            assert not any(isinstance(frame, Refused) for frame in frames), frames
            assert frames == expected, (codec.name, sent)
        TALLY.count("decoders", "valid batch round trip", inputs=2)

    run()


def test_a_truncated_msgpack_frame_is_refused() -> None:
    @fuzz_settings(200)
    @given(valid_frames, st.data())
    def run(pair: tuple[dict[str, Any], Any], data: st.DataObject) -> None:
        packed = encode_msgpack(pair[0])
        cut = data.draw(st.integers(1, len(packed) - 1))
        with pytest.raises(LadderError) as refused:
            MSGPACK.decode(packed[:cut], LIMIT)
        assert refused.value.code == "bad_frame"
        with pytest.raises(LadderError):
            MSGPACK.decode(packed + packed[:cut], LIMIT)

    run()
