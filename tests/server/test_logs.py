"""Secrets in query strings never reach an access log line."""

from __future__ import annotations

import logging

from ladder.server.logs import RedactTokens, redact


def test_every_token_field_is_redacted() -> None:
    line = "GET /ladder/sse?v=1&tok=eyJ.a.b&sid=s1&rt=secret1&psid=s0&prt=secret0&pids=1-3&pu=alice%40x HTTP/1.1"
    out = redact(line)
    for secret in ("eyJ.a.b", "secret1", "secret0", "alice"):
        assert secret not in out
    assert "tok=[redacted]" in out and "rt=[redacted]" in out and "prt=[redacted]" in out and "pu=[redacted]" in out
    assert "sid=s1" in out and "psid=s0" in out and "pids=1-3" in out


def test_the_filter_rewrites_uvicorns_access_record_arguments() -> None:
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s"', ("127.0.0.1", "GET", "/poll?prt=x&rt=y"), None
    )
    assert RedactTokens().filter(record)
    assert record.getMessage() == '127.0.0.1 - "GET /poll?prt=[redacted]&rt=[redacted]"'


def test_a_token_field_is_redacted_however_its_name_is_written() -> None:
    """The server decodes ``%72t`` to ``rt`` and resumed the session with it, while the log
    kept the token in clear."""
    out = redact("GET /poll?sid=s1&%72t=SECRET1&%74ok=SECRET2&r%74=SECRET3&rtx=kept&v=1 HTTP/1.1")
    assert "SECRET" not in out, out
    assert "rtx=kept" in out and "sid=s1" in out
