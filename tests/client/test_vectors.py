"""The shared conformance vectors (``tests/vectors/*.json``) run against the Python core.

The format is in ``tests/vectors/README.md``; the browser client runs the same files.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from ladder.protocol import client as core
from ladder.protocol.errors import LadderError
from ladder.protocol.peer import PeerState

VECTORS = Path(__file__).parent.parent / "vectors"
SUBJECTS: dict[str, Any] = {name: getattr(core, name) for name in core.__all__}
SUBJECTS["PeerState"] = PeerState


def _cases() -> list[Any]:
    found = []
    for path in sorted(VECTORS.glob("*.json")):
        document = json.loads(path.read_text())
        for case in document["cases"]:
            found.append(pytest.param(document.get("subject"), case, id=f"{path.stem}: {case['name']}"))
    return found


def _same(got: Any, want: Any) -> bool:
    if isinstance(want, bool) or want is None or isinstance(want, str):
        return bool(got == want and type(got) is type(want))
    if isinstance(want, int | float):
        return (
            isinstance(got, int | float)
            and not isinstance(got, bool)
            and math.isclose(got, want, abs_tol=1e-6)
        )
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(map(_same, got, want))
    if isinstance(want, dict):
        return (
            isinstance(got, dict) and got.keys() == want.keys() and all(_same(got[k], want[k]) for k in want)
        )
    return False


def _json(value: Any) -> Any:
    """The value as the JSON a port would compare (tuples become lists)."""
    return json.loads(json.dumps(value))


def test_there_are_vectors_for_every_decision() -> None:
    """Each class and function of the core is exercised by at least one vector file."""
    called: set[str] = set()
    for path in VECTORS.glob("*.json"):
        document = json.loads(path.read_text())
        if document.get("subject"):
            called.add(document["subject"])
        for case in document["cases"]:
            called.update(step["input"]["call"] for step in case["steps"])
    constants = {name for name in core.__all__ if name.isupper()}
    assert set(core.__all__) - constants - called == set()


@pytest.mark.parametrize(("subject", "case"), _cases())
def test_vector(subject: str | None, case: dict[str, Any]) -> None:
    target: Any = SUBJECTS[subject](**case.get("config", {})) if subject else None
    for number, step in enumerate(case["steps"]):
        args = dict(step["input"].get("args", {}))
        if "at" in step:
            args["now"] = step["at"]
        call = step["input"]["call"]
        function = getattr(target, call) if target is not None else SUBJECTS[call]
        try:
            got = _json(function(**args))
        except LadderError as exc:
            got = {"error": exc.code}
        if "expect" in step:
            assert _same(got, step["expect"]), f"step {number} ({call}): got {got!r}, want {step['expect']!r}"
        for name, want in step.get("state", {}).items():
            value = _json(getattr(target, name))
            assert _same(value, want), f"step {number}: {name} is {value!r}, want {want!r}"
