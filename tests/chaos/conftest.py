"""The chaos suite's cluster (one per module run, healed before each scenario) and its report.

The figures of every scenario and rung are printed (``-s``), shown in pytest's terminal summary
and written to ``chaos-figures.txt`` in pytest's base temporary directory and in WORKDIR, where
the nodes' logs and the record of applied messages are kept too (pytest removes old base
directories; WORKDIR stays until the next chaos run).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.cluster import ChaosCluster
from tests.support.figures import Figures

WORKDIR = Path(tempfile.gettempdir()) / "ladder-chaos"
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
    shutil.rmtree(WORKDIR, ignore_errors=True)
    WORKDIR.mkdir()
    path = tmp_path_factory.getbasetemp() / "chaos-figures.txt"
    if not _report_file:
        _report_file.extend([path, WORKDIR / "chaos-figures.txt"])
    return path


@pytest.fixture(scope="module")
def chaos(figures_file: Path) -> Iterator[ChaosCluster]:
    workdir = WORKDIR / "cluster"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir()
    cluster = ChaosCluster(workdir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()
