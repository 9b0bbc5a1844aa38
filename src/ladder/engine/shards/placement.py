"""Where a key lives among several shards: rendezvous (highest random weight) hashing.

Each shard scores every key with a hash of (shard name, key); the highest score holds it.
The choice depends only on the shard names, not their order or count, so adding a shard
moves only the keys it now wins (about 1/N of them) and removing one moves only its own.
Pure: no I/O, the same answer in every process.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Generic, TypeVar

__all__ = ["Placement", "score"]

T = TypeVar("T")


def score(shard: str, key: str) -> int:
    """The weight of ``key`` on ``shard`` (stable across processes and Python versions)."""
    digest = hashlib.blake2b(f"{shard}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


class Placement(Generic[T]):
    """Shards by name; :meth:`of` picks the one holding a key, :meth:`ranked` all of them in
    order of preference (the holder first, then who would hold it were the holder gone)."""

    def __init__(self, shards: Sequence[tuple[str, T]]) -> None:
        if not shards:
            raise ValueError("at least one shard is needed")
        names = [name for name, _ in shards]
        if len(set(names)) != len(names):
            raise ValueError(f"shard names must differ: {names}")
        self.shards = list(shards)
        self._cache: dict[str, T] = {}

    def __len__(self) -> int:
        return len(self.shards)

    def of(self, key: str) -> T:
        """The shard that holds ``key``."""
        found = self._cache.get(key)
        if found is None:
            if len(self._cache) >= 65_536:
                self._cache.clear()  # bounded: a cache, not a registry
            found = self._cache[key] = max(self.shards, key=lambda shard: score(shard[0], key))[1]
        return found

    def name_of(self, key: str) -> str:
        """The name of the shard that holds ``key``."""
        return max(self.shards, key=lambda shard: score(shard[0], key))[0]

    def ranked(self, key: str) -> list[T]:
        """Every shard, best first for ``key``."""
        return [shard for _, shard in sorted(self.shards, key=lambda s: score(s[0], key), reverse=True)]
