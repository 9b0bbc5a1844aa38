"""A single msgpack frame is decoded in one call; whatever it decodes or refuses is what
the general (Unpacker) path decodes or refuses."""

from __future__ import annotations

import struct
from typing import Any

import msgpack
import pytest

from ladder.protocol import codec as codec_module
from ladder.protocol.codec import MSGPACK
from ladder.protocol.errors import LadderError

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
@pytest.mark.parametrize("max_frame", [None, 64, 10_000])
def test_one_call_decoding_agrees_with_the_general_path(raw: bytes, max_frame: int | None) -> None:
    assert _outcome(raw, max_frame) == _general(raw, max_frame)


def test_a_single_frame_does_not_set_up_an_unpacker(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("Unpacker used")

    monkeypatch.setattr(msgpack, "Unpacker", refuse)
    assert MSGPACK.decode(CALL, 10_000)[0]["ev"] == "rpc"


def test_a_call_with_its_ack_and_a_float_does_not_set_up_an_unpacker(monkeypatch: pytest.MonkeyPatch) -> None:
    """A byte that may start an extension is common inside floats; only a whole header of
    the timestamp extension sends a message to the checked general path."""
    assert b"\xd5" in CALL_WITH_FLOAT

    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("Unpacker used")

    monkeypatch.setattr(msgpack, "Unpacker", refuse)
    call, ack = MSGPACK.decode(CALL_WITH_FLOAT + ACK, 10_000)
    assert call["d"]["ts"] == FLOAT and ack == {"t": "ack", "s": 3}
