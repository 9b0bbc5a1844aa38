"""Sampling the Ladder server with py-spy during measurement windows (``bench/run --profile``).

py-spy attaches to the server process for exactly one window (``--nonblocking``: the
server is never paused, so its timings stay honest) and writes collapsed stacks.
:func:`summarise` turns them into the functions with the most samples, by self time
(the function itself was running) and inclusive time (it was on the stack), as shares of
the samples in which the server was busy (idle samples, waiting in epoll, are dropped).
"""

from __future__ import annotations

import collections
import contextlib
import re
import signal
import subprocess
from pathlib import Path

from . import servers

PY_SPY = servers.PEERS / "venv" / "bin" / "py-spy"

_enabled_dir: Path | None = None
_counter = collections.Counter[str]()


def enable(directory: Path) -> None:
    global _enabled_dir
    directory.mkdir(parents=True, exist_ok=True)
    _enabled_dir = directory


def enabled() -> bool:
    return _enabled_dir is not None and PY_SPY.exists()


class Recording:
    def __init__(self, server: servers.Server, label: str) -> None:
        assert _enabled_dir is not None
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-")
        _counter[safe] += 1
        self.path = _enabled_dir / f"{safe}-{_counter[safe]}.txt"
        self.proc = subprocess.Popen(
            [str(PY_SPY), "record", "--pid", str(server.pid), "--rate", "250", "--nonblocking",
             "--format", "raw", "--output", str(self.path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        servers.register(self.proc)

    def stop(self) -> Path:
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            servers.stop(self.proc)
        servers.unregister(self.proc)
        summary = self.path.with_suffix(".summary.txt")
        with contextlib.suppress(OSError):
            summary.write_text(summarise(self.path))
        return self.path


class Recordings:
    """One recording per Ladder process of a group (S7's nodes; redis-server is not sampled)."""

    def __init__(self, group: servers.Group, label: str) -> None:
        ladders = [m for m in group.members if m.kind.startswith("ladder")]
        self.parts = [Recording(m, f"{label}-node{'ABCDEFGH'[i]}" if len(ladders) > 1 else label)
                      for i, m in enumerate(ladders)]

    def stop(self) -> Path:
        paths = [part.stop() for part in self.parts]
        return paths[0]


def start(server: servers.Server | servers.Group, label: str) -> Recording | Recordings | None:
    if not enabled() or not server.kind.startswith("ladder"):
        return None
    if isinstance(server, servers.Group):
        return Recordings(server, label)
    return Recording(server, label)


_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _name(frame: str) -> str:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    file = m["file"]
    for marker in ("site-packages/", "/src/", "lib/python3.11/"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return f"{m['func']} ({file})"


def summarise(path: Path, top: int = 30) -> str:
    """Top functions by self and by inclusive samples, from py-spy's raw (collapsed) output."""
    self_count: collections.Counter[str] = collections.Counter()
    incl_count: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_name(f) for f in stack.split(";") if f and not f.startswith("process ") and
                  not f.startswith("thread ")]
        if not frames:
            continue
        total += count
        self_count[frames[-1]] += count
        for name in set(frames):
            incl_count[name] += count
    if not total:
        return "no samples\n"
    out = [f"{total} busy samples (250 Hz)", "", "self time:"]
    out += [f"  {100 * c / total:5.1f} %  {n}" for n, c in self_count.most_common(top)]
    out += ["", "inclusive time:"]
    out += [f"  {100 * c / total:5.1f} %  {n}" for n, c in incl_count.most_common(top)]
    return "\n".join(out) + "\n"
