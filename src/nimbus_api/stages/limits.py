"""The daily send limit that the budget uses: the account's configured ceiling, ramped by its stage.

``email_accounts.daily_send_limit`` is the limit a person configured (or the provider's default at
connect, ``providers.presets``): the ceiling. The limit in force is

    effective = min(daily_send_limit, the stage's daily limit)    (``stages.stages.STAGES``)

with no stage cap at stage 5. Every budget path reads it from here: ``effective_limit`` in Python (the
lease's reservation, eligibility, the pool and stats, a reply from the unified inbox) and
``effective_limit_sql`` inside SQL (the rotation's pick), so the two can never disagree (tested).
"""

from __future__ import annotations

from typing import Protocol

from nimbus_api.stages.stages import STAGES


class LimitInputs(Protocol):
    @property
    def daily_send_limit(self) -> int: ...
    @property
    def current_stage(self) -> int: ...


def stage_limit(stage: int) -> int | None:
    """The stage's own daily limit; None when the stage sets none (stage 5, or out of the table)."""
    return STAGES[stage].daily_limit if 0 <= stage < len(STAGES) else None


def effective_daily_limit(ceiling: int, stage: int) -> int:
    cap = stage_limit(stage)
    return ceiling if cap is None else min(ceiling, cap)


def effective_limit(account: LimitInputs) -> int:
    """The sends per UTC day the account may make now."""
    return effective_daily_limit(account.daily_send_limit, account.current_stage)


_ARRAY = "ARRAY[" + ", ".join("NULL" if s.daily_limit is None else str(s.daily_limit) for s in STAGES) + "]::int[]"


def effective_limit_sql(alias: str) -> str:
    """``effective_limit`` over the ``email_accounts`` row ``alias`` (a constant identifier). PostgreSQL's
    ``LEAST`` ignores NULL, and an index outside the array is NULL: no stage cap means the ceiling."""
    assert alias.isidentifier()
    return f"LEAST({alias}.daily_send_limit, ({_ARRAY})[{alias}.current_stage + 1])"
