"""The compiled build: the modules pyproject.toml gives mypyc are C extensions when the suite
runs on the unpacked compiled wheel (scripts/test sets ``LADDER_COMPILED`` to it), and the
plain source otherwise, so neither run can silently test the other build."""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import re
import tomllib
import types
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
    arrays = dict(re.findall(r"^(\w+)=\((.*)\)$", script, flags=re.MULTILINE))
    directories = []
    for word in arrays["compiled_only"].split():  # directories, or "${array[@]}" of them
        named = re.fullmatch(r'"\$\{(\w+)\[@\]\}"', word)
        directories += arrays[named.group(1)].split() if named else [word]
    assert len(directories) >= 6, directories
    assert directories and all((ROOT / d).is_dir() for d in directories)
    for directory in directories:
        for path in (ROOT / directory).rglob("*.py"):
            assert "mark.pure" not in path.read_text(encoding="utf-8"), path


def test_the_records_a_client_sends_with_every_message_have_their_own_constructors() -> None:
    """A dataclass's generated ``__init__`` stays interpreted even in a compiled module (and a
    frozen one sets each field through ``object.__setattr__``): the records built for every
    message write theirs, which mypyc compiles."""
    from ladder.protocol import frames  # noqa: PLC0415 - after the build's path is set

    for record in (frames.Publish, frames.Emit, frames.Call, frames.Ack, frames.Ping, frames.Pong):
        code = getattr(record.__init__, "__code__", None)
        assert code is None or code.co_filename != "<string>", record  # (a generated one's)
        if os.environ.get("LADDER_COMPILED"):
            assert not isinstance(record.__init__, types.FunctionType), record
