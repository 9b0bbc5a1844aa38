"""Messages between the nodes of one deployment: questions, answers, broadcasts.

With a shared engine and a load balancer without affinity, a session's requests land on
any node while the session lives in one node's memory (its *owner*); :mod:`.routing`
decides what to ask, this module carries the asking. Messages travel through the engine
(``send_node`` / ``on_node_message``, or ``broadcast`` to every node) as msgpack maps with a
kind ``k`` and a request id. Each kind of question is answered by the handler registered
for it with :meth:`Cluster.serve`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from time import monotonic
from typing import Any, Final, TypeAlias

import msgpack

from ..engine.base import Engine
from ..protocol.errors import LadderError
from ..protocol.sids import label
from .config import NODE_LEASE
from .lease import Lease
from .tasks import Tasks

log = logging.getLogger("ladder.cluster")

REQUEST_TIMEOUT: Final = 3.0
"""How long a node waits for another to answer (a dead node's sessions are unknown after)."""

SETTLE_TIMEOUT: Final = 2.0
"""How long an owner asked to give a session away waits for a running handler to finish
(below ``REQUEST_TIMEOUT``, so the asking node hears a clear "busy, retry")."""

SEND_TIMEOUT: Final = 60.0
"""How long a node waits for the owner of a session to answer a ``POST send`` it forwarded
there: the owner answers once the messages in it were applied (a handler may take seconds),
and a dead owner is noticed meanwhile (see :data:`WATCH_EVERY`). With ``REQUEST_TIMEOUT``,
a handler over 3 s made a healthy node answer ``503 engine_unavailable``."""

WATCH_EVERY: Final = 1.0
"""While a request waits longer than ``REQUEST_TIMEOUT`` on another node (a long poll held
there), how often that node is checked to be alive: a node that died answers nothing, and
its long polls waited out their hold (27 s) before the client heard its session was gone."""

MAX_HOPS: Final = 4
"""Nodes a request or a push follows a session through (hand-over after hand-over) before
it is given up: records that point round in a circle hold nobody."""

Answerer: TypeAlias = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
"""Answers one kind of question from another node."""


def user_push(user: str, event: str, data: Any) -> dict[str, Any]:
    """The question a node answers by pushing ``event`` to its sessions of ``user`` (``n``:
    how many), for ``send_user`` from a hub or a publisher."""
    return {"k": "user", "user": user, "ev": event, "d": data}


def user_end(user: str, reason: str) -> dict[str, Any]:
    """The question a node answers by ending its sessions of ``user`` (``n``: how many)."""
    return {"k": "user-end", "user": user, "reason": reason}


class Elsewhere(Exception):
    """The session lives on ``node``: forward the request there."""

    def __init__(self, node: str) -> None:
        super().__init__(node)
        self.node = node


class HandedHere(LadderError):
    """The session's owner says it handed the session to this node (retryable: the hand-over
    may still be arriving; the router decides whether it was lost)."""

    def __init__(self) -> None:
        super().__init__("engine_unavailable", "the session is being handed to this node; retry")


def lost_moving(sid: str) -> LadderError:
    """The refusal for a session that every node says it handed on and nobody holds."""
    return LadderError("unknown_session", f"session {label(sid)}… was lost moving between nodes")


def _error(message: dict[str, Any]) -> LadderError:
    return LadderError(str(message.get("code") or "internal"), str(message.get("reason", "")))


class Asked:
    """Which node has a request now, under which id (:meth:`Cluster.ask_owner` follows a
    session from node to node, each asked under a new id): where to send its ``cancel``."""

    __slots__ = ("node", "rid")

    def __init__(self, node: str, rid: int) -> None:
        self.node = node
        self.rid = rid


class Cluster:
    """This node's side of session routing: asks other nodes, and answers them."""

    def __init__(self, engine: Engine, tasks: Tasks, lease: Lease | None = None) -> None:
        self.engine = engine
        self.tasks = tasks
        self.lease = lease or Lease(engine, NODE_LEASE)
        """This node's lease: no question is answered unless it is held."""
        self._answerers: dict[str, Answerer] = {}
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.counters = {"forwarded": 0, "served_for_others": 0, "moved_in": 0, "moved_out": 0, "fenced": 0}
        """How much routing this node did (reported by the health endpoint)."""
        self._serving: dict[tuple[str, int], Callable[[], None]] = {}
        """Forwarded polls being held here, by (requesting node, request id): their ``gone``."""
        self._gathering: dict[int, tuple[list[dict[str, Any]], int, asyncio.Future[None]]] = {}
        """Broadcast questions waiting for answers: (answers so far, answers expected, all in)."""
        self.stopping = asyncio.Event()
        """Set when this node shuts down: polls it forwards are answered with a ``bye`` at once."""
        self.adopt_late: Callable[[dict[str, Any]], Coroutine[Any, Any, None]] | None = None
        """Takes in a session handed over after this node stopped waiting for it (set by the
        router): its old owner forgot it, so it must live here rather than nowhere."""
        self.handed_on: Callable[[str], str | None] = lambda sid: None
        """Where this node handed a session it no longer holds (set by the router)."""
        self._dead: dict[str, bool] = {}
        """Nodes this one just declared dead (for the refusal's words)."""
        self._watched: dict[str, set[asyncio.Future[dict[str, Any]]]] = {}
        """Answers awaited from each node for longer than ``REQUEST_TIMEOUT`` (one check of
        a node's life serves every request waiting on it: see :meth:`_watch`)."""

    def stop(self) -> None:
        """This node is going away: end the polls it holds for sessions of other nodes."""
        self.stopping.set()

    # -- asking --------------------------------------------------------------------------------

    async def ask(
        self, node: str, message: dict[str, Any], timeout: float, rid: int | None = None
    ) -> dict[str, Any]:
        engine = self.engine
        if not engine.healthy:  # we could not even hear the answer: a retryable refusal
            raise LadderError("engine_unavailable", "this node is reconnecting to the engine")
        rid = self.next_id() if rid is None else rid
        self.counters["forwarded"] += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = future
        reply: dict[str, Any] | None = None
        heard = False
        packed = msgpack.packb({**message, "id": rid, "from": engine.node_id})
        watched = timeout > REQUEST_TIMEOUT
        try:
            # Nobody heard it: no answer will come, so the node is asked after at once.
            heard = await engine.send_node(node, packed)
            if heard:
                if watched:
                    self._watch(node, future)
                async with asyncio.timeout(timeout):
                    reply = await future
        except TimeoutError:
            pass
        finally:
            self._waiting.pop(rid, None)
            if watched:
                self._watched.get(node, set()).discard(future)
        if reply is None:
            # Heard but silent past its lease (paused, its loop blocked): declared dead. Not
            # heard, it is reconnecting its link (its lease may have gone with a Redis that
            # lost its data): it answers once back, and is not declared dead for that.
            if await engine.node_alive(node) and not (heard and await self._declared_dead(node)):
                # Alive but silent (busy, or between reconnects): the session is not lost.
                why = "did not answer in time" if heard else "is not listening now (reconnecting)"
                raise LadderError("engine_unavailable", f"node {node} {why}; retry")
            raise LadderError("unknown_session", self._gone(node))
        if "code" in reply:
            raise _error(reply)
        return reply

    async def _declared_dead(self, node: str) -> bool:
        """Declare a node that looks alive but did not answer dead, if its lease lapsed
        (see ``lease.py``): its sessions are lost then, and their clients start successors,
        rather than be refused for as long as it is paused. False while its lease lives,
        with no leases (one process), or when the engine cannot tell."""
        declare = getattr(self.engine, "declare_dead", None)
        if declare is None:
            return False
        try:
            dead = bool(await declare(node))
        except LadderError:
            return False
        if dead:
            self._dead[node] = True
        return dead

    def _gone(self, node: str) -> str:
        """Why a session on ``node`` is lost."""
        if self._dead.pop(node, False):
            return (
                f"node {node} holding the session stopped answering for over "
                f"{self.lease.seconds:g} s; its sessions are lost"
            )
        return f"node {node} holding the session is gone"

    def _watch(self, node: str, future: asyncio.Future[dict[str, Any]]) -> None:
        """Answer ``future`` with ``unknown_session`` if ``node`` dies while it waits (one
        watcher per node, however many requests wait on it)."""
        waiting = self._watched.get(node)
        if waiting is None:
            waiting = self._watched[node] = set()
            self.tasks.spawn(self._watch_node(node, waiting), f"ladder-watch-{node}")
        waiting.add(future)

    async def _watch_node(self, node: str, waiting: set[asyncio.Future[dict[str, Any]]]) -> None:
        try:
            while waiting:
                await asyncio.sleep(WATCH_EVERY)
                if waiting and (not await self.engine.node_alive(node) or await self._declared_dead(node)):
                    gone = {"code": "unknown_session", "reason": self._gone(node)}
                    for future in waiting:
                        if not future.done():
                            future.set_result(gone)
                    return
        except LadderError:  # (the engine could not say: the requests' own timeouts decide)
            pass
        finally:
            if self._watched.get(node) is waiting:
                del self._watched[node]

    async def ask_owner(
        self, node: str, message: dict[str, Any], timeout: float, asked: Asked | None = None
    ) -> dict[str, Any]:
        """Ask the session's owner; follow it if it says the session moved on meanwhile.

        An answer pointing back here is older than this node's own hand-over of the session,
        if it made one: that is followed instead. A node never asks itself (its own messages
        are ignored), and never asks a node twice (the pointers went round in a circle that
        holds nobody): :class:`HandedHere` says the session was handed here and did not come,
        or not yet (see :attr:`adopt_late`). ``asked``, if given, is kept up to date with
        the node asked now and the request's id there."""
        sid = str(message.get("sid", ""))
        seen: set[str] = set()
        for _ in range(MAX_HOPS):
            if node == self.engine.node_id:
                onward = self.handed_on(sid)
                if onward is None or onward in seen:
                    raise HandedHere
                node = onward
            if node in seen:
                raise lost_moving(sid)
            seen.add(node)
            rid = self.next_id()
            if asked is not None:
                asked.node, asked.rid = node, rid
            reply = await self.ask(node, message, timeout, rid)
            if "moved" not in reply:
                return reply
            node = str(reply["moved"])
        raise LadderError("unknown_session", "the session kept moving")

    async def ask_all(
        self, message: dict[str, Any], timeout: float = REQUEST_TIMEOUT
    ) -> list[dict[str, Any]]:
        """Ask every other node; return the answers that came within ``timeout``."""
        engine = self.engine
        rid = self.next_id()
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

    async def count_all(self, message: dict[str, Any]) -> int:
        """Ask every other node ``message``; the sum of the ``n`` they answered in time."""
        return sum(int(answer.get("n", 0)) for answer in await self.ask_all(message))

    def next_id(self) -> int:
        return next(self._ids)

    def serve(self, kind: str, answerer: Answerer) -> None:
        """Answer questions of ``kind`` from other nodes with ``answerer``."""
        self._answerers[kind] = answerer

    @contextlib.contextmanager
    def holding(self, message: dict[str, Any], gone: Callable[[], None]) -> Iterator[None]:
        """While a forwarded poll is held here, a ``cancel`` from its node calls ``gone``."""
        key = (str(message["from"]), int(message["id"]))
        self._serving[key] = gone
        try:
            yield
        finally:
            self._serving.pop(key, None)

    async def tell(self, node: str, message: dict[str, Any]) -> None:
        """Send ``message`` to ``node`` without waiting for an answer."""
        await self.engine.send_node(node, msgpack.packb(message))

    def on_route_lost(self) -> None:
        """A link messages travel on broke: a question or its answer may have been lost with
        it. Every pending question fails now with a retryable ``engine_unavailable`` (the
        client asks again at once, through a link that is up) instead of waiting out its
        timeout, which for a forwarded long poll is the whole hold."""
        reason = "a link between nodes broke while the request was forwarded; retry"
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(LadderError("engine_unavailable", reason))

    def _fenced(self) -> LadderError:
        return LadderError(
            "unknown_session", f"node {self.engine.node_id} was declared dead; its sessions are lost"
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
            elif "state" in message and self.adopt_late is not None:
                self.tasks.spawn(self.adopt_late(message["state"]), "ladder-cluster-adopt")
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
        elif kind in self._answerers and message.get("from") != self.engine.node_id:  # not our broadcast
            self.tasks.spawn(self._answer(message), f"ladder-cluster-{kind}")

    async def _answer(self, message: dict[str, Any]) -> None:
        reply: dict[str, Any]
        self.counters["served_for_others"] += 1
        lease = self.lease
        try:
            # Nothing is served, or handed over, by a node that may have been declared dead.
            if lease.until <= monotonic() and not await lease.confirm():
                raise self._fenced()
            reply = await self._answerers[message["k"]](message)
            if lease.until <= monotonic() and not await lease.confirm():
                raise self._fenced()
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
                await self.engine.send_node(message["from"], msgpack.packb(reply))
