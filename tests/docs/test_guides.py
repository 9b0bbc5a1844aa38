"""Each guide's example, as written, against a real server (and a real Redis, Django project or
WSGI server where the guide uses one)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.docs import snippets
from tests.docs.conftest import free_port, run_script, serving

GUIDES = sorted(p.relative_to(snippets.ROOT) for p in (snippets.ROOT / "docs" / "guides").glob("*.md"))


@pytest.mark.parametrize("guide", GUIDES, ids=str)
def test_every_code_example_of_a_guide_is_run(guide: Path) -> None:
    assert snippets.unmarked(guide) == [], "each example is a file or a command a test runs"
    for name, code in snippets.files(guide).items():
        if name.endswith(".py"):
            ast.parse(code, name)


def run_example(guide: str, tmp_path: Path, script: str = "client.py") -> list[str]:
    port = free_port()
    ports = {8000: port}
    snippets.write(tmp_path, snippets.files(guide), ports)
    server = snippets.with_ports(" ".join(snippets.command(guide, "server")), ports).split()
    with serving(server, tmp_path, port):
        return run_script(["python", script], tmp_path).splitlines()


def test_fastapi(tmp_path: Path) -> None:
    out = run_example("docs/guides/fastapi.md", tmp_path)
    assert out == ["{'hello': 'fastapi'}", "published at offset 1", "1 {'title': 'Ladder is up'}"]


def test_starlette_page_in_chromium_and_python_client(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    from tests.browser.conftest import launch  # noqa: PLC0415

    guide = "docs/guides/starlette.md"
    port = free_port()
    snippets.write(tmp_path, snippets.files(guide), {8000: port})
    server = snippets.with_ports(" ".join(snippets.command(guide, "server")), {8000: port}).split()
    with serving(server, tmp_path, port):
        out = run_script(["python", "client.py"], tmp_path).splitlines()
        assert out == ["{'offset': 1}", "refused: bad_request send {'text': '...'}"]
        with sync_playwright() as playwright:
            browser = launch(playwright)
            try:
                page = browser.new_page()
                page.goto(f"http://127.0.0.1:{port}/")
                page.wait_for_function("document.querySelectorAll('#messages li').length === 2")
                shown = page.locator("#messages li").all_inner_texts()
            finally:
                browser.close()
    assert shown[0] == "hello from Python" and shown[1].startswith("hello from Mozilla")


def test_publishing_from_a_worker_reaches_clients_of_the_hub(tmp_path: Path) -> None:
    from tests.support.redis import RedisServer  # noqa: PLC0415

    guide = "docs/guides/worker.md"
    port = free_port()
    with RedisServer() as redis:
        ports = {8000: port, 6379: redis.port}
        snippets.write(tmp_path, snippets.files(guide), ports)
        server = snippets.with_ports(" ".join(snippets.command(guide, "server")), ports).split()
        with serving(server, tmp_path, port):
            assert run_script(snippets.command(guide, "worker"), tmp_path) == ""
            out = run_script(["python", "client.py"], tmp_path).splitlines()
    assert out == [
        "1 {'done': 1, 'of': 3}",
        "2 {'done': 2, 'of': 3}",
        "3 {'done': 3, 'of': 3}",
        "4 {'state': 'finished'}",
    ]


def test_django_project_under_uvicorn_with_django_sessions(tmp_path: Path) -> None:
    guide = "docs/guides/django.md"
    port = free_port()
    ports = {8000: port}
    snippets.write(tmp_path, snippets.files(guide), ports)
    run_script(snippets.command(guide, "migrate"), tmp_path)
    run_script(snippets.command(guide, "user"), tmp_path)
    server = snippets.with_ports(" ".join(snippets.command(guide, "server")), ports).split()
    with serving(server, tmp_path, port):
        out = run_script(["python", "client.py"], tmp_path).splitlines()
    assert out == ["logged in as ada", "without the cookie: unauthorized"]


def test_flask_under_gunicorn_beside_the_hub(tmp_path: Path) -> None:
    from tests.support.redis import RedisServer  # noqa: PLC0415

    guide = "docs/guides/flask.md"
    web, hub = free_port(), free_port()
    with RedisServer() as redis:
        ports = {8000: web, 8001: hub, 6379: redis.port}
        snippets.write(tmp_path, snippets.files(guide), ports)

        def command(name: str) -> list[str]:
            return snippets.with_ports(" ".join(snippets.command(guide, name)), ports).split()

        assert command("web")[0] == "gunicorn"  # a real WSGI server
        with serving(command("web"), tmp_path, web), serving(command("hub"), tmp_path, hub):
            out = run_script(["python", "client.py"], tmp_path).splitlines()
    assert out == ["hub says I am ada", "published at offset 1", "{'from': 'ada', 'text': 'deploy done'}"]
