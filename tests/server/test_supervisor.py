"""The parent of ``ladder serve --workers`` hears every worker's exit, also one reaped by
``Popen`` itself (its ``send_signal`` polls first)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

from ladder.server.workers import Supervisor, _Worker


def test_a_worker_reaped_as_it_was_signalled_is_heard_as_exited() -> None:
    """Two workers failing at startup together: stopping the second (``send_signal``) reaped
    it, no wait of the parent heard of it, and the parent waited for it forever (a run of
    ``ladder serve --workers 2`` of such an app hung until killed)."""
    supervisor = Supervisor(["serve", "nothing:hub"], "127.0.0.1", 0, 2)
    read, write = os.pipe()
    os.close(write)
    os.set_blocking(read, False)
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    proc.wait()  # reaped here, as send_signal's poll does
    supervisor.workers[proc.pid] = _Worker(1, proc, read)
    heard: list[tuple[int, int] | None] = []
    waiting = threading.Thread(target=lambda: heard.append(supervisor._wait()), daemon=True)
    try:
        waiting.start()
        waiting.join(5)
        assert heard == [(proc.pid, 3)], "the parent heard the worker had exited, with its code"
    finally:
        supervisor.workers.clear()  # (ends a wait that never heard it)
        supervisor.sock.close()
        os.close(read)
