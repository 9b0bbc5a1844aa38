"""A deployment as ``deploy/`` describes it: Redis, three ``ladder serve`` nodes, and in front of
them nginx (``deploy/nginx.conf``), HAProxy (``deploy/haproxy.cfg``) and nginx with TLS
(``deploy/nginx-tls.conf``), all real processes on free loopback ports, all stopped afterwards.

The nodes run the test hub mounted under ``/api/realtime`` (``tests.support.mounted``), so the
configs' mount placeholder is exercised with something other than the usual ``/ladder``. They
keep Ladder's default heartbeat (20 s) and long-poll hold (25 s): the timeouts in the configs
are checked against the real values. Node 3 reaches Redis through a relay the tests can cut.
"""

from __future__ import annotations

import contextlib
import shutil
import ssl
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.deploy.lb import HAProxy, NginxSite, TcpRelay, Tls, loopback_limits, make_tls
from tests.support.figures import Figures
from tests.support.redis import RedisServer
from tests.support.server import LadderServer

MOUNT = "/api/realtime"
APP = "tests.support.mounted:app"
LOGS = Path(tempfile.gettempdir()) / "ladder-deploy-logs"
FIGURES = Figures("deploy/: the shipped configs, run for real")
report = FIGURES.report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    FIGURES.summary(terminalreporter)


@dataclass
class Deployment:
    redis: RedisServer
    relay: TcpRelay
    nodes: list[LadderServer]
    nginx: NginxSite
    haproxy: HAProxy
    tls_nginx: NginxSite
    tls: Tls
    node_ids: list[str] = field(default_factory=list)

    def entry(self, name: str) -> tuple[str, ssl.SSLContext | None]:
        """The public URL of the hub through a load balancer, and the TLS context to trust it."""
        if name == "nginx":
            return self.nginx.url + MOUNT, None
        if name == "haproxy":
            return self.haproxy.url + MOUNT, None
        if name == "nginx-tls":
            return f"https://127.0.0.1:{self.tls_nginx.port}{MOUNT}", self.tls.client_context()
        raise KeyError(name)

    def origin(self, name: str) -> str:
        """What a browser on a page served by that load balancer sends as ``Origin``."""
        return self.entry(name)[0].removesuffix(MOUNT)

    def direct(self, node: int) -> str:
        return self.nodes[node].url + MOUNT

    def health(self, node: int) -> httpx.Response:
        return httpx.get(self.direct(node) + "/health", timeout=5)


@pytest.fixture(scope="module")
def deployment() -> Iterator[Deployment]:
    LOGS.mkdir(exist_ok=True)
    config: dict[str, Any] = {"session_ttl": 60.0, "allowed_origins": None, "limits": loopback_limits()}
    tls = make_tls()
    with RedisServer() as redis, contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, tls.dir, True)
        relay = TcpRelay(redis.port).start()
        stack.callback(relay.stop)
        engines = [redis.url, redis.url, f"redis://127.0.0.1:{relay.port}/0"]
        nodes = [
            LadderServer({**config, "engine": engine}, app=APP, log=LOGS / f"node{i + 1}.log")
            for i, engine in enumerate(engines)
        ]
        for node in nodes:
            stack.callback(node.stop)
            node.start()
        values = {"LADDER_MOUNT": MOUNT} | {
            f"LADDER_NODE_{i + 1}": f"127.0.0.1:{node.port}" for i, node in enumerate(nodes)
        }
        nginx = stack.enter_context(NginxSite.from_deploy("nginx.conf", values))
        haproxy = stack.enter_context(HAProxy(values))
        tls_nginx = stack.enter_context(
            NginxSite.from_deploy(
                "nginx-tls.conf", {**values, "LADDER_TLS_CERT": str(tls.cert), "LADDER_TLS_KEY": str(tls.key)}
            )
        )
        deployment = Deployment(redis, relay, nodes, nginx, haproxy, tls_nginx, tls)
        deployment.node_ids = [deployment.health(i).json()["node"] for i in range(3)]
        yield deployment
