"""`/v1/alert-rules` and `/v1/alerts`: the defaults, CRUD with per-kind validation (a refusal changes
nothing), workspace isolation, and what disabling or deleting a rule does to its active alerts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.alerts.evaluate import evaluate
from nimbus_api.alerts.kinds import DEFAULTS
from tests.alerts.conftest import World
from tests.conftest import Tenant

Sm = async_sessionmaker[AsyncSession]
PROBLEM = "application/problem+json"


async def _rules(tenant: Tenant) -> list[dict[str, Any]]:
    r = await tenant.client.get("/v1/alert-rules", params={"limit": 200})
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


async def test_a_new_workspace_starts_with_one_default_rule_per_kind(tenant: Tenant) -> None:
    rules = await _rules(tenant)
    got = sorted((r["kind"], r["threshold"], r["severity"], r["enabled"], r["account_id"]) for r in rules)
    assert got == sorted((k, t, s, True, None) for k, t, s in DEFAULTS)
    assert {r["kind"]: r["unit"] for r in rules} == {
        "score_below": "points",
        "bounce_rate_above": "percent",
        "complaint_rate_above": "percent",
        "sync_lag_above": "seconds",
        "listed": None,
        "domain_unhealthy": None,
    }
    assert {k: t for k, t, _ in DEFAULTS} == {
        "score_below": 40.0,
        "bounce_rate_above": 5.0,
        "complaint_rate_above": 0.3,
        "sync_lag_above": 3600.0,
        "listed": None,
        "domain_unhealthy": None,
    }


async def test_create_read_change_and_delete_a_rule(tenant: Tenant, world: World) -> None:
    account, _ = await world.inbox(tenant.workspace_id)
    body = {"kind": "score_below", "threshold": 65, "severity": "info", "account_id": str(account)}
    created = await tenant.client.post("/v1/alert-rules", json=body)
    assert created.status_code == 201, created.text
    rule = created.json()
    assert (rule["kind"], rule["threshold"], rule["severity"], rule["account_id"], rule["enabled"]) == (
        "score_below",
        65.0,
        "info",
        str(account),
        True,
    )
    assert rule["subject_type"] == "account" and rule["active_alerts"] == 0
    got = await tenant.client.get(f"/v1/alert-rules/{rule['id']}")
    assert got.status_code == 200 and got.json() == rule

    changed = await tenant.client.patch(
        f"/v1/alert-rules/{rule['id']}", json={"threshold": 55.5, "account_id": None, "severity": "critical"}
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["threshold"], changed.json()["account_id"], changed.json()["severity"]) == (
        55.5,
        None,
        "critical",
    )

    # the kind's default when no threshold is given
    lag = await tenant.client.post("/v1/alert-rules", json={"kind": "sync_lag_above", "enabled": False})
    assert (lag.status_code, lag.json()["threshold"], lag.json()["severity"], lag.json()["enabled"]) == (
        201,
        3600.0,
        "warning",
        False,
    )
    assert len(await _rules(tenant)) == len(DEFAULTS) + 2

    assert (await tenant.client.delete(f"/v1/alert-rules/{rule['id']}")).status_code == 204
    gone = await tenant.client.get(f"/v1/alert-rules/{rule['id']}")
    assert gone.status_code == 404 and gone.json()["code"] == "alert_rule.not_found"
    assert len(await _rules(tenant)) == len(DEFAULTS) + 1


@pytest.mark.parametrize(
    ("kind", "threshold"),
    [
        ("score_below", 0),
        ("score_below", 100.5),
        ("score_below", -3),
        ("bounce_rate_above", 100),
        ("bounce_rate_above", -0.1),
        ("complaint_rate_above", 250),
        ("sync_lag_above", 59),
        ("sync_lag_above", 604801),
        ("sync_lag_above", 90.5),
        ("listed", 1),
        ("domain_unhealthy", 0),
    ],
)
async def test_a_threshold_that_does_not_fit_the_kind_is_refused_and_nothing_is_saved(
    tenant: Tenant, kind: str, threshold: float
) -> None:
    before = await _rules(tenant)
    r = await tenant.client.post("/v1/alert-rules", json={"kind": kind, "threshold": threshold})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    assert r.json()["code"] == "alert_rule.invalid_threshold" and r.json()["kind"] == kind
    assert await _rules(tenant) == before

    rule = next(x for x in before if x["kind"] == kind)
    r = await tenant.client.patch(f"/v1/alert-rules/{rule['id']}", json={"threshold": threshold, "enabled": False})
    assert r.status_code == 422 and r.json()["code"] == "alert_rule.invalid_threshold"
    assert await _rules(tenant) == before  # not even the `enabled` given beside it


async def test_null_thresholds_unknown_kinds_and_unknown_fields(tenant: Tenant) -> None:
    rules = {r["kind"]: r for r in await _rules(tenant)}
    r = await tenant.client.patch(f"/v1/alert-rules/{rules['score_below']['id']}", json={"threshold": None})
    assert r.status_code == 422 and r.json()["code"] == "alert_rule.invalid_threshold"
    r = await tenant.client.patch(f"/v1/alert-rules/{rules['listed']['id']}", json={"threshold": None})
    assert r.status_code == 200 and r.json()["threshold"] is None
    for body in (
        {"kind": "score_above", "threshold": 3},
        {"kind": "score_below", "threshold": "40"},
        {"kind": "score_below", "severity": "loud"},
        {"kind": "score_below", "colour": "red"},
    ):
        r = await tenant.client.post("/v1/alert-rules", json=body)
        assert (r.status_code, r.json()["code"]) == (422, "validation_error"), body
    r = await tenant.client.patch(f"/v1/alert-rules/{rules['listed']['id']}", json={"kind": "score_below"})
    assert (r.status_code, r.json()["code"]) == (422, "validation_error")
    r = await tenant.client.patch(f"/v1/alert-rules/{rules['listed']['id']}", json={"enabled": None})
    assert (r.status_code, r.json()["code"]) == (422, "validation_error")


async def test_rules_and_alerts_are_the_workspace_s_own(
    make_tenant: Callable[[], Awaitable[Tenant]], world: World, sessionmaker: Sm
) -> None:
    a, b = await make_tenant(), await make_tenant()
    account_a, _ = await world.inbox(a.workspace_id, overall_score=3.0)
    rule_a = (await _rules(a))[0]
    for method, body in (("GET", None), ("PATCH", {"enabled": False}), ("DELETE", None)):
        r = await b.client.request(method, f"/v1/alert-rules/{rule_a['id']}", json=body)
        assert (r.status_code, r.json()["code"]) == (404, "alert_rule.not_found"), method
    assert {r["id"] for r in await _rules(a)}.isdisjoint({r["id"] for r in await _rules(b)})
    assert await _rules(a) == await _rules(a) and rule_a in await _rules(a)  # untouched by b

    # b cannot scope a rule to a's inbox
    r = await b.client.post("/v1/alert-rules", json={"kind": "score_below", "account_id": str(account_a)})
    assert (r.status_code, r.json()["code"]) == (404, "email_account.not_found")
    r = await b.client.patch(f"/v1/alert-rules/{(await _rules(b))[0]['id']}", json={"account_id": str(account_a)})
    assert (r.status_code, r.json()["code"]) == (404, "email_account.not_found")

    async with sessionmaker() as session, session.begin():
        await evaluate(session, workspace_id=a.workspace_id)
    assert len((await a.client.get("/v1/alerts")).json()["data"]) == 1
    assert (await b.client.get("/v1/alerts")).json()["data"] == []
    assert (await b.client.get("/v1/alerts", params={"subject_id": str(account_a)})).json()["data"] == []


async def test_disabling_or_deleting_a_rule_resolves_its_active_alerts_once(
    tenant: Tenant, world: World, sessionmaker: Sm
) -> None:
    ws = tenant.workspace_id
    for _ in range(2):
        await world.inbox(ws, overall_score=20.0, bounce_rate_7d=30.0)
    async with sessionmaker() as session, session.begin():
        assert (await evaluate(session, workspace_id=ws)).counts == (4, 0)
    rules = {r["kind"]: r for r in await _rules(tenant)}
    assert rules["score_below"]["active_alerts"] == 2

    r = await tenant.client.patch(f"/v1/alert-rules/{rules['score_below']['id']}", json={"enabled": False})
    assert r.status_code == 200 and r.json()["active_alerts"] == 0
    await tenant.client.patch(f"/v1/alert-rules/{rules['score_below']['id']}", json={"enabled": False})  # again
    assert (await tenant.client.delete(f"/v1/alert-rules/{rules['bounce_rate_above']['id']}")).status_code == 204
    async with sessionmaker() as session, session.begin():
        assert (await evaluate(session, workspace_id=ws)).counts == (0, 0)  # disabled or gone: nothing fires

    resolved = [e.payload["data"] for e in await world.events(ws, "alert.resolved")]
    assert sorted((d["kind"], d["reason"]) for d in resolved) == [
        ("bounce_rate_above", "rule_deleted"),
        ("bounce_rate_above", "rule_deleted"),
        ("score_below", "rule_disabled"),
        ("score_below", "rule_disabled"),
    ]
    past = (await tenant.client.get("/v1/alerts", params={"active": "false"})).json()["data"]
    assert len(past) == 4 and not any(a["active"] for a in past)
    assert {a["rule_id"] for a in past if a["kind"] == "bounce_rate_above"} == {None}  # the history stays
    assert {a["resolved_reason"] for a in past} == {"rule_disabled", "rule_deleted"}
    assert (await tenant.client.get("/v1/alerts", params={"active": "true"})).json()["data"] == []

    # enabled again: the condition still holds, so it fires again at the next evaluation
    await tenant.client.patch(f"/v1/alert-rules/{rules['score_below']['id']}", json={"enabled": True})
    async with sessionmaker() as session, session.begin():
        assert (await evaluate(session, workspace_id=ws)).counts == (2, 0)


async def test_rules_and_alerts_page_with_a_cursor(tenant: Tenant, world: World, sessionmaker: Sm) -> None:
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 4} | ({"cursor": cursor} if cursor else {})
        page = (await tenant.client.get("/v1/alert-rules", params=params)).json()
        seen += [r["id"] for r in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == len(DEFAULTS)

    for _ in range(5):
        await world.inbox(tenant.workspace_id, overall_score=1.0)
    async with sessionmaker() as session, session.begin():
        await evaluate(session, workspace_id=tenant.workspace_id)
    first = (await tenant.client.get("/v1/alerts", params={"active": "true", "limit": 3})).json()
    second = (await tenant.client.get("/v1/alerts", params={"limit": 3, "cursor": first["next_cursor"]})).json()
    assert len(first["data"]) == 3 and len(second["data"]) == 2 and second["next_cursor"] is None
    ids = [a["id"] for a in first["data"] + second["data"]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 5
    bad = await tenant.client.get("/v1/alerts", params={"cursor": "nope"})
    assert bad.status_code == 422
