"""How many email accounts a workspace may hold: the deployment's default, a workspace's own limit set
through the CLI, a 409 ``email_account.limit_reached`` answered before any network work, and no way
for two concurrent creates to pass together."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.api.app import create_app
from nimbus_api.api.state import AppState
from nimbus_api.config import Settings
from nimbus_api.models import EmailAccount, Workspace
from tests.conftest import Tenant, account_payload
from tests.servers.mail_world import MailWorld
from tests.test_cli import run

CODE = "email_account.limit_reached"


async def set_own_limit(sm: async_sessionmaker[AsyncSession], workspace_id: uuid.UUID, limit: int | None) -> None:
    async with sm() as session, session.begin():
        await session.execute(update(Workspace).where(Workspace.id == workspace_id).values(max_email_accounts=limit))


async def count(sm: async_sessionmaker[AsyncSession], workspace_id: uuid.UUID) -> int:
    async with sm() as session:
        return (
            await session.scalar(
                select(func.count()).select_from(EmailAccount).where(EmailAccount.workspace_id == workspace_id)
            )
            or 0
        )


async def create(client: httpx.AsyncClient, **overrides: object) -> httpx.Response:
    return await client.post("/v1/email-accounts", json=account_payload(**overrides))


async def test_beyond_its_own_limit_a_409_before_any_check(
    tenant: Tenant, sessionmaker: async_sessionmaker[AsyncSession], mail_world: MailWorld
) -> None:
    await set_own_limit(sessionmaker, tenant.workspace_id, 2)
    for _ in range(2):
        assert (await create(tenant.client)).status_code == 201
    connections = mail_world.smtp.connections_total

    # A body whose checks would fail (a wrong password is a 422 smtp.auth_failed): the limit answers first.
    r = await create(tenant.client, smtp_password="wrong")
    assert r.status_code == 409, r.text
    problem = r.json()
    assert problem["code"] == CODE and problem["type"] == f"urn:nimbus:problem:{CODE}"
    assert problem["detail"] == (
        "this workspace holds 2 email account(s) and may hold 2, this workspace's own limit set by the operator: "
        "delete one, or ask the operator to raise the limit"
    )
    assert mail_world.smtp.connections_total == connections  # no SMTP connection was made for it
    assert await count(sessionmaker, tenant.workspace_id) == 2

    # Deleting one makes room again; so does raising the limit.
    first = (await tenant.client.get("/v1/email-accounts")).json()["data"][0]["id"]
    assert (await tenant.client.delete(f"/v1/email-accounts/{first}")).status_code == 204
    assert (await create(tenant.client)).status_code == 201
    assert (await create(tenant.client)).status_code == 409
    await set_own_limit(sessionmaker, tenant.workspace_id, 3)
    assert (await create(tenant.client)).status_code == 201
    assert await count(sessionmaker, tenant.workspace_id) == 3


async def test_two_concurrent_creates_at_the_limit_do_not_both_pass(
    tenant: Tenant, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await set_own_limit(sessionmaker, tenant.workspace_id, 2)
    assert (await create(tenant.client)).status_code == 201
    # Both pass the first check (1 of 2) and run their verification side by side; one insert waits for
    # the other's commit at the workspace's lock and counts it. Three rounds, the winner deleted after each.
    for _ in range(3):
        responses = await asyncio.gather(create(tenant.client), create(tenant.client))
        assert sorted(r.status_code for r in responses) == [201, 409], [r.text for r in responses]
        [loser] = [r for r in responses if r.status_code == 409]
        assert loser.json()["code"] == CODE
        assert await count(sessionmaker, tenant.workspace_id) == 2
        [winner] = [r for r in responses if r.status_code == 201]
        assert (await tenant.client.delete(f"/v1/email-accounts/{winner.json()['id']}")).status_code == 204


@pytest.fixture
async def default_of_one(settings: Settings, app_state: AppState) -> AsyncIterator[httpx.AsyncClient]:
    """An app whose deployment default is 1 account per workspace (no key: the test adds its own)."""
    state = dataclasses.replace(app_state, settings=settings.model_copy(update={"max_accounts_per_workspace": 1}))
    app = create_app(state.settings, state=state)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://nimbus.test") as client:
        yield client


async def test_the_deployment_default_and_a_workspace_override(
    tenant: Tenant, default_of_one: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    default_of_one.headers["Authorization"] = f"Bearer {tenant.token}"
    assert (await create(default_of_one)).status_code == 201
    r = await create(default_of_one)
    assert r.status_code == 409 and r.json()["code"] == CODE
    assert "may hold 1, the deployment's default (NIMBUS_MAX_ACCOUNTS_PER_WORKSPACE)" in r.json()["detail"]
    await set_own_limit(sessionmaker, tenant.workspace_id, 2)
    assert (await create(default_of_one)).status_code == 201
    await set_own_limit(sessionmaker, tenant.workspace_id, 0)
    assert (await create(default_of_one)).status_code == 409
    assert await count(sessionmaker, tenant.workspace_id) == 2


async def test_the_workspace_shows_its_accounts_and_its_limit(
    tenant: Tenant, default_of_one: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    default_of_one.headers["Authorization"] = f"Bearer {tenant.token}"

    async def shown() -> tuple[int, int]:
        body = (await default_of_one.get("/v1/workspace")).json()
        return body["email_accounts"], body["max_email_accounts"]

    assert await shown() == (0, 1)  # the deployment's default
    assert (await create(default_of_one)).status_code == 201
    assert await shown() == (1, 1)
    await set_own_limit(sessionmaker, tenant.workspace_id, 5)
    assert await shown() == (1, 5)  # its own limit wins
    r = await default_of_one.patch("/v1/workspace", json={"monthly_send_quota": 10})
    assert (r.json()["email_accounts"], r.json()["max_email_accounts"]) == (1, 5)


async def test_nimbus_workspace_set_limit(
    settings: Settings, tenant: Tenant, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    assert (await create(tenant.client)).status_code == 201
    assert (await create(tenant.client)).status_code == 201

    out = run(settings, "workspace", "set-limit", tenant.name, "--max-accounts", "1")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == (
        f"workspace {tenant.name}: at most 1, this workspace's own limit set by the operator; it holds 2; "
        "1 over it: they stay, new ones are refused"
    )
    r = await create(tenant.client)
    assert r.status_code == 409 and r.json()["code"] == CODE
    assert await count(sessionmaker, tenant.workspace_id) == 2

    out = run(settings, "workspace", "set-limit", tenant.name, "--max-accounts", "default")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == (
        f"workspace {tenant.name}: at most 1000, the deployment's default (NIMBUS_MAX_ACCOUNTS_PER_WORKSPACE); "
        "it holds 2"
    )
    async with sessionmaker() as session:
        assert (await session.get_one(Workspace, tenant.workspace_id)).max_email_accounts is None
    assert (await create(tenant.client)).status_code == 201

    for bad in ("-1", "many", "1000001"):
        out = run(settings, "workspace", "set-limit", tenant.name, "--max-accounts", bad)
        assert out.returncode == 2 and "expected a number 0..1000000 or `default`" in out.stderr, out.stderr
    out = run(settings, "workspace", "set-limit", "no-such-workspace", "--max-accounts", "5")
    assert out.returncode == 2 and "no workspace named 'no-such-workspace'" in out.stderr
