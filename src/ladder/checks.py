"""Checks of a setting's value shared by the server's and the engines' value objects
(:class:`~ladder.Limits`, :class:`~ladder.ChannelOptions`, the hub's own), so that each
object refuses what cannot work where it is made, in the same words."""

from __future__ import annotations

import math
import re
from typing import Any

from .errors import ConfigurationError


def check_number(setting: str, value: Any, kind: Any, fix: str = "pass a finite number >= 0") -> None:
    """Refuse a setting of the wrong type or a negative / not finite number, naming it.

    ``kind`` is the annotation (``"int"``, ``"float"`` or ``"bool"``, as dataclasses keep it);
    ``fix`` says the setting's own range when 0 is no more allowed than a negative number.
    """
    kind = getattr(kind, "__name__", kind)
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigurationError(setting, f"{value!r} is not a bool", "pass True or False")
        return
    if kind not in ("int", "float"):
        return
    wanted = (int,) if kind == "int" else (int, float)
    if isinstance(value, bool) or not isinstance(value, wanted):
        raise ConfigurationError(
            setting,
            f"{value!r} is a {type(value).__name__}, not {'a whole number' if kind == 'int' else 'a number'}",
            "pass an int" if kind == "int" else "pass a number",
        )
    if value < 0 or not math.isfinite(value):
        raise ConfigurationError(setting, f"{value!r} is out of range", fix)


def check_positive(setting: str, value: Any, kind: Any = "float") -> None:
    """:func:`check_number`, and above 0: a period or a timeout of 0 cannot work (a loop
    sleeping 0 s between sweeps spins a core; a command timeout of 0 fails every command)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and not value > 0:  # (NaN too)
        raise ConfigurationError(setting, f"{value!r} is out of range", "pass a number > 0")
    check_number(setting, value, kind, "pass a finite number > 0")


_NODE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def check_node_id(setting: str, value: object) -> None:
    """Refuse a node id that session ids and keys cannot carry: a session id is
    ``<node id>.<random>``, and a node reads another's session ids up to their first dot
    (those of a node ``web.1`` would be node ``web``'s, a node no engine knows); a
    cluster's node keys carry it in braces."""
    if value is None or (isinstance(value, str) and _NODE_ID.fullmatch(value)):
        return
    raise ConfigurationError(
        setting,
        f"{value!r} is not a node id",
        "pass 1 to 64 letters, digits, '-' or '_' (it begins every session id of the node, "
        "before a dot), or None for a random one",
    )


def check_prefix(setting: str, value: object) -> None:
    """Refuse a key prefix that is no str, is empty or has braces: a Redis Cluster hashes
    a key by its first ``{...}``, so braces in the prefix put every key in one slot."""
    if isinstance(value, str) and value and not any(c in value for c in "{}") and value.isprintable():
        return
    raise ConfigurationError(
        setting,
        f"{value!r} is not a key prefix",
        'pass a non-empty str without braces or control characters, e.g. "myapp" (the default is "ladder")',
    )
