"""``POST /send``: client frames for a session on an HTTP rung (SSE, long-poll, poll).

The body is a batch (``Content-Type: application/msgpack`` or newline-delimited JSON).
The answer is ``204`` once every frame was accepted and the in-order ones applied (or
queued behind a message still in its handler); what the server says back (replies, acks,
pongs) travels on the session's downstream rung. A session whose transports were sent
away refuses POSTs until its client resumes (``SessionState.sent_away``), but a ``bye``.
A POST never creates a session, and it needs the resume token, like a resume does. A POST
for a session another process holds is forwarded there. An empty one naming no session
answers whether a hello would be refused for its credentials (``204``: it would not).
"""

from __future__ import annotations

from typing import Any

from ..protocol.codec import codec_for_content_type
from ..protocol.errors import LadderError
from ..protocol.frames import Bye, decode_client_frames
from .auth import run_authenticate
from .cluster import Elsewhere
from .config import TRANSPORTS
from .gateway import Gateway
from .http import Receive, Request, Send, check_text, cors_headers, read_body, respond
from .session import Session


async def accept_upstream(gateway: Gateway, session: Session, body: bytes, content_type: str | None) -> None:
    """Decode a POSTed batch and hand it to the session (errors per frame go downstream)."""
    limit = gateway.settings.limits.max_frame_size
    frames = decode_client_frames(codec_for_content_type(content_type), body, limit)
    leaving = frames and all(type(frame) is Bye for frame in frames)
    if not leaving:  # (a client leaving need not resume to say so)
        session.state.check_resumed()
    if frames:
        await gateway.receive(session, None, frames)
        if not leaving:
            session.state.check_resumed()  # (what it queued was given back meanwhile: resume)


async def serve_forwarded_send(gateway: Gateway, message: dict[str, Any]) -> dict[str, Any]:
    """Accept a POST another node forwarded here (this node holds the session)."""
    session = await gateway.router.route(message["sid"], message["rt"], stream=False, forwarded=True)
    await accept_upstream(gateway, session, message["body"], message["ct"] or None)
    return {}


async def serve_send(gateway: Gateway, request: Request, receive: Receive, send: Send) -> None:
    sid = request.query.get("sid")
    token = request.resume_token()
    check_text("sid", sid)
    check_text("rt", token)
    limits = gateway.settings.limits
    if not (sid and token) and not (sid is None and token is None):
        raise _half_session()  # (before its body: the router drops it, or closes the connection, within 1 s)
    # The body first, refused or not: one left unread kept its connection open (and unusable)
    # until the keep-alive ran out; read, one that stops arriving gets its 408 in time.
    body = await read_body(receive, request, limits.max_post_size, timeout=limits.frame_timeout)
    if not sid or not token:  # a page asking why (protocol §3.6)
        await _check_credentials(gateway, request)
        if not body:  # (nothing is refused)
            await respond(send, 204, headers=cors_headers(gateway.settings.allowed_origins, request))
            return
        raise _half_session()
    content_type = request.headers.get("content-type")
    try:
        session = await gateway.route(sid, token, stream=False)
    except Elsewhere as away:
        await gateway.router.forward_send(away.node, sid, token, body, content_type)
    else:
        await accept_upstream(gateway, session, body, content_type)
    await respond(send, 204, headers=cors_headers(gateway.settings.allowed_origins, request))


def _half_session() -> LadderError:
    """The refusal of a POST naming half a session, or none with a body (built when refused:
    not an error made for every POST)."""
    return LadderError("bad_request", "POST /send needs 'sid' and the resume token")


async def _check_credentials(gateway: Gateway, request: Request) -> None:
    """A POST naming no session is also a page asking why a WebSocket upgrade or an event
    stream was refused (a browser hides those answers): it hears the refusal a hello on the
    rungs it names (``tr``, comma-separated) with the same credentials (``Authorization:
    Bearer``, cookies) would get, such as ``unsupported_transport``, ``unauthorized`` or
    ``token_expired``; nothing is opened either way (protocol §3.6). Nothing refused, an
    empty one is answered ``204`` (``400 bad_request`` was counted and logged as a client's
    mistake, once per failed race of every browser tab)."""
    named = request.query.get("tr")
    if named is not None:
        rungs = named.split(",")
        if any(rung not in TRANSPORTS for rung in rungs):
            raise LadderError("bad_frame", f"tr: comma-separated rungs among {', '.join(TRANSPORTS)}")
        refused = gateway.settings.not_offered(rungs)
        if refused is not None:
            raise refused
    await run_authenticate(gateway.settings.authenticate, request.auth_request(None, "send"))
