"""A real Redis Cluster for tests: six ``redis-server`` processes in cluster mode on free
loopback ports (three primaries, one replica each), joined by ``redis-cli --cluster create``."""

from __future__ import annotations

import shutil
import subprocess
import time

import redis as redis_py

from tests.support.redis import RedisServer
from tests.support.server import free_port


class ClusterNodeServer(RedisServer):
    """One cluster node: a RedisServer with cluster mode on and a quick failover."""

    node_timeout_ms = 1000

    def __init__(self) -> None:
        super().__init__()
        self.bus_port = free_port()
        """The cluster bus (port + 10000 by default, which may be taken or out of range)."""

    def new_ports(self) -> None:
        super().new_ports()
        self.bus_port = free_port()

    def extra_args(self) -> list[str]:
        return [
            "--cluster-port",
            str(self.bus_port),
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            str(self.dir / "nodes.conf"),
            "--cluster-node-timeout",
            str(self.node_timeout_ms),
            # (docs/ops.md: without it, every shard refuses commands while one is down)
            "--cluster-require-full-coverage",
            "no",
        ]


class RedisCluster:
    """Start with :meth:`start` (or as a context manager); stop every process by pid."""

    def __init__(self, size: int = 6) -> None:
        self.nodes = [ClusterNodeServer() for _ in range(size)]

    @property
    def url(self) -> str:
        """The engine URL naming three seed nodes."""
        seeds = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes[:3])
        return f"redis+cluster://{seeds}"

    def start(self) -> RedisCluster:
        for node in self.nodes:
            node.start()
        cli = shutil.which("redis-cli") or "/usr/bin/redis-cli"
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "1", "--cluster-yes"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )
        self.wait_ok()
        return self

    def client(self, node: RedisServer) -> redis_py.Redis:
        return redis_py.Redis(port=node.port, socket_timeout=2)

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Until every running node says the cluster is ok and knows every slot's primary."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if all(self._ok(node) for node in self.nodes if node.proc is not None):
                    return
            except redis_py.RedisError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the cluster did not become ok")
            time.sleep(0.1)

    def _ok(self, node: RedisServer) -> bool:
        """The node sees every slot served and, if a replica, has synced with its primary
        (a replica that never synced does not take over when its primary dies)."""
        client = self.client(node)
        try:
            info = client.execute_command("CLUSTER", "INFO")
            text = info.decode() if isinstance(info, bytes) else str(info)
            replication = client.info("replication")
            synced = replication.get("role") != "slave" or replication.get("master_link_status") == "up"
            return "cluster_state:ok" in text and "cluster_slots_ok:16384" in text and synced
        finally:
            client.close()

    def primaries(self) -> list[RedisServer]:
        """The nodes that are primaries now."""
        found = []
        for node in self.nodes:
            if node.proc is None:
                continue
            client = self.client(node)
            try:
                role = client.execute_command("ROLE")[0]
            finally:
                client.close()
            if role in (b"master", "master"):
                found.append(node)
        return found

    def primary_of(self, key: str) -> RedisServer:
        """The node serving ``key``'s slot now (as the running nodes see it)."""
        client = self.client(next(node for node in self.nodes if node.proc is not None))
        try:
            slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
        finally:
            client.close()
        return self.primary_of_slot(slot)

    def replicas_of(self, primary: RedisServer) -> list[RedisServer]:
        """The running nodes that replicate ``primary``."""
        found = []
        for node in self.nodes:
            if node.proc is None or node is primary:
                continue
            client = self.client(node)
            try:
                info = client.info("replication")
            finally:
                client.close()
            if info.get("role") == "slave" and int(info.get("master_port", 0)) == primary.port:
                found.append(node)
        return found

    def primary_of_slot(self, slot: int) -> RedisServer:
        """The node serving ``slot`` now (as the running nodes see it)."""
        client = self.client(next(node for node in self.nodes if node.proc is not None))
        try:
            ranges = client.execute_command("CLUSTER", "SLOTS")
        finally:
            client.close()
        for first, last, primary, *_ in ranges:
            if first <= slot <= last:
                return next(node for node in self.nodes if node.port == int(primary[1]))
        raise LookupError(f"no primary serves slot {slot}")

    def close(self) -> None:
        for node in self.nodes:
            node.close()

    def __enter__(self) -> RedisCluster:
        try:
            return self.start()
        except BaseException:
            self.close()  # the nodes started before the failure (they were left running)
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["ClusterNodeServer", "RedisCluster"]
