"""The fault relay does what the scenarios rely on (loopback echo servers, no Ladder)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from tests.chaos.relay import Relay


@contextlib.asynccontextmanager
async def echo_servers(count: int) -> AsyncIterator[list[int]]:
    """``count`` servers that answer each line with ``<index>:<line>``."""
    servers = []

    def handler(index: int):  # type: ignore[no-untyped-def]
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while line := await reader.readline():
                    writer.write(f"{index}:".encode() + line)
                    await writer.drain()
            writer.close()

        return serve

    for index in range(count):
        servers.append(await asyncio.start_server(handler(index), "127.0.0.1", 0))
    try:
        yield [int(s.sockets[0].getsockname()[1]) for s in servers]
    finally:
        for server in servers:
            server.close()
            await server.wait_closed()


async def ask(port: int, line: bytes = b"hi\n", timeout: float = 2.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(line)
        async with asyncio.timeout(timeout):
            return await reader.readline()
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def relay_over(ports: list[int]) -> AsyncIterator[Relay]:
    relay = await asyncio.to_thread(Relay, ports)
    try:
        yield relay
    finally:
        await asyncio.to_thread(relay.stop)


async def test_round_robin_skips_targets_out_or_down() -> None:
    async with echo_servers(3) as ports, relay_over(ports) as relay:
        assert sorted([await ask(relay.port) for _ in range(3)]) == [b"0:hi\n", b"1:hi\n", b"2:hi\n"]
        await asyncio.to_thread(relay.take_out, 1)
        assert {await ask(relay.port) for _ in range(4)} == {b"0:hi\n", b"2:hi\n"}
    async with echo_servers(1) as ports, relay_over([*ports, 1]) as relay:  # port 1: nothing listens
        assert {await ask(relay.port) for _ in range(4)} == {b"0:hi\n"}


async def test_a_stuck_target_answers_503_or_resets() -> None:
    async with echo_servers(1) as ports, relay_over(ports) as relay:
        await asyncio.to_thread(relay.stuck, 0)
        outcomes = []
        for _ in range(2):
            try:
                outcomes.append((await ask(relay.port, b"GET / HTTP/1.1\r\n\r\n")).split(b" ")[1])
            except (ConnectionResetError, asyncio.IncompleteReadError):
                outcomes.append(b"reset")
        assert sorted(outcomes) == [b"503", b"reset"]


async def test_refuse_reset_and_stall_then_heal() -> None:
    async with echo_servers(1) as ports, relay_over(ports) as relay:
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
        writer.write(b"live\n")  # relayed both ways: the relay holds it (not in the backlog still)
        async with asyncio.timeout(2):
            assert await reader.readline() == b"0:live\n"
        await asyncio.to_thread(relay.refuse)
        async with asyncio.timeout(2):
            with contextlib.suppress(ConnectionResetError):  # the live connection is reset
                assert await reader.read() == b""
        with pytest.raises(ConnectionRefusedError):
            await ask(relay.port)
        writer.close()
        await asyncio.to_thread(relay.heal)
        assert await ask(relay.port) == b"0:hi\n"

        await asyncio.to_thread(relay.reset)
        with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
            await ask(relay.port)
        await asyncio.to_thread(relay.heal)

        reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
        await asyncio.to_thread(relay.stall)
        writer.write(b"held\n")
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):  # nothing crosses a stalled link
                await reader.readline()
        await asyncio.to_thread(relay.heal)
        async with asyncio.timeout(2):
            assert await reader.readline() == b"0:held\n"  # held, not dropped
        writer.close()


async def test_cut_after_aborts_each_connection_in_its_window() -> None:
    async with echo_servers(1) as ports, relay_over(ports) as relay:
        await asyncio.to_thread(relay.cut_after, (0.05, 0.1))
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
        writer.write(b"x\n")
        assert await reader.readline() == b"0:x\n"
        async with asyncio.timeout(2):
            with contextlib.suppress(ConnectionResetError):
                assert await reader.read() == b""
        writer.close()
        assert (await asyncio.to_thread(relay.stats))["cuts"] == 1
