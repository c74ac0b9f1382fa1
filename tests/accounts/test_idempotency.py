"""Idempotency-Key on POST: replay, mismatch, workspace scope, concurrency, and no record on error."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.models import EmailAccount, IdempotencyRecord
from tests.conftest import Tenant, TenantFactory, account_payload
from tests.servers.mail_world import MailWorld


async def _accounts(sessionmaker: async_sessionmaker[AsyncSession], tenant: Tenant) -> int:
    async with sessionmaker() as session:
        return (
            await session.scalar(
                select(func.count()).select_from(EmailAccount).where(EmailAccount.workspace_id == tenant.workspace_id)
            )
            or 0
        )


async def _records(sessionmaker: async_sessionmaker[AsyncSession], tenant: Tenant, key: str) -> int:
    async with sessionmaker() as session:
        return (
            await session.scalar(
                select(func.count())
                .select_from(IdempotencyRecord)
                .where(IdempotencyRecord.workspace_id == tenant.workspace_id, IdempotencyRecord.key == key)
            )
            or 0
        )


async def test_same_key_and_body_replays_the_first_response(
    tenant: Tenant, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    body = account_payload()
    first = await tenant.client.post("/v1/email-accounts", json=body, headers={"Idempotency-Key": "create-1"})
    assert first.status_code == 201
    assert "idempotent-replayed" not in first.headers
    again = await tenant.client.post("/v1/email-accounts", json=body, headers={"Idempotency-Key": "create-1"})
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert await _accounts(sessionmaker, tenant) == 1


async def test_key_order_in_json_does_not_matter(tenant: Tenant) -> None:
    body = account_payload()
    first = await tenant.client.post("/v1/email-accounts", json=body, headers={"Idempotency-Key": "k-order"})
    reordered = dict(reversed(list(body.items())))
    again = await tenant.client.post("/v1/email-accounts", json=reordered, headers={"Idempotency-Key": "k-order"})
    assert again.status_code == 201 and again.json()["id"] == first.json()["id"]


async def test_same_key_with_a_different_body_is_422_and_changes_nothing(
    tenant: Tenant, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await tenant.client.post("/v1/email-accounts", json=account_payload(), headers={"Idempotency-Key": "k2"})
    r = await tenant.client.post("/v1/email-accounts", json=account_payload(), headers={"Idempotency-Key": "k2"})
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "idempotency_key.mismatch"
    assert await _accounts(sessionmaker, tenant) == 1


async def test_verify_with_a_key_replays_the_result_without_checking_again(
    tenant: Tenant, mail_world: MailWorld
) -> None:
    account = (await tenant.client.post("/v1/email-accounts", json=account_payload())).json()
    url = f"/v1/email-accounts/{account['id']}/verify"
    first = await tenant.client.post(url, headers={"Idempotency-Key": "verify-1"})
    assert first.status_code == 200, first.text
    assert "idempotent-replayed" not in first.headers
    connections = mail_world.smtp.connections_total
    again = await tenant.client.post(url, headers={"Idempotency-Key": "verify-1"})
    assert again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert mail_world.smtp.connections_total == connections, "a replay does not verify again"
    fresh = await tenant.client.post(url, headers={"Idempotency-Key": "verify-2"})
    assert fresh.status_code == 200 and fresh.json()["verified_at"] > first.json()["verified_at"]


async def test_keys_are_scoped_to_the_workspace(make_tenant: TenantFactory) -> None:
    a, b = await make_tenant(), await make_tenant()
    ra = await a.client.post("/v1/email-accounts", json=account_payload(), headers={"Idempotency-Key": "shared"})
    rb = await b.client.post("/v1/email-accounts", json=account_payload(), headers={"Idempotency-Key": "shared"})
    assert ra.status_code == rb.status_code == 201
    assert ra.json()["id"] != rb.json()["id"]
    assert "idempotent-replayed" not in rb.headers


async def test_failed_request_leaves_no_record_so_a_corrected_retry_works(
    tenant: Tenant, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    existing = account_payload()
    await tenant.client.post("/v1/email-accounts", json=existing)
    # 409 (duplicate address) under a key: rolled back with the key.
    r = await tenant.client.post("/v1/email-accounts", json=existing, headers={"Idempotency-Key": "retry-me"})
    assert r.status_code == 409
    assert await _records(sessionmaker, tenant, "retry-me") == 0
    # 422 from a failed verification (wrong password) under the key: no record either.
    corrected = account_payload()
    wrong = {**corrected, "smtp": {**corrected["smtp"], "password": "wrong-password"}}  # type: ignore[dict-item]
    r = await tenant.client.post("/v1/email-accounts", json=wrong, headers={"Idempotency-Key": "retry-me"})
    assert (r.status_code, r.json()["code"]) == (422, "smtp.auth_failed"), r.text
    assert await _records(sessionmaker, tenant, "retry-me") == 0
    # the corrected body under the same key is a first request, not a mismatch
    r = await tenant.client.post("/v1/email-accounts", json=corrected, headers={"Idempotency-Key": "retry-me"})
    assert r.status_code == 201, r.text
    assert "idempotent-replayed" not in r.headers
    assert await _accounts(sessionmaker, tenant) == 2


async def test_concurrent_requests_with_one_key_create_one_account(
    tenant: Tenant, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    body = account_payload()
    responses = await asyncio.gather(
        *(tenant.client.post("/v1/email-accounts", json=body, headers={"Idempotency-Key": "race"}) for _ in range(6))
    )
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == 5
    assert await _accounts(sessionmaker, tenant) == 1


async def test_invalid_key_is_422(tenant: Tenant) -> None:
    r = await tenant.client.post("/v1/email-accounts", json=account_payload(), headers={"Idempotency-Key": "x" * 300})
    assert r.status_code == 422
    r = await tenant.client.post("/v1/email-accounts", json=account_payload(), headers={"Idempotency-Key": "bad\tkey"})
    assert r.status_code == 422 and r.json()["code"] == "idempotency_key.invalid"
