"""Wire encodings: compact JSON text and msgpack binary.

A frame is a map with a type key ``t``. Several frames travel together as a *batch*:
JSON frames joined by ``\\n`` (compact JSON never contains a raw newline), msgpack frames
simply concatenated. The same batch shape is used for WebSocket messages, poll responses
and upstream POST bodies, so one decoder serves every rung.

Sequenced frames are encoded once and stamped per session: the body without the sequence
number (the *tail*) is built once per publication, and the per-session bytes are
``head(seq) + tail``. That is what makes fan-out encode a publication once.

JSON cannot carry bytes, so a ``bytes`` value is sent as ``{"$b": "<base64>"}`` and turned
back into ``bytes`` on decode. msgpack carries bytes natively.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Iterable
from typing import Any, Final

import msgpack
import orjson
from orjson import loads as _loads

from .errors import LadderError

BYTES_TAG: Final = "$b"
_BYTES_TAG_RAW: Final = b'"$b"'
_MSGPACK_TAG: Final = b"\xa2$b"
"""``"$b"`` as msgpack writes a key (a fixstr of two bytes)."""


CARRIED: Final = "None, bool, int, float, str, bytes, lists and dicts with str keys"
"""What a Ladder message can carry, in the words of every encode error (a tuple, a set and a
frozenset go as lists: protocol §2)."""

_MAX_DEPTH: Final = 254
"""Lists and dicts nested deeper than this no JSON encoder here writes (orjson's limit: it
refused the 255th level with "Recursion limit reached", which said nothing of where)."""


def _a(name: str) -> str:
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def _cannot(what: str, where: str) -> TypeError:
    if len(where) > 80:  # (a path 254 levels deep: its two ends say where)
        where = f"{where[:40]}…{where[-30:]}"
    at = f" at {where}" if where else ""
    return TypeError(f"cannot send {what}{at}: Ladder messages carry {CARRIED}")


def _lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _culprit(value: Any, where: str, seen: set[int], depth: int) -> TypeError | None:
    """The first part of ``value`` no encoding can carry, as the error to raise."""
    if value is None or isinstance(value, bool | float | str | bytes | bytearray | memoryview):
        if isinstance(value, str) and _lone_surrogate(value):
            return _cannot("a str with a lone surrogate", where)
        return None
    if isinstance(value, int):
        if -(2**63) <= value < 2**64:
            return None
        bits = value.bit_length()
        return _cannot(f"an int of {bits} bits (outside -2**63 .. 2**64-1: send it as a str)", where)
    if not isinstance(value, dict | list | tuple | set | frozenset):
        return _cannot(_a(type(value).__name__), where)
    if id(value) in seen:
        return _cannot(f"{_a(type(value).__name__)} that contains itself", where)
    if depth >= _MAX_DEPTH:
        return _cannot(f"lists and dicts nested more than {_MAX_DEPTH} deep", where)
    seen.add(id(value))
    try:
        if isinstance(value, dict):
            if _bad_tag(value):
                return _cannot(f"a {_BAD_TAG}", where)
            for key, item in value.items():
                if not isinstance(key, str):
                    return _cannot(f"a dict key of type {type(key).__name__}", where)
                if _lone_surrogate(key):
                    return _cannot("a dict key with a lone surrogate", where)
                found = _culprit(item, f"{where}[{key!r}]", seen, depth + 1)
                if found is not None:
                    return found
            return None
        for index, item in enumerate(value):
            found = _culprit(item, f"{where}[{index}]", seen, depth + 1)
            if found is not None:
                return found
        return None
    finally:
        seen.discard(id(value))


def unencodable(value: Any, where: str = "") -> TypeError:
    """Why ``value`` cannot be sent, naming the type and where it sits (for any codec).

    Only called once an encoder failed, so the walk costs nothing on the happy path.
    """
    return _culprit(value, where, set(), 0) or TypeError(
        f"cannot send this value: Ladder messages carry {CARRIED}"
    )


def _non_finite(value: Any, where: str, depth: int = 0) -> TypeError | None:
    """The first NaN or infinity in ``value``, as the error to raise: JSON has no such
    numbers (orjson writes them as ``null``, which would reach the server as ``None``)."""
    if isinstance(value, float):
        if math.isfinite(value):
            return None
        return TypeError(
            f"cannot send {value!r}{f' at {where}' if where else ''}: JSON has no NaN or "
            "infinity (send it as a str, or connect with encoding='msgpack')"
        )
    if depth >= _MAX_DEPTH:
        return None
    if isinstance(value, dict):
        items: Any = ((f"{where}[{key!r}]", item) for key, item in value.items())
    elif isinstance(value, list | tuple):
        items = ((f"{where}[{index}]", item) for index, item in enumerate(value))
    else:
        return None
    for at, item in items:
        found = _non_finite(item, at, depth + 1)
        if found is not None:
            return found
    return None


_STRICT: Final = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
"""JSON carries what msgpack carries, no more: orjson alone writes a ``datetime`` as an ISO
string and a dataclass as a map, so a client in JSON sent as a str what one in msgpack was
refused (and the browser client refuses a ``Date``)."""


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return {BYTES_TAG: base64.b64encode(value).decode("ascii")}
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _untag(value: Any) -> Any:
    """Turn ``{"$b": "..."}`` back into bytes, at any depth, in place (``value`` was just
    decoded). A loop, not recursion: data 1,024 deep is read (the decoders' limit), and a
    recursive walk of it failed with ``RecursionError`` (``internal``, a traceback)."""
    holder = [value]
    stack: list[tuple[Any, Any]] = [(holder, 0)]
    while stack:
        parent, key = stack.pop()
        item = parent[key]
        if isinstance(item, dict):
            tagged = _tag_of(item)
            if tagged is None:
                stack.extend((item, k) for k in item)
                continue
            try:
                parent[key] = base64.b64decode(tagged, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise LadderError("bad_frame", "invalid base64 in a $b value") from exc
        elif isinstance(item, list):
            stack.extend((item, i) for i in range(len(item)))
    return holder[0]


def _tag_of(value: dict[Any, Any]) -> str | None:
    """The str of a one-key ``{"$b": str}`` map (JSON's form of bytes), else None."""
    tagged = value.get(BYTES_TAG) if len(value) == 1 else None
    return tagged if isinstance(tagged, str) else None


_BAD_TAG: Final = (
    '{"$b": str} map whose str is not standard base64 (JSON\'s form of bytes: send bytes, or '
    "give the map a second key)"
)


def _bad_tag(value: dict[Any, Any]) -> bool:
    """A one-key ``{"$b": str}`` map whose str is not standard base64: JSON readers would
    take it for bytes and could not decode it, so it cannot be sent in any encoding."""
    tagged = _tag_of(value)
    if tagged is None:
        return False
    try:
        base64.b64decode(tagged, validate=True)
    except (binascii.Error, ValueError):
        return True
    return False


def _checked_tags(encoded: bytes) -> bytes:
    """``encoded`` JSON (which holds a ``$``), if every ``{"$b": ...}`` in it decodes
    (``TypeError`` if not): what a writer sends must be what every reader can read, so a map
    the application built in the shape of JSON's bytes is refused where it is encoded, not by
    each reader."""
    if _BYTES_TAG_RAW in encoded:
        try:
            _untag(_loads(encoded))
        except LadderError as exc:
            raise TypeError(_BAD_TAG) from exc
    return encoded


def _msgpack_default(value: Any) -> Any:
    if isinstance(value, set | frozenset):
        return list(value)
    if isinstance(value, memoryview):
        return bytes(value)
    raise TypeError(f"{type(value).__name__} is not msgpack serialisable")


def _reject_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"msgpack extension type {code} is not allowed")


_TIMESTAMP_MARKERS: Final = re.compile(
    rb"[\xd4-\xd8]\xff|\xc7[\x00-\xff]\xff|\xc8[\x00-\xff]{2}\xff|\xc9[\x00-\xff]{4}\xff"
)
"""Headers of an extension object of type -1 (fixext 1-16, ext 8/16/32), the only type
msgpack decodes itself (as a Timestamp) instead of asking ``ext_hook``. Where none occurs,
no Timestamp can be in the decoded data and the per-container check below is skipped
(single bytes that may start *some* extension occur in about a fifth of frames carrying a
float; these two-to-six-byte headers almost never do)."""

_JSON_ACK: Final = b'{"t":"ack","s":'
_MSGPACK_ACK: Final = b"\x82\xa1t\xa3ack\xa1s"
_MSGPACK_SERVER_ACK: Final = b"\x82\xa1t\xa3ack\xa1i"
MSGPACK_UINT: Final = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}
"""Payload sizes of msgpack's unsigned ints by first byte (a positive fixint has none)."""
MAX_ID: Final = 2**53 - 1
"""Ids and sequence numbers stay within the range JavaScript numbers hold exactly."""

_DOLLAR: Final = ord("$")
"""The first byte of the bytes tag, as an int (the fast form of ``in`` on bytes)."""
_NEWLINE: Final = ord("\n")
"""The separator of a batch's JSON frames, as an int (the same)."""

_FAST_FRAMES: Final = 8
"""Frames of one message decoded one ``unpackb`` each before an Unpacker takes the rest."""


def _no_timestamp_map(obj: dict[str, Any]) -> dict[str, Any]:
    for value in obj.values():
        if type(value) is msgpack.Timestamp:
            raise ValueError("msgpack extension type -1 (timestamp) is not allowed")
    return obj


def _no_timestamp_list(obj: list[Any]) -> list[Any]:
    for value in obj:
        if type(value) is msgpack.Timestamp:
            raise ValueError("msgpack extension type -1 (timestamp) is not allowed")
    return obj


def _too_large(size: int, limit: int) -> LadderError:
    return LadderError("frame_too_large", f"frame of {size} bytes exceeds the limit of {limit}")


class Codec:
    """One encoding. Subclasses are stateless singletons: ``JSON`` and ``MSGPACK``."""

    name: str = ""
    binary: bool = False
    content_type: str = ""

    def encode(self, body: Any) -> bytes:
        """Encode one frame (or any value)."""
        raise NotImplementedError

    def control(self, body: dict[str, Any]) -> bytes:
        """Encode a control frame: the map :meth:`encode` writes, the server's ``ack`` (in
        nearly every answer to a client message) from a template (its keys in the order the
        server builds them: ``t``, ``i``)."""
        if len(body) == 2 and body.get("t") == "ack":
            number = body.get("i")
            if type(number) is int and 0 <= number <= MAX_ID:
                return self.ack(number)
        return self.encode(body)

    def ack(self, number: int) -> bytes:
        """``{"t": "ack", "i": number}``, byte for byte as :meth:`encode` writes it."""
        raise NotImplementedError

    def tail(self, body: dict[str, Any]) -> bytes:
        """Encode a frame without its sequence number, for later :meth:`stamp`."""
        raise NotImplementedError

    def stamp(self, tail: bytes, fields: int, seq: int) -> bytes:
        """Prefix a tail (of a body with ``fields`` keys) with ``"s": seq``."""
        raise NotImplementedError

    def join(self, frames: Iterable[bytes]) -> bytes:
        """Join encoded frames into one batch."""
        raise NotImplementedError

    def decode(self, data: bytes | str, max_frame: int | None = None) -> list[Any]:
        """Decode a batch into raw objects (validation happens in :mod:`frames`).

        ``max_frame`` bounds each frame's encoded size (``frame_too_large`` past it).
        """
        raise NotImplementedError

    def lone_ack(self, data: bytes | str) -> int | None:
        """``s`` of a message that is one ``ack`` frame written as both clients write it
        (``t`` first, then ``s``, a valid id), else None (decode it).

        A subscriber's most frequent message, recognized from its bytes: decoding it and
        validating the map cost more than applying it. Anything else, including an ack
        written another way, takes :meth:`decode`, with the same outcome.
        """
        raise NotImplementedError


def _json(body: Any) -> bytes:
    """orjson's bytes of ``body``. A frame whose data is nested 254 deep (what §2 carries) is
    written in two parts: orjson writes at most 255 levels, the frame's own map among them, so
    the whole frame was refused (a client's message after it took an id, a handler's result
    as ``handler_error`` whatever the client's encoding)."""
    try:
        return orjson.dumps(body, default=_json_default, option=_STRICT)
    except orjson.JSONEncodeError:
        if not (isinstance(body, dict) and "d" in body and len(body) > 1):
            raise
        head = orjson.dumps({key: value for key, value in body.items() if key != "d"}, option=_STRICT)
        data = orjson.dumps(body["d"], default=_json_default, option=_STRICT)
        return b'%b,"d":%b}' % (head[:-1], data)


class JsonCodec(Codec):
    name = "json"
    binary = False
    content_type = "application/x-ndjson"

    def encode(self, body: Any) -> bytes:
        out = _json(body)
        return _checked_tags(out) if _DOLLAR in out else out  # (no call for most values)

    def ack(self, number: int) -> bytes:
        return b'{"t":"ack","i":%d}' % number

    def tail(self, body: dict[str, Any]) -> bytes:
        # b'{"a":1,"b":2}' -> b'"a":1,"b":2}' ; an empty body keeps just the brace.
        out = _json(body)
        return (_checked_tags(out) if _DOLLAR in out else out)[1:]

    def stamp(self, tail: bytes, fields: int, seq: int) -> bytes:
        if fields == 0:
            return b'{"s":%d}' % seq
        return b'{"s":%d,%b' % (seq, tail)

    def join(self, frames: Iterable[bytes]) -> bytes:
        return b"\n".join(frames)

    def lone_ack(self, data: bytes | str) -> int | None:
        if type(data) is not bytes or not data.startswith(_JSON_ACK) or not data.endswith(b"}"):
            return None
        # ASCII digits, no leading zero (not JSON), within MAX_ID: read here byte by byte
        # (``isdigit`` and ``int`` of a slice cost more than the rest of this method).
        start, end = len(_JSON_ACK), len(data) - 1
        if not 0 < end - start <= 16 or (data[start] == 0x30 and end - start > 1):
            return None
        seq = 0
        for at in range(start, end):
            digit = data[at] - 0x30
            if not 0 <= digit <= 9:
                return None
            seq = seq * 10 + digit
        return seq if seq <= MAX_ID else None

    def decode(self, data: bytes | str, max_frame: int | None = None) -> list[Any]:
        raw = data.encode() if isinstance(data, str) else data
        # Looked for once per message, and first as one byte (memchr: a search for the whole
        # tag cost as much as decoding a small frame). The byte is an int: ``b"$" in raw``
        # first tries its needle as an int, and raises and clears a TypeError to learn it is
        # not one (a tenth of what applying a lone ack costs).
        tagged = _DOLLAR in raw and _BYTES_TAG_RAW in raw
        # A message ending in an ack as both clients write it (a call with the ack that rides
        # along): its last line is read from its bytes (a line is one frame: JSON strings
        # hold no raw newline), the lines before it as always.
        ack: int | None = None
        last = b""
        if _NEWLINE in raw:
            last = raw[raw.rfind(_NEWLINE) + 1 :]
            ack = self.lone_ack(last)
            if ack is not None:
                raw = raw[: len(raw) - len(last) - 1]
        out: list[Any] = []
        for line in raw.split(b"\n") if _NEWLINE in raw else [raw]:  # (most messages: one frame)
            if not line:
                continue
            if max_frame is not None and len(line) > max_frame:
                raise _too_large(len(line), max_frame)
            try:
                obj = _loads(line)
            except orjson.JSONDecodeError as exc:
                if not line.strip():
                    continue  # a blank line between frames
                raise LadderError("bad_frame", f"invalid JSON: {_json_error(line, exc)}") from exc
            if tagged and _BYTES_TAG_RAW in line:
                obj = _untag(obj)
            out.append(obj)
        if ack is not None:
            if max_frame is not None and len(last) > max_frame:
                raise _too_large(len(last), max_frame)
            out.append({"t": "ack", "s": ack})
        return out


def _json_error(line: bytes, exc: orjson.JSONDecodeError) -> str:
    """What was wrong: bytes that are not UTF-8 text were "str is not valid UTF-8: surrogates
    not allowed" (orjson's words, about surrogates the bytes did not hold)."""
    try:
        line.decode()
    except UnicodeDecodeError as bad:
        return (
            f"not UTF-8 text (byte {bad.start}); a msgpack body needs Content-Type: application/msgpack"
        )
    return exc.msg


_STAMP_HEADS: Final = tuple(bytes((0x80 | (fields + 1),)) + b"\xa1s" for fields in range(15))
"""A stamped frame's start by its number of other fields: its fixmap header, then ``"s"``."""


class MsgpackCodec(Codec):
    name = "msgpack"
    binary = True
    content_type = "application/msgpack"

    def __init__(self) -> None:
        self._packer = msgpack.Packer(default=_msgpack_default, use_bin_type=True)

    def encode(self, body: Any) -> bytes:
        return self._packer.pack(body)

    def ack(self, number: int) -> bytes:
        return _MSGPACK_SERVER_ACK + msgpack_uint(number)

    def tail(self, body: dict[str, Any]) -> bytes:
        if len(body) > 14:
            raise ValueError("sequenced frames have at most 14 fields")
        # A fixmap header is one byte; everything after it is the key/value pairs.
        return self._packer.pack(body)[1:]

    def stamp(self, tail: bytes, fields: int, seq: int) -> bytes:
        # (per delivery: one join of the map's header, the number and the tail, not three
        # concatenations that each copy the tail; :meth:`tail` refuses more than 14 fields)
        return b"".join((_STAMP_HEADS[fields], msgpack_uint(seq), tail))

    def join(self, frames: Iterable[bytes]) -> bytes:
        return b"".join(frames)

    def lone_ack(self, data: bytes | str) -> int | None:
        if type(data) is not bytes or not data.startswith(_MSGPACK_ACK):
            return None
        at = len(_MSGPACK_ACK)
        if len(data) == at + 1 and data[at] < 0x80:  # positive fixint
            return data[at]
        size = MSGPACK_UINT.get(data[at], 0) if len(data) > at else 0
        if not size or len(data) != at + 1 + size:
            return None
        seq = int.from_bytes(data[at + 1 :], "big")
        return seq if seq <= MAX_ID else None

    def decode(self, data: bytes | str, max_frame: int | None = None) -> list[Any]:
        raw = data.encode() if isinstance(data, str) else data
        # Every marker holds the byte 0xff (type -1): looked for first as one byte (memchr;
        # an int, see JsonCodec.decode), the pattern only where it occurs (searched for
        # always, it cost a call a fifth).
        if 0xFF in raw and _TIMESTAMP_MARKERS.search(raw) is not None:
            return _unpack_all(raw, max_frame, checked=True)
        # A message ending in an ack as both clients write it (a call with the ack that rides
        # along): the ack is read from its bytes, and only what comes before it is decoded
        # (an ``unpackb`` that finds a second object raises ExtraData: costly). msgpack
        # objects delimit themselves, so if what comes before decodes whole, the message
        # is that and the ack; if not (the bytes were inside a string), the general path
        # below decides, on the whole message.
        body, ack = raw, None
        at = raw.rfind(_MSGPACK_ACK)
        if at > 0:
            seq = self.lone_ack(raw[at:])
            if seq is not None:
                body, ack = raw[:at], {"t": "ack", "s": seq}
        # The common case, a frame or a few: one ``unpackb`` each, no Unpacker to set up.
        # Anything else (a long batch, bad input) takes the general path, which reads it,
        # or refuses it with its error.
        out: list[Any] = []
        rest = body
        try:
            while True:
                if len(out) == _FAST_FRAMES:
                    out += _unpack_all(rest, max_frame, checked=False)
                    break
                try:
                    obj = msgpack.unpackb(
                        rest, raw=False, strict_map_key=True, ext_hook=_reject_ext, timestamp=0
                    )
                    following = b""
                except msgpack.ExtraData as extra:
                    obj, following = extra.args  # the first object, the bytes after it
                if max_frame is not None and len(rest) - len(following) > max_frame:
                    raise _too_large(len(rest) - len(following), max_frame)
                out.append(obj)
                if not following:
                    break
                rest = following
        except LadderError:
            if ack is None:
                raise
            return _unpack_all(raw, max_frame, checked=False)
        except Exception:  # the general path reports it
            return _unpack_all(raw, max_frame, checked=False)
        if ack is not None:
            if max_frame is not None and len(raw) - at > max_frame:
                raise _too_large(len(raw) - at, max_frame)
            out.append(ack)
        return out


def msgpack_uint(number: int) -> bytes:
    """A non-negative int below 2**64 in msgpack, as msgpack's Packer writes it (the
    shortest form), without a call into the Packer (per frame stamped)."""
    if number < 0x80:
        return bytes((number,))
    if number < 0x100:
        return bytes((0xCC, number))
    if number < 0x10000:
        return b"\xcd" + number.to_bytes(2, "big")
    if number < 0x100000000:
        return b"\xce" + number.to_bytes(4, "big")
    return b"\xcf" + number.to_bytes(8, "big")


def _unpack_all(raw: bytes, max_frame: int | None, *, checked: bool) -> list[Any]:
    """Every msgpack frame in ``raw`` (the general path). ``checked``: a timestamp
    extension may be inside, and containers holding one are refused (msgpack decodes
    that extension itself, as a Timestamp, without asking ``ext_hook``)."""
    checks: dict[str, Any] = (
        {"object_hook": _no_timestamp_map, "list_hook": _no_timestamp_list} if checked else {}
    )
    unpacker = msgpack.Unpacker(
        raw=False,
        strict_map_key=True,
        ext_hook=_reject_ext,
        timestamp=0,
        max_buffer_size=max(len(raw), 1),
        **checks,
    )
    out: list[Any] = []
    try:
        unpacker.feed(raw)
        start = 0
        for obj in unpacker:
            if type(obj) is msgpack.Timestamp:
                raise ValueError("msgpack extension type -1 (timestamp) is not allowed")
            end = unpacker.tell()
            if max_frame is not None and end - start > max_frame:
                raise _too_large(end - start, max_frame)
            start = end
            out.append(obj)
    except LadderError:
        raise
    except Exception as exc:  # msgpack raises a zoo of types for bad input
        raise LadderError("bad_frame", f"invalid msgpack: {str(exc) or type(exc).__name__}") from exc
    if start != len(raw):
        # The unpacker stops quietly at an incomplete object; a cut frame is an error.
        raise LadderError("bad_frame", "invalid msgpack: truncated")
    return out


JSON: Final = JsonCodec()
MSGPACK: Final = MsgpackCodec()
CODECS: Final[dict[str, Codec]] = {JSON.name: JSON, MSGPACK.name: MSGPACK}


_UNDECODED: Final = object()


class Payload:
    """A publication's data, encoded for both wire codecs up front.

    Encoding eagerly is also the validation: data that one codec cannot carry is refused
    where it is published instead of failing later in some subscriber's writer. The
    decoded value is optional: history keeps only the bytes (which the garbage collector
    never has to walk) and decodes on demand.
    """

    __slots__ = ("_value", "json", "msgpack")

    def __init__(self, value: Any, *, json: bytes, packed: bytes) -> None:
        self._value = value
        self.json = json
        self.msgpack = packed

    def __repr__(self) -> str:
        # (a publication printed showed "<...Payload object at 0x...>", not its data)
        return f"Payload({self.value!r})"

    @property
    def value(self) -> Any:
        if self._value is _UNDECODED:
            self._value = msgpack.unpackb(self.msgpack, raw=False, strict_map_key=False)
        return self._value

    @classmethod
    def of(cls, value: Any) -> Payload:
        """Encode data a client sent: ``bad_frame`` if it cannot travel (its input was bad)."""
        try:
            return cls.checked(value)
        except TypeError as exc:
            raise LadderError("bad_frame", f"data cannot be encoded: {exc}") from exc

    @classmethod
    def checked(cls, value: Any) -> Payload:
        """Encode data the application produced: ``TypeError`` naming the type if it cannot
        travel (a programming error in the caller, not a malformed frame)."""
        try:
            # orjson over-allocates its result (about 4 KiB even for tiny values); a payload
            # may live long in history, so keep a right-sized copy.
            return cls(value, json=bytes(memoryview(JSON.encode(value))), packed=MSGPACK.encode(value))
        except (TypeError, ValueError, OverflowError) as exc:
            raise unencodable(value) from exc

    @classmethod
    def encoded(cls, json: bytes, packed: bytes) -> Payload:
        """Both encodings already made (kept in history); the value is decoded if asked for."""
        return cls(_UNDECODED, json=json, packed=packed)

    @classmethod
    def from_msgpack(cls, packed: bytes) -> Payload:
        """Rebuild from the msgpack form (what a shared engine stores)."""
        value = msgpack.unpackb(packed, raw=False, strict_map_key=False)
        return cls(value, json=bytes(memoryview(JSON.encode(value))), packed=packed)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Payload) and self.msgpack == other.msgpack

    __hash__ = None  # type: ignore[assignment]

    def __len__(self) -> int:
        return len(self.json)


def _unsendable(frame: dict[str, Any]) -> TypeError:
    """Why a message cannot be sent: a name (``ch``, ``ev``) with a lone surrogate, else
    its data's culprit (as the browser client says it)."""
    for key, value in frame.items():
        if key != "d" and isinstance(value, str) and _lone_surrogate(value):
            return TypeError(f"cannot send a str with a lone surrogate at {key}: names are text ({value!r})")
    return unencodable(frame.get("d"), "d")


def encode_message(codec: Codec, frame: dict[str, Any]) -> bytes:
    """Encode a client message, or raise ``TypeError`` naming what cannot be sent.

    The result is also decoded as the server will (msgpack map keys must be strings, no
    extension types): a frame the server would refuse as undecodable could never be applied,
    and every message after it would wait for it forever.
    """
    try:
        encoded = codec.encode(frame)
        if codec.binary:
            codec.decode(encoded)
    except (TypeError, ValueError, OverflowError, LadderError) as exc:
        raise _unsendable(frame) from exc
    if codec.binary and _MSGPACK_TAG in encoded:
        # msgpack carries a bad {"$b": str} map, JSON readers could not (what else _culprit
        # finds, msgpack has refused above)
        bad_tag = _culprit(frame.get("d"), "d", set(), 0)
        if bad_tag is not None:
            raise bad_tag
    if not codec.binary and b"null" in encoded:  # (only then can a NaN have become null)
        non_finite = _non_finite(frame.get("d"), "d")
        if non_finite is not None:
            raise non_finite
    return encoded


def codec_named(name: str | None) -> Codec:
    """Look up a codec by its wire name; ``None`` means JSON (``enc=`` is refused: a field
    present is checked, an empty one too, as the hello's are)."""
    if name is None:
        return JSON
    try:
        return CODECS[name]
    except KeyError:
        raise LadderError("bad_request", f"unknown encoding {name!r}: json or msgpack") from None


_MSGPACK_TYPES: Final = frozenset({"application/msgpack", "application/x-msgpack"})


def codec_for_content_type(content_type: str | None) -> Codec:
    """Pick the codec of an HTTP body from its Content-Type: msgpack for the media types
    protocol §3.6 names, in any case (media types are case-insensitive) and with any
    parameters; JSON otherwise (``Application/MsgPack`` was read as JSON)."""
    if content_type and content_type.partition(";")[0].strip().lower() in _MSGPACK_TYPES:
        return MSGPACK
    return JSON
