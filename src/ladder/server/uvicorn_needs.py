"""What ``ladder serve`` needs of uvicorn, checked before it is used.

``ladder serve`` subclasses two of uvicorn's protocol classes (:mod:`.serving`): its httptools
HTTP protocol and its sans-I/O WebSocket protocol (``websockets_sansio_impl``, uvicorn 0.35),
reading what they keep per connection (``frames``: 0.50) and relying on how they close (the
ASGI WebSocket closed by the app keeps its transport open until the client answers: 0.52.1,
which lets a client that reads nothing be cut off). An older uvicorn failed with an
ImportError, or an AttributeError inside a request; uvicorn is 0.x, so a later minor release
may rename what these classes call. So the version and every name used are checked first:

* what cannot be done without (the version, the module, the methods overridden and called):
  ``ladder serve`` exits with one line naming the installed uvicorn and the one to install,
  and importing :mod:`.serving` raises an ImportError saying the same;
* the three private methods the HTTP protocol's request parsing calls (a copy of uvicorn's
  ``data_received`` without its WARNING for a request it cannot parse): uvicorn's own
  ``data_received`` is used instead, which keeps every bound (the header deadline and size,
  the JSON refusal) and adds only uvicorn's WARNING line per such request, and ``ladder
  serve`` says so in one WARNING naming the fix. Refusing to start over a log line would be
  the less safe of the two.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from typing import Final

import uvicorn

__all__ = ["MINIMUM", "NEEDED", "QUIET_PARSE", "TESTED", "lacking", "parse_fallback", "problem", "require"]

MINIMUM: Final = "0.52.1"
"""The oldest uvicorn with everything Ladder uses (pyproject.toml's lower bound)."""

TESTED: Final = "0.55.0"
"""The newest uvicorn the test suite ran on when this Ladder was released."""

HTTP: Final = "uvicorn.protocols.http.httptools_impl.HttpToolsProtocol"
WEBSOCKET: Final = "uvicorn.protocols.websockets.websockets_sansio_impl.WebSocketsSansIOProtocol"

NEEDED: Final = {
    HTTP: (
        "connection_made",
        "connection_lost",
        "data_received",
        "on_url",
        "on_header",
        "on_message_begin",
        "on_headers_complete",
        "on_message_complete",
        "send_400_response",
    ),
    WEBSOCKET: ("connection_lost", "data_received", "handle_connect", "send_receive_event_to_app"),
}
"""The methods :mod:`.serving` overrides and calls, by class."""

QUIET_PARSE: Final = {
    HTTP: (
        "_unset_keepalive_if_required",
        "_should_upgrade",
        "_unsupported_upgrade_warning",
        "handle_websocket_upgrade",
    ),
}
"""What ``HeaderTimeoutHttp._feed`` (uvicorn's ``data_received`` less a WARNING) calls."""


def _version(text: str) -> tuple[int, ...]:
    """``0.52.1`` -> ``(0, 52, 1)`` (a suffix such as ``.dev0`` or ``rc1`` is left out)."""
    match = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    return tuple(int(part or 0) for part in match.groups()) if match else (0,)


def lacking(names: Mapping[str, tuple[str, ...]]) -> list[str]:
    """Which of ``names`` (methods by ``module.Class``) the installed uvicorn lacks, as
    ``Class.method`` or the module's name when it has no such class."""
    missing: list[str] = []
    for path, methods in names.items():
        module_name, _, class_name = path.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError):
            missing.append(module_name)
            continue
        missing += [f"{class_name}.{method}" for method in methods if not hasattr(cls, method)]
    return missing


def _install(upper: bool) -> str:
    bound = f">={MINIMUM},<={TESTED}" if upper else f">={MINIMUM}"
    return f"pip install 'uvicorn[standard]{bound}'"


def problem() -> str | None:
    """Why the installed uvicorn cannot serve ``ladder serve`` (one line naming the fix), or None."""
    installed = uvicorn.__version__
    if _version(installed) < _version(MINIMUM):
        return f"Ladder needs uvicorn>={MINIMUM}, and uvicorn {installed} is installed: {_install(False)}"
    missing = lacking(NEEDED)
    if missing:
        return (
            f"uvicorn {installed} lacks {', '.join(missing)}, which Ladder uses (tested with uvicorn "
            f"{MINIMUM} to {TESTED}): {_install(True)}, or a Ladder release that supports uvicorn {installed}"
        )
    return None


def require() -> None:
    """Raise an ImportError saying :func:`problem` (importing :mod:`.serving` calls it)."""
    said = problem()
    if said is not None:
        raise ImportError(said)


def parse_fallback() -> str | None:
    """The WARNING ``ladder serve`` logs when the request parsing falls back to uvicorn's own
    (the private methods it calls are gone), or None."""
    missing = lacking(QUIET_PARSE)
    if not missing:
        return None
    return (
        f"uvicorn {uvicorn.__version__} lacks {', '.join(missing)}: requests that are not valid HTTP "
        "are still refused with Ladder's JSON 400, and uvicorn also logs its own WARNING for each "
        f"(tested with uvicorn {MINIMUM} to {TESTED}): {_install(True)}, or a Ladder release that "
        f"supports uvicorn {uvicorn.__version__}"
    )
