"""The client's options checked when it is made: a value that cannot work raises at once,
naming the option, instead of failing later or never (a negative timeout, a count of 0)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


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
    texts = isinstance(headers, Mapping) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    )
    if headers is not None and not texts:
        raise TypeError(f"headers must map str to str (HTTP header values are text), not {headers!r}")
    if not (isinstance(stagger, Sequence) and stagger and all(_number(s) and s >= 0 for s in stagger)):
        raise ValueError(f"stagger must be a non-empty sequence of seconds >= 0, not {stagger!r}")
    if not (
        isinstance(poll_interval, Sequence)
        and len(poll_interval) == 2
        and all(_number(s) and s > 0 for s in poll_interval)
        and poll_interval[0] <= poll_interval[1]
    ):
        raise ValueError(f"poll_interval must be (fastest, slowest) seconds, not {poll_interval!r}")

