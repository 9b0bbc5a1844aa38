"""``POST /send``: client frames for a session on an HTTP rung (SSE, long-poll, poll).

The body is a batch (``Content-Type: application/msgpack`` or newline-delimited JSON).
The answer is ``204`` once every frame was accepted and the in-order ones applied; what
the server says back (replies, acks, pongs) travels on the session's downstream rung.
A POST never creates a session, and it needs the resume token, like a resume does. A POST
for a session another process holds is forwarded there.
"""

from __future__ import annotations

from ..protocol.codec import codec_for_content_type
from ..protocol.errors import LadderError
from ..protocol.frames import decode_client_frames
from .cluster import Elsewhere
from .http import Receive, Request, Send, cors_headers, read_body, respond
from .hub import Ladder
from .session import Session


async def accept_upstream(hub: Ladder, session: Session, body: bytes, content_type: str | None) -> None:
    """Decode a POSTed batch and hand it to the session (errors per frame go downstream)."""
    limits = hub.limits
    frames, errors = decode_client_frames(codec_for_content_type(content_type), body, limits.max_frame_size)
    for error in errors:
        hub.refused("send", error, session=session)
        session.state.send_control({"t": "err", **error.body()})
    if frames:
        await hub.receive(session, None, frames)


async def serve_send(hub: Ladder, request: Request, receive: Receive, send: Send) -> None:
    sid = request.query.get("sid")
    token = request.resume_token()
    if not sid or not token:
        raise LadderError("bad_request", "POST /send needs 'sid' and the resume token")
    body = await read_body(receive, request, hub.limits.max_post_size)
    content_type = request.headers.get("content-type")
    try:
        session = await hub.route(sid, token, stream=False)
    except Elsewhere as away:
        await hub.cluster.forward_send(away.node, sid, token, body, content_type)
    else:
        await accept_upstream(hub, session, body, content_type)
    await respond(send, 204, headers=cors_headers(hub.allowed_origins, request))
