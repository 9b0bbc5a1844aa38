"""Frame types and their validation.

Client frames are decoded by a :class:`~ladder.protocol.codec.Codec` into plain objects and
then checked here, field by field, into small typed records. Every failure is a
:class:`LadderError` with code ``bad_frame`` or ``unknown_frame`` and a reason that names
the field, so a client author sees exactly what was wrong.

A client frame that carries a valid message id ``i`` but is otherwise malformed becomes an
:class:`Invalid` record with that id: it still passes through the session's inbox, so the
id is consumed in order and the client gets an error *reply* instead of a stalled stream.

Server frames are built in :mod:`.outframes`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from .codec import MAX_ID, Codec
from .errors import LadderError

PROTOCOL_VERSION: Final = 1


MAX_NAME: Final = 255
"""Longest channel or event name accepted (characters)."""
MAX_RECENT: Final = 10_000
"""The most publications a subscribe may ask to start with (``recent``)."""


# ---------------------------------------------------------------------------------------
# Client -> server records
# ---------------------------------------------------------------------------------------
# The records a client sends with every message (Publish, Emit, Call, Ack, Ping, Pong) write
# their own ``__init__`` and are not frozen: compiled, that is one C call, where the
# ``__init__`` a dataclass generates stays interpreted (a frozen one sets each field through
# ``object.__setattr__``): 0.05 against 1.4 µs per record, measured with mypyc.


@dataclass(frozen=True, slots=True)
class Hello:
    """Opens or resumes a session on a transport. Always the first frame."""

    v: int
    sid: str | None = None
    rt: str | None = None
    ack: int = 0
    token: str | None = None
    why: str | None = None
    """Why the client opened this transport (``refused``, ``buffered``, ``probe``...), for metrics."""
    prev: Previous | None = None
    """On a new session: the lost session whose unacknowledged messages the client carries over."""


@dataclass(frozen=True, slots=True)
class Previous:
    """A lost session named in the hello of its successor (``psid``, ``prt``, ``pids``).

    ``ids`` are the lost session's message ids of the messages the client carries over, in
    the order it renumbers them 1, 2, 3, ... in the new session.
    """

    sid: str
    rt: str
    ids: tuple[int, ...]
    user: str | None = None
    """``pu``: the lost session's user as the client knew it (``""``: anonymous; None: not
    said). Only the client can say it once the server has forgotten that session."""


@dataclass(frozen=True, slots=True)
class Subscribe:
    i: int
    ch: str
    epoch: str | None = None
    offset: int | None = None
    recent: int = 0


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    i: int
    ch: str


@dataclass(slots=True)
class Publish:
    i: int
    ch: str
    d: Any

    def __init__(self, i: int, ch: str, d: Any) -> None:
        self.i = i
        self.ch = ch
        self.d = d


@dataclass(slots=True)
class Emit:
    i: int
    ev: str
    d: Any

    def __init__(self, i: int, ev: str, d: Any) -> None:
        self.i = i
        self.ev = ev
        self.d = d


@dataclass(slots=True)
class Call:
    i: int
    ev: str
    d: Any

    def __init__(self, i: int, ev: str, d: Any) -> None:
        self.i = i
        self.ev = ev
        self.d = d


@dataclass(frozen=True, slots=True)
class PresenceQuery:
    i: int
    ch: str


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    i: int
    ch: str
    limit: int
    epoch: str | None = None
    offset: int | None = None


@dataclass(frozen=True, slots=True)
class Refresh:
    i: int
    token: str


@dataclass(frozen=True, slots=True)
class Invalid:
    """A numbered frame whose body failed validation; answered with an error reply."""

    i: int
    error: LadderError


@dataclass(slots=True)
class Ack:
    s: int

    def __init__(self, s: int) -> None:
        self.s = s


@dataclass(slots=True)
class Ping:
    n: int | None = None

    def __init__(self, n: int | None = None) -> None:
        self.n = n


@dataclass(slots=True)
class Pong:
    n: int | None = None

    def __init__(self, n: int | None = None) -> None:
        self.n = n


@dataclass(frozen=True, slots=True)
class Bye:
    pass


@dataclass(frozen=True, slots=True)
class Refused:
    """A frame that could not be read (an unknown type, a control frame's bad field, a
    message that would not decode): no id to answer, so an unsequenced ``err`` answers it,
    in its place in the batch (its rate, its order among the other answers)."""

    error: LadderError


Numbered: TypeAlias = (
    Subscribe | Unsubscribe | Publish | Emit | Call | PresenceQuery | HistoryQuery | Refresh | Invalid
)
Control: TypeAlias = Hello | Ack | Ping | Pong | Bye | Refused
ClientFrame: TypeAlias = Numbered | Control


# ---------------------------------------------------------------------------------------
# Field checks
# ---------------------------------------------------------------------------------------


MAX_TOKEN: Final = 8192
"""Characters a token may have: a hello's or a refresh's ``tok`` (and, on the HTTP rungs, the
``Authorization: Bearer`` header that may carry it instead)."""


def check_channel(channel: object) -> str:
    """``channel`` if a client could name it (the rule of a frame's ``ch``), else
    ``ValueError``: server code publishing where no client can subscribe reaches nobody."""
    try:
        return _str({"ch": channel}, "ch")
    except LadderError as exc:
        why = exc.reason
        raise ValueError(f"channel {channel!r} is not a channel name a client can use: {why}") from None


MAX_HISTORY_LIMIT: Final = 10_000
"""The most publications one history query returns."""


def check_event(event: object) -> str:
    """``event`` if a client could send or receive it (the rule of a frame's ``ev``), else
    ``ValueError``: a handler under such a name could never be called, a push never told
    apart."""
    try:
        return _str({"ev": event}, "ev")
    except LadderError as exc:
        raise ValueError(f"event {event!r} is not an event name a client can use: {exc.reason}") from None


def check_user(user: object) -> str:
    """``user`` if it can name a user's sessions (the ``str`` an authenticate hook returns),
    else ``TypeError``: another value would match no session, silently."""
    if not isinstance(user, str):
        raise TypeError(f"user must be the str the authenticate hook returned, not {type(user).__name__}")
    return user


def check_session_id(session_id: object) -> str:
    """``session_id`` if it can name a session (a ``str``, as ``ctx.session_id``), else
    ``TypeError``: another value names none (and failed as an ``AttributeError`` on some
    engines)."""
    if not isinstance(session_id, str):
        kind = type(session_id).__name__
        raise TypeError(f"session_id must be a session's id, the str ctx.session_id is, not {kind}")
    return session_id


def _bad(field: str, what: str) -> LadderError:
    return LadderError("bad_frame", f"field {field!r} {what}")


def _int(obj: dict[str, Any], key: str, *, lo: int = 0, hi: int = MAX_ID) -> int:
    value = obj.get(key)
    if type(value) is not int or not lo <= value <= hi:  # (a float: JSON's reading of a huge integer)
        raise _bad(key, f"must be an integer between {lo} and {hi}")
    return value


def _opt_int(obj: dict[str, Any], key: str, *, lo: int = 0, hi: int = MAX_ID) -> int | None:
    return None if obj.get(key) is None else _int(obj, key, lo=lo, hi=hi)


def _str(obj: dict[str, Any], key: str, *, max_len: int = MAX_NAME) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise _bad(key, "must be a string")
    if not 0 < len(value) <= max_len:
        raise _bad(key, f"must be 1 to {max_len} characters")
    if not value.isprintable():
        raise _bad(
            key, "must hold only printable characters (no control, format, unassigned one, no space but ' ')"
        )
    return value


def _opt_str(obj: dict[str, Any], key: str, *, max_len: int = MAX_NAME) -> str | None:
    return None if obj.get(key) is None else _str(obj, key, max_len=max_len)


def _position(obj: dict[str, Any]) -> tuple[str | None, int | None]:
    epoch = _opt_str(obj, "ep", max_len=64)
    offset = _opt_int(obj, "off")
    if (epoch is None) != (offset is None):
        raise LadderError("bad_frame", "fields 'ep' and 'off' come together or not at all")
    return epoch, offset


MAX_CARRIED: Final = 65_536
"""Most messages a hello may say it carries over from a lost session."""


def parse_ids(text: str) -> tuple[int, ...]:
    """Message ids written as ascending ranges: ``"3-5,8"`` is (3, 4, 5, 8)."""
    if len(text) > 4096:
        raise _bad("pids", "must be at most 4096 characters")
    ids: list[int] = []
    for part in text.split(","):
        first, dash, last = part.partition("-")
        if not (first.isascii() and first.isdigit() and (not dash or (last.isascii() and last.isdigit()))):
            raise _bad("pids", "must be ranges of message ids such as '3-5,8'")
        lo, hi = int(first), int(last or first)
        if lo < 1 or hi < lo or hi > MAX_ID or (ids and lo <= ids[-1]):
            raise _bad("pids", "must be ascending ranges of message ids from 1")
        if len(ids) + hi - lo + 1 > MAX_CARRIED:
            raise _bad("pids", f"must name at most {MAX_CARRIED} messages")
        ids.extend(range(lo, hi + 1))
    return tuple(ids)


def format_ids(ids: list[int]) -> str:
    """The inverse of :func:`parse_ids` (``ids`` ascending)."""
    parts: list[str] = []
    start = prev = ids[0]
    for number in [*ids[1:], None]:
        if number is not None and number == prev + 1:
            prev = number
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if number is not None:
            start = prev = number
    return ",".join(parts)


def _previous(o: dict[str, Any]) -> Previous | None:
    sid = _opt_str(o, "psid", max_len=64)
    rt = _opt_str(o, "prt", max_len=128)
    ids = _opt_str(o, "pids", max_len=4096)
    if sid is None and rt is None and ids is None:
        if o.get("pu") is not None:
            raise LadderError("bad_frame", "field 'pu' comes only with 'psid', 'prt' and 'pids'")
        return None
    if sid is None or rt is None or ids is None:
        raise LadderError("bad_frame", "fields 'psid', 'prt' and 'pids' come together or not at all")
    if o.get("sid") is not None:
        raise LadderError("bad_frame", "fields 'psid', 'prt' and 'pids' belong to a hello without 'sid'")
    return Previous(sid, rt, parse_ids(ids), _lost_user(o))


def _lost_user(o: dict[str, Any]) -> str | None:
    """``pu``: any string up to :data:`MAX_TOKEN` characters, the empty one included (anonymous):
    it is compared, never shown or logged."""
    user = o.get("pu")
    if user is not None and not (isinstance(user, str) and len(user) <= MAX_TOKEN):
        raise _bad("pu", f"must be a string of at most {MAX_TOKEN} characters ('' for an anonymous session)")
    return user


def _why(o: dict[str, Any]) -> str | None:
    """``why``: one word (letters, decimal digits, ``_``, ``-``), which the server only counts."""
    why = _opt_str(o, "why", max_len=16)
    if why is not None and not all(c.isalpha() or c.isdecimal() or c in "_-" for c in why):
        raise _bad("why", "must be one word (letters, digits, '_' or '-'), such as 'refused'")
    return why


def _hello(o: dict[str, Any]) -> Hello:
    v = _int(o, "v", lo=0)  # (any other version, however high: unsupported_version)
    if v != PROTOCOL_VERSION:
        raise LadderError("unsupported_version", f"protocol version {v} is not supported")
    sid = _opt_str(o, "sid", max_len=64)
    rt = _opt_str(o, "rt", max_len=128)
    if (sid is None) != (rt is None):
        raise LadderError("bad_frame", "fields 'sid' and 'rt' come together or not at all")
    return Hello(
        v=v,
        sid=sid,
        rt=rt,
        ack=_opt_int(o, "ack") or 0,
        token=_opt_str(o, "tok", max_len=MAX_TOKEN),
        why=_why(o),
        prev=_previous(o),
    )


def _sub(o: dict[str, Any]) -> Subscribe:
    epoch, offset = _position(o)
    return Subscribe(
        i=o["i"],
        ch=_str(o, "ch"),
        epoch=epoch,
        offset=offset,
        recent=_opt_int(o, "recent", hi=MAX_RECENT) or 0,
    )


def _history(o: dict[str, Any]) -> HistoryQuery:
    epoch, offset = _position(o)
    return HistoryQuery(
        i=o["i"],
        ch=_str(o, "ch"),
        limit=_opt_int(o, "limit", hi=MAX_HISTORY_LIMIT) or 100,
        epoch=epoch,
        offset=offset,
    )


def _call(o: dict[str, Any]) -> Call:
    return Call(i=o["i"], ev=_str(o, "ev"), d=o.get("d"))


def _emit(o: dict[str, Any]) -> Emit:
    return Emit(i=o["i"], ev=_str(o, "ev"), d=o.get("d"))


def _ack(o: dict[str, Any]) -> Ack:
    return Ack(s=_int(o, "s"))


_NUMBERED: Final[dict[str, Callable[[dict[str, Any]], Numbered]]] = {
    "sub": _sub,
    "unsub": lambda o: Unsubscribe(i=o["i"], ch=_str(o, "ch")),
    "pub": lambda o: Publish(i=o["i"], ch=_str(o, "ch"), d=o.get("d")),
    "emit": _emit,
    "call": _call,
    "presence": lambda o: PresenceQuery(i=o["i"], ch=_str(o, "ch")),
    "history": _history,
    "refresh": lambda o: Refresh(i=o["i"], token=_str(o, "tok", max_len=MAX_TOKEN)),
}

_CONTROL: Final[dict[str, Callable[[dict[str, Any]], Control]]] = {
    "hello": _hello,
    "ack": _ack,
    "ping": lambda o: Ping(n=_opt_int(o, "n")),
    "pong": lambda o: Pong(n=_opt_int(o, "n")),
    "bye": lambda o: Bye(),
}

CLIENT_FRAME_TYPES: Final = frozenset(_NUMBERED) | frozenset(_CONTROL)


def parse_client_frame(obj: Any) -> ClientFrame:
    """Validate one decoded client frame.

    Raises :class:`LadderError` when the frame cannot be attributed to a message id;
    returns :class:`Invalid` when it can (so the error becomes a reply to that id).
    """
    if not isinstance(obj, dict):
        raise LadderError("bad_frame", "a frame must be a map/object")
    kind = obj.get("t")
    if not isinstance(kind, str):
        raise LadderError("bad_frame", "field 't' (frame type) must be a string")
    # The frames of nearly every message (a call, an emit, an ack) by direct calls; the
    # tables' entries are called as objects, at several times the cost in the compiled build.
    if kind == "ack":
        return _ack(obj)
    control = _CONTROL.get(kind)
    if control is not None:
        return control(obj)
    numbered = _NUMBERED.get(kind)
    if numbered is None:
        raise LadderError("unknown_frame", f"unknown frame type {kind[:40]!r}")
    msg_id = _int(obj, "i", lo=1)
    try:
        if kind == "call":
            return _call(obj)
        if kind == "emit":
            return _emit(obj)
        return numbered(obj)
    except LadderError as exc:
        # A fresh error without the traceback: the caught one references the frames that
        # hold it, a reference cycle per refused frame (a flood of them feeds long GC pauses).
        return Invalid(i=msg_id, error=LadderError(exc.code, exc.reason, details=exc.details))


MAX_REFUSED_PER_BATCH: Final = 64
"""Refused frames a batch may hold before the rest of it is not read (a 1 MiB POST of 80,000
unknown frames cost 80 MiB of errors before any rate limit could apply)."""


_REST_NOT_READ: Final = f"{MAX_REFUSED_PER_BATCH} frames of this batch refused: the rest was not read"


def decode_client_frames(codec: Codec, data: bytes | str, max_frame: int | None = None) -> list[ClientFrame]:
    """Decode and validate a batch, in order: a frame refused without an id is a
    :class:`Refused` in its place (answered there: an error read first used up the rate of
    the messages before it, and was answered before their pongs).

    Input that cannot be decoded at all (not JSON, not msgpack, too large) raises.
    """
    seq = codec.lone_ack(data)
    if seq is not None:
        return [Ack(seq)]
    frames: list[ClientFrame] = []
    refused = 0
    objs = codec.decode(data, max_frame)
    for index, obj in enumerate(objs):
        try:
            frame = parse_client_frame(obj)
            frames.append(frame)
            if type(frame) is not Invalid:
                continue
        except LadderError as exc:
            frames.append(Refused(exc.with_traceback(None)))  # (kept: no cycle through this frame)
        refused += 1  # (a field out of range is refused as its message's answer: counted too)
        if refused == MAX_REFUSED_PER_BATCH:  # junk, not a client's mistake: stop reading it
            if index + 1 < len(objs):  # (said only when something is left unread)
                frames.append(Refused(LadderError("bad_frame", _REST_NOT_READ)))
            break
    return frames
