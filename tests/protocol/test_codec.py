"""Encodings: batches, per-session stamping, bytes in JSON, refusal of bad input."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ladder.engine.base import Publication
from ladder.protocol.codec import JSON, MSGPACK, Payload, codec_for_content_type, codec_named, encode_message
from ladder.protocol.errors import LadderError
from ladder.protocol.outframes import out_frame, pub_frame, reply_frame

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20) | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@pytest.mark.parametrize("codec", [JSON, MSGPACK])
@given(value=json_values, seq=st.integers(1, 2**53 - 1))
def test_stamped_frames_decode_to_the_body_plus_seq(codec: object, value: object, seq: int) -> None:
    frame = out_frame({"t": "push", "ev": "e", "d": value})
    decoded = codec.decode(frame.encode(codec, seq))  # type: ignore[attr-defined]
    assert decoded == [{"s": seq, "t": "push", "ev": "e", "d": value}]


@given(value=json_values | st.binary(min_size=1000, max_size=3000), seq=st.integers(1, 2**53 - 1))
def test_a_frame_counts_no_more_bytes_than_a_client_receives_in_either_encoding(value: object, seq: int) -> None:
    """The server bounds a session's unacknowledged bytes by ``size`` (``lim.qbytes``) and a
    client acks by the bytes it receives: in JSON or msgpack, it must never receive fewer than
    the server counted (it counted JSON, a third more than msgpack for bytes, and a client in
    msgpack following the rule was dropped)."""
    frame = out_frame({"t": "push", "ev": "e", "d": value})
    for codec in (JSON, MSGPACK):
        assert frame.size <= len(frame.encode(codec, seq))


@given(value=json_values, offset=st.integers(1, 2**53 - 1), channel=st.text(min_size=1, max_size=30))
def test_pub_frame_from_payload_equals_a_plainly_encoded_frame(
    value: object, offset: int, channel: str
) -> None:
    fast = pub_frame(channel, offset, Payload.of(value))
    plain = out_frame({"t": "pub", "ch": channel, "o": offset, "d": value})
    for codec in (JSON, MSGPACK):
        assert fast.encode(codec, 9) == plain.encode(codec, 9)


@given(value=json_values, msg_id=st.integers(1, 2**53 - 1))
def test_reply_frame_equals_a_plainly_encoded_frame(value: object, msg_id: int) -> None:
    fast = reply_frame(msg_id, value)
    body = {"t": "reply", "re": msg_id} if value is None else {"t": "reply", "re": msg_id, "d": value}
    plain = out_frame(body)
    assert (fast.kind, fast.fields, fast.size) == (plain.kind, plain.fields, plain.size)
    for codec in (JSON, MSGPACK):
        assert fast.encode(codec, 9) == plain.encode(codec, 9)


@pytest.mark.parametrize("value", [{"when": object()}, {b"bytes-key": 1}, 2**64])
def test_a_reply_that_cannot_be_encoded_is_a_bad_frame(value: object) -> None:
    with pytest.raises(LadderError) as caught:
        reply_frame(1, value)
    assert caught.value.code == "bad_frame"
    assert caught.value.reason.startswith("data cannot be encoded: ")


def test_batches_round_trip_in_both_encodings() -> None:
    frames = [{"t": "a", "n": i} for i in range(3)]
    for codec in (JSON, MSGPACK):
        assert codec.decode(codec.join(codec.encode(f) for f in frames)) == frames


def test_json_bytes_are_tagged_and_restored() -> None:
    raw = JSON.encode({"d": b"\x00\xff"})
    assert raw == b'{"d":{"$b":"AP8="}}'
    assert JSON.decode(raw) == [{"d": b"\x00\xff"}]


def test_json_batches_skip_blank_lines_and_keep_dollar_strings() -> None:
    """Blank or whitespace-only lines between frames are skipped, and a ``$`` that is not
    the bytes tag is a plain character (the tag is looked for only where a ``$`` is)."""
    assert JSON.decode(b'\n{"t":"a"}\n\n \t\r\n{"t":"b","d":"$5"}\n') == [{"t": "a"}, {"t": "b", "d": "$5"}]
    assert JSON.decode(b'{"t":"a"}\n{"d":{"$b":"AP8="}}') == [{"t": "a"}, {"d": b"\x00\xff"}]
    with pytest.raises(LadderError):
        JSON.decode(b'{"t":"a"}\n x \n')


def test_msgpack_carries_bytes_natively() -> None:
    raw = MSGPACK.encode({"d": b"\x00\xff"})
    assert b"$b" not in raw and MSGPACK.decode(raw) == [{"d": b"\x00\xff"}]


@pytest.mark.parametrize(
    ("codec", "data", "code"),
    [
        (JSON, b"{not json", "bad_frame"),
        (JSON, b'{"d":{"$b":"!!!"}}', "bad_frame"),
        (MSGPACK, b"\xc1", "bad_frame"),
        (MSGPACK, msgpack.packb(msgpack.ExtType(5, b"x")), "bad_frame"),
        (MSGPACK, b"\x81", "bad_frame"),
    ],
)
def test_undecodable_input_is_a_bad_frame(codec: object, data: bytes, code: str) -> None:
    with pytest.raises(LadderError) as caught:
        codec.decode(data)  # type: ignore[attr-defined]
    assert caught.value.code == code


@pytest.mark.parametrize("codec", [JSON, MSGPACK])
def test_frame_size_limit_applies_per_frame(codec: object) -> None:
    small = codec.encode({"t": "x"})  # type: ignore[attr-defined]
    big = codec.encode({"t": "x", "d": "y" * 200})  # type: ignore[attr-defined]
    batch = codec.join([small, big])  # type: ignore[attr-defined]
    assert codec.decode(batch, 200) if False else True  # type: ignore[attr-defined]
    with pytest.raises(LadderError) as caught:
        codec.decode(batch, 100)  # type: ignore[attr-defined]
    assert caught.value.code == "frame_too_large"
    assert len(codec.decode(batch, 1000)) == 2  # type: ignore[attr-defined]


def test_unencodable_data_is_refused_where_it_is_published() -> None:
    with pytest.raises(LadderError) as caught:
        Payload.of({"when": object()})
    assert caught.value.code == "bad_frame"
    with pytest.raises(LadderError):
        Payload.of({b"bytes-key": 1})  # fine in msgpack, impossible in JSON


def _nested(levels: int, inner: object = 1) -> object:
    value = inner
    for _ in range(levels):
        value = [value]
    return value


def test_data_nested_past_what_json_writes_is_refused_saying_so_in_a_short_reason() -> None:
    """orjson writes 254 levels of lists and dicts, no more: 255 or 256 were refused as
    "cannot send this value" (nothing said why), deeper ones with their whole path, 800
    characters of ``[0][0]...``."""
    assert Payload.checked(_nested(254)).json  # (the deepest JSON writes)
    for value in (_nested(255), _nested(254, {}), _nested(1000)):
        with pytest.raises(TypeError) as caught:
            Payload.checked(value)
        said = str(caught.value)
        assert said.startswith("cannot send lists and dicts nested more than 254 deep at ")
        assert len(said) < 240, said


BAD_TAG = {"n": [1, {"$b": "!!!"}]}
"""A map in the shape of JSON's bytes whose str no JSON reader can decode."""


def test_a_bytes_shaped_map_that_json_readers_cannot_decode_is_refused_where_it_is_encoded() -> None:
    """Sent in msgpack it would reach every JSON reader of a channel (SSE included) as an
    undecodable batch, closing each of them: it is refused at once, in every encoding."""
    with pytest.raises(LadderError) as published:
        Payload.of(BAD_TAG)
    assert published.value.code == "bad_frame" and '{"$b": str}' in published.value.reason
    with pytest.raises(TypeError, match=r"at \['n'\]\[1\]"):
        Payload.checked(BAD_TAG)
    with pytest.raises(LadderError):
        reply_frame(1, BAD_TAG)
    for codec in (JSON, MSGPACK):
        with pytest.raises(TypeError, match=r"not standard base64.* at d\['n'\]\[1\]"):
            encode_message(codec, {"t": "call", "i": 1, "ev": "e", "d": BAD_TAG})
        for fine in ({"$b": "aGk="}, {"$b": "!!!", "other": 1}, {"$b": 1}, b"\x00"):
            assert encode_message(codec, {"t": "call", "i": 1, "ev": "e", "d": fine})
    assert JSON.decode(JSON.encode({"d": b"\x00\xff"})) == [{"d": b"\x00\xff"}], "bytes still travel"


def test_codec_lookup() -> None:
    assert codec_named(None) is JSON and codec_named("msgpack") is MSGPACK
    assert codec_for_content_type("application/msgpack") is MSGPACK
    assert codec_for_content_type("text/plain") is JSON
    for name in ("xml", ""):  # (enc= was JSON: a field present is checked, an empty one too)
        with pytest.raises(LadderError) as refused:
            codec_named(name)
        assert refused.value.code == "bad_request" and "json or msgpack" in refused.value.reason


@pytest.mark.parametrize("raw", [msgpack.packb({"t": "ping"}) + b"\xc1", b"\xc1"], ids=["after a frame", "alone"])
def test_a_byte_that_starts_no_msgpack_type_is_named_in_the_refusal(raw: bytes) -> None:
    with pytest.raises(LadderError) as refused:
        MSGPACK.decode(raw)
    assert refused.value.code == "bad_frame"
    assert refused.value.reason.removeprefix("invalid msgpack:").strip(), refused.value.reason


@given(
    body=st.one_of(
        st.builds(lambda i: {"t": "ack", "i": i}, st.integers(min_value=-5, max_value=2**64 - 1)),
        st.builds(lambda i: {"t": "ack", "i": i}, st.sampled_from([0, 127, 128, 255, 256, 2**16, 2**32, 2**53 - 1, 2**53])),
        st.just({"t": "ack", "i": True}),
        st.just({"t": "ack", "i": 1.5}),
        st.just({"t": "ack", "i": 3, "x": 1}),
        st.just({"i": 3, "t": "ack"}),
        st.just({"t": "pong", "n": 3}),
        st.just({"t": "err", "code": "bad_frame", "reason": "x"}),
    )
)
def test_a_control_frame_is_encoded_as_encode_writes_it(body: dict[str, object]) -> None:
    """The server's ack comes from a template: the same map as encode() writes, byte for
    byte when its keys come in the server's order (``t`` first)."""
    for codec in (JSON, MSGPACK):
        try:
            want = codec.encode(body)
        except (TypeError, OverflowError, ValueError):
            continue
        got = codec.control(body)
        if next(iter(body)) == "t":
            assert got == want, (codec.name, body)
        assert codec.decode(got) == [body], (codec.name, body)


@given(st.one_of(st.integers(min_value=0, max_value=2**64 - 1), st.sampled_from([127, 128, 255, 256, 65_535, 65_536, 2**32 - 1, 2**32])))
def test_a_stamp_writes_the_sequence_number_as_the_packer_does(seq: int) -> None:
    tail = MSGPACK.tail({"t": "pub", "d": 1})
    assert MSGPACK.stamp(tail, 2, seq) == msgpack.packb({"s": seq, "t": "pub", "d": 1})


def test_a_close_reason_carries_the_refusals_code_within_123_bytes() -> None:
    error = LadderError("engine_unavailable", "this server cannot reach its engine: " + "é" * 100)
    reason = error.close_reason
    assert len(reason.encode()) <= 123 and reason.startswith("engine_unavailable: this server")
    back = LadderError.of_close(reason)
    assert back is not None and back.code == "engine_unavailable"
    for plain in ("", "server going away", "Bye: now", "no code here: x"):
        assert LadderError.of_close(plain) is None, plain


def test_json_carries_what_msgpack_carries_no_more() -> None:
    """orjson wrote a datetime as an ISO string and a dataclass as a map: a client in JSON
    sent as a str what one in msgpack was refused."""
    import dataclasses  # noqa: PLC0415
    import datetime  # noqa: PLC0415

    @dataclasses.dataclass
    class Point:
        x: int

    for value, said in [(datetime.datetime(2026, 1, 1), "a datetime"), (Point(1), "a Point")]:
        for codec in (JSON, MSGPACK):
            with pytest.raises(TypeError, match=rf"cannot send {said} at d\['v'\]"):
                encode_message(codec, {"t": "emit", "i": 1, "ev": "e", "d": {"v": value}})


@pytest.mark.parametrize("depth", [500, 1000])
def test_deep_json_holding_a_b_tag_is_read_as_deep_as_without_one(depth: int) -> None:
    """protocol §2: the server reads a client's data up to its decoders' limit (1,024 levels).
    JSON that held ``"$b"`` anywhere (a tag or a plain string) was walked recursively and
    failed with RecursionError from about 500 levels: ``internal``, a traceback per frame."""
    for leaf, read in (('{"$b":"AP8="}', b"\x00\xff"), ('"$b"', "$b")):
        line = '{"t":"call","i":1,"ev":"e","d":' + "[" * depth + leaf + "]" * depth + "}"
        (frame,) = JSON.decode(line.encode())
        data = frame["d"]
        for _ in range(depth):
            (data,) = data
        assert data == read
    with pytest.raises(LadderError) as refused:
        JSON.decode(('{"d":' + "[" * 1030 + '{"$b":"AP8="}' + "]" * 1030 + "}").encode())
    assert refused.value.code == "bad_frame"


def test_a_publication_printed_shows_its_data() -> None:
    """``print(publisher.publish(ch, data))`` showed ``payload=<...Payload object at 0x...>``."""
    payload = Payload.checked({"text": "hi"})
    assert repr(payload) == "Payload({'text': 'hi'})"
    kept = Payload.encoded(payload.json, payload.msgpack)  # (history keeps only the bytes)
    assert repr(kept) == "Payload({'text': 'hi'})"
    shown = repr(Publication("room:1", 3, "E", payload))
    assert "payload=Payload({'text': 'hi'})" in shown, shown


@pytest.mark.parametrize("raw", [b'{"t":"ping","x":"\xff"}', MSGPACK.encode({"t": "ping"})], ids=["latin-1", "msgpack"])
def test_bytes_that_are_not_utf8_are_refused_as_such_in_json(raw: bytes) -> None:
    """orjson's words were "str is not valid UTF-8: surrogates not allowed", of bytes holding no
    surrogate; a msgpack body POSTed without its Content-Type is the likely mistake."""
    with pytest.raises(LadderError) as refused:
        JSON.decode(raw, 1000)
    assert refused.value.code == "bad_frame"
    assert refused.value.reason.startswith("invalid JSON: not UTF-8 text (byte "), refused.value.reason
    assert "Content-Type: application/msgpack" in refused.value.reason
