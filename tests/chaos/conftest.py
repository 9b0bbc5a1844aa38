"""The chaos suite's cluster (one per module run, healed before each scenario) and its report.

The figures of every scenario and rung are printed (``-s``), shown in pytest's terminal summary
and written to ``chaos-figures.txt`` in pytest's base temporary directory.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.cluster import ChaosCluster
from tests.support.figures import Figures

FIGURES = Figures("chaos/: every rung through faults, counted by id")
_report_file: list[Path] = []


def report(line: str) -> None:
    FIGURES.report(line)
    for path in _report_file:
        with path.open("a") as out:
            out.write(line + "\n")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    FIGURES.summary(terminalreporter)
    for path in _report_file:
        terminalreporter.write_line(f"(also written to {path})")


@pytest.fixture(scope="session")
def figures_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.getbasetemp() / "chaos-figures.txt"
    if not _report_file:
        _report_file.append(path)
    return path


@pytest.fixture(scope="module")
def chaos(tmp_path_factory: pytest.TempPathFactory, figures_file: Path) -> Iterator[ChaosCluster]:
    cluster = ChaosCluster(tmp_path_factory.mktemp("chaos"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()
