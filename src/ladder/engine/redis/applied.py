"""What each session applied, in the Redis hash ``{prefix}:a:{sid}`` (``t`` token digest,
``i`` highest id, ``r:<id>`` kept answers, ``o`` carried keys)."""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence

import msgpack
from redis.exceptions import RedisError
from redis.typing import EncodableT, FieldT

from ..base import AppliedRecord, token_digest
from .link import RedisLink, unavailable


class RedisAppliedRecords:
    """The :class:`~ladder.engine.base.AppliedRecords` part of the Redis engine."""

    records_at_once = False

    def __init__(self, link: RedisLink) -> None:
        self._link = link

    async def record_applied(
        self,
        sid: str,
        token: str,
        *,
        done: int,
        replies: Mapping[int, bytes],
        forget: Sequence[int],
        origins: Sequence[str] | None,
        ttl: float,
    ) -> None:
        """One round trip (a pipeline of HSET, HSETNX, HDEL when answers were delivered,
        PEXPIRE) per applied message."""
        key = self._link.k("a", sid)
        fields: dict[FieldT, EncodableT] = {"t": token_digest(token), "i": done}
        for number, body in replies.items():
            fields[f"r:{number}"] = body
        if origins is not None:
            fields["o"] = msgpack.packb(list(origins))
        try:
            async with self._link.redis.pipeline(transaction=False) as pipe:
                pipe.hset(key, mapping=fields)
                pipe.hsetnx(key, "f", done)  # where the record began (again, if it was lost)
                if forget:
                    pipe.hdel(key, *(f"r:{number}" for number in forget))
                pipe.pexpire(key, max(1, int(ttl * 1000)))
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise unavailable(exc, [key]) from exc

    async def applied_record(self, sid: str, token: str) -> AppliedRecord | None:
        key = self._link.k("a", sid)
        try:
            raw: dict[bytes, bytes] = await self._link.redis.hgetall(key)  # type: ignore[assignment]
        except (RedisError, OSError) as exc:
            raise unavailable(exc, [key]) from exc
        digest = raw.get(b"t")
        if digest is None or not hmac.compare_digest(bytes(digest), token_digest(token)):
            return None
        record = AppliedRecord(done=int(raw.get(b"i", b"0")), since=int(raw.get(b"f", b"1")))
        for name, value in raw.items():
            if name.startswith(b"r:"):
                record.replies[int(name[2:])] = bytes(value)
        if b"o" in raw:
            record.origins = [str(key) for key in msgpack.unpackb(raw[b"o"], raw=False)]
        return record
