"""``client.on`` callbacks are typed by event name, so a type checker catches a wrong field."""

from __future__ import annotations

from pathlib import Path

from mypy import api

from tests.support.server import ROOT

USE = """
from ladder import Client
from ladder.client import Connected, TransportChanged


def changed(event: TransportChanged) -> int:
    return 1


def connected(event: Connected) -> None: ...


async def main() -> None:
    client = Client("http://127.0.0.1:8000")
    client.on("transport", lambda e: print(e.old, e.new, e.reason))
    reveal_type(client.on("transport", changed))

    @client.on("connected")
    def on_connected(event: Connected) -> None: ...

    client.on("transport", connected)  # wrong: "transport" gives a TransportChanged
    client.on("transprot", changed)  # wrong: no such event
"""


def test_client_on_callbacks_are_typed_by_event_name(tmp_path: Path) -> None:
    source = tmp_path / "use.py"
    source.write_text(USE)
    out, _, status = api.run(
        ["--strict", "--no-error-summary", "--cache-dir", str(ROOT / ".mypy_cache"), str(source)]
    )
    found = [line.split(": ", 1)[1] for line in out.splitlines() if ": error:" in line or "Revealed" in line]
    assert status == 1
    assert found[0] == 'note: Revealed type is "def (ladder.client.events.TransportChanged) -> int"', out
    assert len(found) == 3, out
    assert all(line.startswith('error: No overload variant of "on" of "Client"') for line in found[1:]), out
