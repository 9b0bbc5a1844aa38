"""Code examples taken out of the markdown, so an example that drifts from the API fails a test.

A runnable example is a fenced block preceded by a marker comment, invisible when rendered:

* ``<!-- file: app.py -->`` — the block is that file of the example;
* ``<!-- run: NAME -->`` — the block is a shell command the test runs (a server, say).

The tests run the files as written. The one thing they change is the port: ``8000`` (and
``8001`` for a second server) becomes a free loopback port, so tests never collide.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from tests.support.server import ROOT

_BLOCK = re.compile(r"(?:<!-- (file|run|not run): ([^\n]+?) -->\n)?```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)
RUNNABLE = {"python", "js", "html", "javascript"}


@dataclass(frozen=True)
class Block:
    kind: str | None
    name: str
    lang: str
    code: str


def blocks(doc: str | Path) -> list[Block]:
    text = (ROOT / doc).read_text(encoding="utf-8")
    return [Block(m[1], (m[2] or "").strip(), m[3], m[4]) for m in _BLOCK.finditer(text)]


def files(doc: str | Path) -> dict[str, str]:
    """The example's files by name (several blocks of one name are concatenated)."""
    out: dict[str, str] = {}
    for block in blocks(doc):
        if block.kind == "file":
            out[block.name] = out.get(block.name, "") + block.code
    return out


def command(doc: str | Path, name: str) -> list[str]:
    found = [b.code for b in blocks(doc) if b.kind == "run" and b.name == name]
    assert len(found) == 1, f"{doc}: one `run: {name}` block expected"
    return shlex.split(found[0].strip().splitlines()[0])


def unmarked(doc: str | Path) -> list[str]:
    """Code blocks in a runnable language that no test runs (each must say why not)."""
    return [b.code[:60] for b in blocks(doc) if b.lang in RUNNABLE and b.kind is None]


def with_ports(text: str, ports: dict[int, int]) -> str:
    for old, new in ports.items():
        text = text.replace(f"127.0.0.1:{old}", f"127.0.0.1:{new}").replace(f"--port {old}", f"--port {new}")
        text = text.replace(f"localhost:{old}", f"localhost:{new}")
    return text


def write(directory: Path, example: dict[str, str], ports: dict[int, int]) -> None:
    for name, code in example.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(with_ports(code, ports), encoding="utf-8")
