"""The client's options checked when it is made: a value that cannot work raises at once,
naming the option, instead of failing later or never (a negative timeout, a count of 0)."""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence
from typing import Final
from urllib.parse import quote, urlsplit, urlunsplit

from ..protocol.frames import MAX_TOKEN


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


_EXAMPLE = "e.g. 'http://127.0.0.1:8000' or 'https://example.com/ladder'"


def check_url(url: object) -> str:
    """The hub's address, or an error naming what is wrong with it: each would otherwise be
    retried for the whole ``connect_timeout`` and reported in a transport's words."""
    if not isinstance(url, str):
        raise TypeError(f"url must be a str ({_EXAMPLE}), not {type(url).__name__}")
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme not in ("http", "https"):
        raise ValueError(
            f"url {url!r} must start with http:// or https:// (the address the hub is mounted at, "
            f"{_EXAMPLE})"
        )
    parts = urlsplit(url)
    try:
        port = parts.port  # (raises ValueError for a port that is not one)
    except ValueError:
        port = 0
    if port == 0:  # (port 0 is no server's: the WebSocket rung dialled port 80 instead)
        raise ValueError(f"url {url!r}: the port is not a number from 1 to 65535 ({_EXAMPLE})")
    if not parts.hostname:
        raise ValueError(f"url {url!r} names no host ({_EXAMPLE})")
    if any(c.isspace() or ord(c) < 0x20 for c in parts.netloc):
        raise ValueError(f"url {url!r}: a host holds no space or control character ({_EXAMPLE})")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise ValueError(
            f"url {url!r}: the hub's address takes no query or fragment (the client adds each "
            "endpoint's path and query to it); pass credentials with token= or headers="
        )
    # A path as a browser's URL writes it (a space as %20): the WebSocket rung sent it raw
    # (the upgrade was not valid HTTP, bad_request) while httpx encoded it on the others.
    return urlunsplit(parts._replace(path=quote(parts.path, safe="/%!$&'()*+,;=:@~")))


def check_timeout(timeout: object, meaning: str = "to wait as long as the session lives") -> None:
    """A method's ``timeout``: seconds above 0, or None (0 failed at once where the browser
    client's waited; "5" failed inside asyncio, naming neither the option nor the fix)."""
    if timeout is not None and (not _number(timeout) or not timeout > 0):  # type: ignore[operator]
        raise ValueError(f"timeout is in seconds (a number above 0, or None {meaning}), not {timeout!r}")


def check_since(since: object) -> None:
    """``since``: None, or the ``(epoch, offset)`` a subscription's ``position`` gives (a
    two-item list too: a position stored as JSON comes back as one)."""
    if since is None:
        return
    if (
        not isinstance(since, tuple | list)
        or len(since) != 2
        or not isinstance(since[0], str)
        or isinstance(since[1], bool)
        or not isinstance(since[1], int)
        or since[1] < 0
    ):
        raise ValueError(
            f"since must be (epoch, offset) as sub.position gives it, e.g. ('a1b2', 42), not {since!r}"
        )


def check_token_length(token: object) -> None:
    """A token the server takes: at most :data:`MAX_TOKEN` characters (a longer one is refused
    on every connection, and was retried for the whole ``connect_timeout``)."""
    if isinstance(token, str) and len(token) > MAX_TOKEN:
        raise ValueError(
            f"the token is {len(token):,} characters: a server takes at most {MAX_TOKEN:,} (send a "
            "reference to the credentials, such as a session id, rather than the credentials)"
        )


def ordered(
    low: str, high: str, values: Mapping[str, float], defaults: Mapping[str, object]
) -> tuple[float, float]:
    """A pair (``backoff_base``/``backoff_max``, ``probe_delay``/``probe_max_delay``) as it
    applies: the one given alone moves the other's default with it (a ``backoff_max`` of 0.3 s
    lowers the base with it; a ``probe_delay`` of 60 s raises the cap); both given and
    contradicting each other is a ``ValueError``, whatever their values (one equal to its
    default is given all the same). ``defaults`` are the ``Client`` signature's, read from it
    (a copy of them here could part from them): a value is given unless it is the signature's
    own default object, which only an argument left out passes."""
    a, b = values[low], values[high]
    if a <= b:
        return a, b
    if values[high] is defaults[high]:
        return a, a
    if values[low] is defaults[low]:
        return b, b
    raise ValueError(f"{low} ({a:g} s) must not exceed {high} ({b:g} s)")


def check_options(
    *,
    seconds: Mapping[str, object],
    counts: Mapping[str, object],
    token: object,
    headers: object,
    stagger: object,
    poll_interval: object,
) -> None:
    """``seconds``: times that must be a number > 0 (None allowed for ``connect_timeout``
    and ``max_attempts``); ``counts``: whole numbers >= 1."""
    for name, value in seconds.items():
        if value is None and name == "connect_timeout":
            continue
        if not _number(value) or value <= 0:  # type: ignore[operator]
            raise ValueError(f"{name} must be a number of seconds above 0, not {value!r}")
    for name, value in counts.items():
        if value is None and name == "max_attempts":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a whole number >= 1, not {value!r}")
    if token is not None and not isinstance(token, str) and not callable(token):
        raise TypeError(f"token must be a str, a function returning one, or None, not {type(token).__name__}")
    check_token_length(token)
    texts = isinstance(headers, Mapping) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    )
    if headers is not None and not texts:
        raise TypeError(f"headers must map str to str (HTTP header values are text), not {headers!r}")
    for name, value in (headers or {}).items():  # type: ignore[attr-defined]
        check_header(name, value)
    if not (
        isinstance(stagger, Sequence)
        and stagger
        and all(_number(s) and s >= 0 for s in stagger)
        and all(a <= b for a, b in itertools.pairwise(stagger))
    ):
        raise ValueError(
            "stagger must be a non-empty sequence of seconds >= 0 that never goes down, one per rung "
            f"of a race in order (e.g. (0, 0.3, 1, 2); a shorter one repeats its last), not {stagger!r}"
        )
    if not (
        isinstance(poll_interval, Sequence)
        and len(poll_interval) == 2
        and all(_number(s) and s > 0 for s in poll_interval)
        and poll_interval[0] <= poll_interval[1]
    ):
        raise ValueError(f"poll_interval must be (fastest, slowest) seconds, not {poll_interval!r}")


_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
"""An HTTP field name (RFC 9110 §5.1: a token)."""
_VALUE: Final = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
"""An HTTP field value (RFC 9110 §5.5): no line break, no other control character."""


def check_header(name: str, value: str) -> None:
    """A header a request may carry: a name with a line break was written to the wire as it
    was (a WebSocket upgrade then carried a header of the caller's making), and any bad one
    failed every rung until ``connect_timeout``."""
    if not _TOKEN.fullmatch(name):
        raise ValueError(
            f"headers: {name!r} is not an HTTP header name (letters, digits and !#$%&'*+-.^_`|~ only)"
        )
    if not value.isascii() and any(ord(c) > 0xFF for c in value):
        raise ValueError(
            f"headers: the value of {name!r} holds characters beyond Latin-1, which HTTP headers "
            "do not carry: encode it (percent-encoding, base64)"
        )
    if not _VALUE.fullmatch(value):
        raise ValueError(
            f"headers: the value of {name!r} holds a line break or another control character, "
            "which HTTP does not carry"
        )

