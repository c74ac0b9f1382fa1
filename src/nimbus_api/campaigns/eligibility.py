"""Whether one inbox of a campaign's pool may send for it now, and if not, why.

The one function here is pure (no database, no clock: ``now`` is an argument) so the API (``throttled``,
the pool list, stats) and the sending side can share it. It mirrors the rotation's pick
(``sending.rotation``), checking in this order and answering the first reason that applies:

=====================  ==========================================================================
``disabled``           the person paused the inbox (``is_active`` false) or the platform disabled it
``bounce_rate``        the bounce guard took it out of this campaign (``campaigns.bounce_guard``)
``below_min_health``   ``overall_score`` below the campaign's ``min_health_score``
``stage``              ``current_stage`` below 3 for a cold campaign, below 2 for a nurture one
``cooldown``           ``cooldown_until`` is in the future
``restricted``         the campaign's type is not among the inbox's ``campaign_types``
``domain_paused``      the inbox's sending domain is paused
``budget_exhausted``   today's (UTC) sends reached the effective daily limit (``stages.limits``)
=====================  ==========================================================================

Two rules of the pick are per send, not per inbox, and are left out: ``daily_new_contacts_limit``
(only a step-1 send counts against it) and ``min_send_interval_seconds`` (a pacing gap of seconds).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal, Protocol

from nimbus_api.stages.limits import effective_limit

IneligibleReason = Literal[
    "disabled",
    "bounce_rate",
    "below_min_health",
    "stage",
    "cooldown",
    "restricted",
    "domain_paused",
    "budget_exhausted",
]
REASONS: tuple[IneligibleReason, ...] = (
    "disabled",
    "bounce_rate",
    "below_min_health",
    "stage",
    "cooldown",
    "restricted",
    "domain_paused",
    "budget_exhausted",
)
MIN_STAGE = {"cold": 3, "nurture": 2}


class InboxState(Protocol):
    """The fields of ``models.EmailAccount`` the rules read."""

    @property
    def is_active(self) -> bool: ...
    @property
    def disabled_at(self) -> datetime | None: ...
    @property
    def overall_score(self) -> float: ...
    @property
    def current_stage(self) -> int: ...
    @property
    def cooldown_until(self) -> datetime | None: ...
    @property
    def campaign_types(self) -> Sequence[str]: ...
    @property
    def daily_send_limit(self) -> int: ...


class DailyUsage(Protocol):
    """``models.AccountDailyUsage`` of today (UTC)."""

    @property
    def sends(self) -> int: ...


class CampaignRules(Protocol):
    """The fields of ``models.Campaign`` the rules read."""

    @property
    def type(self) -> str: ...
    @property
    def min_health_score(self) -> float: ...


def ineligibility_reason(
    account: InboxState,
    *,
    domain_paused: bool,
    usage: DailyUsage | None,
    campaign: CampaignRules,
    now: datetime,
    disabled_in_campaign: bool = False,
) -> IneligibleReason | None:
    """The first reason ``account`` cannot send for ``campaign`` at ``now``, or None when it can.

    ``usage`` is the account's usage row of ``now``'s UTC day (None: nothing sent today)."""
    if not account.is_active or account.disabled_at is not None:
        return "disabled"
    if disabled_in_campaign:
        return "bounce_rate"
    if account.overall_score < campaign.min_health_score:
        return "below_min_health"
    if account.current_stage < MIN_STAGE[campaign.type]:
        return "stage"
    if account.cooldown_until is not None and account.cooldown_until > now:
        return "cooldown"
    if campaign.type not in account.campaign_types:
        return "restricted"
    if domain_paused:
        return "domain_paused"
    if (usage.sends if usage is not None else 0) >= effective_limit(account):
        return "budget_exhausted"
    return None


__all__ = [
    "MIN_STAGE",
    "REASONS",
    "CampaignRules",
    "DailyUsage",
    "InboxState",
    "IneligibleReason",
    "ineligibility_reason",
]
