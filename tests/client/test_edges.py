"""The Python client's reconnect decisions at the edges, against the in-memory fake server:
a server shutting down, one refusing node among good ones, the backoff schedule."""

from __future__ import annotations

import asyncio
import itertools
import random

import pytest

from ladder import LadderError
from ladder.protocol.client.backoff import Reconnect
from tests.client.fakes import FakeClient, FakeServer, connected_client
from tests.client.test_renewal import sub_written
from tests.support.waiting import until


def test_reconnect_delay_forgives_and_stays_low() -> None:
    from ladder.client.backoff import reconnect_delay  # noqa: PLC0415

    rng = random.Random(7)
    after_a_cut = [reconnect_delay(0, 0.5, 5.0, rng=rng) for _ in range(200)]
    assert all(0 <= d < 0.5 for d in after_a_cut), "a connection that worked: a short pause"
    assert reconnect_delay(1, 0.5, 5.0) == reconnect_delay(2, 0.5, 5.0) == 0.0, "two retries at once"
    third = [reconnect_delay(3, 0.5, 5.0, rng=rng) for _ in range(200)]
    assert all(0 <= d < 1.0 for d in third) and max(third) > 0.5
    late = [reconnect_delay(n, 0.5, 5.0, rng=rng) for n in range(10, 40)]
    assert all(d < 5.0 for d in late) and max(late) > 2.5, "capped at backoff_max"


async def test_shutting_down_resumes_the_session_elsewhere_at_once() -> None:
    server = FakeServer()
    # A backoff this long would show: the reconnect must not wait for it.
    client, connected = await connected_client(server, transports=["websocket"], backoff_base=30.0, backoff_max=30.0)
    session = client.session_id
    server.push({"t": "bye", "code": "shutting_down", "reason": "server going away"})
    told = asyncio.get_running_loop().time()
    again = await asyncio.wait_for(connected.get(), 5)
    assert again.resumed
    at, hello = server.hellos[1]
    assert at - told < 1.0, "no backoff before going elsewhere"
    assert hello.get("sid") == session, "the session is resumed, not given up"
    await client.connect(timeout=5)
    assert client.session_id == session and client.state == "connected"
    await client.close()


async def test_one_refusing_node_among_good_ones_costs_no_backoff() -> None:
    """Cut after cut, each reconnect meeting a refusing node twice: the client never waits
    more than the short pause after a connection ended (before: the delay grew to 20 s)."""
    server = FakeServer()
    client, connected = await connected_client(
        server, transports=["websocket"], backoff_base=0.2, backoff_max=20.0, stable_after=10.0
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(8):
        server.refuse_opens = 2  # the next two opens land on the bad node
        server.current.interrupt("cut by the test")
        assert (await asyncio.wait_for(connected.get(), 5)).resumed
    assert len(server.hellos) == 1 + 8 * 3
    took = loop.time() - started
    # (at most 0.2 s per cut, and room for a loaded machine: a growing delay takes 10 s or more)
    assert took < 8 * 0.2 + 2.5, f"8 cuts with 16 refusals took {took:.1f} s"
    assert client.session_id == "s1", "every reconnect resumed the same session"
    await client.close()


def test_the_pacer_waits_retry_after_then_lets_one_message_go_per_interval() -> None:
    from ladder.client.pacing import Pacer  # noqa: PLC0415

    pacer = Pacer()
    assert pacer.allowance(0.0) == (None, 0.0), "unlimited until refused"
    pacer.refused(0.1, now=0.0)
    count, wait = pacer.allowance(0.05)
    assert count == 0 and wait == pytest.approx(0.05), "waits retry_after"
    assert pacer.allowance(0.1) == (1, 0.0), "then the refused message"
    pacer.wrote(1)
    count, wait = pacer.allowance(0.15)
    assert count == 0 and wait == pytest.approx(0.05)
    assert pacer.allowance(0.35)[0] == 2, "those that became due meanwhile go together"
    pacer.wrote(2)
    pacer.refused(0.2, now=0.35)
    assert pacer.interval == 0.2, "the largest retry_after heard sets the pace"
    pacer.drained()
    assert pacer.allowance(1.0) == (None, 0.0), "everything acknowledged: free again"


def test_encode_message_names_the_culprit_in_words_of_no_codec() -> None:
    import datetime  # noqa: PLC0415

    from ladder.protocol.codec import JSON, MSGPACK, encode_message  # noqa: PLC0415

    for codec in (JSON, MSGPACK):
        assert encode_message(codec, {"t": "emit", "i": 1, "ev": "e", "d": {"b": b"\x00", "l": [1.5, None]}})
        for value, culprit in (
            ({"n": 2**64}, "an int of 65 bits (outside -2**63 .. 2**64-1: send it as a str) at d['n']"),
            ({"n": -(2**63) - 1}, "an int of 64 bits (outside -2**63 .. 2**64-1: send it as a str) at d['n']"),
            ({"k": {3: "x"}}, "a dict key of type int at d['k']"),
            ("\ud800", "a str with a lone surrogate at d"),
            ({"k\udc00": 1}, "a dict key with a lone surrogate at d"),
        ):
            with pytest.raises(TypeError) as refused:
                encode_message(codec, {"t": "emit", "i": 1, "ev": "e", "d": value})
            assert f"cannot send {culprit}: Ladder messages carry" in str(refused.value)
            assert "msgpack" not in str(refused.value) and "JSON" not in str(refused.value)
    with pytest.raises(TypeError, match=r"cannot send a datetime at d\[0\]"):
        encode_message(MSGPACK, {"t": "call", "i": 1, "ev": "e", "d": [datetime.datetime.now(datetime.UTC)]})


def test_data_nested_254_deep_travels_in_both_encodings_and_255_is_refused_naming_the_depth() -> None:
    """In JSON, 254 levels of data were refused with "cannot send this value" (orjson writes at
    most 255 levels, the frame's own map among them), which msgpack and the browser client
    carry and protocol §2 promises; 255 levels are refused naming the depth."""
    import orjson  # noqa: PLC0415

    from ladder.protocol.codec import JSON, MSGPACK, encode_message  # noqa: PLC0415

    def deep(levels: int) -> object:
        value: object = "core"
        for level in range(levels):
            value = [value] if level % 2 else {"v": value}
        return value

    for codec in (JSON, MSGPACK):
        encoded = encode_message(codec, {"t": "call", "i": 7, "ev": "e", "d": deep(254)})
        assert codec.decode(encoded)[0] == {"t": "call", "i": 7, "ev": "e", "d": deep(254)}
        # What the transports write (the message in its batch) is the same bytes: accepted
        # at submit and refused there, it held back every later message of the session.
        assert codec.encode({"t": "call", "i": 7, "ev": "e", "d": deep(254)}) == encoded
    assert orjson.loads(encode_message(JSON, {"t": "emit", "i": 1, "ev": "e", "d": deep(10)}))["d"] == deep(10)
    with pytest.raises(TypeError, match=r"^cannot send lists and dicts nested more than 254 deep at d"):
        encode_message(JSON, {"t": "call", "i": 7, "ev": "e", "d": deep(255)})


def test_json_refuses_nan_and_infinity_which_it_would_turn_into_null() -> None:
    """orjson writes NaN and ±infinity as ``null``: the server would apply ``None``. The JSON
    codec refuses them, naming where they sit and the fix, as the browser client does;
    msgpack carries them, and ``null`` or a string that merely says NaN is no culprit."""
    from ladder.protocol.codec import JSON, MSGPACK, encode_message  # noqa: PLC0415

    for value, culprit in (
        (float("nan"), "nan at d"),
        ({"x": [1.0, {"y": float("-inf")}]}, "-inf at d['x'][1]['y']"),
        ((None, float("inf")), "inf at d[1]"),
    ):
        with pytest.raises(TypeError) as refused:
            encode_message(JSON, {"t": "emit", "i": 1, "ev": "e", "d": value})
        assert str(refused.value) == (
            f"cannot send {culprit}: JSON has no NaN or infinity "
            "(send it as a str, or connect with encoding='msgpack')"
        )
        assert encode_message(MSGPACK, {"t": "emit", "i": 1, "ev": "e", "d": value})
    assert encode_message(JSON, {"t": "emit", "i": 1, "ev": "e", "d": {"a": None, "b": "nan", "c": 1.5}})


async def test_a_new_session_renews_subscriptions_when_the_queue_is_full() -> None:
    """The session is lost while the offline queue is full: the carried messages fill the new
    session's queue, and renewing the subscription must not fail with ``queue_full`` (it
    used to raise out of the connection loop: the client stopped for good)."""
    server = FakeServer()
    client, connected = await connected_client(
        server, transports=["websocket"], max_queue=3, backoff_base=0.01, backoff_max=0.02
    )
    sub = client.subscribe("room")
    await client.flush(timeout=5)
    server.refuse_opens = 10**6  # down for now
    server.current.interrupt("cut by the test")
    for n in range(3):
        await client.emit("e", n)
    server.sessions += 1  # the session was lost meanwhile
    server.refuse_opens = 0
    again = await asyncio.wait_for(connected.get(), 5)
    assert not again.resumed and client.state == "connected"
    await client.flush(timeout=5)
    applied = [(f["t"], f.get("d"), f.get("ch")) for f in server.applied]
    assert applied == [("emit", 0, None), ("emit", 1, None), ("emit", 2, None), ("sub", None, "room")]
    assert sub.active
    await client.emit("e", 3)
    await client.flush(timeout=5)
    assert server.applied[-1]["d"] == 3, "the client keeps working"
    await client.close()


def test_a_pair_given_alone_follows_the_signatures_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """"One of a pair given alone moves the other's default" read the defaults from a copy of
    them (``ORDERED_DEFAULTS``): a default changed in ``Client``'s signature only, a
    ``backoff_base`` given alone above it was refused as contradicting a ``backoff_max``
    nobody gave. The signature is the one source now."""
    from ladder import Client  # noqa: PLC0415

    defaults = Client.__init__.__kwdefaults__
    assert defaults is not None
    monkeypatch.setitem(defaults, "backoff_max", 8.0)  # (as if the default were changed there)
    monkeypatch.setitem(defaults, "probe_delay", 4.0)
    moved = Client("http://127.0.0.1:9", backoff_base=9.0)
    assert (moved.backoff_base, moved.backoff_max) == (9.0, 9.0)
    assert Client("http://127.0.0.1:9").backoff_max == 8.0
    lowered = Client("http://127.0.0.1:9", probe_max_delay=3.0)
    assert (lowered.probe_delay, lowered.probe_max_delay) == (3.0, 3.0)
    with pytest.raises(ValueError, match=r"^backoff_base \(9 s\) must not exceed backoff_max \(8\.5 s\)$"):
        Client("http://127.0.0.1:9", backoff_base=9.0, backoff_max=8.5)


def test_the_signatures_defaults_for_the_cores_decisions_are_the_cores() -> None:
    """The signature (seconds) and the core (ms) each write these defaults; the browser client
    reads its own from the core. One changed alone would part the clients."""
    from ladder import Client  # noqa: PLC0415
    from ladder.protocol import client as core  # noqa: PLC0415

    client = Client("http://127.0.0.1:9")
    assert client.connect_timeout is not None
    seconds = (client.backoff_base, client.backoff_max, client.connect_timeout)
    seconds += (client.probe_delay, client.probe_max_delay)
    assert tuple(s * 1000 for s in seconds) == (
        core.BACKOFF_BASE, core.BACKOFF_MAX, core.CONNECT_TIMEOUT, core.PROBE_DELAY, core.PROBE_MAX_DELAY
    )
    assert (client.policy.stable_after, client.policy.cut_limit) == (core.STABLE_AFTER, core.CUT_LIMIT)


async def test_a_users_mistakes_with_the_client_get_errors_that_name_the_fix() -> None:
    """Each was taken without a word (``max_queue=0``, ``recent=-5``), read letter by letter
    (``transports="sse"``: "not ['s', 's', 'e']"), or raised a bare ``TimeoutError()``."""
    from ladder import Client  # noqa: PLC0415

    with pytest.raises(TypeError, match=r"transports must be a list of rung names, e.g. \['sse'\]"):
        Client("http://127.0.0.1:9", transports="sse")
    with pytest.raises(ValueError, match=r"max_queue must be a positive int \(default 1000\), not 0"):
        Client("http://127.0.0.1:9", max_queue=0)
    # Taken, then failing later or never: every publication refused, a deadline already past,
    # a token sent as "123", a header the HTTP rungs could not send.
    for options, said in [
        ({"max_buffer": 0}, r"max_buffer must be a whole number >= 1, not 0"),
        ({"connect_timeout": -1}, r"connect_timeout must be a number of seconds above 0, not -1"),
        ({"open_timeout": 0}, r"open_timeout must be a number of seconds above 0, not 0"),
        ({"ack_every": 0}, r"ack_every must be a whole number >= 1, not 0"),
        ({"poll_interval": (2.0, 0.05)}, r"poll_interval must be \(fastest, slowest\) seconds"),
        ({"stagger": []}, r"stagger must be a non-empty sequence of seconds >= 0"),
        # (as the browser client: a base above its cap, a stagger going down were taken)
        ({"backoff_base": 10, "backoff_max": 1}, r"^backoff_base \(10 s\) must not exceed backoff_max \(1 s\)$"),
        ({"probe_delay": 10, "probe_max_delay": 1}, r"^probe_delay \(10 s\) must not exceed probe_max_delay"),
        # (both given, one equal to its default: the other followed it, and nothing was raised)
        ({"backoff_base": 6, "backoff_max": 5}, r"^backoff_base \(6 s\) must not exceed backoff_max \(5 s\)$"),
        ({"backoff_base": 0.5, "backoff_max": 0.4}, r"^backoff_base \(0\.5 s\) must not exceed backoff_max \(0\.4 s\)$"),
        ({"probe_delay": 40, "probe_max_delay": 30.0}, r"^probe_delay \(40 s\) must not exceed probe_max_delay \(30 s\)$"),
        ({"probe_delay": 2.0, "probe_max_delay": 1}, r"^probe_delay \(2 s\) must not exceed probe_max_delay \(1 s\)$"),
        ({"stagger": [1.0, 0.3]}, r"stagger must be a non-empty sequence of seconds >= 0 that never goes down"),
    ]:
        with pytest.raises(ValueError, match=said):
            Client("http://127.0.0.1:9", **options)  # type: ignore[arg-type]
    # One of a pair given: the other, left at its default, follows it.
    assert Client("http://127.0.0.1:9", backoff_max=0.3).backoff_base == 0.3
    assert Client("http://127.0.0.1:9", probe_delay=60.0).probe_max_delay == 60.0
    with pytest.raises(TypeError, match=r"token must be a str, a function returning one, or None, not int"):
        Client("http://127.0.0.1:9", token=123)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"headers must map str to str"):
        Client("http://127.0.0.1:9", headers={"X": 1})  # type: ignore[dict-item]
    # A header name holding a line break went to the wire as it was (the WebSocket upgrade
    # carried a second header of the caller's making); any bad header failed every rung
    # until connect_timeout. Refused where it is given.
    for headers, said in [
        ({"X-Evil: 1\r\nX-Injected": "yes"}, r"is not an HTTP header name"),
        ({"X A": "1"}, r"'X A' is not an HTTP header name"),
        ({"X-A": "a\r\nX-Injected: yes"}, r"the value of 'X-A' holds a line break or another control"),
        ({"X-A": "a\x00"}, r"the value of 'X-A' holds a line break or another control"),
        ({"X-A": "2 \u20ac"}, r"the value of 'X-A' holds characters beyond Latin-1"),
    ]:
        with pytest.raises(ValueError, match=said):
            Client("http://127.0.0.1:9", headers=headers)
    Client("http://127.0.0.1:9", headers={"Cookie": "a=b; c=d", "X-Name": "caf\u00e9\tok"})
    Client("http://127.0.0.1:9", connect_timeout=None, max_attempts=None, stagger=[0], token=lambda: "t")
    client = Client("http://127.0.0.1:9")
    with pytest.raises(ValueError, match=r"recent must be an int from 0 to 10000, not -5"):
        client.subscribe("room:a", recent=-5)
    await client.emit("e", 1)
    with pytest.raises(TimeoutError, match=r"flush: 1 messages not acknowledged within 0.05 s \(this client was "
                       r"never connected: call `await client.connect\(\)`\)") as late:
        await client.flush(timeout=0.05)
    # (a LadderError "timeout" too, as a call's and the browser's flush's: one except catches all)
    assert isinstance(late.value, LadderError) and late.value.code == "timeout"
    await client.close()


async def test_a_token_callable_that_raises_is_named_in_the_reason() -> None:
    server = FakeServer()

    def token() -> str:
        raise RuntimeError("the vault is sealed")

    client = FakeClient(server, transports=["websocket"], token=token, connect_timeout=0.3)
    with pytest.raises(Exception) as failed:
        await client.connect()
    assert "the client's token callable raised RuntimeError('the vault is sealed')" in str(failed.value)
    await client.close()


async def test_an_async_token_function_is_awaited_and_a_token_of_another_type_named() -> None:
    """An ``async def`` token was never awaited (``coroutine ... was never awaited``, and the
    server said ``invalid token: Not enough segments``); bytes were sent as they were."""
    server = FakeServer()

    async def fetched() -> str:
        await asyncio.sleep(0)
        return "from-the-vault"

    client = FakeClient(server, transports=["websocket"], token=fetched)
    await client.connect(timeout=5)
    assert server.hellos[0][1]["tok"] == "from-the-vault"
    await client.close()
    client = FakeClient(FakeServer(), transports=["websocket"], token=lambda: b"bytes", connect_timeout=0.3)
    with pytest.raises(Exception) as failed:
        await client.connect()
    assert "the token function returned bytes: return a str (or None)" in str(failed.value), failed.value
    await client.close()


async def test_an_address_or_argument_that_cannot_work_is_refused_at_once() -> None:
    """Each was taken, then retried for the whole connect_timeout and reported in a
    transport's words (``not enough values to unpack``, ``no Ladder endpoint at
    ws://host:port?x=1/ws``), or failed inside asyncio or with an IndexError."""
    import httpx  # noqa: PLC0415

    from ladder import Client  # noqa: PLC0415

    for url, said in [
        ("http://", "names no host"),
        ("http://127.0.0.1:notaport", "the port is not a number"),
        ("http://127.0.0.1:8000?x=1", "takes no query or fragment"),
        ("http://127.0.0.1:8000/#frag", "takes no query or fragment"),
        ("http://127.0 .0.1:8000/ladder", "a host holds no space"),  # (was connect_failed, after connect_timeout)
    ]:
        with pytest.raises(ValueError, match=said):
            Client(url)
    with pytest.raises(TypeError, match="url must be a str"):
        Client(b"http://127.0.0.1:8000")  # type: ignore[arg-type]
    # A path with a space goes as a browser writes it (its WebSocket upgrade went raw: bad_request).
    assert Client("http://127.0.0.1:8000/my app").endpoint.http("poll") == "http://127.0.0.1:8000/my%20app/poll"
    with pytest.raises(TypeError, match=r"http_client must be an httpx\.AsyncClient, not str"):
        Client("http://127.0.0.1:9", http_client="x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"ssl_context must be an ssl\.SSLContext"):
        Client("https://127.0.0.1:9", ssl_context="ca.pem")  # type: ignore[arg-type]
    async with httpx.AsyncClient() as http:
        client = Client("http://127.0.0.1:9/ladder", http_client=http)
        for call in (client.flush(timeout="5"), client.flush(timeout=-1), client.connect(timeout=0)):  # type: ignore[arg-type]
            with pytest.raises(ValueError, match=r"timeout is in seconds \(a number above 0, or None"):
                await call
        for since in (("e",), "abc", ("e", -1), (1, 2)):
            with pytest.raises(ValueError, match=r"since must be \(epoch, offset\)"):
                client.subscribe("room:a", since=since)  # type: ignore[arg-type]
        await client.close()


@pytest.mark.pure  # (records the pauses the core chose)
async def test_a_server_that_welcomes_then_refuses_is_reconnected_to_ever_more_slowly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A node that welcomes, then closes with ``engine_unavailable`` (Redis down, a message to
    apply): the client reconnected in [0, 0.5 s) every time, a few times a second for the
    whole outage. The pause now doubles from the second such connection in a row."""
    monkeypatch.setattr(random, "random", lambda: 0.5)
    chosen: list[tuple[str, float]] = []
    ended = Reconnect.ended

    def recorded(self: Reconnect, action: str, rand: float, lived: float | None = None) -> float:
        pause = ended(self, action, rand, lived)
        chosen.append((action, pause))
        return pause

    monkeypatch.setattr(Reconnect, "ended", recorded)
    server = FakeServer()
    client, connected = await connected_client(server, transports=["websocket"], backoff_base=0.02, backoff_max=5.0)
    for _ in range(5):
        server.current.interrupt("websocket: closed by the server (1011)", LadderError("engine_unavailable"))
        await asyncio.wait_for(connected.get(), 5)
    times = [at for at, _ in server.hellos]
    pauses = [later - earlier for earlier, later in itertools.pairwise(times)]
    # 0.5 x 20 ms, then 0.5 x 40, 80, 160, 320 ms (each connection ended at once, refused):
    # each pause waited at least its doubled share. No upper bound on the wall clock: a busy
    # machine only lengthens them (10 ms became 33 ms once, and 113 ms in a full suite run);
    # that the early ones are short is the chosen pauses' part, below.
    assert all(pause >= 0.0095 * 2**k for k, pause in enumerate(pauses)), pauses
    assert chosen == [("back_off", 20 * 2**k / 2) for k in range(5)]
    server.current.interrupt("websocket: closed")  # a cut on the way, not a refusal: at once again
    await asyncio.wait_for(connected.get(), 5)
    # The pause the client chose, not the time it took: a loaded machine once stalled this
    # test's loop for 0.32 s, as long as the next doubled pause would have been.
    assert chosen[-1] == ("resume", 10.0), "a cut starts the count again"
    await client.close()


def test_a_token_longer_than_a_server_takes_is_refused_at_once() -> None:
    """It was refused on every connection (``bad_request``, naming the Authorization header the
    app never set) and retried for the whole connect_timeout."""
    from ladder import Client  # noqa: PLC0415

    with pytest.raises(ValueError, match=r"the token is 9,000 characters: a server takes at most 8,192"):
        Client("http://127.0.0.1:9", token="x" * 9000)


async def test_arguments_found_wrong_only_later_are_refused_where_given() -> None:
    """Port 0 was taken (the WebSocket rung then dialled port 80); ``transports`` as None or
    an int was "'NoneType' object is not iterable", as an iterator "at least one transport is
    needed"; ``refresh(timeout=0)`` called the token function first, ``refresh`` of a token
    over 8,192 characters was sent; ``events(max_buffer=...)`` failed at the first read, in
    deque's words (0: a stream that yielded nothing)."""
    from ladder import Client  # noqa: PLC0415

    with pytest.raises(ValueError, match=r"the port is not a number from 1 to 65535"):
        Client("http://127.0.0.1:0")
    for transports in (None, 5, iter(["websocket"]), [1]):
        with pytest.raises(TypeError, match=r"^transports must be a list of rung names, e.g. \['websocket', 'sse'\]"):
            Client("http://127.0.0.1:9", transports=transports)  # type: ignore[arg-type]
    asked: list[int] = []

    def token() -> str:
        asked.append(1)
        return "t"

    client = Client("http://127.0.0.1:9", token=token)
    with pytest.raises(ValueError, match=r"timeout is in seconds"):
        await client.refresh(timeout=0)
    assert asked == [], "the token function is not asked for a refresh that cannot be sent"
    with pytest.raises(ValueError, match=r"the token is 9,000 characters"):
        await client.refresh("x" * 9000)
    with pytest.raises(TypeError, match=r"token must be a str, not int"):
        await client.refresh(5)  # type: ignore[arg-type]
    for max_buffer in (0, -1, "5", 2.5):
        with pytest.raises(ValueError, match=r"^max_buffer must be a whole number >= 1"):
            client.events(max_buffer=max_buffer)  # type: ignore[arg-type]
    await client.close()


async def test_an_event_stream_hears_events_from_its_call_not_its_first_read() -> None:
    """``events()`` made before ``connect()`` and read after it missed the connection's
    events: the stream registered at its first read."""
    server = FakeServer()
    client = FakeClient(server)
    stream = client.events()
    await client.connect(timeout=5)
    first = await asyncio.wait_for(anext(stream), 5)
    assert first.name in ("session_lost", "connected", "state", "transport"), first
    await client.close()


async def test_connect_while_the_client_reconnects_waits_for_the_next_connection() -> None:
    """``connect()`` returned at once after the first connection, connected or not: a caller
    awaiting it during a reconnect went on while nothing was connected."""
    server = FakeServer()
    client, events = await connected_client(server, backoff_base=0.05, backoff_max=0.05)
    server.refuse_opens = 3  # the next three opens (one race and its retries) are refused
    lost = client.server.current
    await lost.close()  # the transport drops
    waiting = asyncio.ensure_future(client.connect(timeout=5))
    await asyncio.sleep(0)  # (let connect() run up to its wait)
    assert not waiting.done(), f"connect() returned while {client.state}"
    await asyncio.wait_for(events.get(), 5)  # connected again
    await asyncio.wait_for(waiting, 5)
    assert client.state == "connected"
    await client.close()


async def test_a_flush_waiting_when_the_client_gives_up_ends_with_why() -> None:
    """A flush already waiting when the client gave up on its own (here: not connected within
    ``connect_timeout``) waited forever, ``close()`` or not."""
    server = FakeServer()
    server.refuse_opens = 10**6
    client = FakeClient(server, connect_timeout=0.3, backoff_base=0.05, backoff_max=0.05)
    await client.emit("echo", 1)  # queued: nothing acknowledges it
    waiting = asyncio.ensure_future(client.flush())
    with pytest.raises(LadderError) as raised:
        await client.connect()
    assert raised.value.code == "connect_failed"
    with pytest.raises(LadderError) as flushed:
        await asyncio.wait_for(waiting, 5)
    assert flushed.value.code == "connect_failed"
    await client.close()


async def test_a_token_function_is_asked_once_per_race_not_once_per_rung() -> None:
    """Every rung of a race called the token function (an app fetching its token from an
    auth service made four requests per reconnect)."""
    calls = 0

    async def token() -> str:
        nonlocal calls
        calls += 1
        return "t"

    server = FakeServer()
    server.refuse_opens = 4  # the first race: every rung refused
    client = FakeClient(server, token=token, stagger=(0.0,), backoff_base=0.01, backoff_max=0.01)
    await client.connect(timeout=5)
    assert calls == 2, calls  # one per race: the refused one and the one that won
    await client.close()


async def test_a_token_function_that_never_answers_is_named_in_connect_failed() -> None:
    """It was reported as every rung's "no answer", as if the server were not there."""

    async def token() -> str:
        await asyncio.Event().wait()
        return "never"

    client = FakeClient(FakeServer(), token=token, connect_timeout=0.3)
    with pytest.raises(LadderError) as raised:
        await client.connect()
    assert raised.value.code == "connect_failed"
    assert "websocket: still waiting for the client's token function" in raised.value.reason
    await client.close()


def test_subscribe_outside_an_event_loop_says_where_to_call_it() -> None:
    """It raised asyncio's own ``no running event loop`` from inside the subscription."""
    from ladder import Client  # noqa: PLC0415

    client = Client("http://127.0.0.1:9")
    with pytest.raises(RuntimeError, match=r"^subscribe\(\) needs the running event loop .*call it from async code"):
        client.subscribe("room:a")


@pytest.mark.parametrize("timed_out", ["waiting", "writing"])
async def test_a_call_that_timed_out_absorbs_its_late_reply_and_leaves_nothing_for_the_close(timed_out: str) -> None:
    """A call that timed out while its message was being written left its future waiting; a
    late reply (or the client's close) failed it, and nobody retrieved that ("Future
    exception was never retrieved" on stderr, on the HTTP rungs). One that timed out waiting
    for its reply stopped waiting for it: a late ``err`` became an error event, where the
    browser client absorbs a late reply. Both are absorbed now."""
    import gc  # noqa: PLC0415

    loop = asyncio.get_running_loop()
    reported: list[str] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(str(context.get("message"))))
    try:
        server = FakeServer()
        client, _ = await connected_client(server, transports=["longpoll"])
        errors: list[object] = []
        pushed = asyncio.Event()
        client.on("error", errors.append)
        client.on("push", lambda _push: pushed.set())
        if timed_out == "writing":
            server.hold_writes = asyncio.Event()

        async def call() -> str:
            try:
                await client.call("never", 1, timeout=0.05)
            except LadderError as exc:  # (its traceback, and the call's future, go with it)
                return exc.code
            return "answered"

        assert await call() == "timeout"
        if server.hold_writes is not None:
            server.hold_writes.set()
        await until(lambda: server.ups("call"), "the call written")
        server.refuse(int(server.ups("call")[0]["i"]), "handler_error", "late")
        server.push({"t": "push", "ev": "after"})
        async with asyncio.timeout(5):
            await pushed.wait()  # (frames are read in order: the late reply was read first)
        assert errors == [], "a late reply to a call that timed out is no error event"
        await client.close()
        gc.collect()
        await asyncio.sleep(0)
        assert reported == [], reported
    finally:
        loop.set_exception_handler(None)


async def test_an_automatic_refresh_the_server_refuses_is_told_as_an_error_event() -> None:
    """It was a WARNING line only: the app first heard of it when the session ended at
    ``exp``, with no chance to sign its user in again meanwhile."""
    import time  # noqa: PLC0415

    from ladder.client import ServerError  # noqa: PLC0415

    server = FakeServer()
    server.exp = time.time() + 2.0  # (lives 2 s: refreshed halfway, about 1 s from now)
    client, _ = await connected_client(server, transports=["websocket"], token=lambda: "fresh")
    told: asyncio.Queue[object] = asyncio.Queue()
    client.on("error", told.put_nowait)
    await until(lambda: server.ups("refresh"), "the refresh written", timeout=5)
    server.refuse(int(server.ups("refresh")[0]["i"]), "unauthorized", "signature expired")
    error = await asyncio.wait_for(told.get(), 5)
    assert error == ServerError("unauthorized", "token refresh failed: signature expired")
    assert client.state == "connected", "the session goes on until exp"
    await client.close()


async def test_a_subscribe_refused_before_it_was_sent_leaves_nothing_behind() -> None:
    """Refused with ``queue_full`` (or a ``TypeError``), the subscription stayed in the client's
    table: the next ``subscribe`` returned it without sending anything (``ready()`` waited for
    ever), and one whose name cannot travel broke the next session's renewals (the client
    gave up with ``internal``)."""
    server = FakeServer()
    client, _ = await connected_client(server, transports=["websocket"], max_queue=2)
    server.hold_writes = asyncio.Event()  # (nothing acknowledged: the queue fills)
    await client.emit("e", 1)
    await client.emit("e", 2)
    with pytest.raises(LadderError) as full:
        client.subscribe("room:a")
    assert full.value.code == "queue_full"
    with pytest.raises(TypeError, match="lone surrogate at ch"):
        await client.publish("room:\ud800", 1)
    server.hold_writes.set()
    await until(lambda: len(server.ups("emit")) == 2, "the emits written")
    sub = client.subscribe("room:a")
    (ask,) = await sub_written(server, 0)
    assert ask["ch"] == "room:a", "sent this time"
    server.push({"t": "reply", "re": ask["i"], "d": {"ch": "room:a", "ep": "E", "off": 0, "rec": True, "n": 0}})
    assert (await asyncio.wait_for(sub.ready(), 5)).channel == "room:a"
    assert list(client._subs) == ["room:a"]
    await client.close()


async def test_unsubscribing_an_ended_subscription_leaves_the_channel_s_newer_one_alone() -> None:
    """``old.unsubscribe()`` (in a ``finally``, say) after ``new = subscribe(channel)`` ended
    ``new``; and ``ready()`` of a subscription unsubscribed before the server confirmed it said
    "client is closed" of a connected client."""
    server = FakeServer()
    client, _ = await connected_client(server, transports=["websocket"])
    old = client.subscribe("room:b")
    await old.unsubscribe()
    with pytest.raises(LadderError) as early:
        await old.ready()
    assert early.value.code == "closed" and "unsubscribed from 'room:b' before the server confirmed it" in str(early.value)
    new = client.subscribe("room:b")
    await old.unsubscribe()
    assert new.active and client._subs.get("room:b") is new
    await client.close()


def test_a_client_used_from_another_event_loop_says_so_naming_the_fix() -> None:
    """After the ``asyncio.run()`` that connected it, a call from a second one timed out
    ("no reply") and ``close()`` raised a bare "Event loop is closed"."""
    made: dict[str, FakeClient] = {}

    async def first() -> None:
        made["client"], _ = await connected_client(FakeServer(), transports=["websocket"])

    async def second(use: str) -> None:
        client = made["client"]
        await (client.call("echo", 1, timeout=1) if use == "call" else client.close())

    asyncio.run(first())
    for use in ("call", "close"):
        with pytest.raises(RuntimeError, match=r"works in the event loop it connected in.*make one per loop"):
            asyncio.run(second(use))


async def test_an_answer_that_arrived_is_not_held_back_by_a_later_message_s_slow_write() -> None:
    """A call awaited the client's writer before its answer, and the writer, one at a time,
    went on with the next call's POST, which the server holds while that handler runs (up to
    the POST's 10 s timeout): ``gather(call("slow", 2), call("slow", 12))`` on long polling got
    the first answer after 12 s, though it had arrived at 2 s."""
    server = FakeServer()
    client, _ = await connected_client(server, transports=["longpoll"])
    first_written, second_written = asyncio.Event(), asyncio.Event()
    server.stalls = [first_written, second_written]
    first = asyncio.create_task(client.call("first", 1, timeout=10))
    await until(lambda: len(server.ups("call")) == 1, "the first call written (its answer slow)")
    second = asyncio.create_task(client.call("second", 2, timeout=10))
    await until(lambda: len(client.peer.outbox) == 2, "the second call queued")
    first_written.set()
    await until(lambda: len(server.ups("call")) == 2, "the second call written (its answer slow)")
    server.push({"t": "reply", "re": 1, "d": "one"})
    assert await asyncio.wait_for(first, 3) == "one", "not held back by the second call's write"
    second_written.set()
    server.push({"t": "reply", "re": 2, "d": "two"})
    assert await asyncio.wait_for(second, 3) == "two"
    await client.close()
