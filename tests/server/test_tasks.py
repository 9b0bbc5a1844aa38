"""Work run at once (``Tasks.run_now``): no task unless it waits, and then one that goes on
from where it stopped, with whatever the task is sent or thrown passed on to it."""

from __future__ import annotations

import asyncio
from typing import Any

from ladder.protocol.frames import Subscribe
from ladder.server.hub import internals
from ladder.server.tasks import Tasks
from tests.server.harness import Peer, make_hub


async def test_work_that_never_waits_runs_in_the_callers_turn_with_no_task() -> None:
    tasks, seen = Tasks(), []

    async def work() -> None:
        seen.append((tasks.now, asyncio.current_task()))

    before = asyncio.all_tasks()
    tasks.run_now(work(), "t")
    assert seen == [(True, before and asyncio.current_task())]  # (this test's own task)
    assert asyncio.all_tasks() == before and tasks.now is False


async def test_work_that_waits_goes_on_in_a_task_from_where_it_stopped() -> None:
    tasks, seen = Tasks(), []
    gate: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def work() -> None:
        seen.append("before")
        seen.append(await gate)
        seen.append(asyncio.current_task() is not None)

    tasks.run_now(work(), "t")
    assert seen == ["before"] and tasks.now is False
    gate.set_result(7)
    await tasks.wait(5)
    assert seen == ["before", 7, True]


async def test_a_cancelled_continuation_cancels_the_work_where_it_waits() -> None:
    tasks, seen = Tasks(), []
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def work() -> None:
        try:
            await gate
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    tasks.run_now(work(), "t")
    (continuation,) = [t for t in asyncio.all_tasks() if t.get_name() == "t"]
    continuation.cancel()
    await asyncio.wait([continuation], timeout=5)
    assert seen == ["cancelled"] and continuation.cancelled() and not gate.done()


async def test_a_subscription_applied_with_a_batch_at_once_checks_permissions_in_a_task() -> None:
    """What the app runs for a frame other than a plain handler's (here ``permissions``) never
    runs outside a task, even when a batch is applied at once."""
    checked: list[bool] = []

    async def permissions(identity: Any, action: str, channel: str, options: Any) -> bool:
        async with asyncio.timeout(5):  # needs a current task
            await asyncio.sleep(0)
        checked.append(asyncio.current_task() is not None)
        return True

    hub = make_hub(permissions=permissions)
    peer = await Peer.open(hub)
    node = internals(hub)
    node.tasks.run_now(node.inbound.receive(peer.session, peer.att, [Subscribe(i=1, ch="room")]), "t")
    await node.tasks.wait(5)
    assert checked == [True]
    assert [(f["t"], f["re"]) for f in peer.read() if "s" in f] == [("reply", 1)]


async def test_a_stop_waits_for_tasks_started_while_it_waits() -> None:
    """A stopping node waits for its tasks before its engine goes: a task started meanwhile
    (another node's question, its answer) was not waited for, and its answer was lost with
    the engine (the asking node then waited out its timeout)."""
    tasks, done = Tasks(), []
    answered = asyncio.Event()

    async def answer() -> None:
        await asyncio.sleep(0.05)
        done.append("answer")

    async def first() -> None:
        await asyncio.sleep(0.01)
        tasks.spawn(answer(), "answer")  # (a question heard while the stop waits)
        done.append("first")
        answered.set()

    tasks.spawn(first(), "first")
    await tasks.wait(2.0)
    assert answered.is_set() and done == ["first", "answer"]
