"""Client frames answered as they are read, whatever the session is doing: acks, pings, pongs
and frames refused without an id, each in its place in its batch (an error answered before
the batch's other frames used up the message rate of those before it, and came before their
pongs)."""

from __future__ import annotations

from typing import Any, Final

from ..protocol.attachment import Attachment
from ..protocol.frames import Ack, Bye, ClientFrame, Ping, Pong, Refused
from .refusals import Refusals
from .session import Session

ANSWERED: Final = frozenset({Ack, Ping, Pong, Refused})
"""What :func:`answer` takes."""

AT_ONCE: Final = ANSWERED | {Bye}
"""Client frames applied without waiting for anything (see :meth:`Inbound.receive_now`), also
while one of the session's messages is in a handler: a ``bye`` ends the session now (protocol
§4), not once the handler returns, and is not lost with a connection closed right after it."""


def answer(
    session: Session, att: Attachment | None, frame: ClientFrame, transport: str, refused: Refusals
) -> None:
    """Apply an ack, answer a ping (on the socket that asked; a POSTed one everywhere: the
    client may be proving a new stream), drop a pong, answer a refused frame with ``err``."""
    state = session.state
    if isinstance(frame, Ack):
        state.on_ack(frame.s)
    elif isinstance(frame, Ping):
        pong: dict[str, Any] = {"t": "pong"} if frame.n is None else {"t": "pong", "n": frame.n}
        if att is not None:
            state.send_control(pong, att)
        else:
            state.send_everywhere(pong)
    elif isinstance(frame, Refused):
        refused(transport, frame.error, session=session)
        state.send_control({"t": "err", **frame.error.body()}, att)
