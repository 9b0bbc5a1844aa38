"""A single msgpack frame is decoded in one call, and a lone ack is read from its bytes;
whatever either decodes or refuses is what the general path decodes or refuses."""

from __future__ import annotations

import struct
from typing import Any

import msgpack
import orjson
import pytest

from ladder.protocol import codec as codec_module
from ladder.protocol.codec import JSON, MSGPACK, Codec
from ladder.protocol.errors import LadderError
from ladder.protocol.frames import MAX_ID, Ack, Refused, decode_client_frames, parse_client_frame

CALL = msgpack.packb({"t": "call", "i": 7, "ev": "rpc", "d": {"ts": 1.5, "pad": "x" * 60}})
FLOAT = struct.unpack(">d", b"\x40\xd5\x00\x00\x00\x00\x00\x01")[0]
"""A float whose encoding holds a byte that starts some extension (0xd5: fixext 2)."""
CALL_WITH_FLOAT = msgpack.packb({"t": "call", "i": 8, "ev": "rpc", "d": {"ts": FLOAT}})
ACK = msgpack.packb({"t": "ack", "s": 3})
CASES: list[bytes] = [
    CALL,
    CALL + ACK,  # a batch
    CALL_WITH_FLOAT + ACK,
    CALL * 12,  # longer than the one-call-per-frame path goes
    CALL * 3 + CALL[:-3],  # a batch cut in its last frame
    ACK + msgpack.packb("x" * 300),  # its second frame over a bound the first is under
    CALL + msgpack.packb({"d": msgpack.Timestamp(1, 0)}),  # extension -1 in a batch's second frame
    b"\x81\xa1d\xc8\x00\x0c\xff" + bytes(12),  # {"d": a timestamp as ext 16}, not the usual header
    b"",
    CALL[:-3],  # cut
    msgpack.packb({1: "int key"}),
    msgpack.packb(msgpack.Timestamp(1, 0)),  # extension -1
    msgpack.packb({"d": msgpack.ExtType(5, b"x")}),
    msgpack.packb({"d": [msgpack.Timestamp(1, 0)]}),
    b"\xc1",  # never used
    msgpack.packb("x" * 300),
    # Messages ending in an ack (read from its bytes, the rest decoded before it):
    CALL * 12 + ACK,
    ACK + ACK,
    CALL[:-3] + ACK,  # a cut frame before the ack
    b"\xc1" + ACK,
    msgpack.packb({1: "int key"}) + ACK,
    msgpack.packb("x" * 300) + ACK,  # a frame over a bound before the ack
    msgpack.packb(["x" * 20, msgpack.packb({"t": "ack", "s": 3})]),  # an ack's bytes inside a bin
    b"\xa8\x82\xa1t\xa3ack" + b"\xa1s\x05",  # ... inside a string, its end where an ack's is
    b"\xc4\x0a\x82\xa1t\xa3ack\xa1s\x05" + ACK[:-1],  # a bin cut where an ack's bytes would end
    CALL + msgpack.packb({"t": "ack", "s": 2**53 - 1}),
    CALL + msgpack.packb({"t": "ack", "s": 2**53}),  # past the largest id: decoded, refused later
    CALL + msgpack.packb({"t": "ack", "s": 300}),
]


def _general(raw: bytes, max_frame: int | None) -> Any:
    """The Unpacker path alone (as before the one-call path existed)."""
    real = codec_module._TIMESTAMP_MARKERS

    class Always:
        def search(self, _raw: bytes) -> object:
            return object()

    codec_module._TIMESTAMP_MARKERS = Always()  # type: ignore[assignment]
    try:
        return _outcome(raw, max_frame)
    finally:
        codec_module._TIMESTAMP_MARKERS = real


def _outcome(raw: bytes, max_frame: int | None) -> Any:
    try:
        return ("ok", MSGPACK.decode(raw, max_frame))
    except LadderError as exc:
        return ("err", exc.code)


@pytest.mark.parametrize("raw", CASES)
@pytest.mark.parametrize("max_frame", [None, 5, 64, 10_000])
def test_one_call_decoding_agrees_with_the_general_path(raw: bytes, max_frame: int | None) -> None:
    assert _outcome(raw, max_frame) == _general(raw, max_frame)


def test_a_single_frame_does_not_set_up_an_unpacker(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("Unpacker used")

    monkeypatch.setattr(msgpack, "Unpacker", refuse)
    assert MSGPACK.decode(CALL, 10_000)[0]["ev"] == "rpc"


def test_a_call_with_its_ack_raises_no_extra_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ack at the end is read from its bytes: unpackb sees only the call."""
    seen: list[bytes] = []
    real = msgpack.unpackb
    call = real(CALL)

    def spy(data: bytes, **kwargs: Any) -> Any:
        seen.append(data)
        return real(data, **kwargs)

    monkeypatch.setattr(msgpack, "unpackb", spy)
    assert MSGPACK.decode(CALL + ACK, 10_000) == [call, {"t": "ack", "s": 3}]
    assert seen == [CALL]


def test_a_call_with_its_ack_and_a_float_does_not_set_up_an_unpacker(monkeypatch: pytest.MonkeyPatch) -> None:
    """A byte that may start an extension is common inside floats; only a whole header of
    the timestamp extension sends a message to the checked general path."""
    assert b"\xd5" in CALL_WITH_FLOAT

    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("Unpacker used")

    monkeypatch.setattr(msgpack, "Unpacker", refuse)
    call, ack = MSGPACK.decode(CALL_WITH_FLOAT + ACK, 10_000)
    assert call["d"]["ts"] == FLOAT and ack == {"t": "ack", "s": 3}


# -- a lone ack is read from its bytes -------------------------------------------------------------


def _decoded_the_long_way(codec: Codec, raw: bytes) -> Any:
    """What decode_client_frames gives without recognizing a lone ack."""
    try:
        frames: list[Any] = []
        for obj in codec.decode(raw, 10_000):
            try:
                frames.append(parse_client_frame(obj))
            except LadderError as exc:
                frames.append(("refused", exc.code))
        return ("ok", frames)
    except LadderError as exc:
        return ("err", exc.code)


def _decoded(codec: Codec, raw: bytes) -> Any:
    try:
        frames = decode_client_frames(codec, raw, 10_000)
        return ("ok", [("refused", f.error.code) if isinstance(f, Refused) else f for f in frames])
    except LadderError as exc:
        return ("err", exc.code)


ACK_VALUES = [0, 1, 9, 10, 127, 128, 255, 256, 65_535, 65_536, 2**32 - 1, 2**32, MAX_ID, MAX_ID + 1, 2**64 - 1]


@pytest.mark.parametrize("seq", ACK_VALUES)
@pytest.mark.parametrize("codec", [JSON, MSGPACK], ids=["json", "msgpack"])
def test_a_lone_ack_as_the_clients_write_it_is_read_from_its_bytes(codec: Codec, seq: int) -> None:
    raw = codec.encode({"t": "ack", "s": seq})
    assert codec.lone_ack(raw) == (seq if seq <= MAX_ID else None)
    assert _decoded(codec, raw) == _decoded_the_long_way(codec, raw)


OTHER_ACKS = [
    b'{"t":"ack","s":01}',  # a leading zero: not JSON
    b'{"t":"ack","s":-1}',
    b'{"t":"ack","s":1.0}',
    b'{"t":"ack","s":1e3}',
    b'{"t":"ack","s":}',
    b'{"t":"ack","s":1}\n',
    b'{"t":"ack","s":1}x',
    b'{"t":"ack","s":12345678901234567890}',
    b'{"t":"ack","s":"1"}',
    b'{"t":"ack","s":1,"x":2}',
    b'{"s":1,"t":"ack"}',
    b'{"t":"ack","s":\xd9\xa1}',  # a non-ASCII digit
    b'{"t":"ack","s":1}\n{"t":"ping"}',
    b"\x82\xa1t\xa3ack\xa1s",  # msgpack, cut before its value
    b"\x82\xa1t\xa3ack\xa1s\xcc",  # cut inside its value
    b"\x82\xa1t\xa3ack\xa1s\xcd\x01",
    b"\x82\xa1t\xa3ack\xa1s\x05\x05",  # a byte more
    b"\x82\xa1t\xa3ack\xa1s\xff",  # negative fixint
    b"\x82\xa1t\xa3ack\xa1s\xd0\x05",  # int 8
    b"\x82\xa1t\xa3ack\xa1s\xcc\x05",  # uint 8 for a fixint's value: msgpack reads it too
    b"\x82\xa1t\xa3ack\xa1s\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00",  # 1.0
    b"\x82\xa1t\xa3ack\xa1s\xcf\xff\xff\xff\xff\xff\xff\xff\xff",
    b"\x83\xa1t\xa3ack\xa1s\x05\xa1x\x01",
]


@pytest.mark.parametrize("raw", OTHER_ACKS)
@pytest.mark.parametrize("codec", [JSON, MSGPACK], ids=["json", "msgpack"])
def test_anything_else_decodes_as_before(codec: Codec, raw: bytes) -> None:
    assert _decoded(codec, raw) == _decoded_the_long_way(codec, raw)


@pytest.mark.pure
def test_a_lone_ack_is_not_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("decoded")

    for codec in (JSON, MSGPACK):
        monkeypatch.setattr(codec, "decode", refuse)
        assert decode_client_frames(codec, codec.encode({"t": "ack", "s": 42}), 10_000) == [Ack(42)]


# -- a JSON message ending in an ack -----------------------------------------------------------------


def _json_lines(raw: bytes, max_frame: int | None) -> Any:
    """Each line decoded on its own: what the JSON codec does without reading a last ack."""
    out: list[Any] = []
    try:
        for line in raw.split(b"\n"):
            if not line.strip():
                continue
            if max_frame is not None and len(line) > max_frame:
                return ("err", "frame_too_large")
            obj = orjson.loads(line)
            out.append(codec_module._untag(obj) if b'"$b"' in line else obj)
    except orjson.JSONDecodeError:
        return ("err", "bad_frame")
    except LadderError as exc:
        return ("err", exc.code)
    return ("ok", out)


def _json_outcome(raw: bytes, max_frame: int | None) -> Any:
    try:
        return ("ok", JSON.decode(raw, max_frame))
    except LadderError as exc:
        return ("err", exc.code)


JSON_CALL = b'{"t":"call","i":7,"ev":"rpc","d":{"ts":1.5,"pad":"' + b"x" * 60 + b'"}}'
JSON_ACK = b'{"t":"ack","s":3}'
JSON_CASES = [
    JSON_CALL + b"\n" + JSON_ACK,  # what the clients send with every call
    JSON_CALL + b"\n" + JSON_CALL + b"\n" + JSON_ACK,
    JSON_ACK + b"\n" + JSON_ACK,
    b"\n" + JSON_ACK,
    b"   \n" + JSON_ACK,  # a blank line first
    JSON_CALL[:-3] + b"\n" + JSON_ACK,  # a cut frame before the ack: the whole message is refused
    b'{"t":"ack","s":[1\n2]}\n' + JSON_ACK,  # a frame over two lines
    b'{"d":"$b"}\n' + JSON_ACK,
    b'{"d":{"$b":"eA=="}}\n' + JSON_ACK,  # bytes, tagged
    b'{"d":{"$b":"not base64!"}}\n' + JSON_ACK,
    b'"' + b"x" * 300 + b'"\n' + JSON_ACK,  # a line over a bound the ack is under
    JSON_CALL + b"\n" + JSON_ACK + b"\n",  # a newline after the ack
    JSON_CALL + b"\n" + b'{"t":"ack","s":01}',  # not an ack as the clients write it
    JSON_CALL + b"\n" + b'{"t":"ack","s":9007199254740992}',  # past the largest id
    JSON_CALL + b"\r\n" + JSON_ACK,
]


@pytest.mark.parametrize("raw", JSON_CASES)
@pytest.mark.parametrize("max_frame", [None, 5, 20, 64, 10_000])
def test_a_json_message_ending_in_an_ack_decodes_as_its_lines_do(raw: bytes, max_frame: int | None) -> None:
    assert _json_outcome(raw, max_frame) == _json_lines(raw, max_frame)


@pytest.mark.pure
def test_a_json_call_with_its_ack_decodes_only_the_call(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bytes] = []
    real = codec_module._loads

    def spy(data: bytes) -> Any:
        seen.append(data)
        return real(data)

    monkeypatch.setattr(codec_module, "_loads", spy)
    call, ack = JSON.decode(JSON_CALL + b"\n" + JSON_ACK, 10_000)
    assert (call["ev"], ack) == ("rpc", {"t": "ack", "s": 3})
    assert seen == [JSON_CALL]
