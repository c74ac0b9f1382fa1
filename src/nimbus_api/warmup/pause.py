"""Whether an inbox's warmup is paused: sends nothing, answers nothing (it may still be written to).

One place, one function, so the rule can be replaced as a whole: paused while the inbox's 7-day bounce or
complaint rate is over its threshold (``NIMBUS_WARMUP_PAUSE_BOUNCE_RATE`` / ``..._COMPLAINT_RATE``).
"""

from __future__ import annotations

from dataclasses import dataclass

from nimbus_api.config import Settings
from nimbus_api.models import EmailAccount


@dataclass(frozen=True)
class PauseThresholds:
    bounce_rate: float
    complaint_rate: float

    @classmethod
    def of(cls, settings: Settings) -> PauseThresholds:
        return cls(settings.warmup_pause_bounce_rate, settings.warmup_pause_complaint_rate)


def _paused(account: EmailAccount, thresholds: PauseThresholds) -> bool:
    return account.bounce_rate_7d > thresholds.bounce_rate or account.complaint_rate_7d > thresholds.complaint_rate


def can_send(account: EmailAccount, thresholds: PauseThresholds) -> bool:
    """In the exchange and allowed to send now: opted in, active, not disabled, warmup not paused."""
    return (
        account.warmup_enabled
        and account.is_active
        and account.disabled_at is None
        and account.imap_host is not None
        and not _paused(account, thresholds)
    )
