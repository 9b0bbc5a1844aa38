"""Publications that reach Redis while one is on its way go out together, as one pipeline.

Every publication awaits its own round trip (its offset is the script's answer). When many
sessions publish at once, one command per publication costs a write, a read and a pub/sub
message each, spread over as many event-loop iterations, so every node fans them out one
at a time. Here the first publication goes out at once; those made while it is on its way
wait for it and then go out as one pipeline: one write, one read, and pub/sub messages
that arrive together (one fan-out flush for all of them on every node). A lone publisher
pays nothing: it never finds one on its way. Order is the order of the calls. Several
calls made together (:meth:`PipelinedScript.many`: one session's consecutive
publications) go out as one pipeline at once, or behind the one on its way.

A publication must not run twice (see :meth:`RedisLink.open`): a failed pipeline fails
every publication in it, as separate commands would have. Only ``NOSCRIPT`` (Redis lost
its script cache, so that command did not run) is retried, after loading the script.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

_Call = tuple[Sequence[Any], Sequence[Any], "asyncio.Future[Any]"]


class PipelinedScript:
    """A Lua script called as ``await script(keys, args)``, batched while one call is out."""

    __slots__ = ("_busy", "_client", "_queue", "_script")

    def __init__(self, script: AsyncScript, client: Callable[[], aioredis.Redis]) -> None:
        self._script = script
        self._client = client
        self._queue: list[_Call] = []
        self._busy = False
        """A call or a pipeline is on its way: later calls queue behind it."""

    async def __call__(self, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        if self._busy:
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._queue.append((keys, args, future))
            return await future
        self._busy = True
        try:
            return await self._script(keys=keys, args=args, client=self._client())
        finally:
            self._next()

    async def many(self, calls: Sequence[tuple[Sequence[Any], Sequence[Any]]]) -> list[Any]:
        """Several calls, in this order, in one pipeline: each call's answer, or the
        exception it raised (one failed call does not stop the others)."""
        loop = asyncio.get_running_loop()
        batch: list[_Call] = [(keys, args, loop.create_future()) for keys, args in calls]
        if self._busy:
            self._queue += batch
        else:
            self._busy = True
            await self._send(batch)
        results: list[Any] = []
        try:
            for _, _, future in batch:
                try:
                    results.append(await future)
                except Exception as exc:
                    results.append(exc)
        except asyncio.CancelledError:  # the caller gave up: the outcomes are nobody's
            for _, _, future in batch:
                future.cancel()
            raise
        return results

    def _next(self) -> None:
        """The call on its way is answered: send what queued meanwhile, or stand idle."""
        if not self._queue:
            self._busy = False
            return
        batch, self._queue = self._queue, []
        asyncio.get_running_loop().create_task(self._send(batch), name="ladder-redis-pipeline")

    async def _send(self, batch: list[_Call]) -> None:
        try:
            results = await self._run(batch)
        except Exception as exc:  # the whole pipeline failed: so did each call in it
            results = [exc] * len(batch)
        except BaseException:
            for _, _, future in batch:
                future.cancel()
            raise
        finally:
            self._next()
        for (_, _, future), result in zip(batch, results, strict=True):
            if future.done():  # its caller gave up waiting
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def _run(self, batch: list[_Call]) -> list[Any]:
        script, client = self._script, self._client()
        if len(batch) == 1:
            keys, args, _ = batch[0]
            return [await outcome(script(keys=keys, args=args, client=client))]
        async with client.pipeline(transaction=False) as pipe:
            for keys, args, _ in batch:
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            results: list[Any] = await pipe.execute(raise_on_error=False)
        for i, result in enumerate(results):
            if isinstance(result, NoScriptError):  # not run: load the script and run it now
                keys, args, _ = batch[i]
                results[i] = await outcome(script(keys=keys, args=args, client=client))
        return results


async def outcome(call: Any) -> Any:
    """The call's answer, or the error it raised (as a pipeline reports it)."""
    try:
        return await call
    except Exception as exc:
        return exc
