"""``GET /v1/email-accounts/{id}/health`` and ``.../health/history``: the shape, workspace isolation and
input validation (problem+json)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from nimbus_api.health import score
from nimbus_api.health.recompute import recompute
from nimbus_api.health.snapshots import snapshot
from nimbus_api.kit.db import utc_day
from nimbus_api.models import AccountHealthDaily, Domain
from tests.conftest import Tenant, TenantFactory
from tests.health.conftest import Sm, quiet_fleet


async def test_health_before_and_after_the_first_recompute(tenant: Tenant, sessionmaker: Sm) -> None:
    [account_id] = (await quiet_fleet(sessionmaker, tenant.workspace_id, 1)).account_ids
    before = await tenant.client.get(f"/v1/email-accounts/{account_id}/health")
    assert before.status_code == 200, before.text
    body = before.json()
    assert (body["overall_score"], body["reputation_score"], body["band"], body["computed_at"]) == (
        50.0,
        50.0,
        "watch",
        None,
    )
    assert [c["key"] for c in body["components"]] == [c.key for c in score.COMPONENTS]
    assert {c["score"] for c in body["components"]} == {50.0}

    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(Domain).where(Domain.workspace_id == tenant.workspace_id).values(dns_status="pass")
        )
        await recompute(session, [account_id], datetime.now(UTC))
    body = (await tenant.client.get(f"/v1/email-accounts/{account_id}/health")).json()
    assert body["computed_at"] is not None
    assert body["overall_score"] == 50.0 + 6 / 2  # DNS (weight 6) went from 50 to 100
    by_key = {c["key"]: c for c in body["components"]}
    assert sum(c["weight"] for c in body["components"]) == 100
    assert by_key["dns"] == {
        "key": "dns",
        "label": "Domain DNS health",
        "value": "pass",
        "score": 100.0,
        "weight": 6.0,
        "reputation": False,
        "data": {"verdict": "pass"},
    }
    assert by_key["bounce_rate"]["value"] is None
    assert by_key["bounce_rate"]["data"] == {"numerator": 0, "denominator": 0, "window_days": 7, "min_sample": 20}
    assert [k for k, c in by_key.items() if c["reputation"]] == [
        "bounce_rate",
        "complaint_rate",
        "blocklist",
        "reply_rate",
    ]


async def test_another_workspace_s_inbox_is_not_found(make_tenant: TenantFactory, sessionmaker: Sm) -> None:
    owner, other = await make_tenant(), await make_tenant()
    [account_id] = (await quiet_fleet(sessionmaker, owner.workspace_id, 1)).account_ids
    for path in ("health", "health/history"):
        r = await other.client.get(f"/v1/email-accounts/{account_id}/{path}")
        assert r.status_code == 404
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "email_account.not_found"
        assert (await owner.client.get(f"/v1/email-accounts/{account_id}/{path}")).status_code == 200


async def test_history_days_are_validated(tenant: Tenant, sessionmaker: Sm) -> None:
    [account_id] = (await quiet_fleet(sessionmaker, tenant.workspace_id, 1)).account_ids
    for days in ("0", "366", "-1", "thirty", "1.5"):
        r = await tenant.client.get(f"/v1/email-accounts/{account_id}/health/history", params={"days": days})
        assert r.status_code == 422, days
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "validation_error"
    for days in ("1", "365"):
        r = await tenant.client.get(f"/v1/email-accounts/{account_id}/health/history", params={"days": days})
        assert r.status_code == 200 and r.json()["days"] == int(days)
    r = await tenant.client.get("/v1/email-accounts/not-a-uuid/health")
    assert r.status_code == 422


async def test_history_lists_the_days_in_the_window_oldest_first(tenant: Tenant, sessionmaker: Sm) -> None:
    [account_id] = (await quiet_fleet(sessionmaker, tenant.workspace_id, 1)).account_ids
    now = datetime.now(UTC)
    async with sessionmaker() as session, session.begin():
        await recompute(session, [account_id], now)
        await snapshot(session, [account_id])
        today = utc_day(now)
        for ago, value in ((3, 62.5), (40, 80.0)):  # two earlier days: one inside 30 days, one outside
            session.add(
                AccountHealthDaily(
                    account_id=account_id,
                    day=today - timedelta(days=ago),
                    overall_score=value,
                    reputation_score=value,
                    band=score.band_of(value),
                    components={},
                )
            )
    r = await tenant.client.get(f"/v1/email-accounts/{account_id}/health/history")
    assert r.status_code == 200
    body = r.json()
    assert body["days"] == 30
    assert body["data"] == [
        {"day": str(today - timedelta(days=3)), "overall_score": 62.5, "reputation_score": 62.5, "band": "watch"},
        {"day": str(today), "overall_score": 50.0, "reputation_score": 50.0, "band": "watch"},
    ]
    longer = (await tenant.client.get(f"/v1/email-accounts/{account_id}/health/history?days=41")).json()
    assert [d["overall_score"] for d in longer["data"]] == [80.0, 62.5, 50.0]
