"""When a failed delivery is tried again, and when it is given up.

The schedule (Svix's, which Standard Webhooks senders share): the first attempt at once, then retries
5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h and 24 h after the attempt before: ten attempts over
about three days; after the tenth failure the delivery is ``failed``. Each delay gets up to ±10 %
jitter (never for the 5 s retry's lower bound below 4 s), so the retries of a burst that failed
together do not all land in the same second.

A ``Retry-After`` on 429, 502, 503 or 504 (seconds or an HTTP date) can only lengthen the next delay,
up to ``NIMBUS_WEBHOOK_RETRY_AFTER_CAP_SECONDS``: a receiver asking for 120 s gets at least 120 s.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

RETRY_DELAYS: tuple[timedelta, ...] = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=14),
    timedelta(hours=20),
    timedelta(hours=24),
)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
JITTER = 0.10
RETRY_AFTER_STATUSES = frozenset({429, 502, 503, 504})


def retry_delay(attempts_made: int, rng: random.Random | None = None) -> timedelta | None:
    """The wait after the ``attempts_made``-th attempt failed, or None when that was the last one."""
    if attempts_made < 1 or attempts_made >= MAX_ATTEMPTS:
        return None
    base = RETRY_DELAYS[attempts_made - 1]
    factor = 1.0 + (rng or random).uniform(-JITTER, JITTER)
    return base * factor


def parse_retry_after(value: str | None, now: datetime) -> timedelta | None:
    """``Retry-After: 120`` or ``Retry-After: Wed, 02 Dec 2026 20:00:00 GMT``; None when unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return timedelta(seconds=int(value[:9]))
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        return None
    return max(moment - now, timedelta(0))


def next_delay(
    attempts_made: int,
    *,
    status_code: int | None,
    retry_after: timedelta | None,
    cap: timedelta,
    rng: random.Random | None = None,
) -> timedelta | None:
    """The schedule's delay, lengthened by an honoured ``Retry-After``; None when no retry is left."""
    delay = retry_delay(attempts_made, rng)
    if delay is None:
        return None
    if retry_after is not None and status_code in RETRY_AFTER_STATUSES:
        delay = max(delay, min(retry_after, cap))
    return delay
