"""Time-ordered ids: RFC 9562 version 7 layout, one at a time or a batch from one read of randomness."""

from __future__ import annotations

import time
import uuid

from nimbus_api.kit.ids import new_id, new_ids


def test_ids_are_version_7_and_carry_the_millisecond_they_were_made() -> None:
    before = time.time_ns() // 1_000_000
    ids = [new_id(), *new_ids(500)]
    after = time.time_ns() // 1_000_000
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids)
    assert all(before <= i.int >> 80 <= after for i in ids)
    assert len(set(ids)) == len(ids)  # 74 random bits each


def test_ids_sort_by_the_moment_they_were_made() -> None:
    first = new_ids(3)
    time.sleep(0.002)
    later = new_id()
    assert max(first) < later
    assert new_ids(0) == []
