"""Time-ordered UUIDs (RFC 9562 version 7).

Ids that sort by creation time keep B-tree inserts local and let cursor pagination order by the
primary key alone. Python 3.11's ``uuid`` has no ``uuid7``, so it is built here from the RFC layout.
"""

from __future__ import annotations

import os
import time
import uuid

_VERSION_AND_VARIANT = (0x7 << 76) | (0b10 << 62)
_RAND_B = (1 << 62) - 1


def _uuid7(head: int, rand: int) -> uuid.UUID:
    """``head``: the 48-bit millisecond timestamp in place, with version and variant; ``rand``: 80 random bits."""
    return uuid.UUID(int=head | (((rand >> 62) & 0xFFF) << 64) | (rand & _RAND_B))  # rand_a 12 bits, rand_b 62


def _head() -> int:
    return (((time.time_ns() // 1_000_000) & ((1 << 48) - 1)) << 80) | _VERSION_AND_VARIANT


def new_id() -> uuid.UUID:
    return _uuid7(_head(), int.from_bytes(os.urandom(10), "big"))


def new_ids(count: int) -> list[uuid.UUID]:
    """``count`` ids from one read of the system's randomness (a batch insert's primary keys)."""
    head, pool = _head(), os.urandom(10 * count)
    return [_uuid7(head, int.from_bytes(pool[10 * i : 10 * i + 10], "big")) for i in range(count)]
