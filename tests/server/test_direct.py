"""Direct writes: what the socket does not take goes to the transport, in order."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from ladder.server.direct import direct_fd, write


class Recording:
    """A transport that keeps what it is asked to write."""

    def __init__(self, extra: dict[str, Any]) -> None:
        self.extra = extra
        self.taken = b""

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.extra.get(name, default)

    def write(self, data: bytes) -> None:
        self.taken += data


def drain(sock: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            chunk = sock.recv(1 << 20)
        except BlockingIOError:
            return data
        data += chunk


def test_the_socket_takes_what_it_can_and_the_transport_the_rest_in_order() -> None:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    theirs.setblocking(False)
    with ours, theirs:
        transport = Recording({"socket": ours})
        fd = direct_fd(transport)  # type: ignore[arg-type]
        assert fd == ours.fileno()
        assert write(fd, transport, b"small") is False  # all of it went to the socket
        assert transport.taken == b""
        big = bytes(range(256)) * 40_000  # 10 MB: more than any socket buffer takes
        assert write(fd, transport, big) is True
        received = drain(theirs)
        assert received[:5] == b"small"
        assert 0 < len(received) - 5 < len(big)
        assert received[5:] + transport.taken == big


def test_a_broken_connection_leaves_all_of_it_to_the_transport() -> None:
    ours, theirs = socket.socketpair()
    theirs.close()
    with ours:
        transport = Recording({"socket": ours})
        assert write(ours.fileno(), transport, b"lost") is True  # EPIPE: the transport finds out
        assert transport.taken == b"lost"


def test_tls_or_no_socket_means_no_direct_writes() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        assert direct_fd(Recording({"socket": ours, "sslcontext": object()})) == -1  # type: ignore[arg-type]
    assert direct_fd(Recording({})) == -1  # type: ignore[arg-type]
    transport = Recording({})
    assert write(-1, transport, b"all") is True
    assert transport.taken == b"all"


async def test_a_real_transport_names_its_descriptor() -> None:
    ours, theirs = socket.socketpair()
    with theirs:
        transport, _ = await asyncio.get_running_loop().connect_accepted_socket(asyncio.Protocol, ours)
        try:
            assert direct_fd(transport) == ours.fileno()  # type: ignore[arg-type]
        finally:
            transport.close()
