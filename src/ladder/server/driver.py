"""What every transport driver shares: opening a session from a hello, and encoding batches."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from ..protocol.codec import Codec
from ..protocol.errors import LadderError
from ..protocol.frames import Hello, OutFrame
from ..protocol.session import Attachment
from .hub import Ladder
from .session import Session, Waker


def encode_batch(codec: Codec, control: list[dict[str, Any]], frames: list[tuple[int, OutFrame]]) -> bytes:
    """Control frames first, then sequenced frames, as one batch in ``codec``."""
    parts = [codec.encode(body) for body in control]
    parts.extend(frame.encode(codec, seq) for seq, frame in frames)
    return codec.join(parts)


class Link:
    """One transport's attachment to a session, with the waker its writer sleeps on."""

    __slots__ = ("att", "hub", "session", "waker")

    def __init__(
        self, hub: Ladder, session: Session, att: Attachment, wake: Callable[[], None] | None = None
    ) -> None:
        self.hub = hub
        self.session = session
        self.att = att
        self.waker = Waker()
        att.wake = wake or self.waker
        att.wake()  # the welcome (or a replay) may already be waiting

    @classmethod
    async def open(
        cls,
        hub: Ladder,
        hello: Hello,
        request: Any,
        kind: str,
        *,
        streaming: bool,
        greet: bool = True,
        wake: Callable[[], None] | None = None,
    ) -> Link:
        """Create or resume the session ``hello`` names and attach this transport to it."""
        try:
            if kind not in hub.transports:
                raise LadderError("unsupported_transport", f"{kind} is not offered by this server")
            session, resumed = await hub.open_session(hello, request, stream=streaming)
            att = hub.attach(
                session, kind, streaming=streaming, ack=hello.ack, resumed=resumed, greet=greet, why=hello.why
            )
        except LadderError:
            hub.counters.connects[(kind, "refused")] += 1
            raise
        if greet:
            hub.counters.connects[(kind, "accepted")] += 1
        return cls(hub, session, att, wake)

    def take(self) -> tuple[list[dict[str, Any]], list[tuple[int, OutFrame]]]:
        control, frames = self.session.state.take(self.att, self.hub.clock())
        if frames:
            self.hub.counters.frames_out[self.att.kind] += len(frames)
        return control, frames

    def close(self) -> None:
        self.hub.detach(self.session, self.att)

    def gone(self) -> None:
        """The peer disconnected: stop writing."""
        self.att.closed = True
        self.att.wake()


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
