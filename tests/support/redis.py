"""A real ``redis-server`` (the Debian package) on a free loopback port, for tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis as SyncRedis

from ladder.engine.redis.pipelined import PipelinedScript
from tests.support.server import free_port, stop_process, wait_for_port


class RedisServer:
    """Start/stop/restart a private Redis; ``persistent`` keeps data across restarts (AOF)."""

    def __init__(self, *, persistent: bool = False, port: int | None = None) -> None:
        self.chosen = port is None
        """Whether the ports are this object's to choose (then a port lost to another
        process before redis-server bound it is replaced at the first start)."""
        self.port = port or free_port()
        self.persistent = persistent
        self.dir = Path(tempfile.mkdtemp(prefix="ladder-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        for attempt in range(5):
            self.proc = subprocess.Popen(self._command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_for_port(self.port, proc=self.proc)
                self.chosen = False  # (clients know the port now: a restart keeps it)
                return self
            except TimeoutError:
                self.stop()  # (alive but not listening: not left running)
                raise
            except RuntimeError as exc:
                log = self.log.read_text(errors="replace") if self.log.exists() else ""
                if not (self.chosen and "Address already in use" in log and attempt < 4):
                    raise RuntimeError(f"{exc}; redis-server's log ends: {log[-400:]!r}") from exc
                self.log.unlink()
                self.new_ports()  # taken by another process since it was chosen
        raise AssertionError("unreachable")

    @property
    def log(self) -> Path:
        return self.dir / "redis.log"

    def new_ports(self) -> None:
        self.port = free_port()

    def _command(self) -> list[str]:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        cmd = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--appendonly",
            "yes" if self.persistent else "no",
            "--protected-mode",
            "no",
            "--loglevel",
            "warning",
            "--maxmemory-policy",
            "noeviction",
            "--logfile",
            str(self.log),
        ]
        return cmd + self.extra_args()

    def extra_args(self) -> list[str]:
        """More ``redis-server`` arguments (a subclass's)."""
        return []

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()


def count_pipelines(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the number of calls in every batch the Redis engine's ``PipelinedScript``
    sends (a call alone, with none on its way, sends none)."""
    sizes: list[int] = []
    run = PipelinedScript._run

    async def counted(self: PipelinedScript, batch: list[Any]) -> list[Any]:
        sizes.append(len(batch))
        return await run(self, batch)

    monkeypatch.setattr(PipelinedScript, "_run", counted)
    return sizes


def local_ports_to(pid: int, port: int) -> set[int]:
    """The local ports of process ``pid``'s TCP connections to 127.0.0.1:``port`` (from
    /proc: which of Redis's clients are that process's)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports = set()
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, inode = fields[1], fields[2], fields[9]
        if inode in inodes and remote == f"0100007F:{port:04X}":
            ports.add(int(local.split(":")[1], 16))
    return ports


def pubsub_clients_of(redis: RedisServer, pid: int) -> list[int]:
    """The ids Redis gives process ``pid``'s pub/sub connections (for ``CLIENT KILL ID``)."""
    ports = local_ports_to(pid, redis.port)
    with SyncRedis(port=redis.port) as client:
        clients = client.client_list(_type="pubsub")
    return [int(c["id"]) for c in clients if int(c["addr"].rsplit(":", 1)[1]) in ports]


@contextlib.contextmanager
def redis_servers(count: int, *, persistent: bool = False) -> Iterator[list[RedisServer]]:
    """``count`` independent redis-servers (a sharded engine's shards), stopped on exit;
    ``persistent``: each keeps its data across a restart."""
    servers = [RedisServer(persistent=persistent) for _ in range(count)]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.close()
