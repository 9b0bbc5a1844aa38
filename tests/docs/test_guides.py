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


def test_jwt_authentication(tmp_path: Path) -> None:
    out = run_example("docs/guides/auth.md", tmp_path)
    assert out == ["signed in as ada", "forged token: unauthorized"]


NGINX_MAIN = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    include {dir}/myapp.conf;
}}
"""

NGINX_CLIENT = """
import asyncio
import sys

from ladder import Client


async def main() -> None:
    for rung in ("websocket", "sse", "longpoll", "poll"):
        async with Client(sys.argv[1], transports=[rung]) as client:
            sub = client.subscribe("room:" + rung)
            await sub.ready()
            for n in range(3):  # round-robin: requests of one session land on both nodes
                await client.call("chat.send", {"room": rung, "text": str(n)}, timeout=10)
            got = []
            async for pub in sub:
                got.append(pub.data["text"])
                if len(got) == 3:
                    break
            print(rung, client.transport, got)


asyncio.run(main())
"""


def test_deployment_nginx_config_in_front_of_two_nodes_and_a_web_app(tmp_path: Path) -> None:
    import shutil  # noqa: PLC0415
    import urllib.error  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415

    from tests.support.redis import RedisServer  # noqa: PLC0415

    guide = "docs/guides/deployment.md"
    web, node1, node2, front = (free_port() for _ in range(4))
    (tmp_path / "myapp.py").write_text(snippets.files("README.md")["app.py"])  # the user's hub
    (tmp_path / "index.html").write_text("the web app's own page")
    (tmp_path / "client.py").write_text(NGINX_CLIENT)
    with RedisServer() as redis:
        ports = {8000: web, 8001: node1, 8002: node2, 8080: front, 6379: redis.port}
        conf = snippets.with_ports(snippets.files(guide)["myapp.conf"], ports)
        (tmp_path / "myapp.conf").write_text(conf.replace("listen 8080;", f"listen 127.0.0.1:{front};"))
        (tmp_path / "nginx.conf").write_text(NGINX_MAIN.format(dir=tmp_path))
        node = snippets.with_ports(" ".join(snippets.command(guide, "node")), ports).split()
        other = [str(node2) if arg == str(node1) else arg for arg in node]
        nginx = [
            shutil.which("nginx") or "/usr/sbin/nginx",
            "-p",
            str(tmp_path),
            "-c",
            str(tmp_path / "nginx.conf"),
        ]
        with (
            serving(["python", "-m", "http.server", str(web), "--bind", "127.0.0.1"], tmp_path, web),
            serving(node, tmp_path, node1),
            serving(other, tmp_path, node2),
            serving(nginx, tmp_path, front),
        ):
            with urllib.request.urlopen(f"http://127.0.0.1:{front}/index.html") as page:
                assert page.read() == b"the web app's own page"
            # A page of the site is same-origin for the hub: the proxy passes Host with its port
            # (with nginx's $host the hub saw another origin and refused every browser page).
            own_page = urllib.request.Request(
                f"http://127.0.0.1:{front}/ladder/poll?open=1", headers={"Origin": f"http://127.0.0.1:{front}"}
            )
            with urllib.request.urlopen(own_page) as answer:
                assert answer.status == 200 and b'"welcome"' in answer.read()
            with pytest.raises(urllib.error.HTTPError) as hidden:
                urllib.request.urlopen(f"http://127.0.0.1:{front}/ladder/metrics")
            assert hidden.value.code == 403, "metrics are for the monitoring, not the public"
            out = run_script(["python", "client.py", f"http://127.0.0.1:{front}/ladder"], tmp_path)
    assert out.splitlines() == [
        f"{rung} {rung} ['0', '1', '2']" for rung in ("websocket", "sse", "longpoll", "poll")
    ]
