"""Installed as a user would: a wheel built from this repository, installed into a clean
virtualenv with the README's install command, then the README's quick start run as written
against that installation (not against this checkout)."""

from __future__ import annotations

import email
import re
import shlex
import subprocess
import sys
import urllib.request
import venv
import zipfile
from pathlib import Path

from tests.docs import snippets
from tests.docs.conftest import free_port
from tests.support.server import ROOT, stop_process, wait_for_port

DISTRIBUTION = "ladder-rt"


def install_command() -> list[str]:
    """The first command of the README's install section."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Install") :]
    block = section[section.index("```sh\n") + 6 :]
    line = block.splitlines()[0].split("#")[0]
    return shlex.split(line)


def test_readme_install_and_quick_start_in_a_clean_virtualenv(tmp_path: Path) -> None:
    command = install_command()
    assert command == ["pip", "install", DISTRIBUTION]

    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("ladder_rt-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        meta = email.message_from_bytes(
            archive.read(next(n for n in names if n.endswith(".dist-info/METADATA")))
        )
    assert meta["Name"] == DISTRIBUTION
    for shipped in ("ladder/static/client.js", "ladder/static/client.d.ts", "ladder/py.typed"):
        assert shipped in names
    assert {
        "ladder/demo/static/index.html",
        "ladder/demo/static/app.js",
        "ladder/demo/static/style.css",
    } <= set(names)
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    urls = meta.get_all("Project-URL") or []
    assert urls and all("https://" in url for url in urls)
    description = meta.get_payload()
    relative = re.findall(r"\]\((?!https://|#)([^)]*)\)", description)
    assert relative == [], "relative links and images break on a package index"
    assert "![" in description  # the screenshot, by an absolute URL

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    bin_dir = env_dir / "bin"
    # The README's command, pointed at the local wheel (the distribution is not on the index).
    done = subprocess.run(
        [str(bin_dir / "python"), "-m", *command, "-q", "--find-links", str(wheels)],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    work = tmp_path / "app"
    work.mkdir()
    port = free_port()
    snippets.write(
        work, {k: v for k, v in snippets.files("README.md").items() if k.endswith(".py")}, {8000: port}
    )
    server_argv = snippets.with_ports(" ".join(snippets.command("README.md", "server")), {8000: port}).split()
    server_argv[0] = str(bin_dir / server_argv[0])  # `ladder`, as installed by pip
    isolated = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)}
    log = open(work / "server.log", "wb")  # noqa: SIM115
    server = subprocess.Popen(server_argv, cwd=work, env=isolated, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, timeout=30, proc=server)
        version = subprocess.run(
            [
                str(bin_dir / "python"),
                "-c",
                "import ladder, importlib.metadata as m; print(ladder.__file__, m.version('ladder-rt'), ladder.__version__)",
            ],
            cwd=tmp_path,
            env=isolated,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert version[0].startswith(str(env_dir)), "the installed package, not this checkout"
        assert version[1] == version[2]
        client = subprocess.run(
            [str(bin_dir / "python"), "client.py"],
            cwd=work,
            env=isolated,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        stop_process(server)
        log.close()
    assert client.returncode == 0, client.stdout + client.stderr + (work / "server.log").read_text()

    # The demo runs from the installed package too (its page and assets are in the wheel).
    port = free_port()
    demo = subprocess.Popen(
        [str(bin_dir / "ladder"), "demo", "--port", str(port)],
        cwd=work,
        env=isolated,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, timeout=30, proc=demo)
        for path, wanted in (
            ("/", b"Ladder chat"),
            ("/static/app.js", b"connect"),
            ("/ladder/client.js", b"export"),
        ):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
                assert wanted in response.read(), path
    finally:
        stop_process(demo)
    out = client.stdout.splitlines()
    assert out[0] == "transport: None -> websocket (connected)"
    assert out[2:] == ["sent at offset 1", "1 {'from': None, 'text': 'hi'}"]
