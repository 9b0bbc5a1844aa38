"""Checks of a setting's value shared by the server's and the engines' value objects
(:class:`~ladder.Limits`, :class:`~ladder.ChannelOptions`, the hub's own), so that each
object refuses what cannot work where it is made, in the same words."""

from __future__ import annotations

import math
from typing import Any

from .errors import ConfigurationError


def check_number(setting: str, value: Any, kind: Any) -> None:
    """Refuse a setting of the wrong type or a negative / not finite number, naming it.

    ``kind`` is the annotation (``"int"``, ``"float"`` or ``"bool"``, as dataclasses keep it).
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
        raise ConfigurationError(setting, f"{value!r} is out of range", "pass a finite number >= 0")


def check_positive(setting: str, value: Any, kind: Any = "float") -> None:
    """:func:`check_number`, and above 0: a period or a timeout of 0 cannot work (a loop
    sleeping 0 s between sweeps spins a core; a command timeout of 0 fails every command)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and not value > 0:  # (NaN too)
        raise ConfigurationError(setting, f"{value!r} is out of range", "pass a number > 0")
    check_number(setting, value, kind)
