"""Transport details: SSE framing and Last-Event-ID, gzip, base64-free msgpack, deflate switch."""

from __future__ import annotations

import gzip

import httpx
import msgpack
import orjson
import websockets

from tests.support.server import LadderServer


async def test_sse_stream_shape_and_last_event_id_resume(server: LadderServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        opened = await http.get("/poll", params={"v": 1})
        welcome = orjson.loads(opened.content.split(b"\n")[0])
        sid, token = welcome["sid"], welcome["rt"]
        auth = {"x-ladder-rt": token}
        await http.post(
            "/send",
            params={"sid": sid},
            headers=auth,
            content=b'{"t":"sub","i":1,"ch":"feed:sse"}\n'
            b'{"t":"call","i":2,"ev":"publish","d":{"channel":"feed:sse","count":5}}',
        )

        async def events(
            headers: dict[str, str],
        ) -> tuple[httpx.Headers, bytes, list[tuple[int | None, dict]]]:
            """Read the stream until three sequenced events arrived; parse every event so far."""
            raw = b""
            async with http.stream("GET", "/sse", params={"sid": sid, "rt": token}, headers=headers) as resp:
                async for chunk in resp.aiter_bytes():
                    raw += chunk
                    parsed: list[tuple[int | None, dict]] = []
                    for block in raw.split(b"\n\n")[:-1]:
                        lines = block.split(b"\n")
                        ids = [int(line[4:]) for line in lines if line.startswith(b"id: ")]
                        data = [line[6:] for line in lines if line.startswith(b"data: ")]
                        if data:
                            parsed.append((ids[0] if ids else None, orjson.loads(data[0])))
                    if sum(1 for i, _ in parsed if i is not None) >= 3:
                        return resp.headers, raw, parsed
            raise AssertionError("stream ended")

        headers, raw, got = await events({})
        assert headers["content-type"].startswith("text/event-stream")
        assert headers["cache-control"].startswith("no-cache") and headers["x-accel-buffering"] == "no"
        assert raw.startswith(b":" + b" " * 2048 + b"\n\n"), "padding prelude first"
        assert got[0] == (None, {**got[0][1], "t": "welcome"}), "the welcome has no id"
        sequenced = [(i, f) for i, f in got if i is not None]
        assert all(i == f["s"] for i, f in sequenced), "id: carries the session sequence number"

        # Reconnect the way a browser does: Last-Event-ID says what it already has.
        last = sequenced[1][0]
        _, _, again = await events({"last-event-id": str(last)})
        assert next(i for i, _ in again if i is not None) == last + 1


async def test_poll_gzip_and_base64_free_msgpack(server: LadderServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        opened = await http.get("/poll", params={"v": 1, "enc": "msgpack"})
        welcome = msgpack.unpackb(opened.content, raw=False)
        sid, auth = welcome["sid"], {"x-ladder-rt": welcome["rt"]}
        blob = bytes(range(256)) * 8
        body = msgpack.packb({"t": "call", "i": 1, "ev": "echo", "d": blob})
        await http.post(
            "/send",
            params={"sid": sid},
            headers={**auth, "content-type": "application/msgpack"},
            content=body,
        )
        raw = await http.get(
            "/poll",
            params={"sid": sid, "ack": 0, "enc": "msgpack"},
            headers={**auth, "accept-encoding": "identity"},
        )
        assert raw.headers["content-type"] == "application/msgpack" and "content-encoding" not in raw.headers
        assert blob in raw.content and b"$b" not in raw.content, "binary travels as raw bytes"
        frames = list(msgpack.Unpacker(__import__("io").BytesIO(raw.content), raw=False))
        assert next(f for f in frames if f["t"] == "reply")["d"]["data"] == blob

        zipped = await http.get(
            "/poll", params={"sid": sid, "ack": 0, "enc": "json"}, headers={**auth, "accept-encoding": "gzip"}
        )
        assert zipped.headers["content-encoding"] == "gzip"
        assert b'"$b"' in zipped.content, "httpx decoded the gzip body; JSON carries bytes as base64"
        small = await http.get(
            "/poll", params={"sid": sid, "ack": 2}, headers={**auth, "accept-encoding": "gzip"}
        )
        assert "content-encoding" not in small.headers, "small bodies are not worth compressing"
        assert gzip.compress(b"x")  # the stdlib gzip the server uses is available


async def test_permessage_deflate_is_off_by_default_and_can_be_switched_on(server: LadderServer) -> None:
    async def extensions(url: str) -> list[str]:
        async with websockets.connect(url.replace("http", "ws") + "/ws") as ws:
            return [str(ext.name) for ext in ws.protocol.extensions]

    assert await extensions(server.url) == []
    with LadderServer({"heartbeat": 1.0}, args=("--ws-deflate",)) as deflating:
        assert await extensions(deflating.url) == ["permessage-deflate"]


async def test_client_js_is_served_compressed_with_an_etag(server: LadderServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        plain = await http.get("/client.js", headers={"accept-encoding": "identity"})
        assert plain.status_code == 200 and plain.headers["content-type"].startswith("text/javascript")
        assert b"export function connect" in plain.content
        zipped = await http.get("/client.js", headers={"accept-encoding": "gzip"})
        assert zipped.headers["content-encoding"] == "gzip"
        assert int(zipped.headers["content-length"]) < len(plain.content) / 2
        assert zipped.content == plain.content  # httpx decoded it
        # The modules client.js imports are served the same way.
        module = await http.get("/driver.js", headers={"accept-encoding": "identity"})
        assert module.status_code == 200 and module.headers["content-type"].startswith("text/javascript")
        packed = await http.get("/driver.js", headers={"accept-encoding": "gzip"})
        assert packed.headers["content-encoding"] == "gzip"
        assert int(packed.headers["content-length"]) < len(module.content) / 3
        assert packed.content == module.content
        again = await http.get("/client.js", headers={"if-none-match": plain.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
        types = await http.get("/client.d.ts")
        assert types.status_code == 200 and b"connect" in types.content


async def test_a_posted_ping_between_two_short_polls_is_answered_by_the_next(server: LadderServer) -> None:
    """Short polling has nothing attached between two polls: the pong of a POSTed ping was
    dropped, so a short-polling client could never pass its liveness check (protocol §9.2)."""
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        opened = await http.get("/poll", params={"v": 1})
        welcome = orjson.loads(opened.content.split(b"\n")[0])
        sid, auth = welcome["sid"], {"x-ladder-rt": welcome["rt"]}
        posted = await http.post("/send", params={"sid": sid}, headers=auth, content=b'{"t":"ping","n":41}')
        assert posted.status_code == 204
        # (a 204 has no content: it said Content-Type: application/json, Content-Length: 0)
        assert not {"content-type", "content-length", "transfer-encoding"} & set(posted.headers), posted.headers
        answer = await http.get("/poll", params={"sid": sid, "ack": 0}, headers=auth)
        frames = [orjson.loads(line) for line in answer.content.split(b"\n") if line]
        assert {"t": "pong", "n": 41} in frames, frames


async def test_a_rung_switched_off_is_refused_naming_those_offered_also_to_a_post_asking_why() -> None:
    """``unsupported_transport`` said only "websocket is not offered by this server"; a browser,
    which cannot read a refused upgrade or event stream, asks by an empty ``POST send`` naming
    the rungs (``tr``)."""
    offered = ["longpoll", "poll"]
    upgrade = {
        "connection": "upgrade",
        "upgrade": "websocket",
        "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
        "sec-websocket-version": "13",
    }
    with LadderServer({"transports": offered}, args=("--asgi-ws",)) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            refusals = [
                await http.get("/sse", params={"v": 1}),
                await http.get("/ws", headers=upgrade),
                await http.post("/send", params={"tr": "websocket,sse"}),
            ]
            for answer, named in zip(refusals, ["sse is", "websocket is", "websocket, sse are"], strict=True):
                assert answer.status_code == 400
                assert answer.json() == {
                    "t": "err",
                    "code": "unsupported_transport",
                    "reason": f"{named} not offered by this server, which offers longpoll, poll",
                    "details": {"tr": offered},
                }
            nothing_more = await http.post("/send", params={"tr": "longpoll"})
            assert (nothing_more.status_code, nothing_more.content) == (204, b""), "nothing refused"
            unknown = await http.post("/send", params={"tr": "carrier-pigeon"})
            assert (unknown.status_code, unknown.json()["code"]) == (400, "bad_frame")
    with LadderServer({"transports": offered}) as server:  # (the native driver: at the hello)
        async with websockets.connect(server.url.replace("http", "ws") + "/ws") as ws:
            await ws.send('{"t":"hello","v":1}')
            refused = orjson.loads(await ws.recv())
            await ws.wait_closed()
        assert refused["details"] == {"tr": offered} and ws.close_code == 4400
        assert ws.close_reason == (
            "unsupported_transport: websocket is not offered by this server, which offers longpoll, poll"
        )


async def test_a_long_poll_asking_a_shorter_hold_is_answered_within_it() -> None:
    """protocol §3.5 ``hold``: a proxy that cuts requests held past its own timeout (10 s, a
    504) cut every long poll held the server's 25 s; a client that saw it asks for less."""
    import time  # noqa: PLC0415

    with LadderServer({"poll_timeout": 4.0}) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            opened = await http.get("/longpoll", params={"v": 1})
            welcome = orjson.loads(opened.content.split(b"\n")[0])
            assert welcome["poll"] == 4000
            poll = {"sid": welcome["sid"], "ack": 0}
            auth = {"x-ladder-rt": welcome["rt"]}
            started = time.monotonic()
            held = await http.get("/longpoll", params={**poll, "hold": 300}, headers=auth)
            took = time.monotonic() - started
            assert (held.status_code, held.content) == (200, b""), "released empty, as at poll_timeout"
            assert 0.25 <= took < 2.0, f"held {took:.2f} s for a hold of 300 ms (poll_timeout 4 s)"
            started = time.monotonic()
            longer = await http.get("/longpoll", params={**poll, "hold": "9" * 15}, headers=auth)  # (refused past 9 digits)
            took = time.monotonic() - started
            assert longer.status_code == 200 and 3.5 <= took < 6.0, f"at most poll_timeout: {took:.2f} s"
            for bad in ("-1", "1.5", "soon", "1e3", "+5"):
                refused = await http.get("/longpoll", params={**poll, "hold": bad}, headers=auth)
                assert (refused.status_code, refused.json()["code"]) == (400, "bad_frame"), bad
                assert "'hold'" in refused.json()["reason"]
