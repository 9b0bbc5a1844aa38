"""MkDocs hooks for the documentation site (``mkdocs build --strict``).

* ``<!-- error-codes -->`` in a page becomes the table of every error code, generated from
  ``ladder.protocol.errors`` so the site cannot drift from the code.
* ``<!-- changelog -->`` becomes the repository's ``CHANGELOG.md``.
* A link that leaves the docs folder (``../deploy/``) points at the repository instead, where
  that file lives; every other link is checked by MkDocs, and strict mode fails on a broken one.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

REPOSITORY = "https://github.com/ladder-rt/ladder/tree/main/"
ROOT = Path(__file__).resolve().parents[1]
_RELATIVE = re.compile(r"\]\((\.\./[^)\s]*)\)")


def error_table() -> str:
    from ladder.protocol.errors import ERRORS  # noqa: PLC0415 - imported when the site builds

    rows = [
        "| code | HTTP status | WebSocket close | fatal | default reason |",
        "| --- | --- | --- | --- | --- |",
    ]
    for spec in ERRORS.values():
        status = str(spec.http_status) if spec.http_status else "— (client only)"
        close = str(spec.ws_close) if spec.ws_close else "—"
        rows.append(
            f"| `{spec.code}` | {status} | {close} | {'yes' if spec.fatal else 'no'} | {spec.reason} |"
        )
    return "\n".join(rows)


def _outside(page_uri: str, link: str) -> str | None:
    """The repository path of a relative link that leaves the docs folder, else None."""
    target = posixpath.normpath(posixpath.join("docs", posixpath.dirname(page_uri), link))
    return None if target.startswith("docs/") else target


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    if "<!-- error-codes -->" in markdown:
        markdown = markdown.replace("<!-- error-codes -->", error_table())
    if "<!-- changelog -->" in markdown:
        changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
        markdown = markdown.replace("<!-- changelog -->", changelog.split("\n", 1)[1])
    page_uri = page.file.src_uri

    def rewrite(match: re.Match[str]) -> str:
        target = _outside(page_uri, match.group(1))
        return match.group(0) if target is None else f"]({REPOSITORY}{target})"

    return _RELATIVE.sub(rewrite, markdown)


_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc):<code>(~?)([\w.]+)</code>")


def on_page_content(html: str, **_: Any) -> str:
    """Docstrings use reST roles (``:class:`~ladder.Identity```); show them as code."""
    return _ROLE.sub(lambda m: f"<code>{m.group(2).rsplit('.', 1)[-1] if m.group(1) else m.group(2)}</code>", html)
