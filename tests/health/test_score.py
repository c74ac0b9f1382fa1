"""The score formula (``health.score``), table-tested: each component's score at and around its thresholds,
each component's effect on the overall score, the neutral 50 of a new inbox, and the bands."""

from __future__ import annotations

from dataclasses import replace

import pytest

from nimbus_api.health import score
from nimbus_api.health.score import BY_KEY, COMPONENTS, Inputs, band_for, band_of, compute
from nimbus_api.sending.outcomes import TABLE as OUTCOMES
from nimbus_api.validation.service import AUTH_FAILURE_CODES

NEW = Inputs()


def component(x: Inputs, key: str) -> score.Scored:
    return next(s for s in compute(x).components if s.key == key)


def test_a_new_inbox_with_no_data_scores_exactly_50_in_every_component() -> None:
    health = compute(NEW)
    assert health.overall == 50.0 and health.reputation == 50.0
    assert health.band == "watch"
    assert [s.score for s in health.components] == [50.0] * len(COMPONENTS)
    unjudged = {s.key for s in health.components if s.value is None}
    assert unjudged == {"bounce_rate", "complaint_rate", "reply_rate", "send_success", "connection_success"}


def test_the_weights_sum_to_100_and_reputation_is_what_receivers_think() -> None:
    assert score.TOTAL_WEIGHT == 100
    assert {c.key for c in COMPONENTS if c.reputation} == {"bounce_rate", "complaint_rate", "blocklist", "reply_rate"}
    assert score.REPUTATION_WEIGHT == 60


CASES = [
    # (component, inputs, expected score)
    ("bounce_rate", Inputs(sends=100), 100.0),
    ("bounce_rate", Inputs(sends=100, bounces=1), 100.0),  # 1 %: full score
    ("bounce_rate", Inputs(sends=100, bounces=3), 50.0),
    ("bounce_rate", Inputs(sends=100, bounces=5), 0.0),  # 5 %: nothing
    ("bounce_rate", Inputs(sends=100, bounces=40), 0.0),
    ("bounce_rate", Inputs(sends=19, bounces=19), 50.0),  # below the sample of 20: neutral
    ("bounce_rate", Inputs(sends=20, bounces=1), 0.0),  # at the sample: 5 % counts
    ("bounce_rate", Inputs(sends=0, bounces=2), 50.0),  # bounces of sends outside the window: no rate
    ("complaint_rate", Inputs(sends=1000), 100.0),
    ("complaint_rate", Inputs(sends=1000, complaints=1), 80.0),  # 0.1 %
    ("complaint_rate", Inputs(sends=1000, complaints=3), 0.0),  # 0.3 %
    ("complaint_rate", Inputs(sends=49, complaints=5), 50.0),
    ("reply_rate", Inputs(accepted=100), 20.0),  # no reply at all after 100 sends: the floor
    ("reply_rate", Inputs(accepted=100, replies=3), 100.0),
    ("reply_rate", Inputs(accepted=100, replies=1), 20.0 + 80.0 / 3),
    ("reply_rate", Inputs(accepted=49, replies=0), 50.0),
    ("send_success", Inputs(accepted=98, failed_attempts=2), 100.0),
    ("send_success", Inputs(accepted=84, failed_attempts=16), 50.0),
    ("send_success", Inputs(accepted=70, failed_attempts=30), 0.0),
    ("send_success", Inputs(accepted=0, failed_attempts=9), 50.0),  # 9 attempts: below the sample of 10
    ("send_success", Inputs(accepted=0, failed_attempts=10), 0.0),
    ("connection_success", Inputs(accepted=100), 100.0),
    ("connection_success", Inputs(accepted=90, failed_attempts=10, connection_failures=10), 100.0 * 10 / 19),
    ("connection_success", Inputs(accepted=80, failed_attempts=20, connection_failures=20), 0.0),
    ("connection_success", Inputs(accepted=90, failed_attempts=10, connection_failures=0), 100.0),
    ("auth_failures", Inputs(accepted=100), 100.0),
    ("auth_failures", Inputs(accepted=99, failed_attempts=1, auth_failures=1), 100.0 * 2 / 3),
    ("auth_failures", Inputs(accepted=97, failed_attempts=3, auth_failures=3), 0.0),
    ("auth_failures", Inputs(), 50.0),  # a clean record proves nothing yet
    ("auth_failures", Inputs(failed_attempts=1, auth_failures=1), 50.0),  # min(50, 66.7)
    ("auth_failures", Inputs(failed_attempts=2, auth_failures=2), 100.0 / 3),  # failures count at once
    ("imap_sync", Inputs(sync_status=None), 50.0),
    ("imap_sync", Inputs(sync_status="pending"), 50.0),
    ("imap_sync", Inputs(sync_status="ok"), 100.0),
    ("imap_sync", Inputs(sync_status="failing", sync_failures=1), 40.0),
    ("imap_sync", Inputs(sync_status="failing", sync_failures=5), 0.0),
    ("imap_sync", Inputs(sync_status="failing", sync_failures=9), 0.0),
    ("dns", Inputs(dns_status="pass"), 100.0),
    ("dns", Inputs(dns_status="warn"), 60.0),
    ("dns", Inputs(dns_status="fail"), 0.0),
    ("dns", Inputs(dns_status="unknown"), 50.0),
    ("dns", Inputs(dns_status="something-new"), 50.0),
    ("blocklist", Inputs(blocklist_status="clean"), 100.0),
    ("blocklist", Inputs(blocklist_status="listed"), 0.0),
    ("blocklist", Inputs(blocklist_status="unknown"), 50.0),
    ("warmup", Inputs(warmup_progress=0), 50.0),
    ("warmup", Inputs(warmup_progress=50), 75.0),
    ("warmup", Inputs(warmup_progress=100), 100.0),
    ("warmup", Inputs(warmup_progress=140), 100.0),
    ("warmup", Inputs(warmup_progress=-5), 50.0),
]


@pytest.mark.parametrize(("key", "inputs", "expected"), CASES, ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(CASES)])
def test_each_component_scores_by_its_table(key: str, inputs: Inputs, expected: float) -> None:
    assert component(inputs, key).score == pytest.approx(expected, abs=1e-9)


BEST = Inputs(
    sends=1000,
    accepted=1000,
    replies=100,
    sync_status="ok",
    dns_status="pass",
    blocklist_status="clean",
    warmup_progress=100,
)


@pytest.mark.parametrize("key", [c.key for c in COMPONENTS])
def test_each_component_moves_the_overall_score_by_its_weight(key: str) -> None:
    """One component at 100 and every other neutral: overall = 50 + weight / 2 (weights sum to 100)."""
    best = {s.key: s.score for s in compute(BEST).components}
    assert best == dict.fromkeys(best, 100.0)
    # only this component's inputs taken from BEST (the others stay those of a new inbox)
    fields = {
        "bounce_rate": {"sends": 1000},
        "complaint_rate": {"sends": 1000},
        "reply_rate": {"accepted": 1000, "replies": 100},
        "send_success": {"accepted": 1000},
        "connection_success": {"accepted": 1000},
        "auth_failures": {"accepted": 1000},
        "imap_sync": {"sync_status": "ok"},
        "dns": {"dns_status": "pass"},
        "blocklist": {"blocklist_status": "clean"},
        "warmup": {"warmup_progress": 100},
    }[key]
    one = compute(replace(NEW, **fields))  # type: ignore[arg-type]
    moved = {s.key for s in one.components if s.score != 50.0}
    c = BY_KEY[key]
    if key in ("bounce_rate", "complaint_rate"):  # the same denominator: both move, and the reply rate stays
        assert moved == {"bounce_rate", "complaint_rate"}
        assert one.overall == pytest.approx(50 + (20 + 15) / 2)
    elif key in ("send_success", "connection_success", "auth_failures", "reply_rate"):
        assert key in moved  # ``accepted`` feeds several components
    else:
        assert moved == {key}
        assert one.overall == pytest.approx(50 + c.weight / 2)
        expected_reputation = 50 + c.weight / 2 * 100 / 60 if c.reputation else 50.0
        assert one.reputation == pytest.approx(expected_reputation)


def test_the_worst_inbox_scores_0_and_is_blocked() -> None:
    worst = Inputs(
        sends=100,
        bounces=50,
        complaints=10,
        accepted=50,
        failed_attempts=50,
        connection_failures=40,
        auth_failures=5,
        replies=0,
        sync_status="failing",
        sync_failures=9,
        dns_status="fail",
        blocklist_status="listed",
        warmup_progress=0,
    )
    health = compute(worst)
    by_key = {s.key: s.score for s in health.components}
    assert by_key.pop("warmup") == 50.0 and by_key.pop("reply_rate") == 20.0
    assert set(by_key.values()) == {0.0}
    assert health.band == "blocked"


@pytest.mark.parametrize(
    ("value", "band"),
    [
        (100, "healthy"),
        (70, "healthy"),
        (69.999, "watch"),
        (45, "watch"),
        (44.999, "at_risk"),
        (25, "at_risk"),
        (24.999, "blocked"),
        (0, "blocked"),
    ],
)
def test_band_thresholds(value: float, band: str) -> None:
    assert band_of(value) == band


def test_the_band_is_the_worse_of_the_two_scores_and_blocked_while_listed() -> None:
    assert band_for(90, 90, "clean") == "healthy"
    assert band_for(90, 40, "clean") == "at_risk"
    assert band_for(30, 80, "unknown") == "at_risk"
    assert band_for(99, 99, "listed") == "blocked"


def test_the_codes_read_are_the_codes_the_product_writes() -> None:
    """The failure codes are the SMTP adapter's own: each is in the send outcome table, and a refused
    login is what connect-time validation counts as one too."""
    known = {row.code for row in OUTCOMES}
    assert set(score.CONNECTION_FAILURE_CODES) <= known
    assert set(score.AUTH_FAILURE_CODES) <= AUTH_FAILURE_CODES
    assert {row.outcome for row in OUTCOMES if row.code in score.AUTH_FAILURE_CODES} == {"credential"}


def test_component_data_says_what_the_value_came_from() -> None:
    bounce = component(Inputs(sends=40, bounces=2), "bounce_rate")
    assert bounce.value == 5.0
    assert bounce.data == {"numerator": 2, "denominator": 40, "window_days": 7, "min_sample": 20}
    assert component(Inputs(dns_status="warn"), "dns").data == {"verdict": "warn"}
    assert component(Inputs(sync_status="failing", sync_failures=2), "imap_sync").data == {
        "status": "failing",
        "consecutive_failures": 2,
    }


def test_a_new_inbox_is_not_locked_out_of_campaigns_by_the_default_score_gate() -> None:
    """A campaign's default ``min_health_score`` must admit an inbox that has no campaign history yet
    (warmup sends do not feed the send figures): otherwise no inbox could ever earn the sends that
    would raise its score. The stage gate is what keeps unwarmed inboxes out."""
    from nimbus_api.campaigns.schemas import CampaignCreate

    gate = CampaignCreate.model_fields["min_health_score"].default
    new = compute(Inputs())
    clean = compute(Inputs(sync_status="ok", dns_status="pass", blocklist_status="clean", warmup_progress=100))
    assert new.overall == 50.0 and new.overall >= gate
    assert clean.overall >= gate
