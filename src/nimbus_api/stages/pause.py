"""The warmup pause: why an inbox's warmup is paused, as data the API and the warmup engine share.

Warmup pauses by itself while ``bounce_rate_7d`` or ``complaint_rate_7d`` is over its threshold
(``NIMBUS_WARMUP_MAX_BOUNCE_RATE_7D``, ``NIMBUS_WARMUP_MAX_COMPLAINT_RATE_7D``, percent) and resumes
when both are back at or under it: the rates are 7-day windows (``inbox.rates``), so a pause lasts until
the bounces or complaints that caused it leave the window, or enough good sends dilute them. Nothing is
stored: the pause is a function of the rates, so it can never be stuck on.

While paused the inbox does not graduate: its stage is 0 (``stages.stages.get_inbox_stage``).
A cooldown (``stages.cooldown``) is a separate, timed stop; ``warmup_may_send`` combines the three:
opted in, not paused, not cooling down.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from nimbus_api.stages.stages import RateThresholds

PausedRate = Literal["bounce_rate_7d", "complaint_rate_7d"]


class PauseInputs(Protocol):
    @property
    def bounce_rate_7d(self) -> float: ...
    @property
    def complaint_rate_7d(self) -> float: ...


class WarmupInputs(PauseInputs, Protocol):
    @property
    def warmup_enabled(self) -> bool: ...
    @property
    def cooldown_until(self) -> datetime | None: ...


@dataclass(frozen=True)
class PauseReason:
    """One rate over its threshold: ``value`` and ``threshold`` in percent."""

    rate: PausedRate
    value: float
    threshold: float


def warmup_pause_reasons(account: PauseInputs, settings: RateThresholds) -> list[PauseReason]:
    """Why warmup is paused (empty: it is not): each rate over its threshold, bounce rate first."""
    reasons = []
    if account.bounce_rate_7d > settings.warmup_max_bounce_rate_7d:
        reasons.append(PauseReason("bounce_rate_7d", account.bounce_rate_7d, settings.warmup_max_bounce_rate_7d))
    if account.complaint_rate_7d > settings.warmup_max_complaint_rate_7d:
        reasons.append(
            PauseReason("complaint_rate_7d", account.complaint_rate_7d, settings.warmup_max_complaint_rate_7d)
        )
    return reasons


def in_cooldown(account: WarmupInputs, now: datetime) -> bool:
    return account.cooldown_until is not None and account.cooldown_until > now


def warmup_may_send(account: WarmupInputs, settings: RateThresholds, now: datetime) -> bool:
    """Whether the warmup engine may send warmup mail from the inbox now."""
    return account.warmup_enabled and not warmup_pause_reasons(account, settings) and not in_cooldown(account, now)
