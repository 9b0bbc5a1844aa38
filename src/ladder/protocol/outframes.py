"""Server frames, built once and shared.

A sequenced server frame is an :class:`OutFrame` that carries its encoded tails (the
frame without ``s``) in both encodings, built once and shared by every session that
receives it; stamping it for one session is one byte concatenation.
"""

from __future__ import annotations

from typing import Any, Final

from .codec import JSON, MSGPACK, Codec, Payload, msgpack_uint, unencodable
from .errors import LadderError


class OutFrame:
    """A sequenced server frame, encoded once and stamped with ``s`` per session (built
    from a body by :func:`out_frame`, or from tails already encoded)."""

    __slots__ = ("_json", "_msgpack", "fields", "kind", "size")

    def __init__(self, kind: str, fields: int, json_tail: bytes, msgpack_tail: bytes) -> None:
        self.kind = kind
        self.fields = fields
        self._json = json_tail
        self._msgpack = msgpack_tail
        self.size = min(len(json_tail), len(msgpack_tail))
        """What it counts against ``max_queue_bytes``: its smaller encoding, so that a client
        counting what it receives, in either, never counts less than the server (bytes are a
        third larger as base64 JSON, a control character six times)."""

    @property
    def tails(self) -> tuple[bytes, bytes]:
        """The JSON and msgpack tails (to move a kept frame to another process)."""
        return self._json, self._msgpack

    def encode(self, codec: Codec, seq: int) -> bytes:
        tail = self._msgpack if codec is MSGPACK else self._json
        return codec.stamp(tail, self.fields, seq)

    def decode(self, codec: Codec = JSON, seq: int = 0) -> dict[str, Any]:
        """The frame as a map again (for tests and debugging)."""
        obj = codec.decode(self.encode(codec, seq))[0]
        assert isinstance(obj, dict)
        return obj


def out_frame(body: dict[str, Any]) -> OutFrame:
    """A frame from its body, in both encodings at once: a value that cannot be encoded is
    refused where it was produced (``publish`` or a handler's return), never later in a
    recipient's writer."""
    try:
        json_tail = JSON.tail(body)
        msgpack_tail = MSGPACK.tail(body)
    except (TypeError, ValueError, OverflowError) as exc:
        raise LadderError("bad_frame", f"data cannot be encoded: {exc}") from exc
    return OutFrame(str(body["t"]), len(body), json_tail, msgpack_tail)


_PUB_JSON_HEAD: Final = b'"t":"pub","ch":'
_PUB_MSGPACK_HEAD: Final = MSGPACK.encode("t") + MSGPACK.encode("pub") + MSGPACK.encode("ch")


def pub_frame(channel: str, offset: int, payload: Payload) -> OutFrame:
    """A publication frame, assembled from the payload's encodings without re-encoding it."""
    json_tail = b'%b%b,"o":%d,"d":%b}' % (_PUB_JSON_HEAD, JSON.encode(channel), offset, payload.json)
    msgpack_tail = b"".join(
        (
            _PUB_MSGPACK_HEAD,
            MSGPACK.encode(channel),
            b"\xa1o",
            MSGPACK.encode(offset),
            b"\xa1d",
            payload.msgpack,
        )
    )
    return OutFrame("pub", 4, json_tail, msgpack_tail)


_REPLY_JSON_HEAD: Final = b'"t":"reply","re":'
_REPLY_MSGPACK_HEAD: Final = MSGPACK.encode("t") + MSGPACK.encode("reply") + MSGPACK.encode("re")


def reply_frame(msg_id: int, data: Any = None) -> OutFrame:
    """A call's answer, assembled around its data's two encodings (every call makes one:
    no body map to build and encode, byte for byte what :func:`out_frame` makes of it)."""
    if data is None:
        return out_frame({"t": "reply", "re": msg_id})
    try:
        json_data = JSON.encode(data)
        msgpack_data = MSGPACK.encode(data)
    except (TypeError, ValueError, OverflowError) as exc:
        raise LadderError("bad_frame", f"data cannot be encoded: {unencodable(data)}") from exc
    json_tail = b'%b%d,"d":%b}' % (_REPLY_JSON_HEAD, msg_id, json_data)
    msgpack_tail = b"".join((_REPLY_MSGPACK_HEAD, msgpack_uint(msg_id), b"\xa1d", msgpack_data))
    return OutFrame("reply", 3, json_tail, msgpack_tail)


def error_frame(error: LadderError, msg_id: int | None = None) -> OutFrame:
    body: dict[str, Any] = {"t": "err", **error.body()}
    if msg_id is not None:
        body["re"] = msg_id
    return out_frame(body)


def push_frame(event: str, data: Any) -> OutFrame:
    return out_frame({"t": "push", "ev": event, "d": data})


def presence_frame(kind: str, channel: str, member: dict[str, Any]) -> OutFrame:
    return out_frame({"t": kind, "ch": channel, "m": member})


def resync_frame(channel: str, epoch: str, offset: int) -> OutFrame:
    return out_frame({"t": "resync", "ch": channel, "ep": epoch, "off": offset})
