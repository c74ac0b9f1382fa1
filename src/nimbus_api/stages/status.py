"""The warmup explanation of one inbox: stage, override, pause and its reasons, what the next stage
needs and what is missing, cooldown and the limit ramp. Pure: the row, the thresholds, the time."""

from __future__ import annotations

from datetime import datetime

from nimbus_api.models import EmailAccount
from nimbus_api.stages.limits import effective_limit, stage_limit
from nimbus_api.stages.pause import in_cooldown, warmup_pause_reasons
from nimbus_api.stages.schemas import NextStage, PauseReasonOut, Requirement, WarmupStatus
from nimbus_api.stages.stages import STAGES, TOP_STAGE, RateThresholds, get_inbox_stage


def next_stage(account: EmailAccount, settings: RateThresholds) -> NextStage | None:
    if account.current_stage >= TOP_STAGE:
        return None
    target = STAGES[max(account.current_stage, 0) + 1]
    # (name, comparison, required, actual): the next stage's two thresholds, then the two rates
    checks = [
        ("warmup_sent_total", "at_least", target.min_warmup_sent, account.warmup_sent_total),
        ("overall_score", "at_least", target.min_overall_score, account.overall_score),
        ("bounce_rate_7d", "at_most", settings.warmup_max_bounce_rate_7d, account.bounce_rate_7d),
        ("complaint_rate_7d", "at_most", settings.warmup_max_complaint_rate_7d, account.complaint_rate_7d),
    ]
    requirements = [
        Requirement(
            name=name,
            comparison=comparison,
            required=required,
            actual=actual,
            met=actual >= required if comparison == "at_least" else actual <= required,
        )
        for name, comparison, required, actual in checks
    ]
    return NextStage(
        stage=target.stage,
        daily_limit=target.daily_limit,
        requirements=requirements,
        missing=[r for r in requirements if not r.met],
    )


def warmup_status(account: EmailAccount, settings: RateThresholds, now: datetime) -> WarmupStatus:
    reasons = warmup_pause_reasons(account, settings)
    return WarmupStatus(
        account_id=account.id,
        enabled=account.warmup_enabled,
        stage=account.current_stage,
        stage_overridden=account.stage_override is not None,
        stage_override=account.stage_override,
        computed_stage=get_inbox_stage(account, settings),
        paused=bool(reasons),
        reasons=[PauseReasonOut(rate=r.rate, value=r.value, threshold=r.threshold) for r in reasons],
        next_stage=next_stage(account, settings),
        warmup_sent_total=account.warmup_sent_total,
        warmup_progress=account.warmup_progress,
        cooldown_until=account.cooldown_until,
        in_cooldown=in_cooldown(account, now),
        daily_send_limit=account.daily_send_limit,
        stage_daily_limit=stage_limit(account.current_stage),
        effective_daily_send_limit=effective_limit(account),
    )
