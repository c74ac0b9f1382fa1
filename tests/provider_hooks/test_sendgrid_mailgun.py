"""SendGrid's Signed Event Webhook (ECDSA P-256 over timestamp + body) and Mailgun's HMAC signature
(timestamp + token under the signing key): verified before the events act; a forged, stale or replayed
request is refused, a retried event counted once."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from nimbus_api.models import CredentialAccess
from tests.inbox.conftest import Loop
from tests.provider_hooks import samples
from tests.provider_hooks.conftest import create_hook, suppressed, usage

SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"
MAILGUN_KEY = "key-" + "3ax6xnjp29jd6fds4gc373sgvjxteol0"


def _sendgrid_keys() -> tuple[ec.EllipticCurvePrivateKey, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key, base64.b64encode(der).decode()


def _signed(key: ec.EllipticCurvePrivateKey, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    stamp = str(timestamp if timestamp is not None else int(time.time()))
    signature = key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {SIGNATURE: base64.b64encode(signature).decode(), TIMESTAMP: stamp, "Content-Type": "application/json"}


async def test_sendgrid_signed_events_map_and_replays_count_once(loop: Loop, http) -> None:  # type: ignore[no-untyped-def]
    await loop.send_step()
    grace, ada, _ = loop.contacts
    key, public = _sendgrid_keys()
    hook_id, path = await create_hook(loop, "sendgrid", public_key=public)
    read = (await loop.tenant.client.get(f"/v1/provider-hooks/{hook_id}")).json()
    assert read["signature"] == "sendgrid_ecdsa" and "public_key" not in read
    events = samples.sendgrid_events(grace, loop.sent[grace].message_id_header, ada, loop.sent[ada].message_id_header)
    body = json.dumps(events).encode()
    r = await http.post(path, content=body, headers=_signed(key, body))
    assert r.status_code == 200, r.text
    assert r.json() | {"subscription_confirmed": False} == {
        "received": 2, "applied": 2, "unmatched": 0, "duplicates": 0, "ignored": 1, "subscription_confirmed": False,
    }  # fmt: skip
    assert await suppressed(loop, grace) == "hard_bounce"
    assert await suppressed(loop, ada) == "complaint"
    assert await usage(loop) == (1, 1)
    again = await http.post(path, content=body, headers=_signed(key, body))  # SendGrid retries the batch
    assert again.status_code == 200 and again.json()["duplicates"] == 3
    assert await usage(loop) == (1, 1)
    assert len(await loop.events("message.complained")) == 1


async def test_sendgrid_forged_or_stale_is_refused(loop: Loop, http) -> None:  # type: ignore[no-untyped-def]
    await loop.send_step()
    grace, ada, _ = loop.contacts
    key, public = _sendgrid_keys()
    other, _ = _sendgrid_keys()
    _, path = await create_hook(loop, "sendgrid", public_key=public)
    events = samples.sendgrid_events(grace, loop.sent[grace].message_id_header, ada, loop.sent[ada].message_id_header)
    body = json.dumps(events).encode()
    tampered = body.replace(b"bounce", b"bounce ", 1)
    for content, headers, code in (
        (body, _signed(other, body), "provider_hook.signature_invalid"),
        (tampered, _signed(key, body), "provider_hook.signature_invalid"),
        (body, {"Content-Type": "application/json"}, "provider_hook.signature_invalid"),
        (body, _signed(key, body, int(time.time()) - 3600), "provider_hook.stale"),
    ):
        r = await http.post(path, content=content, headers=headers)
        assert r.status_code == 403 and r.json()["code"] == code, r.text
    assert await usage(loop) == (0, 0)
    assert await suppressed(loop, grace) is None


def _mailgun(event: dict[str, Any], *, key: str = MAILGUN_KEY, timestamp: int | None = None) -> dict[str, Any]:
    stamp, token = str(timestamp if timestamp is not None else int(time.time())), secrets.token_hex(25)
    signature = hmac.new(key.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    return {"signature": {"timestamp": stamp, "token": token, "signature": signature}, "event-data": event}


async def test_mailgun_failed_and_complained_map(loop: Loop, http) -> None:  # type: ignore[no-untyped-def]
    await loop.send_step()
    grace, ada, other = loop.contacts
    hook_id, path = await create_hook(loop, "mailgun", signing_key=MAILGUN_KEY)
    r = await http.post(path, json=_mailgun(samples.mailgun_event(grace, loop.sent[grace].message_id_header)))
    assert r.status_code == 200 and r.json()["applied"] == 1, r.text
    assert await suppressed(loop, grace) == "hard_bounce"
    complained = samples.mailgun_event(ada, loop.sent[ada].message_id_header, event="complained")
    r = await http.post(path, json=_mailgun(complained))
    assert r.status_code == 200 and r.json()["applied"] == 1, r.text
    assert await suppressed(loop, ada) == "complaint"
    temporary = samples.mailgun_event(other, loop.sent[other].message_id_header, severity="temporary")
    r = await http.post(path, json=_mailgun(temporary))
    assert r.status_code == 200 and r.json()["ignored"] == 1, r.text
    assert await suppressed(loop, other) is None
    assert await usage(loop) == (1, 1)
    listed = (await loop.tenant.client.get(f"/v1/provider-hooks/{hook_id}/notifications")).json()["data"]
    assert [(n["email"], n["outcome"]) for n in listed] == [  # newest first; the signature tokens not listed
        (other, "soft_bounce"), (ada, "complained"), (grace, "bounced"),
    ]  # fmt: skip
    assert listed[2]["message_id"] == str(loop.sent[grace].id)
    async with loop.sessionmaker() as session:  # every decrypt of the signing key is audited
        actors = (await session.scalars(select(CredentialAccess.actor).where(
            CredentialAccess.workspace_id == loop.tenant.workspace_id,
            CredentialAccess.credential_kind == "provider_hook_key",
        ))).all()  # fmt: skip
    assert actors == [f"system:provider_hook:{hook_id}"] * 3


async def test_mailgun_forged_stale_or_replayed_is_refused(loop: Loop, http) -> None:  # type: ignore[no-untyped-def]
    await loop.send_step()
    grace = loop.contacts[0]
    _, path = await create_hook(loop, "mailgun", signing_key=MAILGUN_KEY)
    event = samples.mailgun_event(grace, loop.sent[grace].message_id_header)
    forged = _mailgun(event, key="key-not-the-signing-key-at-all")
    r = await http.post(path, json=forged)
    assert r.status_code == 403 and r.json()["code"] == "provider_hook.signature_invalid", r.text
    stale = _mailgun(event, timestamp=int(time.time()) - 3600)
    r = await http.post(path, json=stale)
    assert r.status_code == 403 and r.json()["code"] == "provider_hook.stale", r.text
    assert await suppressed(loop, grace) is None
    signed = _mailgun(event)
    assert (await http.post(path, json=signed)).status_code == 200
    replayed = await http.post(path, json=signed)
    assert replayed.status_code == 403 and replayed.json()["code"] == "provider_hook.replayed", replayed.text
    assert await usage(loop) == (1, 0)


async def test_events_about_no_message_of_ours_are_recorded_unmatched(loop: Loop, http) -> None:  # type: ignore[no-untyped-def]
    key, public = _sendgrid_keys()
    _, sendgrid = await create_hook(loop, "sendgrid", public_key=public)
    events = samples.sendgrid_events("a@example.org", "<x@example.org>", "b@example.org", "<y@example.org>")
    body = json.dumps(events).encode()
    r = await http.post(sendgrid, content=body, headers=_signed(key, body))
    assert r.status_code == 200 and (r.json()["unmatched"], r.json()["applied"]) == (2, 0), r.text
    _, mailgun = await create_hook(loop, "mailgun", signing_key=MAILGUN_KEY)
    r = await http.post(mailgun, json=_mailgun(samples.mailgun_event("a@example.org", "<x@example.org>")))
    assert r.status_code == 200 and r.json()["unmatched"] == 1, r.text
    assert await suppressed(loop, "a@example.org") is None
    assert await usage(loop) == (0, 0)
