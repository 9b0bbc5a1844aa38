"""Figures a test suite prints at the end of the run (measured values, not pass/fail)."""

from __future__ import annotations

from typing import Any


class Figures:
    """Lines reported by tests, shown in their own section of pytest's terminal summary."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.lines: list[str] = []

    def report(self, line: str) -> None:
        """A figure for the summary at the end of the run (and stdout now, with ``-s``)."""
        print(line)
        self.lines.append(line)

    def summary(self, terminalreporter: Any) -> None:
        """Call from the suite's ``pytest_terminal_summary`` hook."""
        if self.lines:
            terminalreporter.section(self.title)
            for line in self.lines:
                terminalreporter.write_line(line)
