"""RFC 6455 and HTTP edges, checked with raw sockets against ``ladder serve``, both drivers.

Each test speaks bytes to a real server: the framing, limits and refusals a third-party
client (or an attacker) meets, not what the reference clients happen to do.
"""

from __future__ import annotations

import base64
import os
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgpack
import orjson
import pytest

from ladder.server.rfc6455 import FrameClock
from tests.support.metrics import metric
from tests.support.server import LadderServer

DRIVERS = {"native": (), "asgi": ("--asgi-ws",)}
FRAME_TIMEOUT = 1.0
HEADER_TIMEOUT = 1.0
MAX_HEADER = 8192


@pytest.fixture(params=sorted(DRIVERS))
def edge_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LadderServer]:
    """heartbeat 20 s: a stalled message must not wait for the heartbeat to notice it."""
    config = {"heartbeat": 20.0, "limits": {"frame_timeout": FRAME_TIMEOUT}}
    args = ("--header-timeout", str(HEADER_TIMEOUT), "--max-header-size", str(MAX_HEADER), *DRIVERS[request.param])
    with LadderServer(config, args=args, log=tmp_path / "server.log") as server:
        yield server


def log_of(server: LadderServer) -> str:
    assert server.log is not None
    return server.log.read_text(errors="replace")


# -- raw HTTP and WebSocket ------------------------------------------------------------------


def connect(server: LadderServer, *, rcvbuf: int = 0) -> socket.socket:
    """``rcvbuf``: a receive buffer this small (set before connecting, so the window stays small)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", server.port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk
        body += chunk
    return status, headers, body


def upgrade(
    server: LadderServer,
    path: str = "/ws",
    *,
    version: str = "13",
    origin: str | None = None,
    key: bool = True,
    rcvbuf: int = 0,
    then: bytes = b"",
    extra: tuple[str, ...] = (),
) -> tuple[socket.socket, int, dict[str, str], bytes]:
    """``then``: bytes sent with the request, in the same write (before the 101); ``extra``:
    more header lines."""
    sock = connect(server, rcvbuf=rcvbuf)
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: 127.0.0.1:{server.port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Version: {version}",
    ]
    if key:
        lines.append(f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}")
    if origin:
        lines.append(f"Origin: {origin}")
    lines.extend(extra)
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + then)
    status, headers, body = read_response(sock)
    return sock, status, headers, body


def frame_header(opcode: int, length: int, *, fin: bool = True) -> bytes:
    """A masked client frame header (the mask key is zero: payloads go as they are)."""
    first = (0x80 if fin else 0) | opcode
    if length < 126:
        head = struct.pack("!BB", first, 0x80 | length)
    elif length < 65536:
        head = struct.pack("!BBH", first, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, length)
    return head + b"\0\0\0\0"


def frame(opcode: int, payload: bytes) -> bytes:
    return frame_header(opcode, len(payload)) + payload


def recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    first, second = recv_exact(sock, 2)
    length = second & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", recv_exact(sock, 2))
    elif length == 127:
        (length,) = struct.unpack("!Q", recv_exact(sock, 8))
    return first & 0x0F, recv_exact(sock, length)


def read_until_close(sock: socket.socket) -> tuple[int, list[bytes]]:
    """Frames up to the server's close frame: (close code, payloads before it)."""
    seen = []
    while True:
        opcode, payload = read_frame(sock)
        if opcode == 0x8:
            return struct.unpack("!H", payload[:2])[0], seen
        seen.append(payload)


def close_of(sock: socket.socket) -> tuple[int, str]:
    """The server's close frame: (code, reason)."""
    while True:
        opcode, payload = read_frame(sock)
        if opcode == 0x8:
            return struct.unpack("!H", payload[:2])[0], payload[2:].decode()


def open_ws(server: LadderServer, *, binary: bool = False, rcvbuf: int = 0) -> socket.socket:
    sock, status, _, _ = upgrade(server, rcvbuf=rcvbuf)
    assert status == 101
    if binary:
        sock.sendall(frame(0x2, msgpack.packb({"t": "hello", "v": 1})))
    else:
        sock.sendall(frame(0x1, b'{"t":"hello","v":1}'))
    _, payload = read_frame(sock)
    welcome = msgpack.unpackb(payload) if binary else orjson.loads(payload.split(b"\n")[0])
    assert welcome["t"] == "welcome", welcome
    return sock


def closed_within(sock: socket.socket, seconds: float) -> float:
    """Seconds until the server closed the connection (EOF or reset), at most ``seconds``."""
    started = time.monotonic()
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        pytest.fail(f"the connection was still open after {seconds} s")
    return time.monotonic() - started


# -- the tests -------------------------------------------------------------------------------


def test_a_message_over_the_limit_is_refused_at_its_header(edge_server: LadderServer) -> None:
    sock = open_ws(edge_server)
    started = time.monotonic()
    sock.sendall(frame_header(0x2, 8 * 1024 * 1024))  # announces 8 MiB; the payload never comes
    code, reason = close_of(sock)
    assert code == 1009
    assert reason.startswith("frame_too_large: "), reason  # (the library's words alone, before)
    assert time.monotonic() - started < FRAME_TIMEOUT  # at once, not when the payload stalls
    sock.close()


def test_a_stalled_message_is_timed_out(edge_server: LadderServer) -> None:
    sock = open_ws(edge_server)
    started = time.monotonic()
    sock.sendall(frame_header(0x1, 1000) + b'{"t":"pi')  # 1000 bytes announced, 8 sent
    code, _ = read_until_close(sock)
    elapsed = time.monotonic() - started
    assert code == 4408
    assert FRAME_TIMEOUT * 0.9 <= elapsed < FRAME_TIMEOUT + 4  # far below the 41 s of the heartbeat
    sock.close()


def test_a_message_sent_slowly_but_completely_within_the_deadline_is_applied(edge_server: LadderServer) -> None:
    sock = open_ws(edge_server)
    message = b'{"t":"ping","n":7}'
    sock.sendall(frame_header(0x1, len(message)) + message[:5])
    time.sleep(FRAME_TIMEOUT / 4)  # the pause is the point of the test: a slow but legal writer
    sock.sendall(message[5:])
    for _ in range(5):
        _, payload = read_frame(sock)
        if b'"pong"' in payload:
            break
    else:
        pytest.fail("no pong")
    # the deadline was disarmed with the message: the connection stays open past it
    sock.settimeout(FRAME_TIMEOUT * 1.5)
    with pytest.raises(TimeoutError):
        read_frame(sock)
    sock.close()


def test_invalid_utf8_in_a_text_frame_closes_with_1007_without_a_traceback(edge_server: LadderServer) -> None:
    for _ in range(2):
        sock = open_ws(edge_server)
        sock.sendall(frame(0x1, b'{"t":"ping","x":"\xff\xfe"}'))
        code, reason = close_of(sock)
        assert (code, reason) == (1007, "bad_frame: invalid UTF-8 in a text message")  # (protocol §8's form)
        sock.close()
    sock = open_ws(edge_server)  # the server is fine
    sock.close()
    assert "Traceback" not in log_of(edge_server)


def test_a_frame_refused_for_a_field_is_logged_on_its_rung(tmp_path: Path) -> None:
    """ops.md: refusals are logged ``refused on <transport> (…)``. A frame with a field out
    of range (answered with an ``err`` naming it) was logged ``refused on frame (…)``."""
    with LadderServer(args=("--log-level", "info"), log=tmp_path / "server.log") as server:
        sock = open_ws(server)
        sock.sendall(frame(0x1, b'{"t":"sub","i":1,"ch":""}'))
        _, payload = read_frame(sock)
        [error] = [f for f in map(orjson.loads, payload.split(b"\n")) if f["t"] == "err"]
        assert (error["code"], error["re"]) == ("bad_frame", 1), error
        sock.close()
        deadline = time.monotonic() + 5
        while not (lines := [line for line in log_of(server).splitlines() if "field 'ch'" in line]):
            assert time.monotonic() < deadline, log_of(server)
            time.sleep(0.05)  # (the line is written after the err: the log file says when)
    assert len(lines) == 1 and "refused on websocket (" in lines[0], lines


def test_a_close_frame_whose_reason_is_not_utf8_closes_with_1007_and_a_bad_code_with_1002(
    edge_server: LadderServer,
) -> None:
    """Protocol §8: 1007 for a close reason that is not UTF-8 (as for a text message, and in
    its words), 1002 for a close code RFC 6455 does not allow."""
    sock = open_ws(edge_server)
    sock.sendall(frame(0x8, struct.pack("!H", 1000) + b"\xff\xfe"))
    assert close_of(sock) == (1007, "bad_frame: invalid UTF-8 in a close reason")
    sock.close()
    sock = open_ws(edge_server)
    sock.sendall(frame(0x8, struct.pack("!H", 1005)))
    code, reason = close_of(sock)
    assert code == 1002 and reason.startswith("bad_frame: "), (code, reason)
    sock.close()
    assert "Traceback" not in log_of(edge_server)


def test_a_connection_opened_is_not_a_line_of_the_log_at_info(tmp_path: Path) -> None:
    """The websockets library logged "connection open" at INFO for every WebSocket (the native
    driver's handshake is its protocol object): at thousands of connections, the whole log."""
    with LadderServer(args=("--log-level", "info"), log=tmp_path / "server.log") as server:
        for _ in range(3):
            open_ws(server).close()
        upgrade(server, version="8")[0].close()  # a refusal: logged at INFO
        deadline = time.monotonic() + 5
        while "refused on websocket" not in log_of(server) and time.monotonic() < deadline:
            time.sleep(0.05)  # (the log is another process's file: nothing to await)
    log = log_of(server)
    assert "refused on websocket" in log, log
    assert "connection open" not in log, log


def test_an_unsupported_websocket_version_gets_426_naming_version_13(edge_server: LadderServer) -> None:
    sock, status, headers, body = upgrade(edge_server, version="8")
    assert status == 426
    assert headers.get("sec-websocket-version") == "13"
    assert headers.get("content-type") == "application/json"
    assert orjson.loads(body)["t"] == "err"
    sock.close()


def _server_frame(sock: socket.socket, data: bytes) -> tuple[bytes, bytes]:
    """The payload of the next server frame (under 64 KB) from ``data`` and then the socket,
    and what is left after it."""
    def have(size: int) -> bytes:
        nonlocal data
        while len(data) < size:
            chunk = sock.recv(65536)
            assert chunk, "closed"
            data += chunk
        return data

    length, start = have(2)[1] & 0x7F, 2
    if length == 126:
        (length,), start = struct.unpack("!H", have(4)[2:4]), 4
    have(start + length)
    return data[start : start + length], data[start + length :]


def test_frames_sent_with_the_upgrade_request_before_the_101_are_read(edge_server: LadderServer) -> None:
    """A client should wait for the 101, but one that sends its hello in the same write
    loses nothing: uvicorn dropped what followed the request in that read, so the hello was
    never answered and the connection was closed 10 s later (4400 "no hello frame in time")."""
    early = frame(0x1, b'{"t":"hello","v":1}') + frame(0x1, b'{"t":"ping","n":7}')
    sock, status, _, data = upgrade(edge_server, then=early)  # (data: what came with the 101)
    assert status == 101
    frames: list[dict[str, object]] = []
    while len(frames) < 2:
        payload, data = _server_frame(sock, data)
        frames += [orjson.loads(line) for line in payload.split(b"\n")]
    assert [f["t"] for f in frames] == ["welcome", "pong"] and frames[1].get("n") == 7, frames
    sock.close()


def test_a_refused_upgrade_answers_with_the_json_error(edge_server: LadderServer) -> None:
    sock, status, headers, body = upgrade(edge_server, origin="http://evil.example")
    assert status == 403
    assert headers.get("content-type") == "application/json"
    error = orjson.loads(body)
    assert error["t"] == "err" and error["code"] == "origin_not_allowed" and error["reason"]
    sock.close()
    sock, status, headers, body = upgrade(edge_server, path="/nope")
    assert status == 404
    assert orjson.loads(body)["code"] == "not_found"
    sock.close()
    sock, status, headers, body = upgrade(edge_server, key=False)
    assert status == 400
    assert headers.get("content-type") == "application/json"
    assert orjson.loads(body)["code"] == "bad_request"
    sock.close()


def test_a_msgpack_timestamp_extension_is_refused(edge_server: LadderServer) -> None:
    sock = open_ws(edge_server, binary=True)
    emit = {"t": "emit", "i": 1, "ev": "echo", "d": msgpack.Timestamp(0)}
    sock.sendall(frame(0x2, msgpack.packb(emit)))
    sock.sendall(frame(0x2, msgpack.packb({"t": "ping", "n": 8})))
    frames = []
    while not any(f.get("t") == "pong" for f in frames):
        _, payload = read_frame(sock)
        frames.extend(_unpack_all(payload))
    errors = [f for f in frames if f.get("t") == "err"]
    assert [e["code"] for e in errors] == ["bad_frame"], frames
    assert not any(f.get("t") == "reply" for f in frames)
    sock.close()


def _unpack_all(payload: bytes) -> list[dict[str, object]]:
    unpacker = msgpack.Unpacker(raw=False, timestamp=0)
    unpacker.feed(payload)
    return list(unpacker)


def test_a_post_over_the_size_limit_gets_413_and_the_connection_closes(edge_server: LadderServer) -> None:
    sock = connect(edge_server)
    started = time.monotonic()
    sock.sendall(
        b"POST /send?sid=abc&rt=abc HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n"
        b"Content-Length: 50000000\r\n\r\n" + b"x" * 1000  # 50 MB announced, a little sent
    )
    status, headers, body = read_response(sock)
    assert status == 413
    assert headers.get("connection") == "close"
    assert orjson.loads(body)["code"] == "frame_too_large"
    closed_within(sock, 3.0)
    assert time.monotonic() - started < 5.0  # not the 75 s of keep-alive
    sock.close()


def test_a_post_body_that_stalls_is_timed_out(edge_server: LadderServer) -> None:
    """Headers in time, then 5 bytes of a 1,000-byte body and silence: the connection was held
    for ever (260 of them took every descriptor of a server)."""
    sock = connect(edge_server)
    sock.sendall(
        b"POST /send?sid=abc&rt=abc HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + b'{"t":'
    )
    status, headers, body = read_response(sock)
    assert status == 408 and headers.get("connection") == "close"
    assert orjson.loads(body)["code"] == "heartbeat_timeout"
    assert closed_within(sock, 3.0) < 3.0
    sock.close()


def test_a_post_naming_no_session_whose_body_stalls_is_timed_out_too(edge_server: LadderServer) -> None:
    """ops.md: a POST's body that stops arriving gets 408 and the connection is closed. One
    naming no session was refused 400 before its body was read, and its connection stayed
    open, the body unfinished, until the 75 s of keep-alive."""
    sock = connect(edge_server)
    started = time.monotonic()
    sock.sendall(b"POST /send HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
    status, headers, body = read_response(sock)
    assert status == 408 and headers.get("connection") == "close", (status, headers, body)
    assert closed_within(sock, 3.0) < 3.0
    assert time.monotonic() - started < FRAME_TIMEOUT + 4
    sock.close()


def test_a_post_refused_before_its_body_is_read_does_not_hold_its_connection(edge_server: LadderServer) -> None:
    """A POST refused for its origin, before its body is read, whose body stalls: answered
    within a second on a connection then closed. It got its 403 at once, but the connection
    stayed open, the body unfinished, until the 75 s of keep-alive."""
    sock = connect(edge_server)
    started = time.monotonic()
    sock.sendall(
        b"POST /send?sid=a&rt=b HTTP/1.1\r\nHost: x\r\nOrigin: http://evil.example\r\n"
        b"Content-Length: 100\r\n\r\nabc"
    )
    status, headers, body = read_response(sock)
    assert status == 403 and headers.get("connection") == "close", (status, headers, body)
    assert closed_within(sock, 3.0) < 3.0
    assert time.monotonic() - started < 4
    sock.close()


@pytest.mark.parametrize("half", [b"sid=a", b"rt=b"])
def test_half_a_session_on_a_post_is_refused_before_its_body(edge_server: LadderServer, half: bytes) -> None:
    """protocol §8: a ``sid`` without a resume token (or one without a ``sid``) is known from the
    request line: refused ``bad_request`` at once, on a connection closed when its body does
    not come. Its body was read first: one that stalled got ``408 heartbeat_timeout`` after
    ``frame_timeout`` instead (10 s by default)."""
    sock = connect(edge_server)
    sock.sendall(b"POST /send?" + half + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
    status, headers, body = read_response(sock)
    assert status == 400 and headers.get("connection") == "close", (status, headers, body)
    assert orjson.loads(body)["code"] == "bad_request"
    assert closed_within(sock, 3.0) < 3.0
    sock.close()


def test_a_post_refused_before_its_body_is_read_keeps_a_whole_body_off_the_next_request(
    edge_server: LadderServer,
) -> None:
    """The body of a refused POST, sent whole, is dropped: the next request on the connection
    is answered as itself (the connection is kept)."""
    sock = connect(edge_server)
    sock.sendall(
        b"POST /send?sid=a&rt=b HTTP/1.1\r\nHost: x\r\nOrigin: http://evil.example\r\n"
        b"Content-Length: 16\r\n\r\nGET /x HTTP/1.1\n"
        b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    data = b""
    while data.count(b"HTTP/1.1 ") < 2 or not data.endswith(b"}"):
        chunk = sock.recv(65536)
        assert chunk, f"connection closed: {data!r}"
        data += chunk
    first, second = data.split(b"HTTP/1.1 ")[1:]
    assert first.startswith(b"403 ") and b"connection: close" not in first.lower(), data
    assert second.startswith(b"200 ") and orjson.loads(second.partition(b"\r\n\r\n")[2])["ok"], data
    sock.close()


def test_a_post_body_that_keeps_coming_slowly_is_read_to_its_end(edge_server: LadderServer) -> None:
    """Only a body that stops is cut: one slower than frame_timeout in all (a 1 MiB batch on
    a slow mobile link) but never silent that long is read, and answered."""
    sock = connect(edge_server)
    sock.sendall(b"POST /send?sid=abc&rt=abc HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")
    for byte in b"\n\n\n\n\n":
        time.sleep(FRAME_TIMEOUT / 2)  # the pace is the point: 2.5 s in all, never 1 s silent
        sock.sendall(bytes([byte]))
    status, _, body = read_response(sock)
    assert status == 404 and orjson.loads(body)["code"] == "unknown_session", "read, then refused for its sid"
    sock.close()


def test_headers_over_the_limit_get_431_and_a_request_that_is_not_http_a_json_400(
    edge_server: LadderServer,
) -> None:
    """uvicorn read headers of any size (50 MB: accepted, and the memory kept) and answered
    what it could not parse in plain text, without a code."""
    sock = connect(edge_server)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"p" * MAX_HEADER + b"\r\n")
    status, headers, body = read_response(sock)
    assert status == 431 and headers.get("connection") == "close"
    assert orjson.loads(body) == {
        "t": "err",
        "code": "bad_request",
        "reason": f"the request line and headers are over {MAX_HEADER} bytes (ladder serve --max-header-size)",
    }
    sock.close()
    # Whole requests over the limit, read in one go: one long header, many short ones, a long URL
    # (the bytes of a read were counted only while its headers were incomplete).
    for request in (
        b"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * (MAX_HEADER + 100) + b"\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: 0123456789\r\n" * (MAX_HEADER // 10) + b"\r\n",
        b"GET /health?" + b"q" * (MAX_HEADER + 100) + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    ):
        sock = connect(edge_server)
        sock.sendall(request)
        status, _, body = read_response(sock)
        assert status == 431 and orjson.loads(body)["code"] == "bad_request", request[:40]
        sock.close()
    sock = connect(edge_server)
    sock.sendall(b"BREW /ws HTTP/1.1\r\nHost: x\r\n\r\n")
    status, headers, body = read_response(sock)
    assert status == 400 and headers["content-type"] == "application/json"
    assert orjson.loads(body)["code"] == "bad_request"
    sock.close()
    sock = connect(edge_server)  # headers just within the limit: served
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * (MAX_HEADER - 200) + b"\r\n\r\n")
    assert read_response(sock)[0] == 200
    sock.close()


@pytest.mark.parametrize("split", [False, True], ids=["one-read", "two-reads"])
def test_max_header_size_counts_every_byte_of_the_line_and_headers(edge_server: LadderServer, split: bool) -> None:
    """ops.md: "at most this many bytes". The count left out the method, the version, the
    line ends and the blank line: 17 bytes more than the limit were served."""
    for total, status in ((MAX_HEADER, 200), (MAX_HEADER + 1, 431)):
        head, end = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: ", b"\r\n\r\n"
        request = head + b"p" * (total - len(head) - len(end)) + end
        assert len(request) == total
        sock = connect(edge_server)
        if split:
            sock.sendall(request[:20])
            time.sleep(0.05)  # (a second read: the parser holds a part of the line)
        sock.sendall(request[20:] if split else request)
        assert read_response(sock)[0] == status, (total, split)
        sock.close()


def refusal_lines(log: str, transport: str) -> tuple[list[str], int]:
    """The INFO lines of refusals on ``transport``, and how many refusals they stand for
    (each line one, plus the ``(and N more not logged)`` it ends with)."""
    lines = [line for line in log.splitlines() if f"refused on {transport} (" in line]
    said = sum(1 + int(line.rsplit("(and ", 1)[1].split()[0]) if "more not logged)" in line else 1 for line in lines)
    return lines, said


def test_a_request_that_is_not_http_is_refused_by_ladder_logged_damped_and_counted(tmp_path: Path) -> None:
    """uvicorn logged each as ``WARNING:  Invalid HTTP request received.`` (no address, no
    code) and ``ladder_errors_total`` did not move: one line per refusal at INFO naming the
    address, at most one per 100 ms per address, each counted."""
    args = ("--log-level", "info", "--max-header-size", str(MAX_HEADER))
    with LadderServer(args=args, log=tmp_path / "server.log") as server:
        bad = [b"HELLO\r\n\r\n", b"GET /health HTTP/1.1\r\nX-Pad: " + b"p" * (MAX_HEADER + 100) + b"\r\n\r\n"]
        ports = []
        for k in range(22):
            if k == 21:
                time.sleep(0.15)  # past the 100 ms of damping: the last one is logged, with the count
            sock = connect(server)
            ports.append(sock.getsockname()[1])
            sock.sendall(bad[k % 2])
            assert read_response(sock)[0] in (400, 431)
            sock.close()
        counted = metric(httpx.get(f"{server.url}/metrics").text, "ladder_errors_total", code="bad_request")
        log = log_of(server)
    assert "Invalid HTTP request" not in log, log
    lines, said = refusal_lines(log, "http")
    assert counted == 22 and said == 22, lines
    assert f"refused on http (127.0.0.1:{ports[0]}): bad_request: not a valid HTTP/1.1 request" in lines[0]
    assert f"refused on http (127.0.0.1:{ports[-1]}): bad_request: the request line and headers" in lines[-1]
    assert all(" INFO " in line for line in lines) and 2 <= len(lines) < 10, lines


@pytest.mark.parametrize("version", ["2.0", "0.9"])
def test_a_request_line_of_another_http_version_is_refused(edge_server: LadderServer, version: str) -> None:
    """Protocol §8: under ``ladder serve`` a request that is not HTTP/1.1 (or 1.0) gets
    ``400 bad_request``; ``HTTP/2.0`` and ``HTTP/0.9`` request lines were answered, a
    session opened."""
    sock = connect(edge_server)
    sock.sendall(f"GET /poll?v=1 HTTP/{version}\r\nHost: x\r\n\r\n".encode())
    status, _, body = read_response(sock)
    assert status == 400
    assert orjson.loads(body) == {
        "t": "err",
        "code": "bad_request",
        "reason": f"HTTP/{version} is not served: send HTTP/1.1",
    }, body
    sock.close()
    sock = connect(edge_server)
    sock.sendall(b"GET /health HTTP/1.0\r\n\r\n")
    assert read_response(sock)[0] == 200
    sock.close()


def test_slow_headers_are_timed_out(edge_server: LadderServer) -> None:
    silent = connect(edge_server)
    slow = connect(edge_server)
    slow.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
    for _ in range(3):  # trickling header bytes does not extend the deadline
        time.sleep(HEADER_TIMEOUT / 4)
        slow.sendall(b"X")
    assert closed_within(slow, HEADER_TIMEOUT + 4) < HEADER_TIMEOUT + 4
    assert closed_within(silent, 4.0) < 4.0
    slow.close()
    silent.close()
    # a request that sends its headers in time is answered, and its keep-alive is unaffected
    sock = connect(edge_server)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    status, _, _ = read_response(sock)
    assert status == 200
    sock.close()


def test_the_frame_clock_follows_frame_boundaries_however_the_bytes_are_split() -> None:
    stream = b"".join(
        [frame(0x1, b"x" * 5), frame(0x2, b"y" * 300), frame(0x1, b""), frame(0x2, b"z" * 70_000)]
    )
    ends = set()
    position = 0
    for size in (5, 300, 0, 70_000):
        position += len(frame_header(0x1, size)) + size
        ends.add(position)
    for step in (1, 2, 7, 13, 4096):
        clock = FrameClock()
        for start in range(0, len(stream), step):
            clock.feed(stream[start : start + step])
            end = min(start + step, len(stream))
            assert clock.in_frame == (end not in ends), (step, end)
    partial = FrameClock()
    partial.feed(frame_header(0x2, 1000))  # a header alone: the payload is awaited
    assert partial.in_frame


def test_a_subscriber_that_stops_reading_gets_every_publication_whole_and_in_order(
    edge_server: LadderServer,
) -> None:
    """6 MB published while a subscriber reads nothing: far more than its socket takes, so the
    server's writes to it stop part-way (the native driver writes to the descriptor itself,
    the transport takes the rest) and resume when it reads again, without a byte out of place."""
    count, pad = 3000, 2000
    reader = open_ws(edge_server, rcvbuf=4096)
    reader.sendall(frame(0x1, b'{"t":"sub","i":1,"ch":"big"}'))
    _, payload = read_frame(reader)
    subscribed = [orjson.loads(line) for line in payload.split(b"\n")]
    assert subscribed[-1]["t"] == "reply", subscribed
    publisher = open_ws(edge_server)
    call = {"t": "call", "i": 1, "ev": "publish", "d": {"channel": "big", "count": count, "pad": pad}}
    publisher.sendall(frame(0x1, orjson.dumps(call)))
    _, payload = read_frame(publisher)  # the answer comes once every publication is in the outboxes
    assert orjson.loads(payload.split(b"\n")[-1])["d"] == {"published": count}, payload
    seen: list[int] = []
    last_s = subscribed[-1]["s"]
    while len(seen) < count:
        opcode, payload = read_frame(reader)
        assert opcode == 0x1
        for line in payload.split(b"\n"):
            message = orjson.loads(line)
            assert message["s"] == last_s + 1, (message["s"], last_s)
            last_s = message["s"]
            assert message["t"] == "pub" and message["d"]["pad"] == "x" * pad
            seen.append(message["d"]["n"])
    assert seen == list(range(count))
    reader.sendall(frame(0x1, orjson.dumps({"t": "ack", "s": last_s}) + b"\n" + b'{"t":"ping","n":5}'))
    _, payload = read_frame(reader)
    assert orjson.loads(payload) == {"t": "pong", "n": 5}  # the session went on
    reader.close()
    publisher.close()


@pytest.fixture(params=sorted(DRIVERS))
def quick_heartbeat_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LadderServer]:
    """heartbeat 0.5 s: a WebSocket silent for 2 s (2 x hb + 1 s) is closed."""
    with LadderServer({"heartbeat": 0.5}, args=DRIVERS[request.param], log=tmp_path / "server.log") as server:
        yield server


def test_a_client_is_heard_and_answered_while_its_own_handler_runs(quick_heartbeat_server: LadderServer) -> None:
    """A call whose handler outlasts the heartbeat's limit (3 s against 2 s): the client's
    pongs and pings that arrive meanwhile are applied as they arrive, so the connection is
    not closed as silent, a ping of the client's is answered at once (not after the
    handler, which a client's liveness check would take for a dead link), and the call is
    answered in the end. A numbered message sent meanwhile waits for its turn."""
    sock = open_ws(quick_heartbeat_server)
    started = time.monotonic()
    sock.sendall(frame(0x1, b'{"t":"call","i":1,"ev":"sleep","d":3}'))
    pinged_at: float | None = None
    ponged_after: float | None = None
    answers: list[dict[str, object]] = []
    sock.settimeout(5)
    while not any(answer.get("re") == 2 for answer in answers):
        opcode, payload = read_frame(sock)
        assert opcode == 0x1, (opcode, payload, time.monotonic() - started)  # not a close (4408)
        for line in payload.split(b"\n"):
            message = orjson.loads(line)
            if message["t"] == "ping":
                sock.sendall(frame(0x1, b'{"t":"pong"}'))
                if pinged_at is None:  # our own, and a message that must wait for the call
                    pinged_at = time.monotonic()
                    sock.sendall(frame(0x1, b'{"t":"ping","n":9}'))
                    sock.sendall(frame(0x1, b'{"t":"call","i":2,"ev":"echo","d":2}'))
            elif message["t"] == "pong":
                assert message["n"] == 9 and pinged_at is not None
                ponged_after = time.monotonic() - pinged_at
            elif message["t"] == "reply":
                answers.append(message)
    assert ponged_after is not None and ponged_after < 1.0, ponged_after  # not at the end of the 3 s
    assert [answer["re"] for answer in answers] == [1, 2]  # in order, the second after the first
    assert answers[0]["d"] == 3
    assert time.monotonic() - started >= 2.9  # (the handler slept 3 s; a timer may fire a hair early)
    sock.close()


@pytest.fixture(params=sorted(DRIVERS))
def strict_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[LadderServer, str]]:
    """Short deadlines everywhere: hello and frame 1 s, heartbeat 0.5 s (silent for 2 s: closed)."""
    config = {"heartbeat": 0.5, "limits": {"frame_timeout": 1.0, "hello_timeout": 1.0, "max_frame_size": 4096}}
    args = ("--log-level", "info", *DRIVERS[request.param])
    with LadderServer(config, args=args, log=tmp_path / "server.log") as server:
        yield server, request.param


def test_what_a_websocket_client_did_wrong_is_logged_and_counted_as_every_refusal(
    strict_server: tuple[LadderServer, str],
) -> None:
    """No hello in time, a silent client, a refused upgrade, a frame over the limit and a
    stalled one: each closes with its code, one INFO line and one count in
    ``ladder_errors_total``. (Under ``--asgi-ws`` the last three are uvicorn's WebSocket
    layer's own, which Ladder does not hear of: docs/ops.md, "Logging".)"""
    server, driver = strict_server
    silent = open_ws(server)  # answers no ping
    sock, status, _, _ = upgrade(server)
    assert status == 101
    assert read_until_close(sock)[0] == 4400  # no hello
    sock.close()
    assert read_until_close(silent)[0] == 4408  # no pong for 2 s
    silent.close()
    expected = {"bad_request": 1, "heartbeat_timeout": 1}
    if driver == "native":
        sock, status, _, _ = upgrade(server, version="8")
        assert status == 426
        sock.close()
        sock = open_ws(server)
        sock.sendall(frame_header(0x2, 5000))
        assert read_until_close(sock)[0] == 1009
        sock.close()
        sock = open_ws(server)
        sock.sendall(frame_header(0x1, 1000) + b'{"t":"pi')
        assert read_until_close(sock)[0] == 4408
        sock.close()
        expected = {"bad_request": 2, "heartbeat_timeout": 2, "frame_too_large": 1}
    sock = connect(server)
    sock.sendall(f"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
    _, _, body = read_response(sock)
    sock.close()
    counted = {code: metric(body.decode(), "ladder_errors_total", code=code) for code in expected}
    assert counted == expected
    lines = [line for line in log_of(server).splitlines() if "refused on websocket" in line]
    said = {code: sum(f": {code}: " in line for line in lines) for code in expected}
    assert said == expected, lines
    assert any("no hello frame in time" in line for line in lines)
    assert any("no heartbeat from the client" in line for line in lines)


def _sessions(server: LadderServer) -> float:
    return metric(httpx.get(f"{server.url}/metrics", timeout=5).text, "ladder_sessions")


def test_a_bye_ends_the_session_at_once_while_one_of_its_messages_is_in_a_handler(edge_server: LadderServer) -> None:
    """protocol §4: ``bye`` ends the session now. A client that closes while its call sleeps
    in a handler (3 s) was closed only once the handler returned, and when its socket went
    right after the bye (what both clients' ``close()`` does) the bye, held behind the
    handler, was lost with the connection: the session lived on for its ttl (120 s)."""
    assert _sessions(edge_server) == 0
    sock = open_ws(edge_server)
    sock.sendall(frame(0x1, b'{"t":"call","i":1,"ev":"sleep","d":3}'))
    sock.sendall(frame(0x1, b'{"t":"bye"}'))  # (a message of its own: it arrives while the call is applied)
    started = time.monotonic()
    sock.settimeout(5)
    assert read_until_close(sock)[0] == 1000
    assert time.monotonic() - started < 1.5  # not after the handler's 3 s
    sock.close()
    gone = open_ws(edge_server)
    gone.sendall(frame(0x1, b'{"t":"call","i":1,"ev":"sleep","d":3}'))
    gone.sendall(frame(0x1, b'{"t":"bye"}'))
    gone.close()  # at once, as a client's close() does
    deadline = time.monotonic() + 1.5
    while _sessions(edge_server) != 0:  # another process: polled, not awaited
        assert time.monotonic() < deadline, "the session outlived its bye"
        time.sleep(0.05)


@pytest.mark.parametrize("driver", sorted(DRIVERS))
def test_an_upgrade_takes_the_header_lines_and_count_every_request_takes(driver: str) -> None:
    """The WebSocket drivers' handshake parser refused a header line over 8 KiB (a Bearer
    token of the 8,192 characters a hello takes, a site's large cookies) and more than 128
    headers with a plain-text 431, where a poll took them: such a client never had the
    WebSocket. Up to ``--max-header-size`` (64 KiB by default) they pass; past it, the JSON
    431 of §8."""
    with LadderServer(args=DRIVERS[driver]) as server:
        _upgrades_with_big_headers(server)


def _upgrades_with_big_headers(server: LadderServer) -> None:
    for extra in (
        (f"Authorization: Bearer {'t' * 8192}",),
        (f"Cookie: big={'c' * 9000}",),
        tuple(f"X-Many-{n}: {n}" for n in range(130)),
    ):
        sock, status, _, body = upgrade(server, extra=extra)
        sock.close()
        assert status == 101, (status, body[:200])
    sock, status, _, body = upgrade(server, extra=(f"Cookie: huge={'c' * 70_000}",))
    sock.close()
    assert status == 431 and orjson.loads(body)["code"] == "bad_request", (status, body[:200])
