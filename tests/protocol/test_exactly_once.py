"""Property: whatever happens to transports, both directions deliver exactly once, in order.

A hypothesis state machine drives the server's :class:`SessionState` and the client's
:class:`PeerState` through a simulated network: several transports open and die at any
moment, frames in flight on a dead transport are lost, frames are delivered twice (as
overlapping transports do), acknowledgements arrive late and out of order, stale
transports deliver what they had queued, and the client resends after every reconnect.
The server applies what its inbox accepted later, one message at a time (a handler that
awaits), and the session may move to another process at any moment (snapshot, restore,
every transport gone, what was accepted but not applied forgotten). At every step the
client must never hold an acknowledgement for a message the server has not applied; after
the network heals, the client must have seen every server frame once, in order, and the
server must have applied every client message once, in order.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ladder.protocol.attachment import Attachment
from ladder.protocol.codec import JSON
from ladder.protocol.frames import Emit, parse_client_frame
from ladder.protocol.outframes import OutFrame, push_frame
from ladder.protocol.peer import PeerState
from ladder.protocol.session import SessionLimits, SessionState

LIMITS = SessionLimits(ttl=1e9, max_queue=100_000, max_queue_bytes=2**40, inbox_window=100_000)


class Link:
    """One simulated transport: an attachment on the server and two in-order pipes."""

    def __init__(self, att: Attachment) -> None:
        self.att = att
        self.down: deque[dict[str, Any]] = deque()
        self.up: deque[dict[str, Any]] = deque()
        self.alive = True
        self.welcomed = False


class Network(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.server = SessionState("sid", "rt", self.now, LIMITS)
        self.peer = PeerState(max_queue=100_000)
        self.peer.sid, self.peer.token = "sid", "rt"
        self.links: list[Link] = []
        self.current: Link | None = None  # the link the client writes to
        self.pushed = 0
        self.submitted = 0
        self.delivered: list[int] = []
        self.applied: list[int] = []
        self.seen_down: list[dict[str, Any]] = []
        self.stale_acks: list[dict[str, Any]] = []
        self.ready: deque[Emit] = deque()  # accepted by the inbox, not applied yet

    # -- helpers ------------------------------------------------------------------------

    def tick(self) -> float:
        self.now += 0.001
        return self.now

    def open_link(self) -> Link:
        hello = self.peer.hello()
        greeting = {
            "t": "welcome",
            "sid": "sid",
            "rt": "rt",
            "resumed": True,
            "ack": self.server.inbox.done,
        }
        att = self.server.attach(
            "websocket", streaming=True, ack=hello["ack"], now=self.tick(), greeting=greeting
        )
        link = Link(att)
        self.links.append(link)
        return link

    def client_take(self, link: Link, frame: dict[str, Any]) -> None:
        kind = frame.get("t")
        if kind == "welcome":
            # The welcome's ack reflects the moment it was written; acks only grow, so it is safe.
            self.peer.welcome(frame)
            link.welcomed = True
            self.current = link
        elif kind == "ack":
            self.peer.on_ack(frame["i"])
        elif "s" in frame:
            self.seen_down.append(frame)
            self.delivered.extend(f["d"] for f in self.peer.receive(frame))

    def server_take(self, frame: dict[str, Any]) -> None:
        if frame["t"] == "ack":
            self.server.on_ack(frame["s"])
            return
        parsed = parse_client_frame(frame)
        assert isinstance(parsed, Emit)
        self.ready.extend(f for f in self.server.receive(parsed) if isinstance(f, Emit))

    def apply_one(self) -> None:
        frame = self.ready.popleft()
        self.applied.append(frame.d)
        self.server.finish(frame.i)

    def live(self) -> list[Link]:
        return [link for link in self.links if link.alive]

    # -- rules --------------------------------------------------------------------------

    @rule(count=st.integers(1, 5))
    def server_pushes(self, count: int) -> None:
        for _ in range(count):
            self.pushed += 1
            self.server.push(push_frame("n", self.pushed))

    @rule(count=st.integers(1, 5))
    def client_submits(self, count: int) -> None:
        for _ in range(count):
            self.submitted += 1
            self.peer.submit({"t": "emit", "ev": "n", "d": self.submitted})

    @rule()
    def client_connects(self) -> None:
        self.open_link()

    @precondition(lambda self: bool(self.live()))
    @rule(data=st.data())
    def server_writes(self, data: st.DataObject) -> None:
        link = data.draw(st.sampled_from(self.live()))
        control, frames = self.server.take(link.att, self.tick())
        link.down.extend(control)
        link.down.extend(frame.decode(JSON, seq) for seq, frame in frames)

    @precondition(lambda self: any(link.down for link in self.links))
    @rule(data=st.data(), count=st.integers(1, 10))
    def client_reads(self, data: st.DataObject, count: int) -> None:
        link = data.draw(st.sampled_from([link for link in self.links if link.down]))
        for _ in range(min(count, len(link.down))):
            self.client_take(link, link.down.popleft())

    @precondition(lambda self: self.current is not None and self.current.alive)
    @rule(with_ack=st.booleans())
    def client_writes(self, with_ack: bool) -> None:
        assert self.current is not None
        self.current.up.extend(self.peer.unsent())
        if with_ack:
            ack = self.peer.ack_frame()
            if ack is not None:
                self.current.up.append(ack)
                self.stale_acks.append(dict(ack))

    @precondition(lambda self: any(link.up for link in self.links))
    @rule(data=st.data(), count=st.integers(1, 10))
    def server_reads(self, data: st.DataObject, count: int) -> None:
        # Links already closed by the client may still deliver what they carried (late POSTs).
        link = data.draw(st.sampled_from([link for link in self.links if link.up]))
        for _ in range(min(count, len(link.up))):
            self.server_take(link.up.popleft())

    @precondition(lambda self: bool(self.live()))
    @rule(data=st.data(), lose_upstream=st.booleans())
    def connection_dies(self, data: st.DataObject, lose_upstream: bool) -> None:
        link = data.draw(st.sampled_from(self.live()))
        link.alive = False
        link.down.clear()  # whatever was in flight to the client is gone
        if lose_upstream:
            link.up.clear()
        self.server.detach(link.att, self.tick())
        if self.current is link:
            self.current = None

    @precondition(lambda self: bool(self.ready))
    @rule(count=st.integers(1, 5))
    def server_applies(self, count: int) -> None:
        for _ in range(min(count, len(self.ready))):
            self.apply_one()

    @rule()
    def session_moves(self) -> None:
        """Another process takes the session over from a snapshot; transports here close."""
        for link in self.live():
            link.alive = False
            link.down.clear()
            if self.current is link:
                self.current = None
        snapshot = self.server.snapshot()
        self.server = SessionState.restore(snapshot, self.tick(), LIMITS)
        self.ready.clear()  # accepted here but never applied: never acknowledged either

    @precondition(lambda self: bool(self.seen_down))
    @rule(data=st.data())
    def duplicate_delivery(self, data: st.DataObject) -> None:
        frame = data.draw(st.sampled_from(self.seen_down))
        self.delivered.extend(f["d"] for f in self.peer.receive(dict(frame)))

    @precondition(lambda self: bool(self.stale_acks))
    @rule(data=st.data())
    def late_ack(self, data: st.DataObject) -> None:
        self.server_take(data.draw(st.sampled_from(self.stale_acks)))

    # -- what must always hold ----------------------------------------------------------

    @invariant()
    def prefixes(self) -> None:
        assert self.delivered == list(range(1, len(self.delivered) + 1))
        assert self.applied == list(range(1, len(self.applied) + 1))

    @invariant()
    def acknowledged_means_applied(self) -> None:
        assert self.peer.outbox.acked <= len(self.applied), "the client was told of a message not applied"
        assert self.server.inbox.done == len(self.applied)

    def teardown(self) -> None:
        # Heal the network: one fresh transport, pumped until nothing moves.
        for link in self.live():
            link.alive = False
            self.server.detach(link.att, self.tick())
        link = self.open_link()
        for _ in range(10_000):
            control, frames = self.server.take(link.att, self.tick())
            batch = [*control, *(frame.decode(JSON, seq) for seq, frame in frames)]
            for frame in batch:
                self.client_take(link, frame)
            up = self.peer.unsent()
            ack = self.peer.ack_frame()
            for frame in [*up, *([ack] if ack else [])]:
                self.server_take(frame)
            applying = bool(self.ready)
            while self.ready:
                self.apply_one()
            if not batch and not up and ack is None and not applying:
                break
        assert self.delivered == list(range(1, self.pushed + 1)), "server to client: once, in order"
        assert self.applied == list(range(1, self.submitted + 1)), "client to server: once, in order"
        assert len(self.server.outbox) == 0, "everything acknowledged is forgotten"
        assert len(self.peer.outbox) == 0
        assert self.server.inbox.waiting == 0 and self.peer.inbox.waiting == 0, "no early frame left behind"


TestExactlyOnce = Network.TestCase
TestExactlyOnce.settings = settings(max_examples=300, stateful_step_count=60, deadline=None)


def test_outframe_roundtrip_is_what_the_simulation_relies_on() -> None:
    frame: OutFrame = push_frame("n", 7)
    assert frame.decode(JSON, 3) == {"s": 3, "t": "push", "ev": "n", "d": 7}
