"""The documentation site: it builds in strict mode, and its API reference covers every public
name, every option of the hub and the client with its default, and every error code."""

from __future__ import annotations

import html
import importlib
import inspect
import re
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest

from ladder.protocol.errors import ERRORS
from tests.support.server import ROOT

PUBLIC_MODULES = ["ladder", "ladder.client", "ladder.engine", "ladder.errors", "ladder.publisher"]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def inventory(site: Path) -> list[str]:
    data = (site / "objects.inv").read_bytes()
    body = zlib.decompress(data.split(b"\n", 4)[4]).decode()
    return [line.split()[0] for line in body.splitlines() if line.startswith("ladder")]


def resolve(path: str) -> Any:
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise LookupError(path)


def text_of_html(markup: str) -> str:
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", markup)))


def test_every_public_name_has_a_reference_entry(site: Path) -> None:
    entries: dict[str, list[Any]] = {}
    for path in inventory(site):
        entries.setdefault(path.rsplit(".", 1)[-1], []).append(path)
    missing = []
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if not any(resolve(path) is obj for path in entries.get(name, [])):
                missing.append(f"{module_name}.{name}")
    assert missing == []


@pytest.mark.parametrize(
    ("page", "cls"),
    [
        ("reference/server", "ladder.Ladder"),
        ("reference/server", "ladder.JWT"),
        ("reference/client", "ladder.Client"),
        ("reference/engines", "ladder.Publisher"),
        ("reference/engines", "ladder.BlockingPublisher"),
        ("reference/engines", "ladder.engine.MemoryEngine"),
        ("reference/engines", "ladder.engine.redis.RedisEngine"),
    ],
)
def test_every_option_is_documented_with_its_default(site: Path, page: str, cls: str) -> None:
    page_html = (site / page / "index.html").read_text(encoding="utf-8")
    start = page_html.index(f'<h2 id="{cls}"')
    end = page_html.find("<h2 ", start + 1)
    text = text_of_html(page_html[start : end if end > 0 else None])  # this class's entry only
    for name, param in inspect.signature(resolve(cls)).parameters.items():
        if param.default is inspect.Parameter.empty:
            assert re.search(rf"\b{name} \(", text), f"{cls}({name}) is not documented"
        else:
            assert re.search(rf"\b{name} \([^\u2013]*default: ", text), (
                f"{cls}({name}=...) has no documented default"
            )


def test_the_error_table_has_every_code(site: Path) -> None:
    page = (site / "reference" / "errors" / "index.html").read_text(encoding="utf-8")
    rows = re.findall(r"<tr>\s*<td><code>([a-z_]+)</code></td>", page)
    assert rows == list(ERRORS)
