"""The dispatcher end to end: outbox row committed -> fan-out -> claim -> signed POST -> recorded."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks.webhooks import Webhook

from nimbus_api.models import CredentialAccess
from tests.conftest import Tenant
from tests.servers.http_receiver import HttpReceiver, Reply
from tests.servers.mail_world import MailWorld
from tests.webhooks.harness import Rig, add_endpoint, commit_events, url_of


async def test_a_committed_event_arrives_signed_and_is_recorded(
    tenant: Tenant, rig: Rig, receiver: HttpReceiver, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    endpoint_id, secret = await add_endpoint(tenant.client, url_of(receiver))
    (event,) = await commit_events(sessionmaker, tenant.workspace_id, [{"n": 1, "text": "héllo ✓"}])

    report = await rig.step()
    assert report.deliveries >= 1
    (got,) = await receiver.wait_for(1)
    assert got.method == "POST" and got.target == "/hook"
    assert got.headers["webhook-id"] == str(event.id)
    assert got.headers["content-type"] == "application/json"
    assert Webhook(secret).verify(got.body, got.headers) == event.payload
    assert json.loads(got.body) == event.payload

    (delivery,) = await rig.deliveries(event.id)
    assert (delivery.status, delivery.attempts, delivery.lease_id) == ("succeeded", 1, None)
    (attempt,) = await rig.attempts(delivery.id)
    assert attempt.status_code == 200 and attempt.error_class is None and attempt.response_body == "ok"
    assert attempt.will_retry is False

    listed = (await tenant.client.get(f"/v1/webhook-endpoints/{endpoint_id}/deliveries")).json()["data"]
    assert [d["id"] for d in listed] == [str(delivery.id)] and listed[0]["attempt_log"][0]["status_code"] == 200
    events = (await tenant.client.get("/v1/events", params={"type": "webhook.test"})).json()["data"]
    assert events[0]["deliveries"][0]["status"] == "succeeded"
    read = (await tenant.client.get(f"/v1/webhook-endpoints/{endpoint_id}")).json()
    assert read["metrics"]["attempts_24h"] == 1 and read["metrics"]["success_rate_24h"] == 1.0


async def test_the_secret_is_decrypted_once_per_process_and_version(
    tenant: Tenant, rig: Rig, receiver: HttpReceiver, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    endpoint_id, _ = await add_endpoint(tenant.client, url_of(receiver))
    for n in range(3):
        await commit_events(sessionmaker, tenant.workspace_id, [{"n": n}])
        await rig.step()
    await receiver.wait_for(3)

    async def decrypts() -> int:
        async with sessionmaker() as session:
            return int(
                await session.scalar(
                    select(func.count())
                    .select_from(CredentialAccess)
                    .where(CredentialAccess.webhook_endpoint_id == endpoint_id)
                )
                or 0
            )

    assert await decrypts() == 1
    rotated = await tenant.client.post(f"/v1/webhook-endpoints/{endpoint_id}/rotate-secret")
    assert rotated.status_code == 200
    await commit_events(sessionmaker, tenant.workspace_id, [{"n": 9}])
    await rig.step()
    assert await decrypts() == 2  # the new version, once; the old one from memory
    audit = (await tenant.client.get("/v1/audit-log", params={"purpose": "webhook_signing"})).json()["data"]
    assert {(e["webhook_endpoint_id"], e["credential"]) for e in audit} == {(endpoint_id, "webhook_secret")}


async def test_a_failure_is_retried_on_schedule_and_then_succeeds(
    tenant: Tenant, rig: Rig, receiver: HttpReceiver, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    answers = iter([500, 500, 200])
    receiver.behaviour = lambda _r: Reply(status=next(answers))
    await add_endpoint(tenant.client, url_of(receiver))
    (event,) = await commit_events(sessionmaker, tenant.workspace_id, [{"n": 1}])
    await rig.step()
    (delivery,) = await rig.deliveries(event.id)
    assert (delivery.status, delivery.attempts) == ("pending", 1)
    first_due = delivery.next_attempt_at
    assert first_due is not None
    assert timedelta(seconds=4.5) <= first_due - rig.clock.now <= timedelta(seconds=5.5)

    await rig.step()  # not due yet: nothing sent
    assert len(receiver.requests) == 1
    rig.clock.now = first_due
    await rig.step()
    (delivery,) = await rig.deliveries(event.id)
    assert delivery.attempts == 2 and delivery.next_attempt_at is not None
    assert timedelta(minutes=4.5) <= delivery.next_attempt_at - rig.clock.now <= timedelta(minutes=5.5)
    rig.clock.now = delivery.next_attempt_at
    await rig.step()
    (delivery,) = await rig.deliveries(event.id)
    assert (delivery.status, delivery.attempts) == ("succeeded", 3)
    ids = {r.headers["webhook-id"] for r in receiver.requests}
    stamps = [r.headers["webhook-timestamp"] for r in receiver.requests]
    signatures = [r.headers["webhook-signature"] for r in receiver.requests]
    assert ids == {str(event.id)} and len(set(stamps)) == 3 and len(set(signatures)) == 3
    assert [a.will_retry for a in await rig.attempts(delivery.id)] == [True, True, False]


async def test_an_endpoint_deleted_while_its_request_is_in_flight_does_not_stall_the_dispatcher(
    tenant: Tenant, rig: Rig, mail_world: MailWorld, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with HttpReceiver(behaviour=lambda _r: Reply(delay=0.5), tls=mail_world.certs.server_context()) as slow:
        endpoint_id, _ = await add_endpoint(tenant.client, url_of(slow))
        await commit_events(sessionmaker, tenant.workspace_id, [{"n": 1}])
        await rig.dispatcher.run_round()
        await slow.wait_for(1)
        assert (await tenant.client.delete(f"/v1/webhook-endpoints/{endpoint_id}")).status_code == 204
        await rig.dispatcher.drain(5)  # records the attempt of a delivery that is gone: no error
        assert rig.dispatcher.stats.failed_rounds == 0
        other_id, _ = await add_endpoint(tenant.client, url_of(slow))
        (event,) = await commit_events(sessionmaker, tenant.workspace_id, [{"n": 2}])
        await rig.step()
        (delivery,) = await rig.deliveries(event.id)
        assert delivery.status == "succeeded" and str(delivery.endpoint_id) == other_id
