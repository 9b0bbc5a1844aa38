"""Who a client is, and what it may do.

``authenticate`` is a hook the app passes to :class:`~ladder.Ladder`. It receives an
:class:`AuthRequest` (headers, cookies, the token from the hello frame or an
``Authorization: Bearer`` header, peer address, transport) and returns an
:class:`Identity` (or a user id string) to accept, or ``None`` / raises ``LadderError`` to
refuse. Without a hook every client is anonymous.

``permissions`` decides, per identity and channel, whether an action is allowed (a
subscription's past is ``history``, its ``join``/``leave`` frames are ``presence``). The
default lets anyone subscribe, read history and presence, and lets clients publish only
to channels whose options say ``client_publish=True``.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import Any, Final, Literal, TypeAlias

from ..engine.base import ChannelOptions
from ..protocol.codec import Payload
from ..protocol.errors import LadderError
from ..protocol.frames import MAX_TOKEN

log = logging.getLogger("ladder")

HOOK_LOG_EVERY: Final = 10.0
"""Seconds: a hook's failures of one kind are logged at most this often. A broken hook fails
for every client, and every client reconnecting tries again: one line per try was dozens a
second from a single client (the refusals they cause are counted and damped the same way)."""

_HOOKS_KEPT: Final = 256


class HookLog:
    """Logs a hook's failures at ERROR, once per kind and ``HOOK_LOG_EVERY``, saying how many
    were not logged since."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: dict[tuple[int, str], tuple[float, int]] = {}
        """(id of the hook, kind) -> (when last logged, failures not logged since)."""

    def error(
        self, hook: object, kind: str, message: str, *args: object, exc: BaseException | None = None
    ) -> None:
        key = (id(hook), kind)
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last[0] < HOOK_LOG_EVERY:
            self._last[key] = (last[0], last[1] + 1)
            return
        if last is not None and last[1]:
            message += f" (and {last[1]} more like it in the last {now - last[0]:.0f} s, not logged)"
        self._last.pop(key, None)
        self._last[key] = (now, 0)
        if len(self._last) > _HOOKS_KEPT:
            del self._last[next(iter(self._last))]
        log.error(message, *args, exc_info=None if exc is None else (type(exc), exc, exc.__traceback__))

    def forget(self) -> None:
        """Log the next failure of every hook (tests: the damping is process-wide)."""
        self._last.clear()


hook_log = HookLog()

Action: TypeAlias = Literal["subscribe", "publish", "presence", "history"]


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated user. ``info`` is public: it is shown to presence subscribers."""

    user: str | None
    info: Any = None
    claims: Mapping[str, Any] = field(default_factory=dict)
    """Anything the app wants to keep with the session (not sent to clients)."""
    expires: float | None = None
    """When the credentials expire (Unix time): the session ends then unless refreshed."""


ANONYMOUS = Identity(user=None)


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """What a client presented when it opened a session."""

    headers: Mapping[str, str]
    cookies: Mapping[str, str]
    token: str | None
    client: str | None
    transport: str
    """The rung opening the session (``websocket``, ``sse``, ``longpoll``, ``poll``), or
    ``send``: a page asking why a rung it cannot read was refused (protocol §3.6)."""
    address: str | None = None
    """The client's address (from ``X-Forwarded-For`` when the server is told to trust it)."""


AuthResult: TypeAlias = Identity | str | None
Authenticate: TypeAlias = Callable[[AuthRequest], AuthResult | Awaitable[AuthResult]]
Permissions: TypeAlias = Callable[[Identity, Action, str, ChannelOptions], bool | Awaitable[bool]]
"""``permissions(identity, action, channel, options)``, sync or async: ``True`` allows,
``False`` refuses with ``forbidden``, a raised ``LadderError`` refuses with its own code.
Anything else raised or returned (``"yes"``, ``None``, ``1``) is answered ``internal`` and
logged at ERROR, naming the hook, the action and the channel.

What each action covers:

- ``subscribe``: a subscription, the channel's publications from then on.
- ``publish``: a client's publication (server code always may).
- ``history``: the ``history`` query, and a subscription's past. Refused, a subscription
  asking for ``recent`` publications is refused (``forbidden``: "history on 'ch' is not
  allowed: subscribe without recent"), and one recovering from a position gets none of the
  publications it missed: ``recovered`` false with the channel's position now, as when
  history is gone, so its client resyncs. Asked only when there is something to hand out;
  never for a session's own subscriptions carrying on (resumed, or moved between processes).
- ``presence``: the ``presence`` query, and the ``join``/``leave`` frames a subscription
  gets. Asked once when a client subscribes to a channel that sends them (and again on the
  process its session moves to), never per frame; refused, the subscriber gets none.
"""


def parse_cookies(header: str | None) -> dict[str, str]:
    """Cookies from a ``Cookie`` header; a malformed header yields what could be read."""
    if not header:
        return {}
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except CookieError:
        return {}
    return {key: morsel.value for key, morsel in jar.items()}


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an ``Authorization: Bearer`` header; ``bad_request`` past :data:`MAX_TOKEN`
    (the hello's ``tok`` is bounded so; a header went to the hook whatever its size)."""
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    if len(token) > MAX_TOKEN:
        raise LadderError("bad_request", f"the Authorization header's token is over {MAX_TOKEN} characters")
    if not token:  # (as tok= is: not read as no token, which opened an anonymous session)
        raise LadderError("bad_request", "the Authorization header's Bearer token is empty: send one or none")
    return token


NO_TOKEN: Final = (
    "no token: this server authenticates every connection; give the client one "
    "(Python: Client(url, token=...); browser: connect(url, {token}))"
)
"""The reason of a refusal for want of a token (``JWT``): it names the fix."""

NO_CREDENTIALS: Final = (
    "no credentials: this server authenticates every connection, and the request carried no "
    "token and no cookie; give the client a token (Python: Client(url, token=...); browser: "
    "connect(url, {token})), or sign in first if the app authenticates by cookie"
)
"""The same for an ``authenticate`` hook, which may read a cookie instead."""


async def run_authenticate(hook: Authenticate | None, request: AuthRequest) -> Identity:
    """Call the hook and normalise its answer; a refusal raises ``unauthorized``, credentials
    that expired already ``token_expired`` (a session begun with them would end at once).

    Anything else the hook raises, or an answer it may not give, is a bug in the app, not a
    refusal of the client's credentials: logged at ERROR naming the hook (with the traceback,
    or what it returned and the fix) and raised as ``internal``, alike wherever the hook runs
    (a hello on any rung, a POST naming no session, a live ``refresh``)."""
    if hook is None:
        return ANONYMOUS
    try:
        return await _authenticated(hook, request)
    except LadderError:
        raise
    except HookMistake as exc:
        hook_log.error(hook, "mistake", "%s; answered internal", exc)
        why = "the authenticate hook gave an answer no hook may give (see the server log)"
        raise LadderError("internal", why) from None
    except Exception as exc:
        hook_log.error(hook, "failed", "%s failed; answered internal", _named(hook), exc=exc)
        raise LadderError("internal", "the authenticate hook failed (see the server log)") from None


class HookMistake(TypeError):
    """An answer of the ``authenticate`` hook that no hook may give (its message names the
    hook, what it returned and the fix)."""


async def _authenticated(hook: Authenticate, request: AuthRequest) -> Identity:
    result = hook(request)
    if inspect.isawaitable(result):
        result = await result
    if isinstance(result, Identity):
        if result.expires is not None and result.expires <= time.time():
            raise LadderError("token_expired", "the credentials have expired already: get new ones")
        _check_identity(hook, result)
        return result
    if isinstance(result, str):
        return Identity(user=result)
    if result is not None:  # a bug of the hook's, not a refusal: logged as its failure
        raise HookMistake(
            f"{_named(hook)} returned {type(result).__name__} {result!r:.80}: return an "
            "Identity, a user id as a str, or None to refuse"
        )
    if request.token is None and not request.cookies:
        raise LadderError("unauthorized", NO_CREDENTIALS)
    sent = "the token" if request.token is not None else "the cookie or headers"
    raise LadderError(
        "unauthorized", f"the authenticate hook refused these credentials: check {sent} the client sends"
    )


def _named(hook: Callable[..., Any], kind: str = "authenticate") -> str:
    """``the authenticate hook myapp.authenticate``: which function the log's error is about."""
    function = getattr(hook, "__func__", hook)  # (a bound method: its function's names)
    name = getattr(function, "__qualname__", None) or type(hook).__qualname__
    module = getattr(function, "__module__", None) or type(hook).__module__
    return f"the {kind} hook {module}.{name}"


def _check_identity(hook: Authenticate, identity: Identity) -> None:
    """An :class:`Identity` the session can carry: ``user`` a str or None, ``info`` data
    presence can send (checked here, where the hook's mistake is, rather than as a
    ``bad_frame`` blamed on the client at its first presence)."""
    if identity.user is not None and not isinstance(identity.user, str):
        raise HookMistake(
            f"{_named(hook)} returned Identity(user={identity.user!r}): the user id must be "
            f"a str (write Identity(user=str({identity.user!r})))"
        )
    if identity.info is not None:
        try:
            Payload.checked(identity.info)
        except TypeError as exc:
            why = f"{_named(hook)} returned an Identity whose info cannot be shown in presence: {exc}"
            raise HookMistake(why) from None


def default_permissions(identity: Identity, action: Action, channel: str, options: ChannelOptions) -> bool:
    """Anyone may subscribe, read history and presence; clients publish only where allowed."""
    if action == "publish":
        return bool(options.client_publish)
    return True


async def check_permission(
    hook: Permissions,
    identity: Identity,
    action: Action,
    channel: str,
    options: ChannelOptions,
    *,
    fix: str = "",
) -> None:
    """Ask the hook: True allows, False refuses (``forbidden``, its reason ending with
    ``fix`` when given), a ``LadderError`` it raises refuses with its own code. Anything else
    it raises or returns is a bug in the app, not the client's nor an event handler's: logged
    at ERROR naming the hook, the action and the channel (with the traceback, or what it
    returned), and answered ``internal``."""
    verdict = await _verdict(hook, identity, action, channel, options)
    if verdict is True:
        return
    if isinstance(verdict, LadderError):
        raise verdict
    raise LadderError("forbidden", f"{action} on {channel!r} is not allowed{fix}")


async def permitted(
    hook: Permissions, identity: Identity, action: Action, channel: str, options: ChannelOptions
) -> bool:
    """Whether the hook allows ``action``, where a refusal withholds a part of an answer
    instead of refusing the frame: False and a ``LadderError`` it raises are both False.
    A hook that fails is still answered ``internal`` (raised), as in :func:`check_permission`."""
    return await _verdict(hook, identity, action, channel, options) is True


async def sees_members(hook: Permissions, identity: Identity, channel: str, options: ChannelOptions) -> bool:
    """Whether a subscription of ``channel`` gets its ``join``/``leave`` frames: the channel
    sends them and the hook allows this identity ``presence`` there. Asked once, when the
    subscription is made (the hook may be slow), never per frame."""
    if not (options.presence and options.join_leave):
        return False
    return await permitted(hook, identity, "presence", channel, options)


async def _verdict(
    hook: Permissions, identity: Identity, action: Action, channel: str, options: ChannelOptions
) -> bool | LadderError:
    """The hook's answer: True, False, or the ``LadderError`` it raised; its bugs are logged
    and raised as ``internal``."""
    try:
        allowed = hook(identity, action, channel, options)
        if inspect.isawaitable(allowed):
            allowed = await allowed
    except LadderError as exc:
        return exc
    except Exception as exc:
        hook_log.error(
            hook, f"failed {action}", "%s failed for %s on %r; answered internal",
            _named(hook, "permissions"), action, channel, exc=exc,
        )
        why = f"the permissions hook failed for {action} (see the server log)"
        raise LadderError("internal", why) from exc
    if allowed is True or allowed is False:
        return allowed
    returned = type(allowed).__name__
    hook_log.error(
        hook, f"returned {action}",
        "%s returned %s %.80r for %s on %r: return True to allow or False to refuse; answered internal",
        _named(hook, "permissions"), returned, allowed, action, channel,
    )
    why = f"the permissions hook returned {returned} for {action}, not True or False (see the server log)"
    raise LadderError("internal", why)
