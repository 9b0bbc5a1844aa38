"""Built-in authentication with JSON Web Tokens (PyJWT): HS256 or RS256, expiry, audience.

``Ladder(authenticate=JWT(secret))`` accepts a client whose token verifies; the user is the
``sub`` claim. A session ends when its token expires, unless the client refreshed it
(``client.refresh()``, or automatically when its ``token`` is a callable).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import ConfigurationError, install_hint
from ..protocol.errors import LadderError
from .auth import NO_TOKEN, AuthRequest, Identity


class JWT:
    """An ``authenticate`` hook that verifies JSON Web Tokens (needs ``ladder-rt[jwt]``).

    Args:
        key: The shared secret (HS256) or the public key in PEM (RS256).
        algorithms: The signature algorithms accepted.
        audience: When given, the token's ``aud`` must match.
        issuer: When given, the token's ``iss`` must match.
        user_claim: The claim that holds the user id.
        info_claim: A claim to show to presence subscribers as the member's info.
        leeway: Seconds of clock skew tolerated on ``exp``.
        require_expiry: Refuse tokens without ``exp``.
    """

    def __init__(
        self,
        key: str | bytes,
        *,
        algorithms: Sequence[str] = ("HS256",),
        audience: str | Sequence[str] | None = None,
        issuer: str | None = None,
        user_claim: str = "sub",
        info_claim: str | None = None,
        leeway: float = 0.0,
        require_expiry: bool = True,
    ) -> None:
        try:
            import jwt  # noqa: PLC0415 - an optional dependency
        except ImportError as exc:
            raise ConfigurationError(
                "authenticate",
                "JWT authentication needs PyJWT, which is not installed",
                f"install it with `{install_hint('jwt')}`",
            ) from exc
        if not key:
            raise ConfigurationError(
                "authenticate",
                "JWT(key=...) got an empty key: every token would fail to verify",
                "pass the secret (HS*) or the public key (RS*, ES*, EdDSA) your tokens are signed for",
            )
        if isinstance(algorithms, str) or not algorithms or not all(isinstance(a, str) for a in algorithms):
            raise ConfigurationError(
                "authenticate",
                f"JWT(algorithms={algorithms!r}) is not a list of algorithm names",
                f"pass a list: algorithms=[{algorithms!r}]"
                if isinstance(algorithms, str)
                else 'pass a list such as ["HS256"] or ["RS256"]',
            )
        self._jwt = jwt
        self.key = key
        self.algorithms = list(algorithms)
        self.audience = audience
        self.issuer = issuer
        self.user_claim = user_claim
        self.info_claim = info_claim
        self.leeway = leeway
        self.require = ["exp"] if require_expiry else []

    def __call__(self, request: AuthRequest) -> Identity:
        token = request.token
        if not token:
            raise LadderError("unauthorized", NO_TOKEN)
        jwt = self._jwt
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": self.require, "verify_aud": self.audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise LadderError(
                "token_expired",
                "the token has expired: give the client a fresh one (Python: a callable token, "
                "called again before it expires; browser: connect(url, {token: () => ...}))",
            ) from None
        except jwt.InvalidTokenError as exc:
            raise LadderError("unauthorized", f"invalid token: {exc}") from None
        user = claims.get(self.user_claim)
        if not isinstance(user, str) or not user:
            raise LadderError("unauthorized", f"the token has no {self.user_claim!r} claim")
        info = claims.get(self.info_claim) if self.info_claim else None
        expires = claims.get("exp")
        return Identity(
            user=user,
            info=info,
            claims=claims,
            # (with leeway, the credentials hold that much past ``exp``, as the check above)
            expires=float(expires) + self.leeway if isinstance(expires, int | float) else None,
        )
