"""``ladder serve --workers N``: N server processes on one port, each one Ladder node.

A CPython process uses one core. Each worker is a whole ``ladder serve`` process (its own
event loop, native WebSocket driver and engine connection); the Redis engine already routes
sessions between nodes, so a client may land on any worker for any request (no sticky
sessions) and publications reach subscribers on every worker.

How the workers share the port: on Linux each worker listens on its own socket bound with
``SO_REUSEPORT`` and the kernel spreads new connections evenly over them; elsewhere the
workers inherit one listening socket from the parent. The parent binds the address first,
so a port in use is reported once, before any worker starts.

The parent only supervises. SIGTERM or SIGINT is forwarded to every worker as SIGTERM (each
ends its sessions with ``bye shutting_down``, see :class:`.serving.GracefulServer`), and the
parent exits once all have. A worker that dies on its own is started again, unless it died
within its first seconds: a failure at startup would only repeat, so then every worker is
stopped and the parent exits with an error.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from types import FrameType

logger = logging.getLogger("ladder.workers")

WORKER_ENV = "LADDER_WORKER_SOCKET"
"""Set in a worker's environment: ``reuseport:<port>``, or the number of the inherited socket."""

STARTUP_GRACE = 5.0
"""A worker that exits sooner than this after it started is a startup failure."""


def reuse_port_available() -> bool:
    """Whether the kernel balances connections over ``SO_REUSEPORT`` sockets (Linux does;
    other systems accept the option but hand every connection to one socket)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def listen_failed(command: str, host: str, port: int, exc: OSError) -> SystemExit:
    """One line naming the likely fix for a socket that cannot listen."""
    if exc.errno == errno.EADDRINUSE:
        hint = "is another server, or another demo, running there? stop it, or pass --port N"
    elif isinstance(exc, socket.gaierror):
        hint = f"{host!r} is not a name or address this machine can resolve: check --host"
    elif exc.errno == errno.EADDRNOTAVAIL:
        hint = f"{host} is not an address of this machine: check --host (0.0.0.0: every address)"
    elif exc.errno == errno.EACCES:
        hint = "ports below 1024 need privileges: pass --port N with N of 1024 or more"
    else:
        hint = "check --host and --port"
    return SystemExit(f"ladder {command}: cannot listen on {host}:{port}: {exc.strerror or exc} ({hint})")


def bind(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """A TCP socket bound to ``host:port`` (not yet listening)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


def worker_socket_spec() -> str | None:
    """How this worker gets its socket, or None when this process is not a worker."""
    return os.environ.get(WORKER_ENV)


def worker_socket(host: str, port: int) -> socket.socket | None:
    """In a worker: the socket to serve on (None when this process is not a worker)."""
    spec = worker_socket_spec()
    if spec is None:
        return None
    if spec.startswith("reuseport:"):
        return bind(host, int(spec.partition(":")[2]), reuse_port=True)
    return socket.socket(fileno=int(spec))


class Supervisor:
    """Start ``count`` workers running ``argv`` (``ladder`` arguments), and look after them."""

    def __init__(self, argv: list[str], host: str, port: int, count: int) -> None:
        self.argv = argv
        self.count = count
        self.stopping = False
        self.workers: dict[int, tuple[int, float, subprocess.Popen[bytes]]] = {}
        """pid -> (worker index, start time, process)."""
        if sys.platform == "win32":
            raise SystemExit(
                "ladder serve: --workers is not supported on Windows: run one `ladder serve` per port "
                "behind a load balancer"
            )
        reuse = reuse_port_available()
        try:
            if reuse:
                # A socket without SO_REUSEPORT cannot bind where anything listens, even another
                # server that set SO_REUSEPORT (which the workers would silently join).
                with bind(host, port, reuse_port=False) as probe:
                    port = probe.getsockname()[1]  # port 0: the one the system chose
            # Held for the parent's lifetime: nothing else takes the address, and (without
            # SO_REUSEPORT) this is the listening socket every worker inherits.
            self.sock = bind(host, port, reuse_port=reuse)
        except OSError as exc:
            raise listen_failed("serve", host, port, exc) from exc
        self.address = f"{host}:{self.sock.getsockname()[1]}"
        if reuse:
            self.spec = f"reuseport:{self.sock.getsockname()[1]}"
        else:
            self.sock.listen(2048)
            self.sock.set_inheritable(True)
            self.spec = str(self.sock.fileno())

    def _start(self, index: int) -> None:
        env = {**os.environ, WORKER_ENV: self.spec}
        fds = () if self.spec.startswith("reuseport:") else (self.sock.fileno(),)
        proc = subprocess.Popen([sys.executable, "-m", "ladder.cli", *self.argv], env=env, pass_fds=fds)
        self.workers[proc.pid] = (index, time.monotonic(), proc)
        if self.stopping:  # a stop arrived while it was starting
            proc.send_signal(signal.SIGTERM)

    def _stop(self, signum: int, frame: FrameType | None = None) -> None:
        """Forward a stop to every worker (SIGTERM: a graceful shutdown in each)."""
        self.stopping = True
        for _, _, proc in list(self.workers.values()):
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)

    def run(self) -> int:
        """Run until every worker has exited; the exit status for the parent."""
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        status = 0
        try:
            for index in range(self.count):
                self._start(index)
            pids = sorted(self.workers)
            logger.info("serving on %s with %d workers, pids %s", self.address, self.count, pids)
            while self.workers:
                pid, wait_status = os.wait()
                entry = self.workers.pop(pid, None)
                if entry is None:
                    continue
                index, started, proc = entry
                proc.returncode = code = os.waitstatus_to_exitcode(wait_status)
                if self.stopping:
                    continue
                if time.monotonic() - started < STARTUP_GRACE:
                    logger.error("worker %d (pid %d) exited with %d at startup; stopping", index, pid, code)
                    status = 1
                    self._stop(signal.SIGTERM)
                else:
                    logger.warning("worker %d (pid %d) exited with %d; starting it again", index, pid, code)
                    self._start(index)
        finally:
            self._stop(signal.SIGTERM)
            self.sock.close()
        return status
