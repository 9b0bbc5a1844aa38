"""A session's consecutive publications, applied together, on an engine whose publications
and records each wait for a server (Redis: the engine offers ``publish_many``).

One at a time, each publication would wait for its own round trip and its record's before
the next went out: each would reach every node alone, and every subscriber would get it in
a write of its own. Taken together, they go to the engine as one pipeline, are recorded in
one write and answered in order; every node gets them together and writes them to each
subscriber at once. Each still gets the answer it would have had alone (one refused does
not stop the others). The one window in which a node's death can apply a message twice
(between its effect and its record: docs/design.md) spans the publications taken together.
"""

from __future__ import annotations

from ..protocol.frames import Publish
from .session import Session


def more(session: Session) -> bool:
    """Whether the next message waiting is a publication too (in a session that carried no
    messages over: a carried one may have been applied already, see ``kept_answer``)."""
    ready = session.ready
    return ready is not None and bool(ready) and type(ready[0]) is Publish and session.inherited is None


def take(session: Session, first: Publish) -> list[Publish]:
    """``first`` and the publications waiting right behind it (at most the inbox window)."""
    frames, ready = [first], session.ready
    while ready and type(head := ready[0]) is Publish:
        frames.append(head)
        ready.popleft()
    return frames
