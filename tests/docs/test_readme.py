"""The README's quick start, as written: the server it shows, its Python client, and its browser
snippet in real Chromium, against a real ``ladder serve``."""

from __future__ import annotations

from pathlib import Path

from tests.browser.conftest import launch
from tests.docs import snippets
from tests.docs.conftest import free_port, run_script, serving

README = "README.md"


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
