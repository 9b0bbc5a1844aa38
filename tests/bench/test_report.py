"""bench/report.py: the page's header says how the figures were taken, a run without a target's
scenario prints no empty table, and ``--docs`` is refused for results that lack a scenario the
page shows (docs/ untouched). Rendered in this process without plots: a run with no records of
S1-S7 needs no matplotlib."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.support.server import ROOT


@pytest.fixture
def report() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_report", ROOT / "bench" / "report.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def results(mode: str, reps: int, scenarios: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"meta": {"mode": mode, "started": "2026-12-06T18:00:00+00:00", "command": "bench/run",
                     "ladder": {"commit": "abc1234"}, "machine": {}},
            "config": {"reps": reps, "s6_reps": 5 if mode == "full" else 1},
            "scenarios": scenarios or {"S10": [{"server": "ladder"}]}}


def page(report: ModuleType, tmp_path: Path, data: dict[str, Any]) -> str:
    return str(report.Report(data, tmp_path, docs=False).render().read_text())


def test_one_repetition_of_a_full_run_is_not_called_quick_mode(report: ModuleType, tmp_path: Path) -> None:
    text = page(report, tmp_path, results("full", 1))
    assert "Quick mode" not in text
    assert "(full mode" in text and "one repetition (`--reps 1`)" in text


def test_quick_mode_says_so(report: ModuleType, tmp_path: Path) -> None:
    assert "Quick mode: one pass" in page(report, tmp_path, results("quick", 1))


def test_the_repetitions_of_s7_are_counted_with_s3_and_s5(report: ModuleType, tmp_path: Path) -> None:
    text = page(report, tmp_path, results("full", 3))
    assert "median of 3 repetitions" in text
    assert "S3, S5, S7: 2;" in text and "S6: 5 attempts" in text


def test_a_run_without_targets_prints_no_empty_table(report: ModuleType, tmp_path: Path) -> None:
    text = page(report, tmp_path, results("full", 3))
    assert "| target | measured | status |" not in text
    assert "| metric | Ladder | peer | Ladder ÷ peer |" not in text
    targets = text.split("## Targets\n\n", 1)[1].split("\n", 1)[0]
    assert targets.startswith("None: this run holds no scenario with a target")


def test_docs_are_refused_for_results_without_every_scenario_of_the_page(
    report: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = tmp_path / "docs"
    monkeypatch.setattr(report, "DOCS", docs)
    path = tmp_path / "run" / "results.json"
    path.parent.mkdir()
    path.write_text(json.dumps(results("full", 1, {"S4": [{"server": "ladder"}]})))
    monkeypatch.setattr(sys, "argv", ["report.py", str(path), "--docs"])
    with pytest.raises(SystemExit) as exit_:
        report.main()
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "S1, S2, S3, S5, S6, S7" in err
    assert not docs.exists()
    assert report.missing_for_docs(results("full", 3, {s: [{}] for s in report.PAGE})) == []
