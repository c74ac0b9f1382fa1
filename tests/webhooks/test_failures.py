"""A receiver that fails: refused connections, 500s, a stall, redirects, 410, Retry-After, abort-message,
and an endpoint failing for days. The schedule is checked against a clock the test moves (no sleeps)."""

from __future__ import annotations

import socket
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.config import Settings
from nimbus_api.credentials.vault import Vault
from nimbus_api.models import WebhookDelivery
from nimbus_api.webhooks.schedule import MAX_ATTEMPTS, RETRY_DELAYS
from tests.conftest import Tenant
from tests.servers.http_receiver import HttpReceiver, Received, Reply
from tests.servers.mail_world import MailWorld
from tests.webhooks.harness import Rig, add_endpoint, commit_events, make_rig, url_of


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _within_jitter(delay: timedelta, expected: timedelta) -> bool:
    return expected * 0.9 - timedelta(milliseconds=1) <= delay <= expected * 1.1 + timedelta(milliseconds=1)


async def _only(rig: Rig, event_id: Any) -> WebhookDelivery:
    (delivery,) = await rig.deliveries(event_id)
    return delivery


async def test_down_then_500s_then_a_stall_then_up_every_event_arrives_on_schedule(
    tenant: Tenant,
    mail_world: MailWorld,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    vault: Vault,
) -> None:
    port = _free_port()  # nothing listens yet: connection refused
    await add_endpoint(tenant.client, f"https://mail.example.test:{port}/hook")
    events = await commit_events(sessionmaker, tenant.workspace_id, [{"n": n} for n in range(3)])
    rig = make_rig(settings, sessionmaker, vault, webhook_timeout_seconds=1.0)
    phase = {"answer": "500"}

    def behaviour(_r: Received) -> Reply:
        if phase["answer"] == "500":
            return Reply(status=500, body=b"database on fire")
        if phase["answer"] == "stall":
            return Reply(delay=20.0)  # longer than the timeout: the attempt fails as a timeout
        return Reply()

    receiver = HttpReceiver(behaviour=behaviour, tls=mail_world.certs.server_context(), port=port)
    try:
        await rig.step()
        classes = []
        for event in events:
            delivery = await _only(rig, event.id)
            classes.append(delivery.last_error_class)
            assert delivery.next_attempt_at is not None
            assert _within_jitter(delivery.next_attempt_at - rig.clock.now, RETRY_DELAYS[0])
        assert classes == ["connect_refused"] * 3

        await receiver.start()
        for number, answer, expected_class in ((2, "500", "http_status"), (3, "stall", "timeout"), (4, "up", None)):
            phase["answer"] = answer
            dues = [d.next_attempt_at for d in [await _only(rig, e.id) for e in events]]
            due = max(d for d in dues if d is not None)
            rig.clock.now = min(d for d in dues if d is not None) - timedelta(milliseconds=1)
            await rig.step()
            early = [d.attempts for d in [await _only(rig, e.id) for e in events]]
            assert early == [number - 1] * len(events), "sent before it was due"
            rig.clock.now = due
            await rig.step()
            for event in events:
                delivery = await _only(rig, event.id)
                assert delivery.attempts == number and delivery.last_error_class == expected_class
                if expected_class is not None:
                    assert delivery.next_attempt_at is not None
                    assert _within_jitter(delivery.next_attempt_at - rig.clock.now, RETRY_DELAYS[number - 1])
        for event in events:
            delivery = await _only(rig, event.id)
            assert delivery.status == "succeeded"
            log = await rig.attempts(delivery.id)
            assert [a.error_class for a in log] == ["connect_refused", "http_status", "timeout", None]
            assert log[1].status_code == 500 and log[1].response_body == "database on fire"
            assert [a.will_retry for a in log] == [True, True, True, False]
        assert {r.headers["webhook-id"] for r in receiver.requests if r.headers} == {str(e.id) for e in events}
    finally:
        await receiver.stop()
        await rig.close()


async def test_a_redirect_is_a_failure_and_never_followed(
    tenant: Tenant, mail_world: MailWorld, rig: Rig, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with HttpReceiver(tls=mail_world.certs.server_context()) as elsewhere:
        targets = iter([f"https://mail.example.test:{elsewhere.port}/moved", "http://169.254.169.254/latest/meta-data"])

        def redirect(_r: Received) -> Reply:
            return Reply(status=302, headers=(("location", next(targets)),), body=b"")

        async with HttpReceiver(behaviour=redirect, tls=mail_world.certs.server_context()) as receiver:
            await add_endpoint(tenant.client, url_of(receiver))
            before = rig.kit.transport.backend.connections
            events = await commit_events(sessionmaker, tenant.workspace_id, [{"n": 1}, {"n": 2}])
            await rig.step()
            for event in events:
                delivery = await _only(rig, event.id)
                assert (delivery.status, delivery.last_error_class, delivery.last_status_code) == (
                    "pending",
                    "redirect",
                    302,
                )
            assert len(receiver.requests) == 2
            assert elsewhere.connections == 0  # neither the other receiver nor the metadata address was tried
            assert rig.kit.transport.backend.connections - before == receiver.connections


async def test_410_disables_the_endpoint_after_one_attempt(
    tenant: Tenant, mail_world: MailWorld, rig: Rig, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with HttpReceiver(behaviour=lambda _r: Reply(status=410), tls=mail_world.certs.server_context()) as gone:
        endpoint_id, _ = await add_endpoint(tenant.client, url_of(gone))
        (event,) = await commit_events(sessionmaker, tenant.workspace_id, [{"n": 1}])
        await rig.step()
        delivery = await _only(rig, event.id)
        assert (delivery.status, delivery.attempts, delivery.last_error_class) == ("failed", 1, "gone")
        read = (await tenant.client.get(f"/v1/webhook-endpoints/{endpoint_id}")).json()
        assert read["enabled"] is False and "410" in read["disabled_reason"] and read["disabled_at"]
        listed = (await tenant.client.get("/v1/webhook-endpoints")).json()["data"]
        assert next(e for e in listed if e["id"] == endpoint_id)["disabled_reason"] == read["disabled_reason"]
        (later,) = await commit_events(sessionmaker, tenant.workspace_id, [{"n": 2}])
        rig.clock.advance(timedelta(days=1))
        await rig.step()
        assert await rig.deliveries(later.id) == [] and len(gone.requests) == 1
        refused = await tenant.client.post(f"/v1/events/{event.id}/replay", json={"endpoint_id": endpoint_id})
        assert refused.status_code == 409 and refused.json()["code"] == "webhook_endpoint.disabled"
        enabled = await tenant.client.patch(f"/v1/webhook-endpoints/{endpoint_id}", json={"enabled": True})
        assert enabled.json()["disabled_reason"] is None and enabled.json()["enabled"] is True


async def test_retry_after_is_honoured_and_capped(
    tenant: Tenant, mail_world: MailWorld, rig: Rig, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    answers = iter(["120", "999999", "Wed, 21 Oct 2015 07:28:00 GMT"])

    def busy(_r: Received) -> Reply:
        return Reply(status=503, headers=(("retry-after", next(answers)),))

    async with HttpReceiver(behaviour=busy, tls=mail_world.certs.server_context()) as receiver:
        await add_endpoint(tenant.client, url_of(receiver))
        (event,) = await commit_events(sessionmaker, tenant.workspace_id, [{"n": 1}])
        await rig.step()
        delivery = await _only(rig, event.id)
        assert delivery.next_attempt_at is not None
        wait = delivery.next_attempt_at - rig.clock.now
        assert timedelta(seconds=120) <= wait <= timedelta(seconds=121), wait  # not the schedule's 5 s
        rig.clock.now = delivery.next_attempt_at
        await rig.step()
        delivery = await _only(rig, event.id)
        assert delivery.next_attempt_at is not None
        assert delivery.next_attempt_at - rig.clock.now <= timedelta(seconds=3601)  # capped at an hour
        assert delivery.next_attempt_at - rig.clock.now >= timedelta(seconds=3599)
        rig.clock.now = delivery.next_attempt_at
        await rig.step()  # a date in the past: the schedule's own delay (30 min)
        delivery = await _only(rig, event.id)
        assert delivery.next_attempt_at is not None
        assert _within_jitter(delivery.next_attempt_at - rig.clock.now, RETRY_DELAYS[2])


async def test_abort_message_stops_the_retries_of_that_event(
    tenant: Tenant, mail_world: MailWorld, rig: Rig, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    def abort(_r: Received) -> Reply:
        return Reply(status=400, headers=(("webhook-delivery", "abort-message"),), body=b"unknown tenant")

    async with HttpReceiver(behaviour=abort, tls=mail_world.certs.server_context()) as receiver:
        endpoint_id, _ = await add_endpoint(tenant.client, url_of(receiver))
        (event,) = await commit_events(sessionmaker, tenant.workspace_id, [{"n": 1}])
        await rig.step()
        delivery = await _only(rig, event.id)
        assert (delivery.status, delivery.attempts) == ("failed", 1)
        assert delivery.final_reason and "abort-message" in delivery.final_reason
        read = (await tenant.client.get(f"/v1/webhook-endpoints/{endpoint_id}")).json()
        assert read["enabled"] is True  # the endpoint itself is fine


async def test_ten_failed_attempts_end_the_delivery_and_five_failing_days_disable_the_endpoint(
    tenant: Tenant, mail_world: MailWorld, rig: Rig, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with HttpReceiver(behaviour=lambda _r: Reply(status=500), tls=mail_world.certs.server_context()) as down:
        endpoint_id, _ = await add_endpoint(tenant.client, url_of(down))
        (event,) = await commit_events(sessionmaker, tenant.workspace_id, [{"n": 1}])
        start = rig.clock.now
        for _ in range(MAX_ATTEMPTS):
            await rig.step()
            delivery = await _only(rig, event.id)
            if delivery.status != "pending":
                break
            assert delivery.next_attempt_at is not None
            rig.clock.now = delivery.next_attempt_at
        assert (delivery.status, delivery.attempts) == ("failed", MAX_ATTEMPTS)
        assert delivery.final_reason == f"all {MAX_ATTEMPTS} attempts failed"
        span = rig.clock.now - start
        assert timedelta(days=2.8) < span < timedelta(days=3.4), span  # about 3 days of retries
        read = (await tenant.client.get(f"/v1/webhook-endpoints/{endpoint_id}")).json()
        assert read["enabled"] is True and read["failing_since"] is not None

        rig.clock.now = start + timedelta(days=5, seconds=1)
        await commit_events(sessionmaker, tenant.workspace_id, [{"n": 2}])
        await rig.step()
        read = (await tenant.client.get(f"/v1/webhook-endpoints/{endpoint_id}")).json()
        assert read["enabled"] is False
        assert "every attempt failed for 5 days" in read["disabled_reason"], read["disabled_reason"]
        assert "http_status" in read["disabled_reason"]
        assert read["metrics"]["last_error"]["error_class"] == "http_status"
