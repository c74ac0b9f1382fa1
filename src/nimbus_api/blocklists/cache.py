"""A small in-process cache of blocklist answers, each kept for its own DNS TTL.

In-process and not Redis: an answer is a few bytes that one DNS round trip (to a nearby resolver)
fetches again; a Redis round trip would cost about as much as the miss it saves. What the cache is for
is not asking twice within a TTL what many domains share (every Google Workspace domain sends from the
same relays, the nightly run checks them all) and staying within the lists' free-use limits; one copy
per process keeps that within a factor of the number of processes. Unknown answers (timeouts,
refusals) are never cached: the next check asks again. Bounded in size; the soonest-expiring entries go
first when full.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class _Entry(Generic[T]):
    value: T
    expires: float


class TtlCache(Generic[T]):
    def __init__(self, *, max_entries: int = 50_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: dict[str, _Entry[T]] = {}
        self._max = max_entries
        self._clock = clock

    def get(self, key: str) -> T | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires <= self._clock():
            del self._entries[key]
            return None
        return entry.value

    def put(self, key: str, value: T, ttl: float) -> None:
        if ttl <= 0:
            return
        if len(self._entries) >= self._max and key not in self._entries:
            self._evict()
        self._entries[key] = _Entry(value, self._clock() + ttl)

    def _evict(self) -> None:
        now = self._clock()
        for key in [k for k, e in self._entries.items() if e.expires <= now]:
            del self._entries[key]
        if len(self._entries) >= self._max:
            soonest = sorted(self._entries, key=lambda k: self._entries[k].expires)[: max(1, self._max // 10)]
            for key in soonest:
                del self._entries[key]

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


__all__ = ["TtlCache"]
