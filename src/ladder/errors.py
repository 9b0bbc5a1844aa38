"""The two kinds of error a user of Ladder meets.

* :class:`~ladder.LadderError` travels on the wire: it has a stable ``code`` (the table in
  :data:`ERRORS`) and a ``reason``. Handlers raise it to refuse; clients raise it when the
  server refused.
* :class:`ConfigurationError` never does: it is a mistake in how Ladder was set up, raised
  when the object is built (not later, at the first request), naming the setting and the fix.
"""

from __future__ import annotations

from typing import Final

from .protocol.errors import ERRORS, ErrorSpec, LadderError

__all__ = ["DISTRIBUTION", "ERRORS", "ConfigurationError", "ErrorSpec", "LadderError", "install_hint"]

DISTRIBUTION: Final = "ladder-rt"
"""The name Ladder is installed under (``pip install ladder-rt``); it is imported as ``ladder``."""


def install_hint(extra: str) -> str:
    """The command that installs an optional part of Ladder, e.g. ``pip install 'ladder-rt[redis]'``."""
    return f"pip install '{DISTRIBUTION}[{extra}]'"


class ConfigurationError(ValueError):
    """A setting that cannot work. ``setting`` names it; the message says what to do instead.

    A ``ValueError``, so code that caught one for a bad argument still does.
    """

    def __init__(self, setting: str, problem: str, fix: str) -> None:
        self.setting = setting
        self.problem = problem
        self.fix = fix
        super().__init__(f"{setting}: {problem}; {fix}")
