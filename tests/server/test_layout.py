"""The server's shape: a hub holding the public API only, and modules small enough to read."""

from __future__ import annotations

from pathlib import Path

import ladder
from ladder import Ladder

API = {"on", "publish", "send", "send_user", "presence", "history", "disconnect", "disconnect_user", "health", "stats"}
LIFECYCLE = {"start", "stop", "lifespan"}
SETTINGS = {"engine", "allowed_origins", "transports", "limits", "node_lease"}


def test_the_hub_holds_the_public_api_only() -> None:
    public = {name for name in dir(Ladder) if not name.startswith("_")}
    assert public == API | LIFECYCLE | SETTINGS
    hub = Ladder()
    assert {name for name in vars(hub) if not name.startswith("_")} == set()


def test_no_server_module_is_over_400_lines() -> None:
    root = Path(ladder.__file__).parent / "server"
    sizes = {path.name: len(path.read_text().splitlines()) for path in root.glob("*.py")}
    assert sizes and {name: size for name, size in sizes.items() if size > 400} == {}
