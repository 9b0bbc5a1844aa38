"""What every transport driver holds: a link to a session, batches to encode, a disconnect watch."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

from ..protocol.attachment import Attachment
from ..protocol.codec import Codec
from ..protocol.errors import LadderError
from ..protocol.outframes import OutFrame
from .session import Session, Waker
from .tally import Tally


def encode_batch(
    codec: Codec, control: Sequence[dict[str, Any]], frames: Sequence[tuple[int, OutFrame]]
) -> bytes:
    """Control frames first, then sequenced frames, as one batch in ``codec``."""
    if not control and len(frames) == 1:  # one publication or reply: its shared bytes, stamped
        seq, frame = frames[0]
        return frame.encode(codec, seq)
    parts = [codec.control(body) for body in control]
    for seq, frame in frames:  # (a loop, not a generator: a reply and its ack are written so)
        parts.append(frame.encode(codec, seq))
    return codec.join(parts)


_SELF_WOKEN: Final = Waker()
"""The waker of every link whose driver passed its own ``wake``: cleared, never woken or waited on."""


class Link:
    """One transport's attachment to a session, with the waker its writer sleeps on.

    What a driver holds while it serves a session: it takes what to write, and ends.
    """

    __slots__ = ("att", "batch", "clock", "frames_out", "session", "state", "waker")

    def __init__(
        self,
        session: Session,
        att: Attachment,
        clock: Callable[[], float],
        frames_out: Tally,
        wake: Callable[[], None] | None = None,
    ) -> None:
        self.state = session.state
        """The session's core state (each write takes from it without reaching the record)."""
        self.att = att
        self.clock = clock
        self.frames_out = frames_out
        self.batch = session.state.limits.batch_frames
        # A driver woken by its own callback never waits on the waker: it gets one shared,
        # idle one (one object less per connection for each write to reach).
        self.waker = Waker() if wake is None else _SELF_WOKEN
        self.session = session
        att.wake_with(wake or self.waker)

    def take(self) -> tuple[Sequence[dict[str, Any]], Sequence[tuple[int, OutFrame]]]:
        """What to write now: control frames, then sequenced frames with their numbers.

        Unless :meth:`more` says otherwise, this is everything there is: earlier wake-ups
        are answered (the writer checks ``att.closed`` and sleeps, rather than taking again
        to find nothing).
        """
        control, frames = self.state.take(self.att, self.clock())
        if frames:
            self.frames_out.n += len(frames)
        if len(frames) < self.batch:
            self.waker.clear()
        return control, frames

    def more(self, frames: Sequence[tuple[int, OutFrame]]) -> bool:
        """Whether a batch :meth:`take` returned was cut at ``batch_frames`` (take again)."""
        return len(frames) >= self.batch

    def close(self) -> None:
        """The transport is done with the session (it stays, waiting for the next one)."""
        self.state.detach(self.att, self.clock())

    def gone(self, error: LadderError | None = None) -> None:
        """The peer disconnected (or ``error`` must close the transport): stop writing."""
        self.att.end(error)


async def watch_disconnect(receive: Callable[[], Awaitable[Any]], link: Link) -> None:
    """Wait for ``http.disconnect`` (the only way ASGI reports a vanished HTTP client)."""
    with contextlib.suppress(Exception):
        while (await receive())["type"] != "http.disconnect":
            pass
    link.gone()


def start_watch(receive: Callable[[], Awaitable[Any]], link: Link) -> asyncio.Task[None]:
    return asyncio.get_running_loop().create_task(watch_disconnect(receive, link), name="ladder-watch")


async def stop_watch(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
