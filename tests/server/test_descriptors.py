"""The descriptor limit: raised to the hard one, and a warning naming the fix near it."""

from __future__ import annotations

import logging
import os
import resource
import subprocess
import sys

import pytest

from ladder.server import descriptors
from ladder.server.descriptors import AGAIN, EVERY, Watch, in_use
from tests.support.server import child_env


def _open() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_the_soft_limit_is_raised_to_the_hard_one() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    script = (
        "import resource\n"
        f"resource.setrlimit(resource.RLIMIT_NOFILE, (64, {hard}))\n"
        "from ladder.server.descriptors import raise_limit, soft_limit\n"
        "print(raise_limit(), soft_limit(), raise_limit())\n"
    )
    out = subprocess.run([sys.executable, "-c", script], env=child_env(), capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["(64,", f"{hard})", str(hard), "None"]


def test_a_watch_warns_near_the_limit_naming_the_fix_then_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    watch = Watch(limit=_open())
    with caplog.at_level(logging.WARNING, logger="ladder"):
        watch.look(100.0)
        watch.look(100.0 + EVERY / 2)  # (not due)
        watch.look(100.0 + EVERY)  # (due, but warned a moment ago)
        warned = [r.getMessage() for r in caplog.records]
        watch.look(100.0 + AGAIN + EVERY)
    assert len(warned) == 1, warned
    assert "file descriptors are in use" in warned[0]
    assert "ulimit -n" in warned[0] and "LimitNOFILE=" in warned[0] and "--workers" in warned[0]
    assert len(caplog.records) == 2


def test_a_watch_far_from_the_limit_says_nothing_and_lists_nothing(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    listed: list[str] = []
    monkeypatch.setattr(descriptors.os, "listdir", lambda path: listed.append(path) or [])
    with caplog.at_level(logging.WARNING, logger="ladder"):
        Watch(limit=1 << 20).look(0.0)
    assert caplog.records == [] and listed == []  # (the table's size alone ruled it out)
    assert in_use(1 << 20) is None
    assert in_use(_open()) == _open()


def test_a_process_with_no_descriptor_left_is_seen_at_its_limit() -> None:
    """Counting takes a descriptor too: at the limit it fails, and that failure is the answer
    (it said nothing exactly when connections were being reset)."""
    script = (
        "import resource\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))\n"
        "from ladder.server.descriptors import in_use\n"
        "held = []\n"
        "try:\n"
        "    while True:\n"
        "        held.append(open('/dev/null'))\n"
        "except OSError:\n"
        "    pass\n"
        "print(in_use(64))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], env=child_env(), capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["64"]


def test_an_unlimited_hard_limit_gets_the_highest_soft_limit_the_system_allows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[int] = []
    cap = 10240  # (macOS: OPEN_MAX, below an unlimited hard limit)

    def setrlimit(which: int, limits: tuple[int, int]) -> None:
        asked.append(limits[0])
        if limits[0] > cap:
            raise ValueError("not allowed to raise maximum limit")

    monkeypatch.setattr(descriptors.resource, "getrlimit", lambda which: (256, resource.RLIM_INFINITY))
    monkeypatch.setattr(descriptors.resource, "setrlimit", setrlimit)
    assert descriptors.raise_limit() == (256, cap)
    assert asked == [1 << 20, 1 << 16, cap]
    cap = 0
    assert descriptors.raise_limit() is None
