"""The first argument of every handler: :class:`Context`, made once per event received.

It lives here, compiled with the inbound path, because one is built for every call and
emit: a compiled class is made in a direct C call (about a tenth of an interpreted
``__init__``), and its ``message_key`` is only formatted if the handler reads it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .auth import Identity
from .session import Session

if TYPE_CHECKING:
    from .hub import Ladder


class Context:
    """What a handler knows about the client that sent the event (its first argument).

    Attributes:
        hub: The hub that received the event.
        session_id: The sender's session (for ``hub.send(ctx.session_id, ...)``).
        client_id: The sender's connection id, as shown in presence (``c``).
        identity: What ``authenticate`` returned for the session.
        event: The event's name.
    """

    hub: Ladder
    session_id: str
    client_id: str
    identity: Identity
    event: str

    def __init__(  # noqa: PLR0917 - every field by position, as the dataclass it was
        self,
        hub: Ladder,
        session_id: str,
        client_id: str,
        identity: Identity,
        event: str,
        message_key: str | None = None,
    ) -> None:
        self.hub = hub
        self.session_id = session_id
        self.client_id = client_id
        self.identity = identity
        self.event = event
        self._key = message_key
        self._session: Session | None = None
        self._number = 0

    @staticmethod
    def of(hub: Any, session: Session, event: str, number: int) -> Context:
        """The context of client message ``number`` of ``session`` (its key made when read)."""
        ctx = Context(hub, session.state.sid, session.client_id, session.identity, event)
        ctx._session = session
        ctx._number = number
        return ctx

    @property
    def message_key(self) -> str | None:
        """A key for the client message being handled that survives the client carrying it
        over to a new session (``<sid>:<id>`` of the session that first received it): use it
        to make side effects exactly once even if this node dies right after applying it."""
        session = self._session
        if session is not None:
            self._key = session.message_key(self._number)
            self._session = None  # (a context a handler keeps does not keep the session)
        return self._key

    @property
    def user(self) -> str | None:
        """The authenticated user id (``identity.user``); None for an anonymous client."""
        return self.identity.user

    def __repr__(self) -> str:
        return (
            f"Context(session_id={self.session_id!r}, client_id={self.client_id!r}, "
            f"identity={self.identity!r}, event={self.event!r}, message_key={self.message_key!r})"
        )
