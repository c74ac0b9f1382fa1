"""The warmup resource and the account's stage fields through the API: a person's override wins until
cleared, the pause is explained (which rate, its value, the threshold) and lifts, opt in and out, and the
provider's starting limit with the ramp shown beside it."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.config import Settings
from nimbus_api.models import EmailAccount
from nimbus_api.stages.service import apply_stages
from tests.conftest import Tenant, account_payload


async def _connect(tenant: Tenant, **overrides: Any) -> dict[str, Any]:
    r = await tenant.client.post("/v1/email-accounts", json=account_payload(**overrides))
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def _set(sessionmaker: async_sessionmaker[AsyncSession], account_id: str, **values: Any) -> None:
    async with sessionmaker() as session, session.begin():
        await session.execute(update(EmailAccount).where(EmailAccount.id == uuid.UUID(account_id)).values(**values))


async def _apply(sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, account_id: str) -> None:
    async with sessionmaker() as session, session.begin():
        await apply_stages(session, [uuid.UUID(account_id)], settings=settings)


async def _events(tenant: Tenant, account_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    r = await tenant.client.get(f"/v1/email-accounts/{account_id}/events")
    assert r.status_code == 200, r.text
    return [(e["kind"], e["actor"], e["detail"]) for e in r.json()["data"]]


async def test_provider_defaults_are_the_starting_ceiling_and_the_stage_ramps_under_it(tenant: Tenant) -> None:
    expected = {"google_workspace": 40, "gmail": 20, "office365": 30, "custom": 100}
    for provider, limit in expected.items():
        account = await _connect(tenant, provider=provider, daily_send_limit=None)
        assert (account["daily_send_limit"], account["effective_daily_send_limit"]) == (limit, 5), provider
        assert (account["current_stage"], account["stage_override"], account["warmup_enabled"]) == (0, None, False)
    explicit = await _connect(tenant, provider="google_workspace", daily_send_limit=400)
    assert explicit["daily_send_limit"] == 400
    url = f"/v1/email-accounts/{explicit['id']}"
    ramp = []
    for stage in range(6):
        r = await tenant.client.patch(url, json={"current_stage": stage})
        assert r.status_code == 200, r.text
        ramp.append(r.json()["effective_daily_send_limit"])
    assert ramp == [5, 10, 20, 30, 50, 400]


async def test_a_persons_stage_wins_until_they_clear_it(
    tenant: Tenant, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    account = await _connect(tenant)
    url = f"/v1/email-accounts/{account['id']}"
    r = await tenant.client.patch(url, json={"current_stage": 4})
    assert r.status_code == 200, r.text
    assert (r.json()["current_stage"], r.json()["stage_override"]) == (4, 4)
    # the table would give stage 0 (no warmup sends) and even a pause: the person's stage holds
    await _set(sessionmaker, account["id"], bounce_rate_7d=12.0)
    await _apply(sessionmaker, settings, account["id"])
    assert (await tenant.client.get(url)).json()["current_stage"] == 4
    warmup = (await tenant.client.get(f"{url}/warmup")).json()
    assert (warmup["stage"], warmup["stage_overridden"], warmup["computed_stage"]) == (4, True, 0)

    await _set(sessionmaker, account["id"], bounce_rate_7d=0.0, warmup_sent_total=90, overall_score=50.0)
    r = await tenant.client.patch(url, json={"stage_override": None})
    assert r.status_code == 200, r.text
    assert (r.json()["current_stage"], r.json()["stage_override"]) == (2, None)  # recomputed at once
    events = await _events(tenant, account["id"])
    api_key = f"api_key:{tenant.api_key_id}"
    assert events[:3][::-1] == [  # newest first
        ("stage_changed", api_key, {"from": 0, "to": 4}),
        ("stage_override_cleared", api_key, {"stage": 4}),
        (
            "stage_changed",
            "platform",
            {
                "from": 4,
                "to": 2,
                "stage_override": None,
                "warmup_sent_total": 90,
                "overall_score": 50.0,
                "bounce_rate_7d": 0.0,
                "complaint_rate_7d": 0.0,
            },
        ),
    ]
    # clearing again is no change; current_stage with a contradicting stage_override is refused
    assert (await tenant.client.patch(url, json={"stage_override": None})).status_code == 200
    assert len(await _events(tenant, account["id"])) == len(events)
    r = await tenant.client.patch(url, json={"current_stage": 3, "stage_override": None})
    assert r.status_code == 422, r.text
    r = await tenant.client.patch(url, json={"stage_override": 3})
    assert (r.json()["current_stage"], r.json()["stage_override"]) == (3, 3)


async def test_warmup_pauses_explains_why_and_resumes(
    tenant: Tenant, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    account = await _connect(tenant, warmup_enabled=True)
    url = f"/v1/email-accounts/{account['id']}/warmup"
    await _set(sessionmaker, account["id"], warmup_sent_total=250, overall_score=72.0)
    await _apply(sessionmaker, settings, account["id"])
    healthy = (await tenant.client.get(url)).json()
    assert (healthy["enabled"], healthy["paused"], healthy["reasons"], healthy["stage"]) == (True, False, [], 3)
    assert healthy["next_stage"]["stage"] == 4
    assert [(m["name"], m["required"], m["actual"]) for m in healthy["next_stage"]["missing"]] == [
        ("warmup_sent_total", 400, 250)
    ]
    assert (healthy["daily_send_limit"], healthy["stage_daily_limit"], healthy["effective_daily_send_limit"]) == (
        100,
        30,
        30,
    )

    await _set(sessionmaker, account["id"], bounce_rate_7d=5.5, complaint_rate_7d=0.1, warmup_sent_total=800)
    await _apply(sessionmaker, settings, account["id"])
    paused = (await tenant.client.get(url)).json()
    assert paused["paused"] is True
    assert paused["reasons"] == [{"rate": "bounce_rate_7d", "value": 5.5, "threshold": 3.0}]
    assert paused["stage"] == 0  # no graduation while paused (800 sends and 72 would be stage 5)
    missing = {m["name"]: m for m in paused["next_stage"]["missing"]}
    assert set(missing) == {"bounce_rate_7d"}
    assert (missing["bounce_rate_7d"]["comparison"], missing["bounce_rate_7d"]["required"]) == ("at_most", 3.0)

    await _set(sessionmaker, account["id"], bounce_rate_7d=2.0)
    await _apply(sessionmaker, settings, account["id"])
    resumed = (await tenant.client.get(url)).json()
    assert (resumed["paused"], resumed["reasons"], resumed["stage"], resumed["next_stage"]) == (False, [], 5, None)
    assert resumed["warmup_progress"] == 100.0


async def test_opting_in_and_out_through_either_resource(tenant: Tenant) -> None:
    account = await _connect(tenant)
    url = f"/v1/email-accounts/{account['id']}"
    r = await tenant.client.patch(f"{url}/warmup", json={"enabled": True})
    assert r.status_code == 200, r.text
    assert r.json()["enabled"] is True
    assert (await tenant.client.get(url)).json()["warmup_enabled"] is True
    r = await tenant.client.patch(url, json={"warmup_enabled": False})
    assert r.json()["warmup_enabled"] is False
    assert (await tenant.client.get(f"{url}/warmup")).json()["enabled"] is False
    for body in ({"enabled": None}, {"enabled": "yes"}, {"stage_override": 6}):
        assert (await tenant.client.patch(f"{url}/warmup", json=body)).status_code == 422, body
    r = await tenant.client.patch(f"{url}/warmup", json={"stage_override": 2})
    assert (r.json()["stage"], r.json()["stage_overridden"]) == (2, True)
    r = await tenant.client.patch(f"{url}/warmup", json={"stage_override": None})
    assert (r.json()["stage"], r.json()["stage_overridden"]) == (0, False)


async def test_another_workspaces_inbox_is_not_found(tenant: Tenant, make_tenant: Any) -> None:
    account = await _connect(tenant)
    other = await make_tenant()
    for method, body in (("GET", None), ("PATCH", {"enabled": True})):
        r = await other.client.request(method, f"/v1/email-accounts/{account['id']}/warmup", json=body)
        assert r.status_code == 404 and r.json()["code"] == "email_account.not_found"
