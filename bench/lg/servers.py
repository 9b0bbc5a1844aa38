"""Starting, measuring and stopping the servers under test.

Every server runs ``taskset -c <core>`` in its own process group (``start_new_session``),
so stopping it kills everything it started; :func:`stop_all` runs at exit and on
SIGINT/SIGTERM, so no server outlives the harness. CPU time comes from
``/proc/<pid>/stat`` (utime + stime of every thread, exited ones included: Node's GC and
libuv threads count), memory from ``/proc/<pid>/status`` (VmRSS).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parents[1]
ROOT = BENCH.parent
PEERS = BENCH / ".peers"
PROJECT_PY = ROOT / ".venv" / "bin" / "python"
PEERS_PY = PEERS / "venv" / "bin" / "python"
NODE_MODULES = PEERS / "node" / "node_modules"
CLK_TCK = os.sysconf("SC_CLK_TCK")

SERVER_CORE = 0
LOAD_CORE = 1

SERVERS = tuple(os.environ.get("BENCH_SERVERS", "ladder,psio,node").split(","))
"""The servers S2–S4 compare (``BENCH_SERVERS``: e.g. ``ladder,ladder-before`` to measure a
change: ``ladder-before`` runs the Ladder source named by ``BENCH_BEFORE``, a ``src`` folder).
"ladder" is the compiled build, as the published wheels install it (``scripts/compiled``
builds it into build/compiled/); "ladder-pure" is the same source run as plain Python."""
BEFORE = os.environ.get("BENCH_BEFORE")
COMPILED = ROOT / "build" / "compiled"
LABELS = {"ladder": "Ladder", "ladder-pure": "Ladder (pure Python)", "ladder-before": "Ladder (before)", "ladder-asgi": "Ladder (ASGI WebSocket)", "psio": "python-socketio",
          "node": "Node Socket.IO", "redis": "redis-server"}

_live: dict[int, subprocess.Popen[bytes]] = {}
_tmpdirs: dict[int, Path] = {}
"""Private directories of live processes (redis-server's), removed when they stop."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def kernel_bytes() -> int:
    """The host kernel's memory that sockets grow: its slab caches (socket, file, epoll
    entries...) and the TCP buffers' pages. Host-wide, so read it on a quiet machine and
    take differences."""
    total = 0
    with open("/proc/meminfo", "rb") as f:
        for line in f:
            if line.startswith(b"Slab:"):
                total += int(line.split()[1]) * 1024
    with open("/proc/net/sockstat", "rb") as f:
        for line in f:
            if line.startswith(b"TCP:"):
                words = line.split()
                total += int(words[words.index(b"mem") + 1]) * os.sysconf("SC_PAGE_SIZE")
    return total


def core_busy() -> dict[int, float]:
    """Busy seconds per CPU core since boot, from /proc/stat (everything, not just ours)."""
    out: dict[int, float] = {}
    with open("/proc/stat", "rb") as f:
        for line in f:
            if not line.startswith(b"cpu") or line.startswith(b"cpu "):
                continue
            parts = line.split()
            values = [int(v) for v in parts[1:9]]
            idle = values[3] + values[4]
            out[int(parts[0][3:])] = (sum(values) - idle) / CLK_TCK
    return out


def self_cpu() -> float:
    t = os.times()
    return t.user + t.system


@dataclass
class Server:
    kind: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    started: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def rss(self) -> int:
        return rss_bytes(self.pid)

    def collect(self) -> None:
        """Ask the server to run its garbage collector (SIGUSR2; all three servers handle it)."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGUSR2)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        stop(self.proc)


class Group:
    """Several server processes measured as one (a Ladder cluster and its Redis): CPU and
    memory are summed; ``pid`` and ``port`` are the first member's (profiling samples it)."""

    def __init__(self, kind: str, members: list[Server]) -> None:
        self.kind = kind
        self.members = members

    @property
    def pid(self) -> int:
        return self.members[0].pid

    @property
    def port(self) -> int:
        return self.members[0].port

    def cpu(self) -> float:
        return sum(member.cpu() for member in self.members)

    def cpu_each(self) -> list[float]:
        return [member.cpu() for member in self.members]

    def rss(self) -> int:
        return sum(member.rss() for member in self.members)

    def collect(self) -> None:
        for member in self.members:
            if member.kind != "redis":
                member.collect()

    def alive(self) -> bool:
        return all(member.alive() for member in self.members)

    def stop(self) -> None:
        # The Ladder nodes first (they would log Redis going away), Redis last.
        stop_many([m.proc for m in self.members if m.kind != "redis"])
        stop_many([m.proc for m in self.members if m.kind == "redis"])


def asgi_variant() -> bool:
    """Whether ``ladder serve`` has a native WebSocket driver with ``--asgi-ws`` to turn it off
    (then the harness also measures the ASGI path, as "ladder-asgi", in S1 and S2)."""
    try:
        out = subprocess.run([str(PROJECT_PY), "-m", "ladder.cli", "serve", "--help"], capture_output=True,
                             text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "--asgi-ws" in out


_pure = False
"""Whether "ladder" and "ladder-asgi" run as plain Python (``bench/run --profile``)."""


def profile_pure() -> None:
    """Run "ladder" and "ladder-asgi" as plain Python from now on, as "ladder-pure" does:
    py-spy sees no Python frames inside the compiled build's C extensions (a profile of it
    is ``Runner.run`` 100 %)."""
    global _pure
    _pure = True


@functools.cache
def compiled() -> Path:
    """The compiled build of this checkout, built (or found up to date) once per run."""
    subprocess.run([str(ROOT / "scripts" / "compiled")], check=True)
    return COMPILED


def _command(kind: str, port: int) -> tuple[list[str], Path, dict[str, str]]:
    if kind in ("ladder", "ladder-asgi", "ladder-before", "ladder-pure"):
        app = os.environ.get("BENCH_LADDER_APP", "ladder_app:hub")  # gc_bench.py observes the collector
        cmd = [str(PROJECT_PY), "-m", "ladder.cli", "serve", app, "--port", str(port),
               "--log-level", "warning"]
        if kind == "ladder-asgi":
            cmd.append("--asgi-ws")
        cmd += os.environ.get("BENCH_SERVE_ARGS", "").split()  # e.g. "--gc-threshold 700"
        if kind == "ladder-before":
            if not BEFORE:
                raise ValueError("ladder-before needs BENCH_BEFORE=<a checkout's src folder>")
            return cmd, BENCH, {"PYTHONPATH": BEFORE}
        if kind == "ladder-pure" or _pure:
            return cmd, BENCH, {}
        return cmd, BENCH, {"PYTHONPATH": str(compiled())}
    if kind == "psio":
        return [str(PEERS_PY), str(BENCH / "peers" / "psio_app.py"), str(port)], BENCH / "peers", {}
    if kind == "node":
        return (["node", str(BENCH / "peers" / "node" / "server.js"), str(port)], BENCH / "peers" / "node",
                {"NODE_PATH": str(NODE_MODULES)})
    raise ValueError(kind)


def start(kind: str, logdir: Path, *, settings: dict[str, Any] | None = None, core: int = SERVER_CORE,
          timeout: float = 20.0, redis_url: str | None = None) -> Server:
    """Start server ``kind`` pinned to ``core`` on a fresh port; return once it accepts.

    ``redis_url``: a Ladder server uses the Redis engine there (``BENCH_REDIS_URL``)."""
    return start_many(1, kind, logdir, settings=settings, core=core, timeout=timeout, redis_url=redis_url)[0]


def start_many(count: int, kind: str, logdir: Path, *, settings: dict[str, Any] | None = None,
               core: int = SERVER_CORE, timeout: float = 20.0, redis_url: str | None = None) -> list[Server]:
    """Start ``count`` servers of ``kind`` at once (their start-ups overlap); return once all accept."""
    spawned = [_spawn(kind, logdir, settings, core, redis_url) for _ in range(count)]
    for server in spawned:
        _wait_listening(kind, server.proc, server.port, server.log, timeout)
    return spawned


def _spawn(kind: str, logdir: Path, settings: dict[str, Any] | None, core: int, redis_url: str | None) -> Server:
    port = free_port()
    cmd, cwd, extra = _command(kind, port)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(extra)
    env.pop("BENCH_REDIS_URL", None)
    if redis_url is not None:
        env["BENCH_REDIS_URL"] = redis_url
    settings = settings or {}
    env["BENCH_LADDER"] = json.dumps(settings.get("ladder", {}))
    env["BENCH_PSIO"] = json.dumps(settings.get("psio", {}))
    env["BENCH_NODE"] = json.dumps(settings.get("node", {}))
    env["PYTHONUNBUFFERED"] = "1"
    logdir.mkdir(parents=True, exist_ok=True)
    log = logdir / f"{kind}-{port}.log"
    out = open(log, "ab")  # noqa: SIM115 - kept open by the child
    proc = subprocess.Popen(
        ["taskset", "-c", str(core), *cmd], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    out.close()
    _live[proc.pid] = proc
    return Server(kind, port, proc, log)


def _wait_listening(kind: str, proc: subprocess.Popen[bytes], port: int, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            stop(proc)
            raise RuntimeError(f"{kind} server exited with {proc.returncode}; see {log}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        if time.monotonic() > deadline:
            stop(proc)
            raise TimeoutError(f"{kind} server did not listen on {port} within {timeout} s; see {log}")
        time.sleep(0.05)


def start_redis(logdir: Path, *, core: int = SERVER_CORE, timeout: float = 10.0) -> Server:
    """A private ``redis-server`` on a free loopback port, pinned to ``core``, in a temporary
    directory (removed when it stops), without persistence (``--save ''``, no AOF): nothing
    is written to disk during a window. Tracked like the servers, so :func:`stop_all` ends it."""
    binary = redis_binary() or REDIS_FALLBACK
    port = free_port()
    tmpdir = Path(tempfile.mkdtemp(prefix="ladder-bench-redis-"))
    logdir.mkdir(parents=True, exist_ok=True)
    log = logdir / f"redis-{port}.log"
    out = open(log, "ab")  # noqa: SIM115 - kept open by the child
    cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmpdir), "--save", "",
           "--appendonly", "no", "--protected-mode", "no", "--loglevel", "warning",
           "--maxmemory-policy", "noeviction"]
    try:
        proc = subprocess.Popen(["taskset", "-c", str(core), *cmd], cwd=tmpdir, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    except BaseException:
        shutil.rmtree(tmpdir, ignore_errors=True)
        raise
    finally:
        out.close()
    _live[proc.pid] = proc
    _tmpdirs[proc.pid] = tmpdir
    _wait_listening("redis", proc, port, log, timeout)
    return Server("redis", port, proc, log)


REDIS_FALLBACK = "/usr/sbin/redis-server"
"""Where Debian's redis-server package puts it, when PATH (a non-root user's) lacks /usr/sbin."""


def redis_binary() -> str | None:
    """The redis-server that S7 and S9 start, if there is one."""
    found = shutil.which("redis-server")
    if found:
        return found
    return REDIS_FALLBACK if os.access(REDIS_FALLBACK, os.X_OK) else None


def redis_version() -> str | None:
    binary = redis_binary() or REDIS_FALLBACK
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10,
                             check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for part in out.split():
        if part.startswith("v="):
            return part[2:]
    return out.strip() or None


def stop(proc: subprocess.Popen[bytes], grace: float = 1.5) -> None:
    """SIGTERM the process group, SIGKILL it after ``grace`` seconds."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    _live.pop(proc.pid, None)
    tmpdir = _tmpdirs.pop(proc.pid, None)
    if tmpdir is not None:
        shutil.rmtree(tmpdir, ignore_errors=True)


def register(proc: subprocess.Popen[bytes]) -> None:
    """Track another child (an S6 client) so that :func:`stop_all` ends it too."""
    _live[proc.pid] = proc


def unregister(proc: subprocess.Popen[bytes]) -> None:
    _live.pop(proc.pid, None)


def stop_many(procs: list[subprocess.Popen[bytes]], grace: float = 1.5) -> None:
    """SIGTERM every process group at once, then SIGKILL what is left after ``grace`` seconds."""
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(max(0.0, deadline - time.monotonic()))
        stop(proc, grace=0.0)


def stop_all() -> None:
    for proc in list(_live.values()):
        stop(proc, grace=0.5)
