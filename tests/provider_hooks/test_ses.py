"""Amazon SES through an SNS topic's HTTPS subscription: the confirmation is performed, notifications are
verified against the signing certificate (SignatureVersion 1 and 2) before they act, and act as a DSN
or a feedback report would."""

from __future__ import annotations

import datetime as dt
import json

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select, update

from nimbus_api.models import Message, ProviderHookEvent
from tests.api.live_server import live_server
from tests.inbox.conftest import Loop
from tests.provider_hooks import samples
from tests.provider_hooks.conftest import TOPIC, FakeSns, create_hook, suppressed, usage


async def test_the_subscription_is_confirmed_against_the_signed_subscribe_url(loop: Loop, fake_sns: FakeSns) -> None:
    hook_id, path = await create_hook(loop, "ses", topic_arn=TOPIC)
    confirmation = fake_sns.message("SubscriptionConfirmation", "You have chosen to subscribe to the topic.")
    r = await fake_sns.post(path, confirmation)
    assert r.status_code == 200, r.text
    assert r.json()["subscription_confirmed"] is True
    [request] = fake_sns.confirmations()
    assert request.method == "GET" and confirmation["Token"] in request.target
    hook = (await loop.tenant.client.get(f"/v1/provider-hooks/{hook_id}")).json()
    assert hook["subscription_confirmed_at"] is not None and hook["signature"] == "sns"
    again = await fake_sns.post(path, confirmation)  # SNS resends it: confirmed once
    assert again.status_code == 200 and len(fake_sns.confirmations()) == 1


async def test_a_permanent_bounce_suppresses_and_counts_once(loop: Loop, fake_sns: FakeSns) -> None:
    await loop.send_step()
    grace = loop.contacts[0]
    _, path = await create_hook(loop, "ses")
    ours = loop.sent[grace].message_id_header
    notification = fake_sns.message("Notification", samples.ses_bounce(grace, ours.strip("<>")), version="1")
    r = await fake_sns.post(path, notification)
    assert r.status_code == 200, r.text
    assert r.json() | {"subscription_confirmed": False} == {
        "received": 1, "applied": 1, "unmatched": 0, "duplicates": 0, "ignored": 0, "subscription_confirmed": False,
    }  # fmt: skip
    [message, *_] = await loop.messages(grace)
    assert (message.state, message.reply_enhanced, message.error_code) == ("bounced", "5.1.1", "bounce.userunknown")
    assert (await loop.enrollment(grace)).status == "bounced"
    assert await suppressed(loop, grace) == "hard_bounce"
    [bounced] = await loop.events("message.bounced")
    assert (bounced["kind"], bounced["email"], bounced["inbound_message_id"]) == ("hard", grace, None)
    assert [e["email"] for e in await loop.events("contact.suppressed")] == [grace]
    assert await usage(loop) == (1, 0)
    replay = await fake_sns.post(path, notification)  # the same signed notification again
    assert replay.status_code == 200 and replay.json()["duplicates"] == 1 and replay.json()["applied"] == 0
    assert await usage(loop) == (1, 0)
    assert len(await loop.events("message.bounced")) == 1


async def test_a_transient_bounce_is_recorded_without_suppression(loop: Loop, fake_sns: FakeSns) -> None:
    await loop.send_step()
    grace = loop.contacts[0]
    _, path = await create_hook(loop, "ses")
    ours = loop.sent[grace].message_id_header
    body = samples.ses_bounce(grace, ours, bounce_type="Transient")
    r = await fake_sns.post(path, fake_sns.message("Notification", body, version="2"))
    assert r.status_code == 200 and r.json()["ignored"] == 1, r.text
    assert (await loop.messages(grace))[0].state == "sent"
    assert await suppressed(loop, grace) is None
    assert await usage(loop) == (0, 0)
    async with loop.sessionmaker() as session:
        outcome = await session.scalar(select(ProviderHookEvent.outcome).where(ProviderHookEvent.email == grace))
    assert outcome == "soft_bounce"


async def test_a_complaint_signed_with_sha256_suppresses_and_counts(loop: Loop, fake_sns: FakeSns) -> None:
    await loop.send_step()
    ada = loop.contacts[1]
    _, path = await create_hook(loop, "ses", topic_arn=TOPIC)
    body = samples.ses_complaint(ada, loop.sent[ada].message_id_header)
    r = await fake_sns.post(path, fake_sns.message("Notification", body, version="2"))
    assert r.status_code == 200 and r.json()["applied"] == 1, r.text
    assert await suppressed(loop, ada) == "complaint"
    assert (await loop.enrollment(ada)).status == "stopped"
    [complained] = await loop.events("message.complained")
    assert (complained["email"], complained["feedback_type"]) == (ada, "abuse")
    assert await usage(loop) == (0, 1)


async def test_an_unknown_message_is_recorded_unmatched(loop: Loop, fake_sns: FakeSns) -> None:
    hook_id, path = await create_hook(loop, "ses")
    body = samples.ses_bounce("nobody@example.org", "not-ours@example.org")
    fields = fake_sns.message("Notification", body)
    r = await fake_sns.post(path, fields)
    assert r.status_code == 200 and r.json()["unmatched"] == 1, r.text
    assert await suppressed(loop, "nobody@example.org") is None
    [seen] = (await loop.tenant.client.get(f"/v1/provider-hooks/{hook_id}/notifications")).json()["data"]
    assert (seen["kind"], seen["outcome"], seen["email"], seen["message_id"]) == (
        "bounce", "unmatched", "nobody@example.org", None,
    )  # fmt: skip
    assert seen["event_id"] == f"{fields['MessageId']}#nobody@example.org"


async def test_forged_stale_foreign_and_misdirected_notifications_are_refused(
    loop: Loop, fake_sns: FakeSns, sns_key: rsa.RSAPrivateKey
) -> None:
    await loop.send_step()
    grace = loop.contacts[0]
    _, path = await create_hook(loop, "ses", topic_arn=TOPIC)
    body = samples.ses_bounce(grace, loop.sent[grace].message_id_header)

    tampered = fake_sns.message("Notification", body)
    tampered["Message"] = samples.ses_bounce(loop.contacts[1], loop.sent[loop.contacts[1]].message_id_header)
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cases = {
        "provider_hook.signature_invalid": [tampered, fake_sns.message("Notification", body, key=other_key)],
        "provider_hook.stale": [
            fake_sns.message("Notification", body, timestamp=dt.datetime.now(dt.UTC) - dt.timedelta(hours=2))
        ],
        "provider_hook.topic_mismatch": [
            fake_sns.message("Notification", body, topic="arn:aws:sns:us-east-1:123456789012:other")
        ],
        "provider_hook.cert_url_refused": [
            fake_sns.message("Notification", body, cert_url="http://attacker.example.org/cert.pem"),
            fake_sns.message("Notification", body, cert_url="https://sns.us-east-1.amazonaws.com.evil.test/c.pem"),
        ],
    }
    fetched = len(fake_sns.receiver.requests)
    for code, messages in cases.items():
        for fields in messages:
            r = await fake_sns.post(path, fields)
            assert r.status_code == 403 and r.json()["code"] == code, r.text
    assert not [r for r in fake_sns.receiver.requests[fetched:] if "attacker" in r.target]
    assert (await loop.messages(grace))[0].state == "sent"
    assert await usage(loop) == (0, 0)
    assert sns_key is fake_sns.key


async def test_the_default_pattern_refuses_a_certificate_off_amazon(loop: Loop, http) -> None:  # type: ignore[no-untyped-def]
    """The session app keeps the default pattern: a loopback certificate URL is refused before any fetch."""
    _, path = await create_hook(loop, "ses")
    fields = {
        "Type": "Notification", "MessageId": "m-1", "TopicArn": TOPIC, "Message": "{}",
        "Timestamp": "2026-01-01T00:00:00.000Z", "SignatureVersion": "1", "Signature": "AAAA",
        "SigningCertURL": "http://127.0.0.1:9/SimpleNotificationService-x.pem",
    }  # fmt: skip
    r = await http.post(path, content=json.dumps(fields), headers={"Content-Type": "text/plain"})
    assert r.status_code == 403 and r.json()["code"] == "provider_hook.cert_url_refused", r.text


async def test_without_headers_the_ses_message_id_in_the_250_reply_matches(loop: Loop, fake_sns: FakeSns) -> None:
    """SES kept no headers (``headersTruncated``): its ``mail.messageId`` is what its SMTP endpoint answered
    our DATA with (``250 Ok <id>``), kept on the sent message."""
    await loop.send_step()
    grace = loop.contacts[0]
    ses_id = "0100018c5e0a1b2c-3d4e5f60-7a8b-9c0d-1e2f-3a4b5c6d7e8f-000000"
    async with loop.sessionmaker() as session, session.begin():
        await session.execute(
            update(Message).where(Message.id == loop.sent[grace].id).values(reply_text=f"Ok {ses_id}")
        )
    notification = json.loads(samples.ses_bounce(grace, "unused"))
    notification["mail"].update(messageId=ses_id, headers=[], commonHeaders={}, headersTruncated=True)
    _, path = await create_hook(loop, "ses")
    r = await fake_sns.post(path, fake_sns.message("Notification", json.dumps(notification)))
    assert r.status_code == 200 and r.json()["applied"] == 1, r.text
    assert await suppressed(loop, grace) == "hard_bounce"
    assert await usage(loop) == (1, 0)


async def test_a_certificate_that_cannot_be_fetched_is_a_502_and_changes_nothing(loop: Loop, fake_sns: FakeSns) -> None:
    await loop.send_step()
    grace = loop.contacts[0]
    _, path = await create_hook(loop, "ses")
    body = samples.ses_bounce(grace, loop.sent[grace].message_id_header)
    fields = fake_sns.message("Notification", body, cert_url=f"{fake_sns.base}/missing.crt")
    r = await fake_sns.post(path, fields)
    assert r.status_code == 502 and r.json()["code"] == "provider_hook.upstream_failed", r.text
    assert [q.target for q in fake_sns.receiver.requests] == ["/missing.crt"]
    assert await usage(loop) == (0, 0)
    retried = await fake_sns.post(path, fake_sns.message("Notification", body))  # SNS retries: it acts then
    assert retried.status_code == 200 and retried.json()["applied"] == 1, retried.text


async def test_over_a_real_connection_as_sns_posts_it(loop: Loop, fake_sns: FakeSns) -> None:
    """The API served by uvicorn on loopback: the subscription, then a bounce, each one HTTP request."""
    await loop.send_step()
    grace = loop.contacts[0]
    _, path = await create_hook(loop, "ses", topic_arn=TOPIC)
    async with live_server(fake_sns.app) as (host, port), httpx.AsyncClient(base_url=f"http://{host}:{port}") as sns:
        r = await fake_sns.post(path, fake_sns.message("SubscriptionConfirmation", "Confirm."), client=sns)
        assert r.status_code == 200 and r.json()["subscription_confirmed"], r.text
        body = samples.ses_bounce(grace, loop.sent[grace].message_id_header)
        r = await fake_sns.post(path, fake_sns.message("Notification", body, version="2"), client=sns)
        assert r.status_code == 200 and r.json()["applied"] == 1, r.text
    assert len(fake_sns.confirmations()) == 1
    assert await suppressed(loop, grace) == "hard_bounce"
    assert await usage(loop) == (1, 0)


async def test_a_verified_message_that_is_not_from_ses_is_recorded_and_ignored(loop: Loop, fake_sns: FakeSns) -> None:
    _, path = await create_hook(loop, "ses")
    for message in ("Hello from the SNS console", '{"notificationType": "Bounce", "bounce": "not an object"}'):
        r = await fake_sns.post(path, fake_sns.message("Notification", message))
        assert r.status_code == 200 and r.json()["ignored"] == 1, r.text
