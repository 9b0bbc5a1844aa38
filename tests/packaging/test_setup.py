"""scripts/setup, run in a copy of the files it reads, with a stand-in virtualenv whose python
records what it is asked to do (nothing is installed)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.server import ROOT

READS = ["pyproject.toml", "scripts/setup", "scripts/constraints.txt", "scripts/dev-requirements.txt"]


def checkout(tmp_path: Path) -> Path:
    """A copy of what scripts/setup reads, with a .venv whose python logs its arguments."""
    for name in READS:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, tmp_path / name)
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\necho "$@" >> "{tmp_path}/asked"\n')
    python.chmod(0o755)
    return tmp_path


def setup(where: Path, what: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHON": sys.executable}  # (has venv and ensurepip: no apt-get)
    return subprocess.run(
        ["bash", "scripts/setup", what], cwd=where, env=env, capture_output=True, text=True, timeout=60, check=True
    )


def stamp(where: Path, what: str) -> Path:
    return where / ".venv" / f".ladder-stamp-{what}"


def test_an_up_to_date_test_install_serves_the_demo_as_it_is(tmp_path: Path) -> None:
    """`scripts/demo` after `scripts/test` reinstalled everything into the same .venv."""
    where = checkout(tmp_path)
    # What `scripts/setup test` writes once its install is done: the inputs' digest.
    digest = subprocess.run(
        "cat pyproject.toml scripts/constraints.txt scripts/dev-requirements.txt | sha256sum | cut -c1-16",
        shell=True, cwd=where, capture_output=True, text=True, check=True,
    ).stdout
    stamp(where, "test").write_text(digest)

    done = setup(where, "demo")
    assert done.stdout == ""
    assert not (where / "asked").exists(), "nothing installed"

    stamp(where, "test").write_text("0" * 16 + "\n")  # the test install is out of date: demo installs
    done = setup(where, "demo")
    assert done.stdout == "installing Python packages into .venv\n"
    asked = (where / "asked").read_text()
    assert "pip install -q -c scripts/constraints.txt -e .\n" in asked
    assert stamp(where, "demo").read_text() == digest
