"""Sessions held by another process: short requests are forwarded, streams move the session.

With a shared engine and a load balancer without affinity, a session's requests land on
any node, while the session itself lives in one node's memory (its *owner*). Session ids
name the node that made them, and the engine records hand-overs, so any node can find the
owner (``Engine.locate_session``).

* A poll or an upstream POST landing elsewhere is **forwarded**: the owner serves it
  exactly as if it had arrived there (the same ``poll_once`` / ``accept_upstream``) and
  sends back the encoded answer, which this node writes to its HTTP client.
* A WebSocket or SSE stream landing elsewhere **moves** the session: the owner packs it up
  (sequence counters, unacknowledged frames, inbox position, subscriptions and their channel
  positions) and forgets it; this node rebuilds it and resubscribes from those positions,
  so history covers anything published during the move.

Messages between nodes travel through the engine (``send_node`` / ``on_node_message``,
or ``broadcast`` to all of them, as ``send_user`` does), as msgpack maps with a kind ``k``
and a request id.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

import msgpack

from ..engine.base import Member, Position
from ..protocol.codec import codec_named
from ..protocol.errors import LadderError
from ..protocol.frames import resync_frame
from ..protocol.session import SessionState
from .applied import Answers, Inherited
from .auth import Identity

if TYPE_CHECKING:
    from .hub import Ladder
    from .session import Session

log = logging.getLogger("ladder.cluster")

REQUEST_TIMEOUT: Final = 3.0
"""How long a node waits for another to answer (a dead node's sessions are unknown after)."""

SETTLE_TIMEOUT: Final = 2.0
"""How long an owner asked to give a session away waits for a running handler to finish
(below ``REQUEST_TIMEOUT``, so the asking node hears a clear "busy, retry")."""


class Elsewhere(Exception):
    """The session lives on ``node``: forward the request there."""

    def __init__(self, node: str) -> None:
        super().__init__(node)
        self.node = node


def _error(message: dict[str, Any]) -> LadderError:
    return LadderError(str(message.get("code", "internal")), str(message.get("reason", "")))


class Cluster:
    """This node's side of session routing: asks other nodes, and answers them."""

    def __init__(self, hub: Ladder) -> None:
        self.hub = hub
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.counters = {"forwarded": 0, "served_for_others": 0, "moved_in": 0, "moved_out": 0}
        """How much routing this node did (reported by the health endpoint)."""
        self._serving: dict[tuple[str, int], Callable[[], None]] = {}
        """Forwarded polls being held here, by (requesting node, request id): their ``gone``."""
        self._arriving: dict[str, asyncio.Future[None]] = {}
        """Sessions being moved to this node right now."""
        self._gathering: dict[int, tuple[list[dict[str, Any]], int, asyncio.Future[None]]] = {}
        """Broadcast questions waiting for answers: (answers so far, answers expected, all in)."""
        self._stopping = asyncio.Event()
        """Set when this node shuts down: polls it forwards are answered with a ``bye`` at once."""

    def stop(self) -> None:
        """This node is going away: end the polls it holds for sessions of other nodes."""
        self._stopping.set()

    # -- asking --------------------------------------------------------------------------------

    async def _ask(
        self, node: str, message: dict[str, Any], timeout: float, rid: int | None = None
    ) -> dict[str, Any]:
        engine = self.hub.engine
        if not engine.healthy:  # we could not even hear the answer: a retryable refusal
            raise LadderError("engine_unavailable", "this node is reconnecting to the engine")
        rid = next(self._ids) if rid is None else rid
        self.counters["forwarded"] += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = future
        try:
            await engine.send_node(node, msgpack.packb({**message, "id": rid, "from": engine.node_id}))
            async with asyncio.timeout(timeout):
                reply = await future
        except TimeoutError:
            if await engine.node_alive(node):
                # Alive but silent (busy, or between reconnects): the session is not lost.
                raise LadderError("engine_unavailable", f"node {node} did not answer in time") from None
            raise LadderError("unknown_session", f"node {node} holding the session is gone") from None
        finally:
            self._waiting.pop(rid, None)
        if "code" in reply:
            raise _error(reply)
        return reply

    async def _ask_owner(
        self, node: str, message: dict[str, Any], timeout: float, rid: int | None = None
    ) -> dict[str, Any]:
        """Ask the session's owner; follow it if it says the session moved on meanwhile."""
        for _ in range(3):
            reply = await self._ask(node, message, timeout, rid)
            if "moved" not in reply:
                return reply
            node, rid = str(reply["moved"]), None
        raise LadderError("unknown_session", "the session kept moving")

    async def arrival(self, sid: str) -> None:
        """Wait (briefly) for a hand-over of ``sid`` to this node that is under way."""
        arriving = self._arriving.get(sid)
        if arriving is not None:
            with contextlib.suppress(TimeoutError, LadderError):
                async with asyncio.timeout(REQUEST_TIMEOUT):
                    await asyncio.shield(arriving)

    async def forward_send(
        self, node: str, sid: str, token: str, body: bytes, content_type: str | None
    ) -> None:
        await self._ask_owner(
            node,
            {"k": "send", "sid": sid, "rt": token, "body": body, "ct": content_type or ""},
            REQUEST_TIMEOUT,
        )

    async def forward_poll(
        self,
        node: str,
        sid: str,
        token: str,
        *,
        kind: str,
        ack: int,
        greet: bool,
        encoding: str,
        disconnected: Awaitable[None],
    ) -> bytes:
        """Have ``node`` serve one poll; returns the encoded batch for the HTTP client."""
        hold = kind == "longpoll"
        timeout = (self.hub.session_limits.poll_timeout if hold else 0) + REQUEST_TIMEOUT
        message = {
            "k": "poll",
            "sid": sid,
            "rt": token,
            "kind": kind,
            "ack": ack,
            "greet": greet,
            "enc": encoding,
        }
        rid = next(self._ids)
        asking = asyncio.ensure_future(self._ask_owner(node, message, timeout, rid))
        watching = asyncio.ensure_future(disconnected)
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            done, _ = await asyncio.wait({asking, watching, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if asking in done:
                return bytes(asking.result()["body"])
            # Our HTTP client went away, or this node is: the owner must stop holding the poll.
            cancel = {"k": "cancel", "from": self.hub.engine.node_id, "of": rid}
            with contextlib.suppress(LadderError):
                await self.hub.engine.send_node(node, msgpack.packb(cancel))
            if watching in done:
                raise ConnectionResetError("client went away")
            # Held here, this poll would keep this process alive up to poll_timeout after a
            # SIGTERM; the session lives on: the client polls again, elsewhere, at once.
            codec = codec_named(encoding)
            return codec.join([codec.encode({"t": "bye", **LadderError("shutting_down").body()})])
        finally:
            for task in (asking, watching, stopping):
                task.cancel()

    async def migrate(self, node: str, sid: str, token: str) -> Session:
        """Move session ``sid`` from ``node`` to this node, and return it."""
        arriving = self._arriving.get(sid)
        if arriving is not None:  # another request of the same client is already moving it
            await self.arrival(sid)
            return await self.hub.route(sid, token, stream=True, forwarded=True)
        arriving = self._arriving[sid] = asyncio.get_running_loop().create_future()
        try:
            reply = await self._ask_owner(node, {"k": "migrate", "sid": sid, "rt": token}, REQUEST_TIMEOUT)
            return await self.restore(reply["state"])
        finally:
            del self._arriving[sid]
            arriving.set_result(None)

    async def ask_all(
        self, message: dict[str, Any], timeout: float = REQUEST_TIMEOUT
    ) -> list[dict[str, Any]]:
        """Ask every other node; return the answers that came within ``timeout``."""
        engine = self.hub.engine
        rid = next(self._ids)
        answers: list[dict[str, Any]] = []
        complete: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._gathering[rid] = (answers, 1 << 30, complete)
        try:
            expected = await engine.broadcast(msgpack.packb({**message, "id": rid, "from": engine.node_id}))
            self._gathering[rid] = (answers, expected, complete)
            if len(answers) < expected:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await complete
        finally:
            del self._gathering[rid]
        return [answer for answer in answers if "code" not in answer]

    async def push(self, node: str, sid: str, event: str, data: Any) -> None:
        await self.hub.engine.send_node(
            node, msgpack.packb({"k": "push", "sid": sid, "ev": event, "d": data})
        )

    # -- answering -----------------------------------------------------------------------------

    def on_node_message(self, data: bytes) -> None:
        try:
            message = msgpack.unpackb(data, raw=False)
        except Exception:
            log.warning("undecodable message from another node (%d bytes)", len(data))
            return
        kind = message.get("k")
        if kind == "reply":
            future = self._waiting.get(message.get("re"))
            if future is not None and not future.done():
                future.set_result(message)
            gathering = self._gathering.get(message.get("re"))
            if gathering is not None:
                answers, expected, complete = gathering
                answers.append(message)
                if len(answers) >= expected and not complete.done():
                    complete.set_result(None)
        elif kind == "cancel":
            gone = self._serving.pop((message.get("from"), message.get("of")), None)
            if gone is not None:
                gone()
        elif kind in _HANDLERS and message.get("from") != self.hub.engine.node_id:  # not our broadcast
            self.hub.spawn(self._answer(message), f"ladder-cluster-{kind}")

    async def _answer(self, message: dict[str, Any]) -> None:
        reply: dict[str, Any]
        self.counters["served_for_others"] += 1
        try:
            reply = await _HANDLERS[message["k"]](self, message)
        except LadderError as exc:
            reply = exc.body()
        except Elsewhere as away:
            reply = {"moved": away.node}
        except Exception:
            log.exception("serving %s for node %s failed", message.get("k"), message.get("from"))
            reply = LadderError("internal").body()
        if "from" in message:
            reply = {**reply, "k": "reply", "re": message["id"]}
            with contextlib.suppress(LadderError):
                await self.hub.engine.send_node(message["from"], msgpack.packb(reply))

    async def _serve_send(self, message: dict[str, Any]) -> dict[str, Any]:
        from .upstream import accept_upstream  # noqa: PLC0415

        session = await self.hub.route(message["sid"], message["rt"], stream=False, forwarded=True)
        await accept_upstream(self.hub, session, message["body"], message["ct"] or None)
        return {}

    async def _serve_poll(self, message: dict[str, Any]) -> dict[str, Any]:
        from .driver import Link  # noqa: PLC0415
        from .polling import poll_once  # noqa: PLC0415

        session = await self.hub.route(message["sid"], message["rt"], stream=False, forwarded=True)
        kind = str(message["kind"])
        if kind not in self.hub.transports:
            raise LadderError("unsupported_transport", f"{kind} is not offered by this server")
        att = self.hub.attach(
            session,
            kind,
            streaming=False,
            ack=int(message["ack"]),
            resumed=True,
            greet=bool(message["greet"]),
        )
        link = Link(self.hub, session, att)
        key = (str(message["from"]), int(message["id"]))
        self._serving[key] = link.gone
        try:
            body = await poll_once(link, hold=kind == "longpoll", codec=codec_named(message["enc"]))
        finally:
            self._serving.pop(key, None)
        return {"body": body}

    async def _serve_migrate(self, message: dict[str, Any]) -> dict[str, Any]:
        sid = str(message["sid"])
        moved = self.hub.moved.get(sid)
        if moved is not None and sid not in self.hub.sessions:
            return {"moved": moved}
        session = await self.hub.route(sid, message["rt"], stream=False, forwarded=True)
        # Stop applying, and let a handler still running finish: the session moves with
        # exactly what was applied (what was only accepted is the client's to resend).
        session.moving = True
        if not await session.settle(SETTLE_TIMEOUT):
            session.moving = False
            self.hub.spawn(self.hub.drain(session), "ladder-drain")
            raise LadderError("engine_unavailable", f"session {sid[:8]}… is busy applying a message; retry")
        if self.hub.sessions.get(sid) is not session:  # it ended or moved while we waited
            raise LadderError("unknown_session", f"session {sid[:8]}… ended")
        state = self.pack(session)
        await self.hub.hand_over(session, str(message["from"]))
        self.counters["moved_out"] += 1
        return {"state": state}

    async def _serve_push(self, message: dict[str, Any]) -> dict[str, Any]:
        await self.hub.send(str(message["sid"]), str(message["ev"]), message.get("d"))
        return {}

    async def _serve_user(self, message: dict[str, Any]) -> dict[str, Any]:
        return {"n": self.hub.send_user_here(str(message["user"]), str(message["ev"]), message.get("d"))}

    # -- packing a session ---------------------------------------------------------------------

    def pack(self, session: Session) -> dict[str, Any]:
        """The session as another node rebuilds it: the core's snapshot plus who it is."""
        identity = session.identity
        try:
            claims = msgpack.unpackb(msgpack.packb(dict(identity.claims)), raw=False)
        except (TypeError, ValueError):
            claims = {}
        return {
            "addr": session.address,
            "exp": identity.expires,
            "cid": session.client_id,
            "user": identity.user,
            "info": identity.info,
            "claims": claims,
            "state": session.state.snapshot(),
            "inh": None if session.inherited is None else session.inherited.pack(),
            "ans": None if session.answers is None else session.answers.pack(),
            "subs": [
                [sub.channel, *self.hub.position_of(sub), sub.member is not None]
                for sub in session.subs.values()
            ],
        }

    async def restore(self, packed: dict[str, Any]) -> Session:
        from .session import Session  # noqa: PLC0415

        hub = self.hub
        state = SessionState.restore(packed["state"], hub.clock(), hub.session_limits)
        identity = Identity(
            user=packed["user"],
            info=packed["info"],
            claims=packed.get("claims") or {},
            expires=packed.get("exp"),
        )
        session = Session(state, identity, packed["cid"])
        session.address = packed.get("addr")
        if packed.get("inh") is not None:
            session.inherited = Inherited.unpack(packed["inh"])
        if packed.get("ans") is not None:
            session.answers = Answers(hub.limits.inbox_window)
            session.answers.unpack(packed["ans"])
        hub.adopt(session)
        self.counters["moved_in"] += 1
        subs = [(str(ch), ep, int(off), bool(present)) for ch, ep, off, present in packed["subs"]]
        try:
            await self._settle_in(session, subs)
        except LadderError as exc:
            # The session is here now (its old owner forgot it): a failed step must not leave
            # it unclaimed or a subscription pending for good, which silently lost every
            # publication after the move. Finished in the background as the engine comes back.
            log.warning(
                "session %s moved in, %s; its move finishes when the engine answers", state.sid[:8], exc
            )
            hub.spawn(self._settle_later(session, subs), "ladder-settle-in")
        return session

    async def _settle_in(self, session: Session, subs: list[tuple[str, str | None, int, bool]]) -> None:
        """Claim a session that moved here (again, if tried again: it is idempotent) and follow
        its channels; ``subs`` shrinks as each is done."""
        hub = self.hub
        await hub.engine.claim_session(session.sid, hub.session_limits.ttl * 2)
        while subs:
            await self._resubscribe(session, *subs[0])
            subs.pop(0)

    async def _settle_later(self, session: Session, subs: list[tuple[str, str | None, int, bool]]) -> None:
        delay = 0.1
        while self.hub.sessions.get(session.sid) is session:
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            try:
                await self._settle_in(session, subs)
                return
            except LadderError:
                delay = min(delay * 2, 2.0)

    async def _resubscribe(
        self, session: Session, channel: str, epoch: str | None, offset: int, present: bool
    ) -> None:
        """Follow ``channel`` here from where the session was, filling the move's gap from history.
        Tried again after a failure: the pending subscription made by the first try is kept."""
        hub = self.hub
        options = hub.channel_rules.options(channel)
        sub = session.subs.get(channel)
        if sub is None:
            sub, first = hub.add_subscription(session, channel, options)
            if first:
                await hub.engine.listen(channel)
        if present:
            sub.member = Member(session.client_id, session.user, session.identity.info)
            await hub.engine.presence_add(channel, sub.member, hub.presence_ttl)
        since = Position(epoch, offset) if epoch is not None else None
        history = await hub.engine.history(channel, since=since, limit=options.history_size, options=options)
        if since is not None and not history.complete:
            hub.push_reply(session, resync_frame(channel, history.position.epoch, history.position.offset))
        hub.deliver_backlog(sub, history)


_HANDLERS: Final[dict[str, Callable[[Cluster, dict[str, Any]], Awaitable[dict[str, Any]]]]] = {
    "send": Cluster._serve_send,
    "poll": Cluster._serve_poll,
    "migrate": Cluster._serve_migrate,
    "push": Cluster._serve_push,
    "user": Cluster._serve_user,
}
