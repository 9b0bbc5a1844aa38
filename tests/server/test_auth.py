"""The authenticate hook's answer: a wrong type or an ``Identity`` presence could not show is
the hook's bug, raised (logged with its traceback, ``internal`` to the client), not taken for
a refusal blamed on the client's credentials."""

from __future__ import annotations

import datetime
import re
from typing import Any

import pytest

from ladder import Identity, LadderError
from ladder.server import auth
from ladder.server.auth import AuthRequest, run_authenticate

REQUEST = AuthRequest(headers={}, cookies={}, token="t", client=None, transport="websocket")


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (42, r"returned int 42: return an Identity, a user id as a str, or None to refuse"),
        (Identity(user=7), r"returned Identity\(user=7\): the user id must be a str"),  # type: ignore[arg-type]
        (
            Identity(user="u", info={"at": datetime.datetime(2026, 1, 1)}),
            r"returned an Identity whose info cannot be shown in presence",
        ),
    ],
)
async def test_a_hooks_mistake_is_internal_and_its_log_names_the_hook(
    answer: Any, said: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The client hears ``internal`` (not its credentials' fault); the log says which hook to
    fix and with what it answered."""

    async def sign_in(request: AuthRequest) -> Any:
        return answer

    name = re.escape(f"{__name__}.{sign_in.__qualname__}")
    with pytest.raises(LadderError) as refused:
        await run_authenticate(sign_in, REQUEST)
    assert refused.value.code == "internal" and "authenticate hook" in refused.value.reason
    logged = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(logged) == 1 and re.match(rf"^the authenticate hook {name} {said}", logged[0].getMessage())


async def test_a_hook_that_raises_is_internal_with_its_traceback_logged(caplog: pytest.LogCaptureFixture) -> None:
    """Raised anywhere the hook runs (a hello, a POST naming no session, a live ``refresh``):
    ``internal`` naming the hook; a refresh answered ``handler_error`` "the event handler
    failed" before, logged as "handler failed for Refresh", and no event handler was involved."""

    def sign_in(request: AuthRequest) -> Any:
        raise RuntimeError("the user table is gone")

    with pytest.raises(LadderError) as refused:
        await run_authenticate(sign_in, REQUEST)
    assert (refused.value.code, refused.value.reason) == (
        "internal", "the authenticate hook failed (see the server log)"
    )
    (record,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert record.getMessage().startswith(f"the authenticate hook {__name__}.")
    assert record.exc_info is not None and "the user table is gone" in str(record.exc_info[1])


async def test_none_is_a_refusal_and_a_str_or_identity_an_acceptance() -> None:
    with pytest.raises(LadderError, match="unauthorized"):
        await run_authenticate(lambda request: None, REQUEST)
    assert (await run_authenticate(lambda request: "ada", REQUEST)).user == "ada"
    shown = Identity(user="ada", info={"nick": "Ada", "avatar": b"\x89PNG"})
    assert await run_authenticate(lambda request: shown, REQUEST) is shown


async def test_whatever_a_token_makes_jwt_raise_is_unauthorized_with_a_reason() -> None:
    """A token could make the hook raise something other than PyJWT's ``InvalidTokenError``:
    a 400-digit ``exp``, which PyJWT takes (OverflowError), or a token that is not UTF-8
    (UnicodeEncodeError), each a ``500 internal`` and a traceback for the client's mistake."""
    import jwt as pyjwt  # noqa: PLC0415

    from ladder import JWT  # noqa: PLC0415

    secret = "s3cret-for-tests-only-0123456789abcdef"
    hook = JWT(secret)
    huge = pyjwt.encode({"sub": "ada", "exp": 10**400}, secret, algorithm="HS256")
    for token, said in [
        (huge, "invalid token: its exp claim is out of range"),
        ("\udc80.e30.e30", "invalid token: 'utf-8' codec can't encode"),
        (pyjwt.encode({"sub": "ada", "exp": 2**40}, "another-secret-0123456789abcdef-xyz", algorithm="HS256"),
         "invalid token: Signature verification failed"),
    ]:
        request = AuthRequest(headers={}, cookies={}, token=token, client=None, transport="longpoll")
        with pytest.raises(LadderError) as refused:
            await run_authenticate(hook, request)
        assert refused.value.code == "unauthorized" and said in refused.value.reason, refused.value


def test_a_jwt_key_shorter_than_its_algorithm_wants_is_refused_once_when_built() -> None:
    """A secret under the hash's size (RFC 7518 §3.2) or an RSA key under 2,048 bits was
    taken, and PyJWT warned (InsecureKeyLengthWarning) at every token verified: a log line
    per connection. It is refused when ``JWT(...)`` is built, naming the least length; a key
    long enough verifies tokens without a warning."""
    import warnings  # noqa: PLC0415

    import jwt as pyjwt  # noqa: PLC0415
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: PLC0415

    from ladder import JWT, ConfigurationError  # noqa: PLC0415

    secret = "s3cret-for-tests-only-0123456789abcdef"  # 38 bytes
    for key, algorithm, least in [(secret[:31], "HS256", 32), (secret, "HS384", 48), (secret, "HS512", 64)]:
        with pytest.raises(ConfigurationError, match=rf"is a secret of {len(key)} bytes, and {algorithm} needs at least {least} ") as caught:
            JWT(key, algorithms=[algorithm])
        assert caught.value.setting == "authenticate"
        assert f"at least {least} random bytes" in caught.value.fix
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    pem = small.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    for algorithm in ("RS256", "PS384"):
        with pytest.raises(ConfigurationError, match=rf"is an RSA key of 1024 bits, and {algorithm} needs at least 2,048 "):
            JWT(pem, algorithms=[algorithm])
    hook = JWT(secret[:32])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (a warning at a token fails the test)
        for user in ("ada", "bob", "eve"):
            token = pyjwt.encode({"sub": user, "exp": 2**40}, secret[:32], algorithm="HS256")
            request = AuthRequest(headers={}, cookies={}, token=token, client=None, transport="websocket")
            assert hook(request).user == user


def test_a_short_rsa_key_is_refused_whatever_pyjwt_checks_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    """PyJWT has checked an RSA key's size only since 2.11 (``check_key_length``), and Ladder
    allows PyJWT 2.8: there, a 1,024-bit key was taken. Ladder reads the size itself."""
    import jwt as pyjwt  # noqa: PLC0415
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: PLC0415

    from ladder import JWT, ConfigurationError  # noqa: PLC0415

    # As PyJWT 2.8 to 2.10, which have no such check (nor the attribute: raising=False):
    monkeypatch.setattr(pyjwt.algorithms.RSAAlgorithm, "check_key_length", lambda self, key: None, raising=False)

    def pem(bits: int) -> bytes:
        public = rsa.generate_private_key(public_exponent=65537, key_size=bits).public_key()
        return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    with pytest.raises(ConfigurationError, match=r"is an RSA key of 1024 bits, and RS256 needs at least 2,048 ") as caught:
        JWT(pem(1024), algorithms=["RS256"])
    assert "at least 2,048 bits" in caught.value.fix
    assert JWT(pem(2048), algorithms=["RS256", "PS256"]).algorithms == ["RS256", "PS256"]


async def test_a_hook_failing_again_and_again_is_logged_once_per_interval_with_the_count(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broken hook fails for every client and every reconnect: one client logged 24 ERROR
    lines (32 tracebacks for a raising hook) in 4 s. Now one per hook and kind of failure
    per ``HOOK_LOG_EVERY``, the next saying how many were not logged; each caller still
    hears ``internal``."""

    def sign_in(request: AuthRequest) -> Any:
        raise RuntimeError("the user table is gone")

    def other(request: AuthRequest) -> Any:
        return 42

    for _ in range(5):
        with pytest.raises(LadderError, match="internal"):
            await run_authenticate(sign_in, REQUEST)
    with pytest.raises(LadderError, match="internal"):
        await run_authenticate(other, REQUEST)
    logged = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(logged) == 2, logged
    assert "failed; answered internal" in logged[0] and "returned int 42" in logged[1]
    monkeypatch.setattr(auth, "HOOK_LOG_EVERY", 0.0)  # the interval is over
    with pytest.raises(LadderError, match="internal"):
        await run_authenticate(sign_in, REQUEST)
    last = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"][-1]
    assert "failed; answered internal (and 4 more like it in the last" in last, last
