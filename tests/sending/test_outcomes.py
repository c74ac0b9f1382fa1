"""The outcome table: one test per row, and the docstring kept equal to the table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from nimbus_api.sending import outcomes
from nimbus_api.sending.outcomes import TABLE, classify, next_attempt


@pytest.mark.parametrize("row", TABLE, ids=[f"{r.code}@{r.stage}/{r.enhanced}" for r in TABLE])
def test_each_row_decides_its_case(row: outcomes.Row) -> None:
    stage = (
        "rcpt"
        if row.stage == "*" and row.code in ("smtp.recipient_rejected", "smtp.smtputf8_unsupported")
        else row.stage
    )
    stage = "mail" if stage == "*" else stage
    enhanced = {"*": "4.0.0", "5.1.": "5.1.1"}[row.enhanced]
    if row.code == "smtp.recipient_rejected" and row.enhanced == "*":
        enhanced = "5.7.1"
    if row.code == "smtp.rejected" and row.enhanced == "*":
        enhanced = "5.6.0"
    assert classify(row.code, stage, enhanced) == row.outcome


def test_docstring_lists_exactly_the_table() -> None:
    doc = outcomes.__doc__ or ""
    listed = [tuple(line.split()[:4]) for line in doc.splitlines() if line.startswith("    smtp.")]
    assert listed == [(r.code, r.stage, r.enhanced, r.outcome) for r in TABLE]


def test_unknown_codes_are_transient_before_the_dot_and_failed_after() -> None:
    assert classify("smtp.something_new", "rcpt", None) == "transient"
    assert classify("smtp.something_new", "dot", None) == "failed"


def test_backoff_schedule_grows_and_expires_at_the_lifetime() -> None:
    queued = datetime(2026, 11, 24, tzinfo=UTC)
    delays = [next_attempt(n, queued, queued) - queued for n in range(1, 4)]  # type: ignore[operator]
    assert delays == [timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=15)]
    assert next_attempt(9, queued, queued) == queued + timedelta(minutes=480)
    assert next_attempt(3, queued + timedelta(hours=23, minutes=50), queued) is None
