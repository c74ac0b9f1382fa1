"""Time-ordered UUIDs (RFC 9562 version 7).

Ids that sort by creation time keep B-tree inserts local and let cursor pagination order by the
primary key alone. Python 3.11's ``uuid`` has no ``uuid7``, so it is built here from the RFC layout.
"""

from __future__ import annotations

import os
import time
import uuid


def new_id() -> uuid.UUID:
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version
    value |= ((rand >> 62) & 0xFFF) << 64  # rand_a, 12 bits
    value |= 0b10 << 62  # variant
    value |= rand & ((1 << 62) - 1)  # rand_b, 62 bits
    return uuid.UUID(int=value)
