"""The Python client applies the core's table of defaults (protocol §9.14), in seconds."""

from __future__ import annotations

import inspect

from ladder.client import Client
from ladder.protocol.client import client_defaults


def _seconds(value: object) -> object:
    if isinstance(value, list):
        return tuple(v / 1000 for v in value)
    return value / 1000 if isinstance(value, float) else value


def test_the_client_s_keyword_defaults_are_the_core_s_table() -> None:
    """Each option's default in ``Client(...)`` is the table's, ms written as seconds (counts
    as they are); what the table lists and the client does not take would show here too."""
    table = client_defaults()
    request_timeout = table.pop("request_timeout")
    parameters = inspect.signature(Client.__init__).parameters
    applied = {name: parameters[name].default for name in table}
    assert applied == {name: _seconds(value) for name, value in table.items()}
    for method in ("publish", "call", "presence", "history", "refresh"):
        default = inspect.signature(getattr(Client, method)).parameters["timeout"].default
        assert default == request_timeout / 1000, method
