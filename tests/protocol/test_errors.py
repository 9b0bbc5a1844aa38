"""LadderError: what an application may raise, and what a client makes of an ``err`` frame."""

from __future__ import annotations

import math
from typing import Any

import pytest

from ladder import LadderError


@pytest.mark.parametrize("code", ["", None, 7])
def test_a_code_that_is_not_a_word_is_refused_where_the_error_is_made(code: Any) -> None:
    """``LadderError("")`` reached a caller as an error without a code to switch on."""
    with pytest.raises(ValueError, match="code must be a non-empty string"):
        LadderError(code, "x")


@pytest.mark.parametrize("retry_after", [-5, -0.001, math.inf, math.nan, "1", True])
def test_a_retry_after_that_is_no_wait_is_refused_where_the_error_is_made(retry_after: Any) -> None:
    """``retry_after=-5`` reached the caller, whose client would wait a negative time."""
    with pytest.raises(ValueError, match="retry_after must be seconds, 0 or more"):
        LadderError("busy", retry_after=retry_after)


def test_an_application_code_with_a_wait_of_zero_or_more_is_kept() -> None:
    error = LadderError("busy", "try later", retry_after=0, details={"queue": 3})
    assert (error.code, error.reason, error.retry_after, error.details) == ("busy", "try later", 0, {"queue": 3})
    assert error.body() == {"code": "busy", "reason": "try later", "retry_after": 0, "details": {"queue": 3}}


@pytest.mark.parametrize(
    ("frame", "code", "retry_after"),
    [
        ({"code": "rate_limited", "reason": "r", "retry_after": 0.25}, "rate_limited", 0.25),
        ({"code": "rate_limited", "retry_after": -5}, "rate_limited", None),
        ({"code": "rate_limited", "retry_after": 1e400}, "rate_limited", None),
        ({"code": "rate_limited", "retry_after": "soon"}, "rate_limited", None),
        ({"code": "", "reason": "r"}, "internal", None),
        ({"reason": "r"}, "internal", None),
    ],
)
def test_an_err_frame_is_read_into_an_error_whatever_a_server_put_in_it(
    frame: dict[str, Any], code: str, retry_after: float | None
) -> None:
    """A wire field the constructor refuses is read as absent, never raised at the client."""
    error = LadderError.of(frame)
    assert (error.code, error.retry_after) == (code, retry_after)
