"""Exactly once across nodes: what a session applied, recorded where it outlives the node.

After each client message is applied, and before its answer or acknowledgement can be
written, the hub records in the engine the session's highest applied id and the encoded
answer (:meth:`Engine.record_applied`; where records live in this process, once when the
session ends instead: see ``recording.py``). A client whose session was lost (its node died)
starts a new one and names the lost session in the hello (``psid``, ``prt``, ``pids``):
the new session reads the record (only with the right resume token) and, for each carried
message the lost session had applied, sends the kept answer instead of applying it again.
"""

from __future__ import annotations

from typing import Any, Final

import msgpack

from ..engine.base import AppliedRecord
from ..protocol.codec import MSGPACK, MSGPACK_UINT
from ..protocol.errors import LadderError
from ..protocol.frames import Emit, Numbered, Previous, format_ids, parse_ids
from ..protocol.outframes import OutFrame, error_frame, out_frame

_REPLY_KIND: Final = MSGPACK.encode("t") + MSGPACK.encode("reply")
_REPLY_HEAD: Final = _REPLY_KIND + MSGPACK.encode("re")


def encode_answer(reply: OutFrame) -> bytes:
    """A reply or error frame as kept in the record: its fields without ``s`` and ``re``.

    A ``reply`` (every call's answer) is cut from its msgpack tail (``t``, ``re``, then the
    rest) without decoding and encoding its data again; other frames take the long way.
    """
    if reply.kind == "reply":
        tail = reply.tails[1]
        if tail.startswith(_REPLY_HEAD) and len(tail) > len(_REPLY_HEAD):
            at = len(_REPLY_HEAD)
            first = tail[at]
            size = 1 if first < 0x80 else 1 + MSGPACK_UINT.get(first, -1)
            if size:
                return bytes((0x80 | (reply.fields - 1),)) + _REPLY_KIND + tail[at + size :]
    body = reply.decode(MSGPACK)
    body.pop("s", None)
    body.pop("re", None)
    return bytes(msgpack.packb(body))


def kept_answer(inherited: Inherited | None, frame: Numbered) -> tuple[bool, OutFrame | None]:
    """Whether the lost session a session took over (``inherited``) applied ``frame``
    already, and its kept answer (see :meth:`Inherited.applied`)."""
    if inherited is None:
        return False, None
    return inherited.applied(frame.i, answered=not isinstance(frame, Emit))


class Inherited:
    """What a new session takes over from the lost session its client named in the hello."""

    __slots__ = ("foreign", "ids", "record", "sid")

    def __init__(
        self, sid: str, ids: tuple[int, ...], record: AppliedRecord | None, foreign: str | None = None
    ) -> None:
        self.sid = sid
        self.ids = ids
        """The lost session's ids of the carried messages: new id ``n`` was ``ids[n - 1]``."""
        self.record = record or AppliedRecord()
        self.foreign = foreign
        """Why the carried messages are refused, not applied: the lost session was another
        user's (a browser whose page changed user before it could send them)."""

    @classmethod
    def of(cls, prev: Previous, record: AppliedRecord | None, foreign: str | None = None) -> Inherited:
        return cls(prev.sid, prev.ids, record, foreign)

    def key(self, number: int) -> str | None:
        """The idempotency key of carried message ``number`` (None: not carried)."""
        if number > len(self.ids):
            return None
        old = self.ids[number - 1]
        origins = self.record.origins
        return origins[old - 1] if old <= len(origins) else f"{self.sid}:{old}"

    def keys(self) -> list[str]:
        """The keys of every carried message, for this session's own record."""
        return [key for n in range(1, len(self.ids) + 1) if (key := self.key(n)) is not None]

    def applied(self, number: int, *, answered: bool = False) -> tuple[bool, OutFrame | None]:
        """Whether carried message ``number`` was applied by the lost session, and if so its
        kept answer, addressed to ``number`` (None when there was none, or it was delivered).

        A message that is ``answered`` (anything but an emit), applied before the record
        began again (it was lost), may have an answer that never reached the client: it
        gets an error saying so rather than silence (the client would wait for it forever)
        or a second application."""
        if number > len(self.ids):
            return False, None
        if self.foreign is not None:
            return True, error_frame(LadderError("forbidden", self.foreign), number)
        old = self.ids[number - 1]
        record = self.record
        if old > record.done:
            return False, None
        body = record.replies.get(old)
        if body is None:
            if answered and old < record.since:
                why = "the lost session applied this message; the record of its answer was lost"
                return True, error_frame(LadderError("session_closed", why), number)
            return True, None
        fields: dict[str, Any] = msgpack.unpackb(body, raw=False)
        return True, out_frame({**fields, "re": number})

    def pack(self) -> dict[str, Any]:
        record = self.record
        return {
            "sid": self.sid,
            "ids": format_ids(list(self.ids)) if self.ids else "",
            "done": record.done,
            "replies": [[number, body] for number, body in record.replies.items()],
            "origins": record.origins,
            "since": record.since,
            "foreign": self.foreign,
        }

    @classmethod
    def unpack(cls, packed: dict[str, Any]) -> Inherited:
        record = AppliedRecord(
            int(packed["done"]),
            {int(number): bytes(body) for number, body in packed["replies"]},
            [str(key) for key in packed["origins"]],
            int(packed.get("since", 1)),
        )
        ids = parse_ids(packed["ids"]) if packed["ids"] else ()
        foreign = packed.get("foreign")
        return cls(str(packed["sid"]), ids, record, None if foreign is None else str(foreign))


class Answers:
    """The answers a session recorded that the client has not acknowledged yet (bounded)."""

    __slots__ = ("_kept", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._kept: list[int] = []
        """Message id, then the sequence number of its answer, oldest first. Emptied, not
        dropped (see :class:`~ladder.protocol.reliable.Outbox`: a container per
        acknowledgement would pile up in the collector's oldest generation)."""

    def kept(self, number: int, seq: int) -> None:
        self._kept += (number, seq)

    def delivered(self, acked: int) -> list[int]:
        """Ids whose answers the client acknowledged (up to ``acked``), or that fall past
        the bound: the record may forget them."""
        kept = self._kept
        if not kept:
            return []
        if len(kept) == 2 and kept[1] <= acked:  # one answer, acknowledged: the common case
            number = kept[0]
            kept.clear()
            return [number]
        end, limit = 0, 2 * self.limit
        while end < len(kept) and (kept[end + 1] <= acked or len(kept) - end >= limit):
            end += 2
        forget = kept[:end:2]
        del kept[:end]
        return forget

    def pack(self) -> list[list[int]]:
        kept = self._kept
        return [[number, seq] for number, seq in zip(kept[::2], kept[1::2], strict=True)]

    def unpack(self, packed: list[list[int]]) -> None:
        for number, seq in packed:
            self.kept(int(number), int(seq))
