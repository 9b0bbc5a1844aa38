"""The compiled build: the modules pyproject.toml gives mypyc are C extensions when the suite
runs on the unpacked compiled wheel (scripts/test sets ``LADDER_COMPILED`` to it), and the
plain source otherwise, so neither run can silently test the other build."""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import re
import tomllib
from pathlib import Path

from tests.support.server import ROOT


def compiled_modules() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    include: list[str] = config["tool"]["hatch"]["build"]["targets"]["wheel"]["hooks"]["mypyc"]["include"]
    return [path.removeprefix("src/").removesuffix(".py").replace("/", ".") for path in include]


def test_the_listed_modules_are_extensions_exactly_on_the_compiled_build() -> None:
    compiled = os.environ.get("LADDER_COMPILED")
    modules = compiled_modules()
    assert "ladder.server.native" in modules and "ladder.protocol.session" in modules
    for name in modules:
        path = Path(importlib.import_module(name).__file__ or "")
        if compiled:
            assert path.name.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)), path
            assert path.is_relative_to(Path(compiled).resolve()), path
        else:
            assert path == ROOT / "src" / Path(*name.split(".")).with_suffix(".py")


def test_no_test_that_runs_on_the_compiled_build_only_is_marked_pure() -> None:
    """scripts/test runs some directories on the compiled build only, without the ``pure``
    tests: one marked there would never run."""
    script = (ROOT / "scripts" / "test").read_text(encoding="utf-8")
    (listed,) = re.findall(r"^compiled_only=\((.*)\)$", script, flags=re.MULTILINE)
    directories = listed.split()
    assert directories and all((ROOT / d).is_dir() for d in directories)
    for directory in directories:
        for path in (ROOT / directory).rglob("*.py"):
            assert "mark.pure" not in path.read_text(encoding="utf-8"), path
