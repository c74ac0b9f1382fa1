"""Helpers for campaign tests: request bodies, and inboxes connected through the API (real mailboxes of
the mail world) then made eligible (stage set by PATCH, health score set in the database, since only
the health engine writes it)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.models import EmailAccount
from tests.conftest import Tenant, account_payload


def step(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "delay_seconds": 0,
        "subject": "Hello {{ contact.first_name or 'there' }}",
        "text": "Hi {{ contact.first_name }},\nhow is {{ contact.company }}?\n\nUnsubscribe: {{ unsubscribe_url }}\n",
    }
    body.update(overrides)
    return body


def campaign_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": "Launch", "type": "cold", "steps": [step()]}
    body.update(overrides)
    return body


async def create_campaign(tenant: Tenant, **overrides: Any) -> dict[str, Any]:
    r = await tenant.client.post("/v1/campaigns", json=campaign_body(**overrides))
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def create_contacts(tenant: Tenant, *emails: str) -> list[str]:
    ids = []
    for email in emails:
        r = await tenant.client.post("/v1/contacts", json={"email": email, "first_name": "Pat"})
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    return ids


InboxFactory = Callable[..., Awaitable[str]]


@pytest.fixture
def make_inbox(sessionmaker: async_sessionmaker[AsyncSession]) -> InboxFactory:
    # stage 5 by default: fully warmed, so no stage caps the configured daily limit (``stages.limits``)
    async def factory(tenant: Tenant, *, stage: int = 5, score: float = 90.0, **payload: Any) -> str:
        r = await tenant.client.post("/v1/email-accounts", json=account_payload(**payload))
        assert r.status_code == 201, r.text
        account_id = r.json()["id"]
        r = await tenant.client.patch(f"/v1/email-accounts/{account_id}", json={"current_stage": stage})
        assert r.status_code == 200, r.text
        async with sessionmaker() as session, session.begin():
            await session.execute(
                update(EmailAccount).where(EmailAccount.id == uuid.UUID(account_id)).values(overall_score=score)
            )
        return str(account_id)

    return factory
