"""Built-in authentication with JSON Web Tokens (PyJWT): HS256 or RS256, expiry, audience.

``Ladder(authenticate=JWT(secret))`` accepts a client whose token verifies; the user is the
``sub`` claim. A session ends when its token expires, unless the client refreshed it
(``client.refresh()``, or automatically when its ``token`` is a callable).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Final

from ..checks import check_number
from ..errors import ConfigurationError, install_hint
from ..protocol.errors import LadderError
from .auth import NO_TOKEN, AuthRequest, Identity


class JWT:
    """An ``authenticate`` hook that verifies JSON Web Tokens (needs ``ladder-rt[jwt]``).

    Args:
        key: The shared secret (HS*) or the public key in PEM (RS*, PS*, ES*, EdDSA). A
            secret shorter than the hash (32 bytes for HS256, 48 for HS384, 64 for HS512) or an
            RSA key under 2,048 bits raises :class:`~ladder.ConfigurationError` here (RFC 7518
            §3.2, §3.3); PyJWT took it and warned at every token it verified.
        algorithms: The signature algorithms accepted, all of the key's kind. An unknown
            one, ``"none"``, or a key that cannot verify one of them (a secret given for RS256,
            a private key) raises :class:`~ladder.ConfigurationError` here, not at each token.
        audience: When given, the token's ``aud`` must match.
        issuer: When given, the token's ``iss`` must match.
        user_claim: The claim that holds the user id.
        info_claim: A claim to show to presence subscribers as the member's info.
        leeway: Seconds of clock skew tolerated on ``exp`` (0 or more).
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
        check_number("JWT(leeway=...)", leeway, "float")
        _check_options(audience, issuer, user_claim, info_claim, require_expiry)
        self._jwt = jwt
        self.key = key
        self.algorithms = list(algorithms)
        self._prepared = _prepared_key(jwt, key, self.algorithms)
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
                self._prepared,
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
        except (jwt.PyJWTError, ValueError, TypeError, OverflowError) as exc:
            # (whatever a token makes PyJWT raise is that token's fault: the key and the
            # algorithms were checked when the hook was built)
            raise LadderError("unauthorized", f"invalid token: {exc}") from None
        user = claims.get(self.user_claim)
        if not isinstance(user, str) or not user:
            raise LadderError("unauthorized", f"the token has no {self.user_claim!r} claim")
        info = claims.get(self.info_claim) if self.info_claim else None
        expires = claims.get("exp")
        try:
            # (with leeway, the credentials hold that much past ``exp``, as the check above)
            until = float(expires) + self.leeway if isinstance(expires, int | float) else None
        except OverflowError:  # (an int exp of hundreds of digits passes PyJWT's check)
            raise LadderError("unauthorized", "invalid token: its exp claim is out of range") from None
        return Identity(user=user, info=info, claims=claims, expires=until)


_NEEDS: Final = {
    "HMACAlgorithm": "the shared secret they are signed with",
    "RSAAlgorithm": "an RSA public key in PEM",
    "RSAPSSAlgorithm": "an RSA public key in PEM",
    "ECAlgorithm": "an EC public key in PEM, on the algorithm's curve",
    "OKPAlgorithm": "an Ed25519 or Ed448 public key in PEM",
}
"""What each of PyJWT's algorithm classes verifies with, for the error that names the fix."""

RSA_LEAST: Final = 2048
"""The fewest bits of an RSA key (RFC 7518 §3.3: "2048 bits or larger MUST be used")."""


def _prepared_key(jwt: Any, key: str | bytes, algorithms: list[str]) -> Any:
    """The key as PyJWT's own algorithm objects prepare it, once: refused, naming the fix, if
    an algorithm is unknown or "none", or the key cannot verify tokens of every algorithm
    listed (each token was answered ``internal`` before, with PyJWT's traceback in the log)."""
    known = jwt.algorithms.get_default_algorithms()
    prepared: Any = None
    for name in algorithms:
        if name == "none":
            raise ConfigurationError(
                "authenticate",
                'JWT(algorithms=["none"]) would accept unsigned tokens: anyone could claim to be any user',
                'list signature algorithms only, e.g. ["HS256"] or ["RS256"]',
            )
        if name not in known:
            missing = name in jwt.algorithms.requires_cryptography
            raise ConfigurationError(
                "authenticate",
                f"JWT(algorithms=[{name!r}]) "
                + ("needs the cryptography package" if missing else "is not an algorithm PyJWT knows"),
                f"install it with `{install_hint('jwt')}`"
                if missing
                else f"use one of {sorted(set(known) - {'none'})} (the names are case-sensitive)",
            )
        try:
            prepared = known[name].prepare_key(key)
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            said = re.sub(r"<\w+ object \S+ at 0x[0-9a-f]+>", "its key types", str(exc)).rstrip(".")
            needs = _NEEDS.get(type(known[name]).__name__, "another key")
            raise ConfigurationError(
                "authenticate",
                f"JWT(key=...) cannot verify {name} tokens, which need {needs} (PyJWT: {said})",
                "pass the key your tokens are signed for (the public one for RS*, PS*, ES* and "
                "EdDSA), and list only algorithms of that one kind",
            ) from None
        if not isinstance(prepared, bytes) and hasattr(prepared, "public_key"):
            raise ConfigurationError(
                "authenticate",
                f"JWT(key=...) is a private key, and {name} tokens are verified with the public one",
                "pass the public key in PEM (keep the private key where tokens are signed)",
            )
        _check_length(jwt, known[name], name, prepared)
    return prepared


def _check_length(jwt: Any, algorithm: Any, name: str, prepared: Any) -> None:
    """Refuse a key shorter than ``name`` wants: an HMAC secret under the hash's size (RFC 7518
    §3.2: "MUST"), an RSA key under 2,048 bits (§3.3). PyJWT took one, and warned at every token
    it verified (a log line per connection); once here, it is a ``ConfigurationError``. The RSA
    size is read here, not asked of PyJWT: its ``check_key_length`` came with 2.11, and every
    version from 2.8 is allowed."""
    if isinstance(algorithm, jwt.algorithms.HMACAlgorithm):
        least = algorithm.hash_alg().digest_size
        if len(prepared) < least:
            raise ConfigurationError(
                "authenticate",
                f"JWT(key=...) is a secret of {len(prepared)} bytes, and {name} needs at least {least} "
                "(RFC 7518 §3.2): a short secret can be found by trying candidates against any one "
                "token, and then used to sign tokens for any user",
                f"pass a secret of at least {least} random bytes, e.g. from "
                f"secrets.token_urlsafe({least}), kept out of the code",
            )
        return
    rsa = getattr(jwt.algorithms, "RSAAlgorithm", None)  # (absent without cryptography)
    if rsa is not None and isinstance(algorithm, rsa) and prepared.key_size < RSA_LEAST:
        raise ConfigurationError(
            "authenticate",
            f"JWT(key=...) is an RSA key of {prepared.key_size} bits, and {name} needs at least "
            f"{RSA_LEAST:,} (RFC 7518 §3.3): a key that short is within reach of factoring, and its "
            "private key then signs tokens for any user",
            f"pass the public key of an RSA key pair of at least {RSA_LEAST:,} bits",
        )
    check = getattr(algorithm, "check_key_length", None)  # (PyJWT 2.11 and later)
    said = check(prepared) if check is not None else None
    if said:
        raise ConfigurationError(
            "authenticate",
            f"JWT(key=...) is too short for {name} tokens (PyJWT: {str(said).rstrip('.')})",
            "pass the public key of a key pair of at least the size PyJWT names",
        )


def _check_options(
    audience: object, issuer: object, user_claim: object, info_claim: object, require_expiry: object
) -> None:
    """The options' kinds, when the object is built: a wrong one failed every token, each
    client told ``unauthorized`` (``issuer=5``: "Issuer param must be str")."""
    audiences = isinstance(audience, Sequence) and bool(audience) and all(_named(a) for a in audience)
    checks = [
        ("audience", audience, audience is None or _named(audience) or audiences,
         'the "aud" your tokens carry, or a list of those accepted: audience="my-app"'),
        ("issuer", issuer, issuer is None or _named(issuer),
         'the "iss" your tokens carry: issuer="https://auth.example.com"'),
        ("user_claim", user_claim, _named(user_claim),
         'the name of the claim holding the user id: user_claim="sub"'),
        ("info_claim", info_claim, info_claim is None or _named(info_claim),
         'the name of a claim to show as presence info, or None: info_claim="name"'),
        ("require_expiry", require_expiry, isinstance(require_expiry, bool), "True or False"),
    ]
    for name, value, ok, fix in checks:
        if not ok:
            raise ConfigurationError("authenticate", f"JWT({name}={value!r}) cannot work", f"pass {fix}")


def _named(value: object) -> bool:
    return isinstance(value, str) and bool(value)
