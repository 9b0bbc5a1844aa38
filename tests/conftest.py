"""Shared fixtures: real servers on free loopback ports, always stopped."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ladder.client import rungs
from ladder.server.auth import hook_log
from tests.support.redis import RedisServer
from tests.support.server import LadderServer


@pytest.fixture(autouse=True)
def _forget_rungs() -> Iterator[None]:
    """Each test starts with no remembered rung (the memory is process-wide by design)."""
    rungs.forget_all()
    yield
    rungs.forget_all()


@pytest.fixture(autouse=True)
def _forget_hook_failures() -> Iterator[None]:
    """Each test hears its hooks' first failure (their log is damped process-wide)."""
    hook_log.forget()
    yield


@pytest.fixture
def server() -> Iterator[LadderServer]:
    """A Ladder server with quick timings (1 s heartbeat) for end-to-end tests."""
    with LadderServer({"heartbeat": 1.0, "session_ttl": 30.0, "poll_timeout": 5.0}) as srv:
        yield srv


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh redis-server of its own (a test module may define its own fixture instead)."""
    with RedisServer() as server:
        yield server
