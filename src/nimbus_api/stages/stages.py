"""The stage table and ``get_inbox_stage``: how far an inbox has earned its way through warmup.

An inbox's stage (0..5) gates what it may send: nurture campaigns from stage 2, cold outreach from
stage 3 (``campaigns.eligibility.MIN_STAGE``), and its daily limit ramps with it (``stages.limits``).
A stage is earned on cumulative warmup sends (``email_accounts.warmup_sent_total``) with healthy
indicators, never on age:

=====  =====================  ===================  ====================================
stage  warmup sends, at least  overall_score, at    daily send limit of the stage
                               least
=====  =====================  ===================  ====================================
0      0                      0                    5
1      20                     40                   10
2      80                     45                   20 (nurture campaigns)
3      200                    50                   30 (cold outreach)
4      400                    60                   50
5      700                    70                   none: the account's configured limit
=====  =====================  ===================  ====================================

``get_inbox_stage`` is the highest stage whose sends and score thresholds the inbox meets, provided
its indicators are healthy: ``bounce_rate_7d`` and ``complaint_rate_7d`` at most their thresholds
(``NIMBUS_WARMUP_MAX_BOUNCE_RATE_7D``, ``NIMBUS_WARMUP_MAX_COMPLAINT_RATE_7D``). An inbox over either
threshold is paused (``stages.pause``) and its stage is 0 until the rate is back under it: no graduation
while paused, and a demotion out of every campaign. The function is stateless (no hysteresis), so
promotion and demotion are the same rule: a score that falls under the floor of the stage demotes to
the highest stage it still meets.

``warmup_progress`` (0..100) is cosmetic: 20 points per stage reached, plus the share of the way from
this stage's sends threshold to the next one's; 100 at stage 5.

The same table is written in SQL by ``stage_sql`` and ``progress_sql`` for the set-based update
(``stages.service.apply_stages``); a test checks SQL and Python agree on random inboxes.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Protocol


@dataclass(frozen=True)
class Stage:
    stage: int
    min_warmup_sent: int
    min_overall_score: float
    daily_limit: int | None
    """The stage's daily send limit; None: no cap of the stage (the account's configured limit)."""


STAGES: tuple[Stage, ...] = (
    Stage(0, 0, 0.0, 5),
    Stage(1, 20, 40.0, 10),
    Stage(2, 80, 45.0, 20),
    Stage(3, 200, 50.0, 30),
    Stage(4, 400, 60.0, 50),
    Stage(5, 700, 70.0, None),
)
TOP_STAGE = STAGES[-1].stage
_POINTS_PER_STAGE = 100.0 / TOP_STAGE

# The table must climb: each stage asks at least what the one below asks, so meeting a stage means
# meeting every stage under it (the "highest stage met" is then a clean threshold walk).
assert all(s.stage == i for i, s in enumerate(STAGES))
assert all(
    b.min_warmup_sent > a.min_warmup_sent and b.min_overall_score >= a.min_overall_score for a, b in pairwise(STAGES)
)


class StageInputs(Protocol):
    """The fields of ``models.EmailAccount`` the stage rule reads."""

    @property
    def warmup_sent_total(self) -> int: ...
    @property
    def overall_score(self) -> float: ...
    @property
    def bounce_rate_7d(self) -> float: ...
    @property
    def complaint_rate_7d(self) -> float: ...


class RateThresholds(Protocol):
    """The two thresholds (percent) of the warmup pause; ``config.Settings`` is one."""

    @property
    def warmup_max_bounce_rate_7d(self) -> float: ...
    @property
    def warmup_max_complaint_rate_7d(self) -> float: ...


@dataclass(frozen=True)
class Thresholds:
    """Plain thresholds, for callers without a ``Settings`` (benchmarks, tests)."""

    warmup_max_bounce_rate_7d: float = 3.0
    warmup_max_complaint_rate_7d: float = 0.3


def healthy(inbox: StageInputs, thresholds: RateThresholds) -> bool:
    """Both 7-day rates at most their thresholds (over one of them pauses warmup)."""
    return (
        inbox.bounce_rate_7d <= thresholds.warmup_max_bounce_rate_7d
        and inbox.complaint_rate_7d <= thresholds.warmup_max_complaint_rate_7d
    )


def meets(stage: Stage, inbox: StageInputs) -> bool:
    """The stage's own thresholds (sends and score), health aside."""
    return inbox.warmup_sent_total >= stage.min_warmup_sent and inbox.overall_score >= stage.min_overall_score


def get_inbox_stage(inbox: StageInputs, thresholds: RateThresholds) -> int:
    """The stage the platform gives the inbox: the highest stage met with healthy indicators, else 0."""
    if not healthy(inbox, thresholds):
        return 0
    for stage in reversed(STAGES):
        if meets(stage, inbox):
            return stage.stage
    return 0


def warmup_progress(stage: int, warmup_sent_total: int) -> float:
    """Cosmetic 0..100: 20 per stage reached plus the share of the way to the next stage's sends."""
    if stage >= TOP_STAGE:
        return 100.0
    here, nxt = STAGES[max(stage, 0)], STAGES[max(stage, 0) + 1]
    share = (warmup_sent_total - here.min_warmup_sent) / (nxt.min_warmup_sent - here.min_warmup_sent)
    return _POINTS_PER_STAGE * max(stage, 0) + _POINTS_PER_STAGE * min(1.0, max(0.0, share))


def stage_sql(alias: str) -> str:
    """``get_inbox_stage`` as a SQL expression over the ``email_accounts`` row ``alias``; the thresholds are
    the bind parameters ``:max_bounce`` and ``:max_complaint``. Only constants are interpolated."""
    assert alias.isidentifier()
    whens = " ".join(
        f"WHEN {alias}.warmup_sent_total >= {s.min_warmup_sent} "
        f"AND {alias}.overall_score >= {s.min_overall_score!r} THEN {s.stage}"
        for s in reversed(STAGES)
        if s.stage > 0
    )
    return (
        f"(CASE WHEN {alias}.bounce_rate_7d > CAST(:max_bounce AS double precision) "
        f"OR {alias}.complaint_rate_7d > CAST(:max_complaint AS double precision) THEN 0 {whens} ELSE 0 END)"
    )


def progress_sql(stage: str, sent: str) -> str:
    """``warmup_progress`` as SQL over two column expressions (constant identifiers), in double precision."""
    parts = []
    for here, nxt in pairwise(STAGES):
        span = nxt.min_warmup_sent - here.min_warmup_sent
        parts.append(
            f"WHEN {stage} = {here.stage} THEN {_POINTS_PER_STAGE!r} * {here.stage} + {_POINTS_PER_STAGE!r} * "
            f"LEAST(1.0, GREATEST(0.0, CAST({sent} - {here.min_warmup_sent} AS double precision) / {span}))"
        )
    return f"(CASE {' '.join(parts)} ELSE 100.0 END)"
