"""The chaos soak's settings and its report.

``LADDER_SOAK_SECONDS`` sets how long the chaos phase runs (default 35 s: each stage of faults
once, which keeps the whole soak near a minute and a half); ``LADDER_SOAK_CYCLES`` how many connect/disconnect cycles follow
(default 10,000). For example ``LADDER_SOAK_SECONDS=1800 LADDER_SOAK_CYCLES=200000 pytest tests/soak``.
"""

from __future__ import annotations

import os
from typing import Any

from tests.support.figures import Figures

SOAK_SECONDS = float(os.environ.get("LADDER_SOAK_SECONDS", "35"))
SOAK_CYCLES = int(os.environ.get("LADDER_SOAK_CYCLES", "10000"))
FIGURES = Figures("soak/: chaos on every rung, then connect/disconnect cycles")
report = FIGURES.report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    FIGURES.summary(terminalreporter)


def rss_mib(pid: int) -> float:
    """Resident memory of a process (``VmRSS`` in /proc/<pid>/status), MiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")
