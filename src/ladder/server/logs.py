"""Ladder's log lines: visible under any ASGI server, and free of credentials."""

from __future__ import annotations

import logging
import re
import sys
from urllib.parse import unquote_plus

log = logging.getLogger("ladder")

_QUERY_FIELD = re.compile(r"(?<=[?&;])([^=&;\s\"?]+)=([^&;\s\"]*)")
_SECRETS = frozenset({"tok", "rt", "prt", "pu"})


def _redacted(field: re.Match[str]) -> str:
    name = field.group(1)
    return f"{name}=[redacted]" if unquote_plus(name) in _SECRETS else field.group(0)


def redact(text: str) -> str:
    """``text`` with the values of the ``tok``, ``rt``, ``prt`` and ``pu`` (a user id) query
    fields replaced, however their names are written (``%72t`` is ``rt`` to the server, so to
    this too)."""
    return _QUERY_FIELD.sub(_redacted, text)


class RedactTokens(logging.Filter):
    """Keeps the JWT (``tok=``), the resume tokens (``rt=``, ``prt=``) and a lost session's user
    (``pu=``) of HTTP rungs out of an access log (uvicorn's ``uvicorn.access`` logs each
    request's full path and query)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(arg) if isinstance(arg, str) else arg for arg in record.args)
        elif isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def make_visible() -> None:
    """Give the ``ladder`` logger a handler at INFO if nothing would show its lines.

    Plain ``uvicorn app:app`` configures its own loggers only, so without this the
    refusals Ladder logs at INFO (and its warnings) go nowhere. An application that
    configured logging itself (a handler on ``ladder`` or on the root logger) is left alone.
    """
    if log.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_formatter())
    log.addHandler(handler)
    if log.level == logging.NOTSET:
        log.setLevel(logging.INFO)


def _formatter() -> logging.Formatter:
    """uvicorn's own format (``INFO:     ...``) when uvicorn is there, so lines match."""
    try:
        from uvicorn.logging import DefaultFormatter  # noqa: PLC0415
    except ImportError:  # pragma: no cover - another ASGI server
        return logging.Formatter("%(levelname)s: %(name)s: %(message)s")
    return DefaultFormatter("%(levelprefix)s %(message)s")
