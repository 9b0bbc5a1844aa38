"""The one-at-a-time paths stay lean: a publication to many native WebSocket connections is
one scheduled callback and one ``take`` per connection; a writer that took everything
sleeps; a call's recorded answer is cut from its encoding, byte for byte the long way's."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Iterator
from time import monotonic
from types import SimpleNamespace
from typing import Any

import msgpack
import orjson
import pytest

from ladder import ChannelOptions, Ladder, Limits
from ladder.protocol.codec import JSON, MSGPACK
from ladder.protocol.errors import LadderError
from ladder.protocol.outframes import error_frame, reply_frame
from ladder.protocol.reliable import Outbox
from ladder.protocol.session import SessionState
from ladder.server import channels, cutoff, reading
from ladder.server.applied import encode_answer
from ladder.server.dispatch import Dispatch
from ladder.server.flusher import Flusher, flusher_of
from ladder.server.hub import internals
from ladder.server.link import Link
from ladder.server.native import NativeWebSocket
from ladder.server.session import Session
from ladder.server.tally import Tally
from tests.server.harness import Peer, make_hub

pytestmark = pytest.mark.pure  # counts and patches the drivers' own calls

CONNECTIONS = 50


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.limits: tuple[int | None, int | None] | None = None
        self.reading: list[str] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.limits = (high, low)

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, _name: str) -> Any:
        return None

    def pause_reading(self) -> None:
        self.reading.append("pause")

    def resume_reading(self) -> None:
        self.reading.append("resume")

    def abort(self) -> None:
        self.reading.append("abort")


class FailingTransport(FakeTransport):
    def write(self, data: bytes) -> None:
        raise RuntimeError("boom")


UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def _accepted(hub: Ladder, monkeypatch: pytest.MonkeyPatch) -> tuple[NativeWebSocket, FakeTransport]:
    """A native connection of ``hub``, through its WebSocket handshake."""
    monkeypatch.setattr(NativeWebSocket, "hub", hub)
    conn = NativeWebSocket(None, SimpleNamespace(connections=set()), {}, _loop=asyncio.get_running_loop())
    transport = FakeTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    conn.data_received(UPGRADE)
    assert transport.written[0].startswith(b"HTTP/1.1 101")
    assert transport.limits == (0, None)  # every write goes to the socket at once
    return conn, transport


def _unframe(data: bytes) -> bytes:
    """The payload of one unmasked server frame."""
    if data[1] == 126:
        assert int.from_bytes(data[2:4], "big") == len(data) - 4
        return data[4:]
    assert data[1] == len(data) - 2
    return data[2:]


async def _written(flusher: Flusher) -> None:
    """The loop turns the flusher takes to write every connection due (a slice a turn)."""
    for _ in range(len(flusher.due) // flusher.slice + 1):
        await asyncio.sleep(0)
    assert not flusher.due


async def test_a_publication_is_written_as_its_fan_out_reaches_each_native_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first publication in a loop turn is written to each connection as the fan-out
    queues it (one take each, nothing scheduled per connection); a second one in the same
    turn waits for the flusher, which writes it in the next turn, batched with anything
    else that came meanwhile."""
    hub = make_hub()
    loop = asyncio.get_running_loop()
    settings = internals(hub).settings
    transports: list[FakeTransport] = []
    for n in range(CONNECTIONS):
        peer = await Peer.open(hub)
        await peer.request({"t": "sub", "ch": "room"})
        conn = NativeWebSocket(None, SimpleNamespace(connections=set()), {}, _loop=loop)
        transport = FakeTransport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        conn.codec = MSGPACK if n % 2 else JSON
        conn.link = Link(peer.session, peer.att, settings.clock, Tally(), wake=conn)
        transports.append(transport)
    flusher = flusher_of(loop)
    await _written(flusher)  # nothing was waiting: every connection flushed once, wrote nothing
    assert all(not t.written for t in transports)

    scheduled = 0
    call_soon = loop.call_soon

    def counting_call_soon(*args: Any, **kwargs: Any) -> Any:
        nonlocal scheduled
        scheduled += 1
        return call_soon(*args, **kwargs)

    takes = 0
    take = SessionState.take

    def counting_take(self: SessionState, *args: Any) -> Any:
        nonlocal takes
        takes += 1
        return take(self, *args)

    monkeypatch.setattr(loop, "call_soon", counting_call_soon)
    monkeypatch.setattr(SessionState, "take", counting_take)
    await hub.publish("room", {"n": 1})
    assert takes == CONNECTIONS  # one each, as the fan-out reached it: no second take
    assert all(len(t.written) == 1 for t in transports)
    assert scheduled == 1  # (the end of the turn, for the flusher; nothing per connection)
    await hub.publish("room", {"n": 2})
    await hub.publish("room", {"n": 3})
    assert takes == CONNECTIONS and all(len(t.written) == 1 for t in transports)  # batched
    monkeypatch.undo()
    await _written(flusher)
    for n, transport in enumerate(transports):
        assert len(transport.written) == 2
        codec = MSGPACK if n % 2 else JSON
        for data in transport.written:
            assert data[0] == (0x82 if n % 2 else 0x81)
        [first] = codec.decode(_unframe(transport.written[0]))
        assert first["t"] == "pub" and first["d"] == {"n": 1} and first["ch"] == "room"
        assert first["s"] == 2  # after the subscription's reply (1)
        later = codec.decode(_unframe(transport.written[1]))
        assert [(f["s"], f["d"]) for f in later] == [(3, {"n": 2}), (4, {"n": 3})]
    # A new turn, but the channel is busy (fanned out within BUSY_GAP): batched by the
    # flusher; once it was quiet for longer, written at once again.
    now = monotonic()
    monkeypatch.setattr(channels, "monotonic", lambda: now)
    await hub.publish("room", {"n": 4})
    assert all(len(t.written) == 2 for t in transports) and len(flusher.due) == CONNECTIONS
    await _written(flusher)
    assert all(len(t.written) == 3 for t in transports)
    now += 2 * channels.BUSY_GAP  # (quiet for more than BUSY_GAP)
    await hub.publish("room", {"n": 5})
    assert all(len(t.written) == 4 for t in transports)


async def test_a_flush_that_fails_leaves_the_other_connections_written(
    caplog: pytest.LogCaptureFixture,
) -> None:
    flushed: list[str] = []

    class Conn:
        def __init__(self, name: str, fail: bool = False) -> None:
            self.name, self.fail = name, fail

        def flush(self) -> None:
            flushed.append(self.name)
            if self.fail:
                raise RuntimeError("boom")

    flusher = Flusher(asyncio.get_running_loop())
    for conn in (Conn("a"), Conn("b", fail=True), Conn("c")):
        flusher.add(conn)
    with caplog.at_level(logging.ERROR, logger="ladder"):
        await asyncio.sleep(0)
    assert flushed == ["a", "b", "c"]
    assert "flushing a connection failed" in caplog.text
    flusher.add(Conn("d"))  # and the next turn schedules again
    await asyncio.sleep(0)
    assert flushed[-1] == "d"


async def test_a_connection_that_fails_in_a_fan_out_leaves_the_others_written(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = make_hub()
    loop = asyncio.get_running_loop()
    settings = internals(hub).settings
    transports: list[FakeTransport] = []
    for n in range(3):
        peer = await Peer.open(hub)
        await peer.request({"t": "sub", "ch": "room"})
        conn = NativeWebSocket(None, SimpleNamespace(connections=set()), {}, _loop=loop)
        transport = FailingTransport() if n == 1 else FakeTransport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        conn.link = Link(peer.session, peer.att, settings.clock, Tally(), wake=conn)
        transports.append(transport)
    await asyncio.sleep(0)
    with caplog.at_level(logging.ERROR, logger="ladder"):
        await hub.publish("room", {"n": 1})
    assert [len(t.written) for t in transports] == [1, 0, 1]  # written as the fan-out went on
    assert "flushing a connection failed" in caplog.text
    assert not flusher_of(loop).fanning


async def test_the_flusher_writes_a_slice_per_loop_turn_in_order() -> None:
    """A fan-out to many connections is written a slice per turn, so the first slice is on
    the wire (uvloop sends a turn's writes when the turn ends) before the rest is built, and
    what arrives meanwhile is read in between; a connection woken again while it waits is
    written once; a busy list is cut as it goes."""
    flushed: list[int] = []

    class Conn:
        def __init__(self, n: int) -> None:
            self.n = n

        def flush(self) -> None:
            flushed.append(self.n)

    flusher = Flusher(asyncio.get_running_loop(), per_turn=4)
    for n in range(10):
        flusher.add(Conn(n))
    await asyncio.sleep(0)
    assert flushed == [0, 1, 2, 3]
    flusher.add(Conn(10))  # woken meanwhile: after those already waiting
    await asyncio.sleep(0)
    assert flushed == [0, 1, 2, 3, 4, 5, 6, 7]
    await asyncio.sleep(0)
    assert flushed == list(range(11)) and flusher.due == [] and flusher.next == 0

    # Kept busy (as many added each turn as written): the list does not keep what was written.
    flushed.clear()
    for n in range(8):
        flusher.add(Conn(n))
    for turn in range(40):
        for n in range(4):
            flusher.add(Conn(100 + 4 * turn + n))
        await asyncio.sleep(0)
        assert len(flusher.due) - flusher.next <= 12 and len(flusher.due) <= 40
    assert flushed == list(range(8)) + [100 + n for n in range(len(flushed) - 8)]


async def test_a_writer_that_took_everything_sleeps_until_woken_again() -> None:
    hub = make_hub()
    peer = await Peer.open(hub)
    await peer.request({"t": "sub", "ch": "room"})
    link = Link(peer.session, peer.att, internals(hub).settings.clock, Tally())
    await hub.publish("room", {"n": 1})
    _, frames = link.take()
    assert len(frames) == 1 and not link.more(frames)
    waiting = asyncio.ensure_future(link.waker.wait())
    await asyncio.sleep(0)
    assert not waiting.done()  # the wake-ups before the take were answered by it
    await hub.publish("room", {"n": 2})
    await asyncio.sleep(0)
    assert waiting.done()


def test_a_full_batch_says_take_again() -> None:
    outbox: Outbox[str] = Outbox(max_items=100, max_bytes=10_000)
    for n in range(5):
        outbox.push(f"f{n}")
    assert outbox.after(0, 3) == [(1, "f0"), (2, "f1"), (3, "f2")]
    assert outbox.after(3, 3) == [(4, "f3"), (5, "f4")]
    assert outbox.after(4, 3) == [(5, "f4")]
    assert outbox.after(4, 0) == []
    assert outbox.after(5, 3) == []
    outbox.ack(2)
    assert outbox.after(0, None) == [(3, "f2"), (4, "f3"), (5, "f4")]


def _long_way(reply: Any) -> bytes:
    body = reply.decode(MSGPACK)
    body.pop("s", None)
    body.pop("re", None)
    return bytes(msgpack.packb(body))


@pytest.mark.parametrize("msg_id", [1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32])
@pytest.mark.parametrize(
    "data", [None, 0, "x", {"a": [1, 2.5, None, True]}, b"\x00\x01", {"pad": "x" * 300}, [], {}]
)
def test_a_recorded_answer_is_the_reply_without_re_byte_for_byte(msg_id: int, data: Any) -> None:
    reply = reply_frame(msg_id, data)
    answer = encode_answer(reply)
    assert answer == _long_way(reply)
    expected = {"t": "reply"} if data is None else {"t": "reply", "d": data}
    assert msgpack.unpackb(answer, raw=False) == expected


def test_an_error_answer_takes_the_long_way() -> None:
    reply = error_frame(LadderError("forbidden", "no"), 7)
    assert msgpack.unpackb(encode_answer(reply), raw=False) == {
        "t": "err",
        "code": "forbidden",
        "reason": "no",
    }


def _client_frame(
    opcode: int, payload: bytes, *, fin: bool = True, mask: bytes = b"\x11\x22\x33\x44"
) -> bytes:
    from websockets.utils import apply_mask  # noqa: PLC0415

    first = (0x80 if fin else 0) | opcode
    size = len(payload)
    if size < 126:
        head = bytes((first, 0x80 | size))
    elif size < 65536:
        head = bytes((first, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((first, 0x80 | 127)) + size.to_bytes(8, "big")
    return head + mask + apply_mask(payload, mask)


@pytest.mark.parametrize("seed", range(12))
async def test_messages_read_straight_from_the_bytes_are_those_the_client_sent(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whole small frames skip the general parser; fragmented, large and control frames,
    and frames cut anywhere by TCP, go through it: every message arrives once, in order."""
    import random  # noqa: PLC0415

    from ladder.server import rfc6455  # noqa: PLC0415

    rng = random.Random(seed)
    hub = make_hub()
    await hub.start()
    conn, _ = _accepted(hub, monkeypatch)
    received: list[tuple[bytes, Any]] = []
    monkeypatch.setattr(conn, "_message", lambda data, codec: received.append((data, codec)))
    sent: list[tuple[bytes, Any]] = []
    pieces: list[bytes] = []  # what one data_received gets, as TCP may deliver it
    for _ in range(60):
        size = rng.choice([0, 1, 20, 125, 126, 300, 65535, 65536])
        text = rng.random() < 0.5
        payload = (b"x" if text else b"\xff") * size
        codec = JSON if text else MSGPACK
        opcode = 0x1 if text else 0x2
        sent.append((payload, codec))
        if rng.random() < 0.2 and size > 1:  # fragmented, with a ping in between
            cut = size // 2
            frames = _client_frame(opcode, payload[:cut], fin=False)
            frames += _client_frame(0x9, b"p") + _client_frame(0x0, payload[cut:])
        else:
            frames = _client_frame(opcode, payload)
        draw = rng.random()
        if draw < 0.3 and pieces:  # arrives with the previous one
            pieces[-1] += frames
        elif draw < 0.6:  # cut anywhere
            cut = rng.randrange(1, len(frames))
            pieces += [frames[:cut], frames[cut:]]
        else:
            pieces.append(frames)
    fast: list[int] = []
    whole_frames = rfc6455.whole_frames

    def counted(data: bytes, max_size: int | None) -> tuple[list[tuple[int, bytes]], int]:
        frames, used = whole_frames(data, max_size)
        fast.append(len(frames))
        return frames, used

    monkeypatch.setattr(rfc6455, "whole_frames", counted)
    for piece in pieces:
        conn.data_received(piece)
    assert [(len(d), c) for d, c in received] == [(len(d), c) for d, c in sent]
    assert received == sent
    assert not conn.closing
    assert sum(fast) > 0  # some were read straight from the bytes


class _Said:
    """A native connection of a hub that said hello: frames in, what the hub wrote out."""

    def __init__(self, conn: NativeWebSocket, transport: FakeTransport) -> None:
        self.conn, self.transport = conn, transport

    @classmethod
    async def hello(cls, hub: Ladder, monkeypatch: pytest.MonkeyPatch) -> _Said:
        said = cls(*_accepted(hub, monkeypatch))
        said.send({"t": "hello", "v": 1})
        for _ in range(10):
            await asyncio.sleep(0)
        assert [f["t"] for f in said.written()] == ["welcome"]
        return said

    def send(self, *frames: dict[str, Any]) -> None:
        self.conn.data_received(_client_frame(0x1, b"\n".join(JSON.encode(f) for f in frames)))

    def written(self) -> list[dict[str, Any]]:
        out = [f for data in self.transport.written[1:] for f in JSON.decode(_unframe(data))]
        self.transport.written[1:] = []
        return out


def _offers(hub: Ladder, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The frame types of every batch offered to the hub's sessions, in order."""
    offered: list[list[str]] = []
    inbound = type(internals(hub).inbound)
    offer = inbound._offer

    def logged(self: Any, session: Any, att: Any, frames: Any) -> Any:
        offered.append([type(f).__name__ for f in frames])
        return offer(self, session, att, frames)

    monkeypatch.setattr(inbound, "_offer", logged)
    return offered


@contextlib.contextmanager
def _counting_tasks() -> Iterator[list[int]]:
    """Counts the tasks made on the running loop meanwhile (in the list's one item)."""
    loop = asyncio.get_running_loop()
    made = [0]
    factory = loop.get_task_factory()

    def counting(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
        made[0] += 1
        return factory(loop, coro, **kwargs) if factory else asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(counting)
    try:
        yield made
    finally:
        loop.set_task_factory(factory)


async def test_acks_pings_and_pongs_are_applied_with_no_task_and_calls_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hub = make_hub()

    @hub.on("echo")
    async def echo(_ctx: Any, data: Any) -> Any:
        await asyncio.sleep(0)  # a handler that waits
        return data

    await hub.start()
    said = await _Said.hello(hub, monkeypatch)
    send, written = said.send, said.written
    offered = _offers(hub, monkeypatch)
    with _counting_tasks() as tasks:
        send({"t": "ping", "n": 5})
        send({"t": "pong"})
        assert tasks == [0]  # applied where they arrived
        await asyncio.sleep(0)
        assert written() == [{"t": "pong", "n": 5}]
        send({"t": "call", "i": 1, "ev": "echo", "d": 1})
        send({"t": "ack", "s": 0}, {"t": "ping", "n": 6})  # while the call waits: applied now
        send({"t": "call", "i": 2, "ev": "echo", "d": 2})
        assert tasks == [1]
        for _ in range(20):
            await asyncio.sleep(0)
    frames = written()
    assert [(f["re"], f["d"]) for f in frames if f["t"] == "reply"] == [(1, 1), (2, 2)]
    assert [f["n"] for f in frames if f["t"] == "pong"] == [6]
    # Acks, pings and pongs as they arrived, also while a call waited for its turn (or ran
    # in its handler: test_edges); the calls in order.
    assert offered == [["Ping"], ["Pong"], ["Ack", "Ping"], ["Call"], ["Call"]]
    assert not said.conn.closing


async def test_messages_of_publications_read_meanwhile_are_offered_with_the_one_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While a message is being applied, the native driver queues what it reads but acks,
    pings and pongs (applied as they arrive); a queued message that holds only publications
    is offered with the one before it, so the session has the run waiting
    (server/together.py); any other waits its turn."""
    hub = make_hub(channels={"open:*": ChannelOptions(client_publish=True)})
    release = asyncio.Event()

    @hub.on("slow")
    async def slow(_ctx: Any, data: Any) -> Any:
        await release.wait()
        return data

    await hub.start()
    said = await _Said.hello(hub, monkeypatch)
    offered = _offers(hub, monkeypatch)
    said.send({"t": "call", "i": 1, "ev": "slow", "d": 0})
    said.send({"t": "pub", "i": 2, "ch": "open:a", "d": 2})
    said.send({"t": "ack", "s": 0}, {"t": "pub", "i": 3, "ch": "open:a", "d": 3})
    said.send({"t": "ping", "n": 7})
    said.send({"t": "pub", "i": 4, "ch": "open:a", "d": 4})
    applier, link = said.conn.applier, said.conn.link
    assert applier is not None and link is not None, "the call is being applied"
    release.set()
    async with asyncio.timeout(5):
        await applier  # (it ends when nothing is queued)
    assert await link.session.settle(5.0), "all applied"
    assert offered == [["Ack"], ["Ping"], ["Call", "Publish", "Publish", "Publish"]]
    answers = [f["re"] for f in said.written() if f.get("t") == "reply"]
    assert answers == [1, 2, 3, 4]


async def test_a_client_writing_faster_than_it_is_applied_is_held_back_not_buffered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Messages queued behind one being applied take at most ``max_post_size`` bytes: past
    it the socket is not read (TCP holds the client back) until all of them are applied."""
    hub = make_hub(limits=Limits(max_post_size=100_000))
    release = asyncio.Event()
    got: list[int] = []

    @hub.on("slow")
    async def slow(_ctx: Any, data: Any) -> Any:
        await release.wait()
        return data

    @hub.on("sink")
    def sink(_ctx: Any, data: Any) -> None:
        got.append(data["n"])

    await hub.start()
    said = await _Said.hello(hub, monkeypatch)
    said.send({"t": "call", "i": 1, "ev": "slow", "d": 0})
    for n in range(2, 5):
        said.send({"t": "emit", "i": n, "ev": "sink", "d": {"n": n, "pad": "x" * 30_000}})
    assert said.transport.reading == [], "90 KB queued: still read"
    said.send({"t": "emit", "i": 5, "ev": "sink", "d": {"n": 5, "pad": "x" * 30_000}})
    assert said.transport.reading == ["pause"], "past 100,000 bytes queued: no longer read"
    applier = said.conn.applier
    assert applier is not None
    release.set()
    async with asyncio.timeout(5):
        await applier
    assert got == [2, 3, 4, 5] and said.transport.reading == ["pause", "resume"]


async def test_calls_to_plain_handlers_are_applied_as_read_with_no_task_and_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On the memory engine a call whose handler is a plain function is answered in the turn
    that read it; an async handler runs in a task (with ``asyncio.timeout`` working), and
    what arrives meanwhile waits its turn. A plain function that returns an awaitable has it
    run in a task too."""
    hub = make_hub()
    ran: list[Any] = []

    @hub.on("add")
    def add(_ctx: Any, data: Any) -> Any:
        ran.append(data)
        return data + 1

    @hub.on("echo")
    async def echo(_ctx: Any, data: Any) -> Any:
        async with asyncio.timeout(5):  # needs a current task
            await asyncio.sleep(0)
        ran.append(data)
        return data

    async def later(data: Any) -> Any:
        async with asyncio.timeout(5):
            await asyncio.sleep(0)
        ran.append(data)
        return data

    @hub.on("defer")
    def defer(_ctx: Any, data: Any) -> Any:
        return later(data)

    await hub.start()
    said = await _Said.hello(hub, monkeypatch)
    send = said.send

    def replies() -> list[tuple[int, Any]]:
        return [(f["re"], f.get("d", f.get("code"))) for f in said.written() if f["t"] in ("reply", "err")]

    with _counting_tasks() as tasks:
        send({"t": "call", "i": 1, "ev": "add", "d": 1})
        assert (ran, tasks) == ([1], [0])  # applied in this turn, with no task
        send({"t": "call", "i": 2, "ev": "echo", "d": 2})
        send({"t": "call", "i": 3, "ev": "add", "d": 3})  # behind the async one: waits its turn
        assert (ran, tasks) == ([1], [1])
        for _ in range(20):
            await asyncio.sleep(0)
        assert ran == [1, 2, 3]
        assert replies() == [(1, 2), (2, 2), (3, 4)]
        send({"t": "call", "i": 4, "ev": "defer", "d": 4})
        assert tasks == [2]  # the awaitable went on in a task
        for _ in range(20):
            await asyncio.sleep(0)
        assert replies() == [(4, 4)]
        # (what the drain learnt of the engine when the hub was built)
        monkeypatch.setattr(internals(hub).inbound, "records_at_once", False)
        monkeypatch.setattr(internals(hub).inbound.recording, "now", None)
        monkeypatch.setattr(internals(hub).inbound.recording, "whole", None)
        send({"t": "call", "i": 5, "ev": "add", "d": 5})
        assert (ran[-1], tasks) == (4, [3])  # an engine that may wait to record: a task
        for _ in range(20):
            await asyncio.sleep(0)
        assert replies() == [(5, 6)]
    assert not said.conn.closing


async def test_the_answer_to_a_plain_call_is_written_as_its_message_is_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What a client's own message brings it (the reply and the ack of a call whose handler
    is a plain function) is written before ``data_received`` returns, in one write, and the
    flusher is not involved; a wake-up from elsewhere still goes through the flusher."""
    hub = make_hub()
    hub.on("add")(lambda _ctx, data: data + 1)
    await hub.start()
    said = await _Said.hello(hub, monkeypatch)
    flusher = said.conn.flusher
    said.transport.written[1:] = []
    said.send({"t": "call", "i": 1, "ev": "add", "d": 1}, {"t": "call", "i": 2, "ev": "add", "d": 2})
    assert len(said.transport.written) == 2, "one write, before data_received returned"
    assert [(f["t"], f.get("re"), f.get("i")) for f in said.written()] == [
        ("ack", None, 2),
        ("reply", 1, None),
        ("reply", 2, None),
    ]
    assert said.conn not in flusher.due and not said.conn.scheduled
    # A push from the server's side, outside the client's reading: the flusher writes it.
    internals(hub).sessions.get(said.conn.link.session.sid).state.send_control({"t": "pong"})  # type: ignore[union-attr]
    assert said.transport.written[1:] == [] and said.conn in flusher.due
    for _ in range(5):
        await asyncio.sleep(0)
    assert [f["t"] for f in said.written()] == ["pong"]
    await hub.stop()


async def test_a_plain_call_asks_the_engine_once_and_makes_no_key_it_does_not_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whether the engine can record, and whether the handler is a plain function, are asked
    once per call read and applied in one turn (not again when it is taken); a context's
    message key is made only if read."""
    hub = make_hub()
    keys: list[str | None] = []
    hub.on("add")(lambda _ctx, data: data + 1)
    hub.on("key")(lambda ctx, data: keys.append(ctx.message_key))
    await hub.start()
    said = await _Said.hello(hub, monkeypatch)
    engine = internals(hub).engine
    asked: list[str] = []
    healthy_for = engine.healthy_for

    def counted(sid: str) -> bool:
        asked.append(sid)
        return healthy_for(sid)

    monkeypatch.setattr(engine, "healthy_for", counted)
    plain = Dispatch.plain
    kinds: list[str] = []

    def counted_plain(dispatch: Dispatch, event: str) -> bool:
        kinds.append(event)
        return plain(dispatch, event)

    monkeypatch.setattr(Dispatch, "plain", counted_plain)
    made: list[int] = []
    message_key = Session.message_key

    def key(session: Session, number: int) -> str:
        made.append(number)
        return message_key(session, number)

    monkeypatch.setattr(Session, "message_key", key)
    said.send({"t": "call", "i": 1, "ev": "add", "d": 1})
    said.send({"t": "call", "i": 2, "ev": "add", "d": 2}, {"t": "call", "i": 3, "ev": "add", "d": 3})
    assert [f.get("d") for f in said.written() if f["t"] == "reply"] == [2, 3, 4]
    assert len(asked) == 1 + 3, "one question per call, and one more for the second of a batch"
    assert len(kinds) == 1 + 3, "the same for whether a handler is a plain function"
    assert made == []
    said.send({"t": "call", "i": 4, "ev": "key"})
    assert (made, keys) == ([4], [f"{said.conn.link.session.sid}:4"])  # type: ignore[union-attr]
    await hub.stop()


async def test_frames_sent_with_the_upgrade_come_before_the_next_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A client may send its first frames in the same packet as the upgrade request (it
    should wait for the 101, RFC 6455 §4.1): they are read by the handshake's protocol, and
    reach the session before what comes next (they were dropped before)."""
    hub = make_hub()
    await hub.start()
    monkeypatch.setattr(NativeWebSocket, "hub", hub)
    conn = NativeWebSocket(None, SimpleNamespace(connections=set()), {}, _loop=asyncio.get_running_loop())
    transport = FakeTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    received: list[bytes] = []
    monkeypatch.setattr(conn, "_message", lambda data, codec: received.append(data))
    conn.data_received(UPGRADE + _client_frame(0x1, b"first"))
    assert transport.written[0].startswith(b"HTTP/1.1 101")
    conn.data_received(_client_frame(0x1, b"second"))
    assert received == [b"first", b"second"]
    await hub.stop()


async def test_an_idle_connection_holds_no_queue_timer_or_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every full collection walks every connection's objects: once a subscribed connection
    is idle again (its messages applied and answered, the answers acknowledged), the queues
    that held them, the hello timer and the frame parser are gone, not kept empty (but for
    the outbox's and the answers' lists, used at every delivery and call)."""
    hub = make_hub()

    notes: list[Any] = []

    @hub.on("echo")
    async def echo(_ctx: Any, data: Any) -> Any:
        await asyncio.sleep(0)  # answered by the applying task, not at once
        return data

    @hub.on("note")
    async def note(_ctx: Any, data: Any) -> None:
        notes.append(data)

    await hub.start()
    conn, transport = _accepted(hub, monkeypatch)

    def send(*frames: dict[str, Any]) -> None:
        conn.data_received(_client_frame(0x1, b"\n".join(JSON.encode(f) for f in frames)))

    async def answered(kind: str, **fields: Any) -> list[dict[str, Any]]:
        """Everything written, once a ``kind`` frame with ``fields`` is among it."""
        async with asyncio.timeout(5):
            while True:
                out = [f for d in transport.written[1:] for f in JSON.decode(_unframe(d))]
                if any(f["t"] == kind and fields.items() <= f.items() for f in out):
                    return out
                await asyncio.sleep(0)  # the applying task and the flusher run on this loop

    assert conn.hello_timer is not None, "a connection waits a bounded time for its hello"
    send({"t": "hello", "v": 1})
    await answered("welcome")
    send(
        {"t": "sub", "i": 1, "ch": "room"}, {"t": "call", "i": 2, "ev": "echo", "d": 7}, {"t": "ping", "n": 1}
    )
    out = await answered("reply", re=2)
    replies = [f for f in out if f["t"] == "reply"]
    assert [f["re"] for f in replies] == [1, 2] and replies[1]["d"] == 7
    # The client acknowledges the answers; the next message lets the record forget them.
    send({"t": "ack", "s": max(f.get("s", 0) for f in out)}, {"t": "emit", "i": 3, "ev": "note", "d": 8})
    await answered("ack", i=3)
    assert notes == [8]
    assert conn.link is not None
    session = conn.link.session
    held = {
        "hello timer": conn.hello_timer,
        "inbound queue": conn.inbox,
        "frame parser": conn.reader.ws if conn.reader is not None else "no reader",
        "messages to apply": session.ready,
        "parked control frames": session.state.parked,
    }
    assert held == dict.fromkeys(held), held
    # What every delivery and answer goes through is emptied, not dropped (tests/server/
    # test_collector.py): an empty list, holding no array.
    assert session.answers is not None
    assert session.answers._kept == [] and session.state.outbox._kept == []
    assert "room" in session.subs
    await hub.stop()


async def test_an_accepted_connection_keeps_no_handshake_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    """``websockets``' server protocol keeps the upgrade request and its headers alive for
    the connection's life (about a tenth of an idle connection's objects, walked by every
    full collection); a connection reads its frames with a frame-level protocol instead,
    and holds one only while a frame needs it."""
    import gc  # noqa: PLC0415

    from websockets.datastructures import Headers  # noqa: PLC0415
    from websockets.http11 import Request as WsRequest  # noqa: PLC0415

    hub = make_hub()
    await hub.start()
    conn, transport = _accepted(hub, monkeypatch)
    received: list[tuple[bytes, Any]] = []
    monkeypatch.setattr(conn, "_message", lambda data, codec: received.append((data, codec)))
    conn.data_received(_client_frame(0x1, b'{"later": 2}') + _client_frame(0x9, b"p"))
    assert received == [(b'{"later": 2}', JSON)]
    assert transport.written[-1].startswith(b"\x8a"), "the ping was answered"
    assert conn.reader is not None and conn.reader.ws is None, "idle again: no frame protocol held"
    conn.data_received(_client_frame(0x1, b'{"par', fin=False))
    assert conn.reader.ws is not None, "a fragmented message in progress keeps its protocol"
    conn.data_received(_client_frame(0x0, b't": 3}'))
    assert received[-1] == (b'{"part": 3}', JSON) and conn.reader.ws is None
    found, layer = [], [conn]
    for _ in range(6):
        layer = [ref for obj in layer for ref in gc.get_referents(obj)]
        found += layer
    kept = [obj for obj in found if isinstance(obj, WsRequest | Headers)]
    assert not kept, kept
    await hub.stop()


class _Poller:
    """Drives a hub's long-polling rung through its ASGI app, noting the tasks started on
    the way by coroutine (a held poll watches for its client going away in a task)."""

    def __init__(self, hub: Ladder) -> None:
        self.hub = hub
        self.tasks: Counter[str] = Counter()
        self.answers: list[bytes] = []
        self.watching = asyncio.Event()
        """Set when something waits on ``receive`` (a watch on the client)."""
        loop = asyncio.get_running_loop()
        self.factory = loop.get_task_factory()

        def counting(loop: asyncio.AbstractEventLoop, coro: Any, **options: Any) -> Any:
            self.tasks[coro.__qualname__] += 1  # (the task's name is set after the factory)
            return asyncio.Task(coro, loop=loop, **options)

        loop.set_task_factory(counting)

    def stop(self) -> None:
        asyncio.get_running_loop().set_task_factory(self.factory)

    async def receive(self) -> dict[str, Any]:
        self.watching.set()
        await asyncio.Event().wait()  # (the client never goes)
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            self.answers.append(message["body"])

    async def poll(self, query: str) -> list[dict[str, Any]]:
        scope = {
            "type": "http",
            "method": "GET",
            "path": "/longpoll",
            "query_string": query.encode(),
            "headers": [(b"host", b"x")],
            "client": ("127.0.0.1", 1),
        }
        await self.hub(scope, self.receive, self.send)
        return [orjson.loads(line) for line in self.answers[-1].split(b"\n") if line]


async def test_a_long_poll_answered_at_once_starts_no_watch_and_a_held_one_does() -> None:
    hub = Ladder()
    await hub.start()
    poller = _Poller(hub)
    try:
        welcome = (await poller.poll("v=1&open=1"))[0]
        resume = f"v=1&sid={welcome['sid']}&rt={welcome['rt']}"
        await hub.send(welcome["sid"], "tick", 1)
        frames = await poller.poll(f"{resume}&ack=0")
        assert [frame["ev"] for frame in frames if frame["t"] == "push"] == ["tick"]
        assert poller.tasks["watch_disconnect"] == 0, "answered at once: no task watching the client"
        held = asyncio.ensure_future(poller.poll(f"{resume}&ack={frames[-1]['s']}"))
        await asyncio.wait_for(poller.watching.wait(), 5)  # the held poll watches its client
        await hub.send(welcome["sid"], "tock", 2)
        assert [frame["ev"] for frame in await held if frame["t"] == "push"] == ["tock"]
        assert poller.tasks["watch_disconnect"] == 1
    finally:
        poller.stop()
        await hub.stop()


async def test_a_plain_call_drained_at_once_hands_what_follows_it_to_a_task_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Message 2 (a subscription: it waits for the engine) arrived before message 1 (a call
    to a plain handler): the call is applied in the turn that read it, and the subscription
    after it in a task; their answers come in id order."""
    hub = make_hub()
    ran: list[Any] = []

    @hub.on("add")
    def add(_ctx: Any, data: Any) -> Any:
        ran.append(data)
        return data + 1

    await hub.start()
    said = await _Said.hello(hub, monkeypatch)
    with _counting_tasks() as tasks:
        said.send({"t": "sub", "i": 2, "ch": "room"})  # early: waits for message 1
        for _ in range(5):
            await asyncio.sleep(0)
        assert tasks == [1] and not said.written()  # (the driver's task that read it)
        said.send({"t": "call", "i": 1, "ev": "add", "d": 1})
        assert ran == [1]  # at once
        assert tasks == [2]  # the subscription, behind it
        for _ in range(20):
            await asyncio.sleep(0)
    answers = [(f["t"], f.get("re")) for f in said.written() if "re" in f]
    assert answers == [("reply", 1), ("reply", 2)]
    said.send({"t": "call", "i": 3, "ev": "add", "d": 3})
    assert ran == [1, 3]  # at once again: the drain in the task ended
    await asyncio.sleep(0)  # (the write)
    assert [(f["re"], f["d"]) for f in said.written() if f["t"] == "reply"] == [(3, 4)]


async def test_a_plain_handler_that_fails_is_answered_at_once_and_the_next_call_still_runs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    hub = make_hub()

    @hub.on("fail")
    def fail(_ctx: Any, data: Any) -> Any:
        if data == "refuse":
            raise LadderError("forbidden", "not you")
        raise RuntimeError("a bug")

    @hub.on("ok")
    def ok(_ctx: Any, data: Any) -> Any:
        return data

    await hub.start()
    said = await _Said.hello(hub, monkeypatch)
    with _counting_tasks() as tasks, caplog.at_level(logging.ERROR, "ladder"):
        said.send(
            {"t": "call", "i": 1, "ev": "fail", "d": "bug"},
            {"t": "call", "i": 2, "ev": "fail", "d": "refuse"},
            {"t": "call", "i": 3, "ev": "ok", "d": 3},
        )
        assert tasks == [0]
    await asyncio.sleep(0)  # (the write)
    answers = [(f["t"], f["re"], f.get("code", f.get("d"))) for f in said.written() if "re" in f]
    assert answers == [("err", 1, "handler_error"), ("err", 2, "forbidden"), ("reply", 3, 3)]
    assert "handler failed for Call 'fail'" in caplog.text and "RuntimeError: a bug" in caplog.text
    assert not said.conn.closing


async def test_a_connection_read_past_its_slice_waits_for_the_next_loop_turn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """libuv reads a busy socket up to 32 times per wake-up: a client writing junk as fast as
    TCP let it (each batch decoded to be refused) held every other connection for ~200 ms
    at a time. Past READ_SLICE bytes a connection is not read again until the next turn."""
    hub = make_hub(limits=Limits(message_rate=0))
    await hub.start()
    said = await _Said.hello(hub, monkeypatch)
    junk = _client_frame(0x1, b"\n".join([b'{"t":"nope"}'] * 3000))  # 39 kB, 64 refused
    read = len(_client_frame(0x1, b'{"t":"hello","v":1}'))
    while read + len(junk) < reading.READ_SLICE:
        said.conn.data_received(junk)
        read += len(junk)
    assert said.transport.reading == []
    said.conn.data_received(junk)
    assert said.transport.reading == ["pause"], "past the slice: the others are read first"
    await asyncio.sleep(0)
    assert said.transport.reading == ["pause", "resume"]


async def test_a_connection_whose_session_ended_unread_is_no_longer_read_then_cut_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A session ended (here by the server; a flood or a slow consumer alike) while its
    socket takes nothing: the bye waits behind what the client has not read. Its client's
    bytes were still read and decoded (a flooder that read nothing kept the server busy
    forever, never closed); now reading stops and the connection is cut off after
    BYE_WAIT unless the client reads up to its bye."""
    monkeypatch.setattr(cutoff, "BYE_WAIT", 0.01)
    hub = make_hub()
    await hub.start()
    said = await _Said.hello(hub, monkeypatch)
    cut_off = asyncio.Event()
    abort = said.transport.abort
    monkeypatch.setattr(said.transport, "abort", lambda: (abort(), cut_off.set()))
    said.conn.pause_writing()  # the client reads nothing: the socket is full
    link = said.conn.link
    assert link is not None
    assert await hub.disconnect(link.session.sid)
    for _ in range(3):
        await asyncio.sleep(0)
    assert said.transport.reading == ["pause"], "ended: what it sends is not read"
    said.conn.data_received(_client_frame(0x1, b'{"t":"nope"}'))  # (bytes read before the pause)
    assert said.transport.reading == ["pause"]
    async with asyncio.timeout(5):
        await cut_off.wait()
    assert said.transport.reading == ["pause", "abort"]
