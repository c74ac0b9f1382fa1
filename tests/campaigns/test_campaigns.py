"""Campaigns over HTTP: create, read, list, update, delete, every refused input, start and pause."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.models import Campaign
from tests.campaigns.conftest import InboxFactory, campaign_body, create_campaign, step
from tests.conftest import Tenant

PROBLEM = "application/problem+json"


def fields_of(response: Any) -> list[str]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["code"] == "validation_error"
    return [e["field"] for e in body["errors"]]


async def test_create_returns_the_campaign_with_defaults(tenant: Tenant) -> None:
    r = await tenant.client.post(
        "/v1/campaigns",
        json=campaign_body(
            steps=[
                step(html="<p>Hi {{ contact.first_name }}</p>"),
                step(delay_seconds=86_400, subject="ignored when threaded", text="Following up", threaded=True),
            ]
        ),
    )
    assert r.status_code == 201, r.text
    campaign = r.json()
    assert campaign["status"] == "draft"
    assert campaign["type"] == "cold"
    assert (campaign["min_health_score"], campaign["bounce_rate_threshold"], campaign["verify_email_mx"]) == (
        50.0,
        8.0,
        False,
    )
    assert campaign["schedule"] == {"timezone": "UTC", "days": [0, 1, 2, 3, 4], "start": "09:00", "end": "17:00"}
    assert campaign["randomize_delay_seconds"] is None
    assert [s["position"] for s in campaign["steps"]] == [0, 1]
    assert campaign["steps"][0]["html"] == "<p>Hi {{ contact.first_name }}</p>"
    assert campaign["steps"][1]["threaded"] is True
    assert campaign["pool_size"] == 0
    assert campaign["throttled"] == {"is_throttled": False, "reasons": []}
    got = await tenant.client.get(f"/v1/campaigns/{campaign['id']}")
    assert got.status_code == 200 and got.json() == campaign


async def test_schedule_and_jitter_round_trip(tenant: Tenant) -> None:
    campaign = await create_campaign(
        tenant,
        type="nurture",
        schedule={"timezone": "America/New_York", "days": [5, 0, 6], "start": "22:00", "end": "06:30"},
        randomize_delay_seconds={"min": 30, "max": 300},
        min_health_score=55,
        bounce_rate_threshold=0.5,
        verify_email_mx=True,
    )
    assert campaign["schedule"] == {
        "timezone": "America/New_York",
        "days": [0, 5, 6],
        "start": "22:00",
        "end": "06:30",
    }
    assert campaign["randomize_delay_seconds"] == {"min": 30, "max": 300}
    assert (campaign["min_health_score"], campaign["bounce_rate_threshold"], campaign["verify_email_mx"]) == (
        55,
        0.5,
        True,
    )


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"schedule": {"timezone": "Mars/Olympus_Mons"}}, "schedule.timezone"),
        ({"schedule": {"timezone": "../../etc/passwd"}}, "schedule.timezone"),
        ({"schedule": {"days": [7]}}, "schedule.days.0"),
        ({"schedule": {"days": []}}, "schedule.days"),
        ({"schedule": {"days": [1, 1]}}, "schedule.days"),
        ({"schedule": {"start": "24:00"}}, "schedule.start"),
        ({"schedule": {"end": "9:00"}}, "schedule.end"),
        ({"schedule": {"start": "09:00", "end": "09:00"}}, "schedule"),
        ({"schedule": {"timezone": "UTC", "weekends": True}}, "schedule.weekends"),
        ({"bounce_rate_threshold": 0.4}, "bounce_rate_threshold"),
        ({"bounce_rate_threshold": 25.1}, "bounce_rate_threshold"),
        ({"min_health_score": 101}, "min_health_score"),
        ({"min_health_score": -1}, "min_health_score"),
        ({"randomize_delay_seconds": {"min": 10, "max": 5}}, "randomize_delay_seconds"),
        ({"randomize_delay_seconds": {"min": -1, "max": 5}}, "randomize_delay_seconds.min"),
        ({"type": "warm"}, "type"),
        ({"name": "two\r\nlines"}, "name"),
        ({"name": ""}, "name"),
        ({"status": "active"}, "status"),
        ({"steps": [step()] * 21}, "steps"),
        ({"steps": [step(delay_seconds=-1)]}, "steps.0.delay_seconds"),
        ({"steps": [step(), step(delay_seconds=0)]}, "steps.1.delay_seconds"),
        ({"steps": [step(subject="")]}, "steps.0.subject"),
        ({"steps": [step(text="")]}, "steps.0.text"),
        ({"steps": [step(), step(delay_seconds=60, subject="{{ contact.first_name ")]}, "steps.1.subject"),
        ({"steps": [step(text="{% if contact.email %}no end")]}, "steps.0.text"),
        ({"steps": [step(html="<p>{{ discount_code }}</p>")]}, "steps.0.html"),
        ({"steps": [step(subject="Hi {{ first_name }}")]}, "steps.0.subject"),
        ({"steps": [step(subject="Hi {{ contact.phone }}")]}, "steps.0.subject"),
        ({"steps": [step(subject="Hi\r\nBcc: victim@example.com")]}, "steps.0.subject"),
        ({"steps": [step(subject="Hi\nthere")]}, "steps.0.subject"),
        ({"steps": [step(subject="{{ '\\r\\n' }}Bcc: victim@example.com")]}, "steps.0.subject"),
        ({"steps": [step(text="{% for i in range(9) %}x{% endfor %}")]}, "steps.0.text"),
        ({"steps": [step(unknown=True)]}, "steps.0.unknown"),
    ],
)
async def test_invalid_input_is_a_422_naming_the_field_and_saves_nothing(
    tenant: Tenant, overrides: dict[str, Any], field: str
) -> None:
    body = campaign_body(**overrides)
    if "schedule" in overrides:
        body["schedule"] = {"timezone": "UTC", "days": [0], "start": "09:00", "end": "17:00", **overrides["schedule"]}
    r = await tenant.client.post("/v1/campaigns", json=body)
    assert field in fields_of(r), r.text
    assert (await tenant.client.get("/v1/campaigns")).json()["data"] == []


async def test_template_errors_say_what_is_wrong(tenant: Tenant) -> None:
    r = await tenant.client.post(
        "/v1/campaigns",
        json=campaign_body(steps=[step(subject="Hi {{ contact.nickname }}", text="{{ coupon }}", html="{% if %}")]),
    )
    errors = {e["field"]: e["message"] for e in r.json()["errors"]}
    assert set(errors) == {"steps.0.subject", "steps.0.text", "steps.0.html"}
    assert "contact.nickname is not a contact attribute" in errors["steps.0.subject"]
    assert "contact.fields.nickname" in errors["steps.0.subject"]
    assert "unknown variable 'coupon'" in errors["steps.0.text"]
    assert errors["steps.0.html"].startswith("line 1:")


async def test_custom_fields_are_never_a_template_error(tenant: Tenant) -> None:
    campaign = await create_campaign(
        tenant, steps=[step(subject="{{ contact.fields.anything_at_all }} deal", text="{{ contact.fields['x'] }}")]
    )
    assert campaign["steps"][0]["subject"] == "{{ contact.fields.anything_at_all }} deal"


async def test_a_draft_may_have_no_steps_yet(tenant: Tenant) -> None:
    campaign = await create_campaign(tenant, steps=[])
    assert campaign["steps"] == []


async def test_patch_replaces_steps_and_schedule_and_keeps_the_rest(tenant: Tenant) -> None:
    campaign = await create_campaign(tenant, randomize_delay_seconds={"min": 1, "max": 2})
    url = f"/v1/campaigns/{campaign['id']}"
    r = await tenant.client.patch(
        url,
        json={
            "name": "Renamed",
            "steps": [step(subject="One"), step(delay_seconds=60, subject="Two"), step(delay_seconds=60, text="3")],
            "schedule": {"timezone": "Europe/Berlin", "days": [2], "start": "08:15", "end": "12:00"},
        },
    )
    assert r.status_code == 200, r.text
    patched = r.json()
    assert patched["name"] == "Renamed"
    assert [s["subject"] for s in patched["steps"]] == ["One", "Two", step()["subject"]]
    assert patched["schedule"] == {"timezone": "Europe/Berlin", "days": [2], "start": "08:15", "end": "12:00"}
    assert patched["randomize_delay_seconds"] == {"min": 1, "max": 2}
    assert patched["type"] == campaign["type"]

    r = await tenant.client.patch(url, json={"steps": [step(subject="Only")], "randomize_delay_seconds": None})
    assert [s["subject"] for s in r.json()["steps"]] == ["Only"]
    assert r.json()["randomize_delay_seconds"] is None

    assert fields_of(await tenant.client.patch(url, json={"name": None})) == ["name"]
    assert fields_of(await tenant.client.patch(url, json={"steps": None})) == ["steps"]
    assert fields_of(await tenant.client.patch(url, json={"status": "active"})) == ["status"]
    assert "steps.0.subject" in fields_of(await tenant.client.patch(url, json={"steps": [step(subject="{{ x }}")]}))
    assert [s["subject"] for s in (await tenant.client.get(url)).json()["steps"]] == ["Only"]


async def test_list_filters_and_pages(tenant: Tenant) -> None:
    cold = [await create_campaign(tenant, name=f"cold {i}") for i in range(3)]
    nurture = await create_campaign(tenant, name="nurture", type="nurture")
    r = await tenant.client.get("/v1/campaigns", params={"type": "cold", "limit": 2})
    page = r.json()
    assert [c["id"] for c in page["data"]] == [cold[2]["id"], cold[1]["id"]]
    rest = (
        await tenant.client.get("/v1/campaigns", params={"type": "cold", "limit": 2, "cursor": page["next_cursor"]})
    ).json()
    assert [c["id"] for c in rest["data"]] == [cold[0]["id"]] and rest["next_cursor"] is None
    nurtures = (await tenant.client.get("/v1/campaigns", params={"type": "nurture"})).json()["data"]
    assert [c["id"] for c in nurtures] == [nurture["id"]]
    assert (await tenant.client.get("/v1/campaigns", params={"status": "active"})).json()["data"] == []
    assert len((await tenant.client.get("/v1/campaigns", params={"status": "draft"})).json()["data"]) == 4
    assert fields_of(await tenant.client.get("/v1/campaigns", params={"status": "running"})) == ["status"]


async def test_delete(tenant: Tenant) -> None:
    campaign = await create_campaign(tenant)
    r = await tenant.client.delete(f"/v1/campaigns/{campaign['id']}")
    assert r.status_code == 204
    missing = await tenant.client.get(f"/v1/campaigns/{campaign['id']}")
    assert missing.status_code == 404 and missing.json()["code"] == "campaign.not_found"
    assert (await tenant.client.delete(f"/v1/campaigns/{campaign['id']}")).status_code == 404


# --- start and pause ------------------------------------------------------------------------------------


async def test_start_needs_steps_and_an_inbox(tenant: Tenant, make_inbox: InboxFactory) -> None:
    campaign = await create_campaign(tenant, steps=[])
    url = f"/v1/campaigns/{campaign['id']}"
    r = await tenant.client.post(f"{url}/start")
    assert r.status_code == 409 and r.json()["code"] == "campaign.no_steps", r.text
    assert r.headers["content-type"] == PROBLEM
    await tenant.client.patch(url, json={"steps": [step()]})
    r = await tenant.client.post(f"{url}/start")
    assert r.status_code == 409 and r.json()["code"] == "campaign.no_inboxes", r.text
    assert (await tenant.client.get(url)).json()["status"] == "draft"

    account_id = await make_inbox(tenant)
    assert (await tenant.client.post(f"{url}/accounts", json={"account_ids": [account_id]})).status_code == 200
    r = await tenant.client.post(f"{url}/start")
    assert r.status_code == 200, r.text
    started = r.json()
    assert started["status"] == "active" and started["started_at"] is not None
    assert started["throttled"] == {"is_throttled": False, "reasons": []}
    again = await tenant.client.post(f"{url}/start")
    assert again.status_code == 200 and again.json()["started_at"] == started["started_at"]

    # an active campaign keeps at least one step
    assert fields_of(await tenant.client.patch(url, json={"steps": []})) == ["steps"]


async def test_pause_and_resume(tenant: Tenant, make_inbox: InboxFactory) -> None:
    campaign = await create_campaign(tenant)
    url = f"/v1/campaigns/{campaign['id']}"
    r = await tenant.client.post(f"{url}/pause")
    assert r.status_code == 409 and r.json()["code"] == "campaign.not_active", r.text
    await tenant.client.post(f"{url}/accounts", json={"account_ids": [await make_inbox(tenant)]})
    assert (await tenant.client.post(f"{url}/start")).json()["status"] == "active"
    paused = await tenant.client.post(f"{url}/pause", headers={"Idempotency-Key": "pause-1"})
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    assert paused.json()["throttled"]["is_throttled"] is False, "only an active campaign is throttled"
    assert (await tenant.client.post(f"{url}/pause")).json()["status"] == "paused"
    replay = await tenant.client.post(f"{url}/pause", headers={"Idempotency-Key": "pause-1"})
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert (await tenant.client.get("/v1/campaigns", params={"status": "paused"})).json()["data"][0]["id"] == (
        campaign["id"]
    )
    resumed = await tenant.client.post(f"{url}/start")
    assert resumed.status_code == 200 and resumed.json()["status"] == "active"


async def test_a_completed_campaign_cannot_start(
    tenant: Tenant, make_inbox: InboxFactory, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    campaign = await create_campaign(tenant)
    url = f"/v1/campaigns/{campaign['id']}"
    await tenant.client.post(f"{url}/accounts", json={"account_ids": [await make_inbox(tenant)]})
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(Campaign).where(Campaign.id == uuid.UUID(campaign["id"])).values(status="completed")
        )
    r = await tenant.client.post(f"{url}/start")
    assert r.status_code == 409 and r.json()["code"] == "campaign.completed", r.text
    r = await tenant.client.post(f"{url}/pause")
    assert r.status_code == 409 and r.json()["code"] == "campaign.not_active"
    assert (await tenant.client.get(url)).json()["status"] == "completed"


async def test_throttled_names_every_ineligible_inbox_while_active(tenant: Tenant, make_inbox: InboxFactory) -> None:
    campaign = await create_campaign(tenant, min_health_score=80)
    url = f"/v1/campaigns/{campaign['id']}"
    weak = await make_inbox(tenant, score=60)
    young = await make_inbox(tenant, stage=1)
    await tenant.client.post(f"{url}/accounts", json={"account_ids": [weak, young]})
    draft = (await tenant.client.get(url)).json()
    assert draft["throttled"]["is_throttled"] is False, "a draft is not throttled, whatever its pool"
    assert {(r["account_id"], r["reason"]) for r in draft["throttled"]["reasons"]} == {
        (weak, "below_min_health"),
        (young, "stage"),
    }
    active = (await tenant.client.post(f"{url}/start")).json()
    assert active["status"] == "active" and active["throttled"]["is_throttled"] is True
    # lowering the campaign's bar makes the weak inbox eligible: no longer throttled
    patched = (await tenant.client.patch(url, json={"min_health_score": 50})).json()
    assert patched["throttled"] == {"is_throttled": False, "reasons": [{"account_id": young, "reason": "stage"}]}
    listed = (await tenant.client.get("/v1/campaigns")).json()["data"]
    assert listed[0]["throttled"] == patched["throttled"]


async def test_a_deferral_shows_in_the_campaign_and_its_stats(
    tenant: Tenant, make_inbox: InboxFactory, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    from datetime import UTC, datetime

    from nimbus_api.sending.dispatcher import dispatch_campaign

    campaign = await create_campaign(tenant)
    url = f"/v1/campaigns/{campaign['id']}"
    young = await make_inbox(tenant, stage=1)
    await tenant.client.post(f"{url}/accounts", json={"account_ids": [young]})
    assert (await tenant.client.post(f"{url}/start")).status_code == 200
    assert (await tenant.client.get(url)).json()["last_deferral"] is None
    contact = (await tenant.client.post("/v1/contacts", json={"email": "wait@example.org"})).json()
    r = await tenant.client.post(f"{url}/enrollments", json={"contact_ids": [contact["id"]]})
    assert r.status_code in (200, 201), r.text
    async with sessionmaker() as session, session.begin():
        row = await session.get_one(Campaign, uuid.UUID(campaign["id"]))
        row.send_days, row.send_start = list(range(7)), row.send_start.replace(hour=0)
        row.send_end = row.send_end.replace(hour=23, minute=59)
        result = await dispatch_campaign(session, row, now=datetime.now(UTC), public_url="https://x.example", mx=None)
    assert result.deferred == 1
    for body in ((await tenant.client.get(url)).json(), (await tenant.client.get(f"{url}/stats")).json()):
        deferral = body["last_deferral"]
        assert deferral["deferred"] == 1
        assert deferral["reasons"] == {young: "stage"}
        assert deferral["retry_at"] > deferral["at"]
