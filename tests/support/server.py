"""Real servers for tests: ``ladder serve`` in a subprocess on a free loopback port."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

ROOT = Path(__file__).resolve().parents[2]


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a server or CLI process a test starts: this checkout's ``tests``
    importable, and Ladder from wherever this run takes it (the compiled build in the
    compiled run of scripts/test, which puts it on ``PYTHONPATH``)."""
    paths = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, **extra, "PYTHONPATH": os.pathsep.join(paths)}


_handed: set[int] = set()
"""Ports :func:`free_port` gave out in this process: the kernel may offer a closed one again."""


def free_port() -> int:
    """A loopback port free now and not given out before by this process (a server may
    still lose it to another process before it binds: see ``RedisServer.start``)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _handed:
            _handed.add(port)
            return port


def stop_process(proc: subprocess.Popen[bytes] | None) -> None:
    """Terminate a server process (kill it if it does not stop) and reap it."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def wait_for_port(port: int, timeout: float = 15.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Block until something accepts connections on ``port`` (readiness, not a sleep)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listening on {port} after {timeout} s")


class ScratchProcess:
    """A server process with a scratch directory, both gone after :meth:`stop`."""

    proc: subprocess.Popen[bytes] | None
    dir: Path

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def cluster_work(health: dict[str, Any]) -> int:
    """From a node's ``/health``: what it did for sessions held or met elsewhere (requests
    served for or forwarded to another node, sessions moved in or out)."""
    return sum(int(health[key]) for key in ("forwarded", "served_for_others", "moved_in", "moved_out"))


class LadderServer:
    """``ladder serve`` of ``app`` with ``LADDER_TEST_CONFIG=config``; stopped on exit."""

    def __init__(
        self,
        config: dict[str, Any] | None = None,
        *,
        app: str = "tests.support.apps:hub",
        port: int | None = None,
        engine: str | None = None,
        log: Path | None = None,
        args: tuple[str, ...] = (),
        nofile: tuple[int, int] | None = None,
    ) -> None:
        self.config = config or {}
        self.app = app
        self.port = port or free_port()
        self.engine = engine
        self.log = log
        self.args = args
        self.nofile = nofile
        """The process's (soft, hard) descriptor limits, when not the test runner's."""
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LadderServer:
        env = child_env(LADDER_TEST_CONFIG=json.dumps(self.config))
        cmd = [
            sys.executable,
            "-m",
            "ladder.cli",
            "serve",
            self.app,
            "--port",
            str(self.port),
            "--log-level",
            "warning",
        ]
        if self.engine:
            cmd += ["--engine", self.engine]
        cmd += list(self.args)
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115
        nofile = self.nofile

        def limits() -> None:  # (in the child, before it runs Python)
            assert nofile is not None
            resource.setrlimit(resource.RLIMIT_NOFILE, nofile)

        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            preexec_fn=None if nofile is None else limits,  # noqa: PLW1509
        )
        wait_for_port(self.port, proc=self.proc)
        return self

    def kill(self) -> None:
        """SIGKILL: the process dies without any cleanup."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def __enter__(self) -> LadderServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def ladder_server(**kwargs: Any) -> Iterator[LadderServer]:
    with LadderServer(**kwargs) as server:
        yield server
