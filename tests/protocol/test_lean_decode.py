"""A single msgpack frame is decoded in one call; whatever it decodes or refuses is what
the general (Unpacker) path decodes or refuses."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from ladder.protocol import codec as codec_module
from ladder.protocol.codec import MSGPACK
from ladder.protocol.errors import LadderError

CALL = msgpack.packb({"t": "call", "i": 7, "ev": "rpc", "d": {"ts": 1.5, "pad": "x" * 60}})
CASES: list[bytes] = [
    CALL,
    CALL + msgpack.packb({"t": "ack", "s": 3}),  # a batch
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
    real = codec_module._EXT_MARKERS

    class Always:
        def search(self, _raw: bytes) -> object:
            return object()

    codec_module._EXT_MARKERS = Always()  # type: ignore[assignment]
    try:
        return _outcome(raw, max_frame)
    finally:
        codec_module._EXT_MARKERS = real


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
