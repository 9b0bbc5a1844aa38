"""The README's quick start, as written: the server it shows, its Python client, and its browser
snippet in real Chromium, against a real ``ladder serve``."""

from __future__ import annotations

import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.browser.conftest import launch
from tests.docs import snippets
from tests.docs.conftest import free_port, run_script, serving

README = "README.md"
EXTRAS = set(tomllib.loads((snippets.ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"])


def test_every_code_example_in_the_readme_is_run() -> None:
    assert snippets.unmarked(README) == []
    assert set(snippets.files(README)) == {"app.py", "client.py", "page.js"}


def test_the_quick_start_runs_as_written(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    port = free_port()
    ports = {8000: port}
    snippets.write(tmp_path, snippets.files(README), ports)
    server = snippets.command(README, "server")
    assert server[:2] == ["ladder", "serve"]
    with serving(snippets.with_ports(" ".join(server), ports).split(), tmp_path, port):
        out = run_script(["python", "client.py"], tmp_path).splitlines()
        assert out[0] == "transport: None -> websocket (connected)"
        assert out[1].startswith("SubscribeResult(channel='room:lobby'")
        assert out[2:] == ["sent at offset 1", "1 {'from': None, 'text': 'hi'}"]

        with sync_playwright() as playwright:
            browser = launch(playwright)
            try:
                page = browser.new_page()
                logged: list[str] = []
                page.on("console", lambda message: logged.append(message.text))
                errors: list[str] = []
                page.on("pageerror", lambda error: errors.append(str(error)))
                page.goto(f"http://127.0.0.1:{port}/health")  # any page of the hub's origin
                page.add_script_tag(content=(tmp_path / "page.js").read_text(), type="module")
                wanted = {"sent at offset 2", "2 hi from the browser"}
                while not wanted <= set(logged) and not errors:
                    page.wait_for_event("console", timeout=15_000)
            finally:
                browser.close()
        assert not errors
        assert "transport: null -> websocket (connected)" in logged
        assert "1 hi" in logged and "2 hi from the browser" in logged


def documented_commands() -> list[list[str]]:
    docs = [README, *(str(p.relative_to(snippets.ROOT)) for p in (snippets.ROOT / "docs").rglob("*.md"))]
    found = []
    for doc in docs:
        for block in snippets.blocks(doc):
            if block.lang == "sh":
                for line in block.code.splitlines():
                    words = shlex.split(line, comments=True)
                    while words and "=" in words[0]:
                        words = words[1:]  # VAR=value prefixes
                    if words[:1] in (["ladder"], ["pip"]):
                        found.append(words)
    return found


def test_documented_command_lines_use_options_that_exist() -> None:
    commands = documented_commands()
    assert any(c[:2] == ["ladder", "serve"] for c in commands)
    helps: dict[str, str] = {}
    for words in commands:
        if words[0] == "pip":  # the distribution by name, or a checkout of it (`.`), with extras it has
            assert words[1] == "install" and words[2:], words
            for word in words[2:]:
                name, _, extras = word.partition("[")
                assert name in ("ladder-rt", "."), words
                assert set(filter(None, extras.rstrip("]").split(","))) <= EXTRAS, words
            continue
        sub = words[1]
        if sub not in helps:
            helps[sub] = subprocess.run(
                [sys.executable, "-m", "ladder.cli", sub, "--help"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        for word in words[2:]:
            if word.startswith("--"):
                assert word in helps[sub], f"{' '.join(words)}: `ladder {sub}` has no {word}"
