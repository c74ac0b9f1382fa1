"""The eligibility function, one rule at a time (pure: plain objects, a fixed clock)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest

from nimbus_api.campaigns.eligibility import REASONS, ineligibility_reason

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Inbox:
    is_active: bool = True
    disabled_at: datetime | None = None
    overall_score: float = 80.0
    current_stage: int = 5  # fully warmed: the stage does not cap daily_send_limit
    cooldown_until: datetime | None = None
    campaign_types: list[str] = field(default_factory=lambda: ["cold", "nurture"])
    daily_send_limit: int = 100


@dataclass(frozen=True)
class Usage:
    sends: int


@dataclass(frozen=True)
class Camp:
    type: str = "cold"
    min_health_score: float = 70.0


def reason(
    inbox: Inbox,
    *,
    campaign: Camp | None = None,
    domain_paused: bool = False,
    usage: Usage | None = None,
    disabled_in_campaign: bool = False,
) -> str | None:
    return ineligibility_reason(
        inbox,
        domain_paused=domain_paused,
        usage=usage,
        campaign=campaign or Camp(),
        now=NOW,
        disabled_in_campaign=disabled_in_campaign,
    )


def test_an_eligible_inbox_has_no_reason() -> None:
    assert reason(Inbox()) is None
    assert reason(Inbox(), usage=Usage(sends=99)) is None


@pytest.mark.parametrize(
    ("inbox", "expected"),
    [
        (Inbox(is_active=False), "disabled"),
        (Inbox(disabled_at=NOW - timedelta(days=1)), "disabled"),
        (Inbox(overall_score=69.9), "below_min_health"),
        (Inbox(current_stage=2), "stage"),
        (Inbox(cooldown_until=NOW + timedelta(seconds=1)), "cooldown"),
        (Inbox(campaign_types=["nurture"]), "restricted"),
    ],
)
def test_each_rule(inbox: Inbox, expected: str) -> None:
    assert reason(inbox) == expected


def test_health_threshold_is_the_campaigns() -> None:
    assert reason(Inbox(overall_score=50), campaign=Camp(min_health_score=50)) is None
    assert reason(Inbox(overall_score=50), campaign=Camp(min_health_score=50.1)) == "below_min_health"


def test_stage_minimum_depends_on_campaign_type() -> None:
    assert reason(Inbox(current_stage=2), campaign=Camp(type="nurture")) is None
    assert reason(Inbox(current_stage=1), campaign=Camp(type="nurture")) == "stage"
    assert reason(Inbox(current_stage=3), campaign=Camp(type="cold")) is None


def test_cooldown_over_is_no_reason() -> None:
    assert reason(Inbox(cooldown_until=NOW)) is None
    assert reason(Inbox(cooldown_until=NOW - timedelta(minutes=1))) is None


def test_domain_paused() -> None:
    assert reason(Inbox(), domain_paused=True) == "domain_paused"


def test_budget_exhausted_at_the_daily_limit() -> None:
    assert reason(Inbox(daily_send_limit=10), usage=Usage(sends=10)) == "budget_exhausted"
    assert reason(Inbox(daily_send_limit=10), usage=Usage(sends=11)) == "budget_exhausted"
    assert reason(Inbox(daily_send_limit=10), usage=None) is None


def test_first_reason_in_documented_order() -> None:
    """An inbox with every problem at once: fixing them one by one shows each reason in turn."""
    inbox = Inbox(
        is_active=False,
        overall_score=0,
        current_stage=0,
        cooldown_until=NOW + timedelta(hours=1),
        campaign_types=["nurture"],
        daily_send_limit=1,
    )
    fixes: list[dict[str, object]] = [
        {"is_active": True},
        {"overall_score": 90.0},
        {"current_stage": 5},
        {"cooldown_until": None},
        {"campaign_types": ["cold"]},
    ]
    seen = [reason(inbox, domain_paused=True, usage=Usage(sends=1), disabled_in_campaign=True)]
    inbox = replace(inbox, is_active=True)
    seen.append(reason(inbox, domain_paused=True, usage=Usage(sends=1), disabled_in_campaign=True))
    for fix in fixes[1:]:
        seen.append(reason(inbox, domain_paused=True, usage=Usage(sends=1)))
        inbox = replace(inbox, **fix)  # type: ignore[arg-type]
    seen.append(reason(inbox, domain_paused=True, usage=Usage(sends=1)))
    seen.append(reason(inbox, domain_paused=False, usage=Usage(sends=1)))
    assert seen == list(REASONS)
    assert reason(inbox, usage=Usage(sends=0)) is None
