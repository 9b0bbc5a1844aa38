"""The authenticate hook's answer: a wrong type or an ``Identity`` presence could not show is
the hook's bug, raised (logged with its traceback, ``internal`` to the client), not taken for
a refusal blamed on the client's credentials."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from ladder import Identity, LadderError
from ladder.server.auth import AuthRequest, run_authenticate

REQUEST = AuthRequest(headers={}, cookies={}, token="t", client=None, transport="websocket")


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (42, r"returned int 42: return an Identity, a user id as a str, or None to refuse"),
        (Identity(user=7), r"Identity\(user=7\): the user id must be a str"),  # type: ignore[arg-type]
        (Identity(user="u", info={"at": datetime.datetime(2026, 1, 1)}), r"Identity.info cannot be shown in presence"),
    ],
)
async def test_a_hooks_mistake_is_raised_as_its_bug(answer: Any, said: str) -> None:
    with pytest.raises(TypeError, match=said):
        await run_authenticate(lambda request: answer, REQUEST)


async def test_none_is_a_refusal_and_a_str_or_identity_an_acceptance() -> None:
    with pytest.raises(LadderError, match="unauthorized"):
        await run_authenticate(lambda request: None, REQUEST)
    assert (await run_authenticate(lambda request: "ada", REQUEST)).user == "ada"
    shown = Identity(user="ada", info={"nick": "Ada", "avatar": b"\x89PNG"})
    assert await run_authenticate(lambda request: shown, REQUEST) is shown
