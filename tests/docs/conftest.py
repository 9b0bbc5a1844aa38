"""Helpers for running documented examples: real servers in subprocesses on free loopback ports."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.support.server import free_port, stop_process, wait_for_port

BIN = Path(sys.executable).parent


def tool(argv: list[str]) -> list[str]:
    """A documented command line, with ``ladder``/``python``/``gunicorn``... taken from this venv."""
    first = argv[0]
    if first in ("python", "python3"):
        return [sys.executable, *argv[1:]]
    if (BIN / first).exists():
        return [str(BIN / first), *argv[1:]]
    return argv


@contextlib.contextmanager
def serving(
    argv: list[str], cwd: Path, port: int, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a documented server command until the block ends; its output goes to ``cwd/NAME.log``."""
    log = cwd / f"server-{port}.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            tool(argv), cwd=cwd, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        try:
            wait_for_port(port, timeout=30, proc=proc)
        except Exception as exc:
            raise AssertionError(f"{argv} did not start:\n{log.read_text()}") from exc
        yield proc
    finally:
        stop_process(proc)


def split_env(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """``VAR=value cmd ...`` as a shell runs it: the leading assignments become the environment."""
    env: dict[str, str] = {}
    while argv and "=" in argv[0] and not argv[0].startswith("-"):
        name, _, value = argv[0].partition("=")
        env[name] = value
        argv = argv[1:]
    return env, argv


def run_script(argv: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 60) -> str:
    """Run a documented script to completion; returns its output, fails with it on an error."""
    assigned, argv = split_env(argv)
    env = {**assigned, **(env or {})}
    done = subprocess.run(
        tool(argv),
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"{argv} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


__all__ = ["free_port", "run_script", "serving", "tool"]
