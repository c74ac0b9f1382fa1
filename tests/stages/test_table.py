"""The stage table as a pure function: thresholds, health, the ramp of the daily limit, progress."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from nimbus_api.config import Settings
from nimbus_api.stages.limits import effective_daily_limit, effective_limit, stage_limit
from nimbus_api.stages.pause import PauseReason, warmup_may_send, warmup_pause_reasons
from nimbus_api.stages.stages import STAGES, Thresholds, get_inbox_stage, warmup_progress

T = Thresholds(warmup_max_bounce_rate_7d=3.0, warmup_max_complaint_rate_7d=0.3)


@dataclass
class Inbox:
    warmup_sent_total: int = 0
    overall_score: float = 50.0
    bounce_rate_7d: float = 0.0
    complaint_rate_7d: float = 0.0
    warmup_enabled: bool = True
    cooldown_until: object = None
    daily_send_limit: int = 100
    current_stage: int = 0


@pytest.mark.parametrize(
    ("inbox", "stage"),
    [
        (Inbox(), 0),
        (Inbox(warmup_sent_total=19, overall_score=99), 0),  # one send short of stage 1
        (Inbox(warmup_sent_total=20, overall_score=40), 1),  # both thresholds met exactly
        (Inbox(warmup_sent_total=20, overall_score=39.99), 0),  # the score floor of stage 1
        (Inbox(warmup_sent_total=80, overall_score=45), 2),
        (Inbox(warmup_sent_total=199, overall_score=90), 2),
        (Inbox(warmup_sent_total=200, overall_score=50), 3),  # the cold-outreach gate
        (Inbox(warmup_sent_total=10_000, overall_score=50), 3),  # sends alone do not climb past the floor
        (Inbox(warmup_sent_total=400, overall_score=60), 4),
        (Inbox(warmup_sent_total=699, overall_score=100), 4),
        (Inbox(warmup_sent_total=700, overall_score=70), 5),
        (Inbox(warmup_sent_total=700, overall_score=69.9), 4),  # demoted by score: the highest stage still met
        (Inbox(warmup_sent_total=700, overall_score=55), 3),
        (Inbox(warmup_sent_total=5000, overall_score=95, bounce_rate_7d=3.0), 5),  # at the threshold: healthy
        (Inbox(warmup_sent_total=5000, overall_score=95, bounce_rate_7d=3.01), 0),  # over it: paused, stage 0
        (Inbox(warmup_sent_total=5000, overall_score=95, complaint_rate_7d=0.31), 0),
        (Inbox(warmup_sent_total=5000, overall_score=95, complaint_rate_7d=0.3), 5),
    ],
)
def test_the_stage_comes_from_sends_score_and_health(inbox: Inbox, stage: int) -> None:
    assert get_inbox_stage(inbox, T) == stage


def test_the_table_is_documented_as_it_is() -> None:
    rows = [(s.stage, s.min_warmup_sent, s.min_overall_score, s.daily_limit) for s in STAGES]
    assert rows == [
        (0, 0, 0, 5),
        (1, 20, 40, 10),
        (2, 80, 45, 20),
        (3, 200, 50, 30),
        (4, 400, 60, 50),
        (5, 700, 70, None),
    ]


def test_thresholds_come_from_settings() -> None:
    strict = Settings(warmup_max_bounce_rate_7d=1.0, warmup_max_complaint_rate_7d=0.1)
    inbox = Inbox(warmup_sent_total=700, overall_score=90, bounce_rate_7d=2.0)
    assert get_inbox_stage(inbox, strict) == 0
    assert get_inbox_stage(inbox, Settings()) == 5  # the default threshold is 3 %


def test_the_daily_limit_ramps_with_the_stage_up_to_the_ceiling() -> None:
    assert [stage_limit(s) for s in range(6)] == [5, 10, 20, 30, 50, None]
    assert [effective_daily_limit(40, s) for s in range(6)] == [5, 10, 20, 30, 40, 40]  # Google Workspace
    assert [effective_daily_limit(20, s) for s in range(6)] == [5, 10, 20, 20, 20, 20]  # consumer Gmail
    assert effective_daily_limit(3, 4) == 3  # a person's low ceiling always wins
    assert effective_limit(Inbox(daily_send_limit=1000, current_stage=5)) == 1000


def test_pause_reasons_name_each_rate_over_its_threshold() -> None:
    assert warmup_pause_reasons(Inbox(bounce_rate_7d=3.0, complaint_rate_7d=0.3), T) == []
    assert warmup_pause_reasons(Inbox(bounce_rate_7d=7.5, complaint_rate_7d=0.5), T) == [
        PauseReason("bounce_rate_7d", 7.5, 3.0),
        PauseReason("complaint_rate_7d", 0.5, 0.3),
    ]


def test_warmup_sends_only_when_opted_in_not_paused_and_not_cooling_down() -> None:
    from datetime import UTC, datetime, timedelta

    now = datetime(2026, 12, 4, 12, tzinfo=UTC)
    assert warmup_may_send(Inbox(), T, now)
    assert not warmup_may_send(Inbox(warmup_enabled=False), T, now)
    assert not warmup_may_send(Inbox(bounce_rate_7d=9), T, now)
    assert not warmup_may_send(Inbox(cooldown_until=now + timedelta(minutes=1)), T, now)
    assert warmup_may_send(Inbox(cooldown_until=now), T, now)  # a cooldown ends at its time


@pytest.mark.parametrize(
    ("stage", "sent", "progress"),
    [
        (0, 0, 0.0),
        (0, 10, 10.0),
        (1, 20, 20.0),
        (1, 50, 30.0),
        (2, 500, 60.0),
        (3, 0, 60.0),
        (4, 550, 90.0),
        (5, 0, 100.0),
    ],
)
def test_progress_is_twenty_points_a_stage_plus_the_way_to_the_next(stage: int, sent: int, progress: float) -> None:
    assert warmup_progress(stage, sent) == pytest.approx(progress)
