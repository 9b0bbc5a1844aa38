"""The core is sans-I/O: importing it must not import asyncio (or any socket library)."""

from __future__ import annotations

import subprocess
import sys


def test_protocol_package_imports_no_asyncio() -> None:
    code = (
        "import sys\n"
        "import ladder.protocol.session, ladder.protocol.peer, ladder.protocol.frames\n"
        "bad = sorted(m for m in ('asyncio', 'socket', 'ssl', 'websockets', 'httpx', 'uvicorn') if m in sys.modules)\n"
        "print(','.join(bad))\n"
    )
    # Import the modules directly, not via `ladder` (whose __init__ brings in the server).
    out = subprocess.run(
        [sys.executable, "-c", code.replace("import ladder.protocol", "import ladder.protocol")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "", f"the protocol layer pulled in: {out.stdout.strip()}"
