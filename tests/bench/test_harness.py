"""bench/run's promises (bench/README.md): docs/benchmarks.md is written only when asked for,
and only from a run of every scenario the page shows; a run that cannot start says why in
one line and leaves nothing behind; ``--profile`` samples Ladder as plain Python.

The harness's ``main`` runs in this process with the run itself, the report and everything
that would touch the machine (core pinning, limits, signal handlers) replaced."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import resource
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.support.server import ROOT

BENCH = ROOT / "bench"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Harness:
    def __init__(self, module: ModuleType, home: Path) -> None:
        self.module = module
        self.home = home
        self.runs: list[list[str]] = []
        self.renders: list[tuple[Path, bool]] = []

    @property
    def servers(self) -> Any:
        return self.module.servers

    @property
    def results(self) -> Path:
        return self.home / "results"

    def main(self, *argv: str) -> int:
        """bench/run with these arguments; its exit status."""
        sys.argv = ["harness.py", *argv]
        try:
            self.module.main()
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else 1
        return 0


@pytest.fixture
def harness(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Harness]:
    module = load("harness")
    h = Harness(module, tmp_path)

    async def run(cfg: Any, only: list[str], results: dict[str, Any], save: Any) -> None:
        h.runs.append(only)

    def render(results_path: Path, *, docs: bool) -> int:
        h.renders.append((results_path, docs))
        return 0

    monkeypatch.setattr(module, "BENCH", tmp_path)  # results/<stamp>-<mode>/ goes here
    monkeypatch.setattr(module, "run", run)
    monkeypatch.setattr(module, "render", render)
    monkeypatch.setattr(module, "metadata", lambda args: {"machine": {}, "ladder": {}})
    monkeypatch.setattr(module.servers, "compiled", lambda: tmp_path)
    monkeypatch.setattr(module.servers, "_pure", False, raising=False)
    monkeypatch.setattr(module.profile, "_enabled_dir", None)
    monkeypatch.setattr(os, "sched_setaffinity", lambda *args: None)
    monkeypatch.setattr(resource, "setrlimit", lambda *args: None)
    monkeypatch.setattr(signal, "signal", lambda *args: None)
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    yield h


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


def test_report_only_writes_docs_only_with_docs(harness: Harness) -> None:
    results = harness.home / "results.json"
    assert harness.main("--report-only", str(results)) == 0
    assert harness.main("--report-only", str(results), "--docs") == 0
    assert harness.renders == [(results, False), (results, True)]


def test_a_full_run_writes_docs_only_with_docs(harness: Harness) -> None:
    assert harness.main("--only", "S4", "--reps", "1") == 0
    assert harness.main() == 0
    assert harness.main("--docs") == 0
    assert [docs for _path, docs in harness.renders] == [False, False, True]
    assert harness.runs == [["S4"], list(harness.module.ALL), list(harness.module.ALL)]


def test_docs_from_a_partial_run_are_refused_before_it_starts(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    assert harness.main("--only", "S4", "--reps", "1", "--docs") == 2
    line = one_line(capsys.readouterr().err)
    assert "--docs" in line and "S1, S2, S3, S5, S6, S7" in line
    assert harness.runs == [] and harness.renders == []
    assert not harness.results.exists()


def test_without_redis_server_s7_fails_in_one_line_and_leaves_no_results(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name == "redis-server" else which(name, *a, **k))
    monkeypatch.setattr(harness.servers, "REDIS_FALLBACK", str(harness.home / "no-redis-server"), raising=False)
    assert harness.main("--only", "S4,S7") == 2
    line = one_line(capsys.readouterr().err)
    assert "redis-server" in line and "S7" in line
    assert harness.runs == []
    assert not harness.results.exists()


def test_without_the_build_tools_the_run_fails_in_one_line_and_leaves_no_results(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    version = importlib.metadata.version

    def without_hatchling(name: str) -> str:
        if name == "hatchling":
            raise importlib.metadata.PackageNotFoundError(name)
        return version(name)

    monkeypatch.setattr(importlib.metadata, "version", without_hatchling)
    assert harness.main("--only", "S4") == 2
    line = one_line(capsys.readouterr().err)
    assert "hatchling" in line and "scripts/setup test" in line
    assert harness.runs == []
    assert not harness.results.exists()


def test_a_failed_compiled_build_fails_in_one_line_and_leaves_no_results(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def compiled() -> Path:
        raise subprocess.CalledProcessError(1, ["scripts/compiled"])

    monkeypatch.setattr(harness.servers, "compiled", compiled)
    assert harness.main("--only", "S4") == 2
    line = one_line(capsys.readouterr().err)
    assert "scripts/compiled" in line
    assert harness.runs == []
    assert not harness.results.exists()


def test_profile_samples_ladder_as_plain_python(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    py_spy = harness.home / "py-spy"
    py_spy.touch()
    monkeypatch.setattr(harness.module.profile, "PY_SPY", py_spy)
    assert harness.servers._command("ladder", 1)[2] == {"PYTHONPATH": str(harness.home)}
    assert harness.main("--only", "S4", "--profile") == 0
    assert "plain Python" in capsys.readouterr().out
    assert harness.runs == [["S4"]]
    for kind in ("ladder", "ladder-asgi"):
        assert "PYTHONPATH" not in harness.servers._command(kind, 1)[2]  # the source, not build/compiled
    assert harness.main("--only", "S4", "--profile", "--docs") == 2


def test_bench_run_help_installs_nothing(tmp_path: Path) -> None:
    """``bench/run --help`` prints the options before installing the peers (a copy of bench/run
    in an empty tree: a bench/.peers appearing there would be an install begun)."""
    (tmp_path / "bench").mkdir()
    shutil.copy(BENCH / "run", tmp_path / "bench" / "run")
    (tmp_path / "bench" / "harness.py").symlink_to(BENCH / "harness.py")
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parent.parent)
    env = dict(os.environ, PIP_NO_INDEX="1", npm_config_offline="true")
    done = subprocess.run([str(tmp_path / "bench" / "run"), "--help"], capture_output=True, text=True,
                          timeout=60, env=env, check=False)
    assert not (tmp_path / "bench" / ".peers").exists(), done.stderr
    assert done.returncode == 0, done.stderr
    assert "--report-only" in done.stdout and "--docs" in done.stdout
    assert not (tmp_path / "bench" / ".peers").exists()
