"""Whether an inbox may take part in the warmup exchange now: sends nothing, answers nothing otherwise (it
may still be written to).

The pause rule itself is the stages package's (``stages.pause``: paused while the 7-day bounce or
complaint rate, in percent, is over ``NIMBUS_WARMUP_MAX_BOUNCE_RATE_7D`` / ``..._COMPLAINT_RATE_7D``, and
nothing is sent during a cooldown), so the exchange and ``GET /v1/email-accounts/{id}/warmup`` can never
disagree about why an inbox is quiet.
"""

from __future__ import annotations

from datetime import datetime

from nimbus_api.kit.db import utcnow
from nimbus_api.models import EmailAccount
from nimbus_api.stages.pause import warmup_may_send
from nimbus_api.stages.stages import RateThresholds


def can_send(account: EmailAccount, thresholds: RateThresholds, now: datetime | None = None) -> bool:
    """``thresholds``: the two rates in percent (``Settings`` is one, ``stages.stages.Thresholds`` another).
    In the exchange and allowed to send now: opted in, active, not disabled, has a mailbox to be
    answered in, warmup not paused, not in cooldown."""
    return (
        account.is_active
        and account.disabled_at is None
        and account.imap_host is not None
        and warmup_may_send(account, thresholds, now or utcnow())
    )
