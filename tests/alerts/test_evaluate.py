"""Each rule kind fires once when its condition starts and resolves once when it ends, driven by the
real columns; two evaluations at once still emit one event per transition."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.alerts.evaluate import evaluate
from nimbus_api.models import AlertRule, AlertState
from tests.alerts.conftest import World
from tests.conftest import Tenant

Sm = async_sessionmaker[AsyncSession]
Drive = Callable[[World, uuid.UUID, uuid.UUID, bool], Awaitable[None]]


async def _score(w: World, account: uuid.UUID, domain: uuid.UUID, on: bool) -> None:
    await w.set_account(account, overall_score=31.5 if on else 62.0)


async def _bounces(w: World, account: uuid.UUID, domain: uuid.UUID, on: bool) -> None:
    await w.set_account(account, bounce_rate_7d=7.25 if on else 1.0)


async def _complaints(w: World, account: uuid.UUID, domain: uuid.UUID, on: bool) -> None:
    await w.set_account(account, complaint_rate_7d=0.5 if on else 0.0)


async def _lag(w: World, account: uuid.UUID, domain: uuid.UUID, on: bool) -> None:
    now = datetime.now(UTC)
    await w.sync_row(account, status="ok", last_success_at=now - timedelta(hours=2) if on else now)


async def _failing(w: World, account: uuid.UUID, domain: uuid.UUID, on: bool) -> None:
    now = datetime.now(UTC)
    if on:  # failing for a minute only, but already reported as such (account.sync_failed sent)
        await w.sync_row(
            account,
            status="failing",
            last_success_at=now - timedelta(minutes=1),
            failing_since=now - timedelta(minutes=1),
            failure_notified_at=now,
            consecutive_failures=1,
            last_error_code="imap.auth_failed",
        )
    else:
        await w.sync_row(
            account,
            status="ok",
            last_success_at=now,
            failing_since=None,
            failure_notified_at=None,
            consecutive_failures=0,
        )


async def _listed(w: World, account: uuid.UUID, domain: uuid.UUID, on: bool) -> None:
    await w.set_domain(domain, blocklist_status="listed" if on else "clean")


async def _dns_fail(w: World, account: uuid.UUID, domain: uuid.UUID, on: bool) -> None:
    await w.set_domain(domain, dns_status="fail" if on else "pass")


async def _paused(w: World, account: uuid.UUID, domain: uuid.UUID, on: bool) -> None:
    await w.set_domain(domain, is_paused=on, paused_reason="dmarc_misaligned" if on else None)


CASES: list[tuple[str, Drive, str, float | None, float | None]] = [
    # kind, drive, subject type, threshold (the default), value while on
    ("score_below", _score, "account", 40.0, 31.5),
    ("bounce_rate_above", _bounces, "account", 5.0, 7.25),
    ("complaint_rate_above", _complaints, "account", 0.3, 0.5),
    ("sync_lag_above", _lag, "account", 3600.0, None),
    ("sync_lag_above", _failing, "account", 3600.0, None),
    ("listed", _listed, "domain", None, None),
    ("domain_unhealthy", _dns_fail, "domain", None, None),
    ("domain_unhealthy", _paused, "domain", None, None),
]


async def _evaluate(sm: Sm, workspace_id: uuid.UUID | None) -> tuple[int, int]:
    async with sm() as session, session.begin():
        return (await evaluate(session, workspace_id=workspace_id)).counts


@pytest.mark.parametrize(
    ("kind", "drive", "subject_type", "threshold", "value"), CASES, ids=lambda c: getattr(c, "__name__", None)
)
async def test_a_rule_fires_once_when_its_condition_starts_and_resolves_once_when_it_ends(
    tenant: Tenant,
    world: World,
    sessionmaker: Sm,
    kind: str,
    drive: Drive,
    subject_type: str,
    threshold: float | None,
    value: float | None,
) -> None:
    ws = tenant.workspace_id
    account, domain = await world.inbox(ws)
    await world.inbox(ws)  # a healthy neighbour: never alerted on
    await drive(world, account, domain, False)
    assert await _evaluate(sessionmaker, ws) == (0, 0)

    await drive(world, account, domain, True)
    assert await _evaluate(sessionmaker, ws) == (1, 0)
    assert await _evaluate(sessionmaker, ws) == (0, 0)  # still on: nothing new
    [fired] = await world.events(ws, "alert.triggered", "alert.resolved")
    data = fired.payload["data"]
    subject = account if subject_type == "account" else domain
    async with sessionmaker() as session:
        rule_id = await session.scalar(select(AlertRule.id).where(AlertRule.workspace_id == ws, AlertRule.kind == kind))
    assert data["kind"] == kind and data["alert"] == f"{subject_type}.{kind}"
    assert data["subject_type"] == subject_type and data["subject_id"] == str(subject)
    assert data["rule_id"] == str(rule_id) and data["threshold"] == threshold
    if value is not None:
        assert data["value"] == value
    elif kind == "sync_lag_above":
        assert data["value"] > 0
    else:
        assert data["value"] is None

    await drive(world, account, domain, False)
    assert await _evaluate(sessionmaker, ws) == (0, 1)
    assert await _evaluate(sessionmaker, ws) == (0, 0)
    found = await world.events(ws, "alert.triggered", "alert.resolved")
    assert [e.type for e in found] == ["alert.triggered", "alert.resolved"]
    resolved = found[1].payload["data"]
    assert resolved["alert_id"] == data["alert_id"] and resolved["reason"] == "condition_ended"
    assert resolved["subject_id"] == str(subject) and resolved["kind"] == kind

    # It starts again: a new alert, with its own id.
    await drive(world, account, domain, True)
    assert await _evaluate(sessionmaker, ws) == (1, 0)
    again = (await world.events(ws, "alert.triggered"))[-1].payload["data"]
    assert again["alert_id"] != data["alert_id"]
    async with sessionmaker() as session:
        states = list(await session.scalars(select(AlertState).where(AlertState.workspace_id == ws)))
    assert sorted(s.active for s in states) == [False, True]


async def test_an_alert_keeps_its_latest_value_and_a_lower_threshold_resolves_it_on_the_next_evaluation(
    tenant: Tenant, world: World, sessionmaker: Sm
) -> None:
    ws = tenant.workspace_id
    account, _ = await world.inbox(ws, overall_score=35.0)
    assert await _evaluate(sessionmaker, ws) == (1, 0)
    await world.set_account(account, overall_score=20.0)
    assert await _evaluate(sessionmaker, ws) == (0, 0)
    alerts = (await tenant.client.get("/v1/alerts", params={"active": "true"})).json()["data"]
    assert [(a["value"], a["last_value"], a["active"]) for a in alerts] == [(35.0, 20.0, True)]
    rule = next(r for r in (await tenant.client.get("/v1/alert-rules")).json()["data"] if r["kind"] == "score_below")
    assert rule["active_alerts"] == 1
    assert (await tenant.client.patch(f"/v1/alert-rules/{rule['id']}", json={"threshold": 10})).status_code == 200
    assert await _evaluate(sessionmaker, ws) == (0, 1)
    assert (await tenant.client.get("/v1/alerts", params={"active": "true"})).json()["data"] == []


async def test_a_rule_scoped_to_one_inbox_watches_that_inbox_only(
    tenant: Tenant, world: World, sessionmaker: Sm
) -> None:
    ws = tenant.workspace_id
    watched, watched_domain = await world.inbox(ws)
    other, other_domain = await world.inbox(ws)
    for rule in (await tenant.client.get("/v1/alert-rules")).json()["data"]:  # only the scoped rules below
        await tenant.client.patch(f"/v1/alert-rules/{rule['id']}", json={"enabled": False})
    for kind in ("score_below", "listed"):
        body = {"kind": kind, "account_id": str(watched)}
        assert (await tenant.client.post("/v1/alert-rules", json=body)).status_code == 201
    for account in (watched, other):
        await world.set_account(account, overall_score=10.0)
    for domain in (watched_domain, other_domain):
        await world.set_domain(domain, blocklist_status="listed")
    assert await _evaluate(sessionmaker, ws) == (2, 0)
    subjects = {e.payload["data"]["subject_id"] for e in await world.events(ws, "alert.triggered")}
    assert subjects == {str(watched), str(watched_domain)}


async def test_one_evaluation_of_every_workspace_alerts_each_in_its_own_workspace(
    make_tenant: Callable[[], Awaitable[Tenant]], world: World, sessionmaker: Sm
) -> None:
    a, b = await make_tenant(), await make_tenant()
    account_a, _ = await world.inbox(a.workspace_id, overall_score=5.0)
    account_b, _ = await world.inbox(b.workspace_id, bounce_rate_7d=50.0)
    await _evaluate(sessionmaker, None)
    [in_a] = await world.events(a.workspace_id, "alert.triggered")
    [in_b] = await world.events(b.workspace_id, "alert.triggered")
    assert (in_a.payload["data"]["kind"], in_a.payload["data"]["subject_id"]) == ("score_below", str(account_a))
    assert (in_b.payload["data"]["kind"], in_b.payload["data"]["subject_id"]) == ("bounce_rate_above", str(account_b))


async def test_two_evaluations_at_once_trigger_and_resolve_each_alert_once(
    tenant: Tenant, world: World, sessionmaker: Sm
) -> None:
    """The first evaluation holds its transaction open; the second runs meanwhile and must neither
    trigger the same alerts again (it waits on the unique index, then inserts nothing) nor resolve them
    twice (it skips rows the first has locked)."""
    ws = tenant.workspace_id
    accounts = [(await world.inbox(ws, overall_score=12.0))[0] for _ in range(5)]

    async def overlapped() -> tuple[tuple[int, int], tuple[int, int], bool]:
        first = sessionmaker()
        second = sessionmaker()
        try:
            await first.begin()
            one = (await evaluate(first, workspace_id=ws)).counts

            async def later() -> tuple[int, int]:
                await second.begin()
                counts = (await evaluate(second, workspace_id=ws)).counts
                await second.commit()
                return counts

            task = asyncio.create_task(later())
            await asyncio.sleep(0.5)
            blocked = not task.done()
            await first.commit()
            two = await task
            return one, two, blocked
        finally:
            await first.close()
            await second.close()

    one, two, blocked = await overlapped()
    assert one == (5, 0) and two == (0, 0)
    assert blocked  # the second waited for the first's inserts to commit, then inserted nothing
    assert len(await world.events(ws, "alert.triggered")) == 5

    for account in accounts:
        await world.set_account(account, overall_score=90.0)
    one, two, blocked = await overlapped()
    assert one == (0, 5) and two == (0, 0)
    assert not blocked  # it skipped the rows the first had locked, without waiting
    assert len(await world.events(ws, "alert.resolved")) == 5

    # And many at once, with no choreography: still one event per transition.
    for account in accounts:
        await world.set_account(account, overall_score=1.0)
    results: list[Any] = await asyncio.gather(*(_evaluate(sessionmaker, ws) for _ in range(6)))
    assert sum(t for t, _ in results) == 5
    for account in accounts:
        await world.set_account(account, overall_score=99.0)
    results = await asyncio.gather(*(_evaluate(sessionmaker, ws) for _ in range(6)))
    assert sum(r for _, r in results) == 5
    found = await world.events(ws, "alert.triggered", "alert.resolved")
    assert [e.type for e in found].count("alert.triggered") == 10
    assert [e.type for e in found].count("alert.resolved") == 10
    async with sessionmaker() as session:
        states = list(await session.scalars(select(AlertState).where(AlertState.workspace_id == ws)))
    assert len(states) == 10 and not any(s.active for s in states)
