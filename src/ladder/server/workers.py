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
parent exits once all have. Each worker writes a byte to a pipe once uvicorn's startup
completed (:func:`tell_ready`), then another every second from its event loop. A worker
silent longer than the worker timeout (paused, its event loop blocked by a handler) is
killed: the kernel would go on queueing a share of the new connections on its socket, which
nobody accepts, for as long as it is stuck. A worker that dies on its own after that is started again;
one that dies before it is a startup failure, which would only repeat, so then every worker
is stopped and the parent exits with an error. (Time alone told them apart: a worker killed
from outside, by the OOM killer or an operator, within 5 s of starting stopped the server.)
A worker that keeps dying soon after it started is started again after a pause that doubles.

The watch goes on while stopping: a stuck worker does not act on the SIGTERM (a paused one
not even until continued), and the parent would wait for it forever; a healthy one goes on
beating through its graceful shutdown, which is thus never cut short. A worker whose parent
is gone (killed outright, nothing forwarded) finds its pipe broken at its next beat, and
shuts down as on SIGTERM rather than serve the port unsupervised.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from types import FrameType
from typing import Final

logger = logging.getLogger("ladder.workers")

WORKER_ENV = "LADDER_WORKER_SOCKET"
"""Set in a worker's environment: ``reuseport:<port>``, or the number of the inherited socket."""

READY_ENV = "LADDER_WORKER_READY"
"""Set in a worker's environment: the descriptor it writes a byte to once it serves."""

STARTUP_GRACE = 5.0
"""A worker that served and exits sooner than this after it started exited *soon*: a second
such exit in a row is started again only after a pause."""

MAX_PAUSE: Final = 30.0
"""Seconds: the longest pause before starting again a worker that keeps exiting soon."""

BEAT_EVERY: Final = 1.0
"""Seconds between a serving worker's heartbeats (a byte on its pipe, from its event loop)."""

WORKER_TIMEOUT: Final = 10.0
"""Seconds a serving worker may go without a heartbeat before it is killed (and started
again), by default (``ladder serve --worker-timeout``)."""

POLL: Final = 0.05
"""Seconds between the parent's looks at its workers (exits, heartbeats)."""


def restart_pause(soon: int) -> float:
    """Seconds to wait before starting again a worker that exited soon ``soon`` times in a
    row: none the first time (one kill is not a loop), then 1 s, doubling up to 30 s."""
    return 0.0 if soon <= 1 else min(2.0 ** (soon - 2), MAX_PAUSE)


def tell_ready() -> None:
    """In a worker: tell the parent it serves (uvicorn's startup completed), then that its
    event loop runs, every ``BEAT_EVERY`` s (see :class:`Supervisor`). Not passed on to
    processes the application starts. The parent gone (its end of the pipe closed with it),
    the worker shuts down gracefully: nobody would restart or stop it, and it would keep the
    port from a new ``ladder serve --workers``."""
    spec = os.environ.pop(READY_ENV, None)
    if spec is None:
        return
    fd = int(spec)
    os.set_blocking(fd, False)
    loop = asyncio.get_running_loop()
    parent = os.getppid()

    def beat(byte: bytes) -> None:
        try:
            os.write(fd, byte)
        except BlockingIOError:  # (the parent reads behind: it heard one lately)
            pass
        except BrokenPipeError:  # (nobody reads: the parent is gone)
            os.close(fd)
            logger.warning("the parent (pid %d) of this worker is gone: shutting down", parent)
            signal.raise_signal(signal.SIGTERM)  # (uvicorn's handler: a graceful shutdown)
            return
        except OSError:  # (nobody to tell)
            os.close(fd)
            return
        loop.call_later(BEAT_EVERY, beat, b".")

    beat(b"r")


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


class _Worker:
    """A worker process, and the pipe it says it serves on (then that it runs)."""

    __slots__ = ("heard", "index", "killed", "proc", "ready", "serving", "started")

    def __init__(self, index: int, proc: subprocess.Popen[bytes], ready: int) -> None:
        self.index = index
        self.proc = proc
        self.ready = ready
        """The pipe's reading end (non-blocking): ``r`` once the worker serves, then a byte
        every ``BEAT_EVERY`` s."""
        self.started = self.heard = time.monotonic()
        self.serving = False
        self.killed = False
        """Killed for its silence (said once)."""

    def listen(self) -> None:
        """Read what the worker wrote: when it was last heard, whether it serves."""
        try:
            while data := os.read(self.ready, 4096):
                self.serving = self.serving or data[:1] == b"r"
                self.heard = time.monotonic()
        except OSError:  # (BlockingIOError: nothing more now)
            pass

    def served(self) -> bool:
        """Whether it told it served (read once it exited; the bytes outlive the writer)."""
        self.listen()
        os.close(self.ready)
        return self.serving


class Supervisor:
    """Start ``count`` workers running ``argv`` (``ladder`` arguments), and look after them."""

    def __init__(
        self, argv: list[str], host: str, port: int, count: int, timeout: float = WORKER_TIMEOUT
    ) -> None:
        self.argv = argv
        self.count = count
        self.timeout = timeout
        """Seconds a serving worker may stay silent before it is killed (and started again;
        while stopping, any worker, and not started again)."""
        self.stopping = False
        self.stopped_at = 0.0
        """When the first stop was forwarded (monotonic; 0 before)."""
        self.workers: dict[int, _Worker] = {}
        """pid -> worker."""
        self.soon: dict[int, int] = {}
        """Worker index -> how many times in a row it exited soon after it started."""
        self.pending: dict[int, float] = {}
        """Worker index -> when to start it again (after a pause)."""
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
        self.pending.pop(index, None)
        read, write = os.pipe()
        os.set_blocking(read, False)
        env = {**os.environ, WORKER_ENV: self.spec, READY_ENV: str(write)}
        fds = () if self.spec.startswith("reuseport:") else (self.sock.fileno(),)
        try:
            command = [sys.executable, "-m", "ladder.cli", *self.argv]
            proc = subprocess.Popen(command, env=env, pass_fds=(*fds, write))
        except BaseException:
            os.close(read)
            raise
        finally:
            os.close(write)  # (the worker's copy is the only one: its exit ends the pipe)
        self.workers[proc.pid] = _Worker(index, proc, read)
        if self.stopping:  # a stop arrived while it was starting
            proc.send_signal(signal.SIGTERM)

    def _stop(self, signum: int, frame: FrameType | None = None) -> None:
        """Forward a stop to every worker (SIGTERM: a graceful shutdown in each); one that
        does not exit and stays silent is then killed (:meth:`_watch`)."""
        if not self.stopping:
            self.stopped_at = time.monotonic()
        self.stopping = True
        self.pending.clear()
        for worker in list(self.workers.values()):
            if worker.proc.returncode is None:
                worker.proc.send_signal(signal.SIGTERM)

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
            while self.workers or self.pending:
                exited = self._wait()
                if exited is None:  # a pause is over
                    now = time.monotonic()
                    for index in [i for i, due in self.pending.items() if due <= now]:
                        self._start(index)
                    continue
                pid, code = exited
                worker = self.workers.pop(pid, None)
                if worker is None:
                    continue
                worker.proc.returncode = code
                served = worker.served()
                if self.stopping:
                    continue
                if not served:
                    logger.error(
                        "worker %d (pid %d) exited with %d at startup, before it served; stopping",
                        worker.index, pid, code,
                    )
                    status = 1
                    self._stop(signal.SIGTERM)
                else:
                    self._again(worker, pid, code)
        finally:
            self._stop(signal.SIGTERM)
            self.sock.close()
        return status

    def _again(self, worker: _Worker, pid: int, code: int) -> None:
        """Start a worker that served and exited again: at once, unless it keeps exiting soon."""
        index = worker.index
        quick = time.monotonic() - worker.started < STARTUP_GRACE
        soon = self.soon[index] = self.soon.get(index, 0) + 1 if quick else 0
        pause = restart_pause(soon)
        if not pause:
            logger.warning("worker %d (pid %d) exited with %d; starting it again", index, pid, code)
            self._start(index)
            return
        said = "worker %d (pid %d) exited with %d; starting it again in %g s"
        logger.warning(said, index, pid, code, pause)
        if soon == 2:  # said once while it keeps exiting soon
            logger.warning(
                "worker %d keeps exiting within %g s of starting: it is started again after a pause "
                "that doubles up to %g s, until it runs %g s",
                index, STARTUP_GRACE, MAX_PAUSE, STARTUP_GRACE,
            )
        self.pending[index] = time.monotonic() + pause

    def _wait(self) -> tuple[int, int] | None:
        """The next child to exit (pid, exit code); None when a pause ended first. Kills
        the workers that went silent meanwhile (:meth:`_watch`)."""
        while self.workers or self.pending:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:  # (every worker is paused, or reaped below)
                pid = wait_status = 0
            if pid:
                return pid, os.waitstatus_to_exitcode(wait_status)
            for pid, worker in self.workers.items():
                # (Popen.send_signal polls first: a worker that exited as it was signalled
                # is reaped there, and no wait here hears of it)
                if worker.proc.returncode is not None:
                    return pid, worker.proc.returncode
            now = time.monotonic()
            if self.pending and min(self.pending.values()) <= now:
                return None
            self._watch(now)
            time.sleep(POLL)  # (a worker's exit is heard within this)
        return None

    def _watch(self, now: float) -> None:
        """Kill every serving worker silent longer than the timeout (paused, or its event
        loop blocked): its share of new connections would wait on its socket until it woke.
        Its exit starts it again, as any worker's; its sessions are lost, as a killed node's.
        While stopping, every worker is watched, so that the parent exits: one that has not
        served yet is silent from the stop on (a healthy one exits on it, or serves and beats)."""
        for pid, worker in self.workers.items():
            worker.listen()
            if worker.killed or not (worker.serving or self.stopping):
                continue
            since = worker.heard if worker.serving else max(worker.heard, self.stopped_at)
            silent = now - since
            if silent <= self.timeout:
                continue
            worker.killed = True
            if self.stopping:
                logger.warning(
                    "worker %d (pid %d) did not answer for %.1f s while stopping (paused, or its event "
                    "loop blocked): killed, not waited for (--worker-timeout %g s)",
                    worker.index, pid, silent, self.timeout,
                )
            else:
                logger.warning(
                    "worker %d (pid %d) did not answer for %.1f s (paused, or its event loop blocked "
                    "by a handler): killed, to be started again (--worker-timeout %g s); give "
                    "handlers no blocking work (run it in a thread)",
                    worker.index, pid, silent, self.timeout,
                )
            with contextlib.suppress(ProcessLookupError):
                worker.proc.kill()
