"""Postmark and SMTP2GO sign nothing: the URL's token, and HTTP basic credentials when the hook has them.
Postmark names our message by its own MessageID (matched through the 250 reply our sender kept);
SMTP2GO by the Message-ID header, as JSON or as a form."""

from __future__ import annotations

import base64

from sqlalchemy import update

from nimbus_api.models import Message
from tests.inbox.conftest import Loop
from tests.provider_hooks import samples
from tests.provider_hooks.conftest import create_hook, suppressed, usage

AUTH = {"username": "postmark", "password": "correct-horse-battery-staple"}


def _basic(username: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


async def _queued_as(loop: Loop, contact: str, provider_id: str) -> None:
    """What the sending service answered our DATA with (Postmark: ``250 Ok: queued as <MessageID>``)."""
    async with loop.sessionmaker() as session, session.begin():
        await session.execute(
            update(Message).where(Message.id == loop.sent[contact].id).values(reply_text=f"Ok: queued as {provider_id}")
        )


async def test_postmark_bounce_and_complaint_map_by_postmark_message_id(loop: Loop, http) -> None:  # type: ignore[no-untyped-def]
    await loop.send_step()
    grace, ada, other = loop.contacts
    await _queued_as(loop, grace, "883953f4-6105-42a2-a16a-77a8eac79483")
    await _queued_as(loop, ada, "00000000-0000-4000-8000-000000000001")
    _, path = await create_hook(loop, "postmark", basic_auth=AUTH)
    headers = _basic(AUTH["username"], AUTH["password"])

    bounce = samples.postmark_bounce(grace, "883953f4-6105-42a2-a16a-77a8eac79483")
    r = await http.post(path, json=bounce, headers=headers)
    assert r.status_code == 200 and r.json()["applied"] == 1, r.text
    assert await suppressed(loop, grace) == "hard_bounce"
    assert (await loop.messages(grace))[0].state == "bounced"

    complaint = samples.postmark_spam_complaint(ada, "00000000-0000-4000-8000-000000000001")
    r = await http.post(path, json=complaint, headers=headers)
    assert r.status_code == 200 and r.json()["applied"] == 1, r.text
    assert await suppressed(loop, ada) == "complaint"
    assert await usage(loop) == (1, 1)

    again = await http.post(path, json=bounce, headers=headers)  # Postmark retries: the same ID
    assert again.status_code == 200 and again.json()["duplicates"] == 1
    unknown = await http.post(path, json=samples.postmark_bounce(other, "not-a-message-of-ours"), headers=headers)
    assert unknown.status_code == 200 and unknown.json()["unmatched"] == 1
    assert await suppressed(loop, other) is None
    assert await usage(loop) == (1, 1)


async def test_postmark_without_the_right_credentials_is_refused(loop: Loop, http) -> None:  # type: ignore[no-untyped-def]
    await loop.send_step()
    grace = loop.contacts[0]
    await _queued_as(loop, grace, "883953f4-6105-42a2-a16a-77a8eac79483")
    _, path = await create_hook(loop, "postmark", basic_auth=AUTH)
    bounce = samples.postmark_bounce(grace, "883953f4-6105-42a2-a16a-77a8eac79483")
    for headers in ({}, _basic("postmark", "wrong-password-here"), _basic("someone", AUTH["password"])):
        r = await http.post(path, json=bounce, headers=headers)
        assert r.status_code == 401 and r.json()["code"] == "provider_hook.unauthorized", r.text
        assert r.headers["www-authenticate"].startswith("Basic")
    assert await suppressed(loop, grace) is None
    r = await http.post(path, content=b"{not json", headers={**_basic(**AUTH), "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["code"] == "provider_hook.malformed"


async def test_smtp2go_hard_bounce_spam_and_soft_bounce(loop: Loop, http) -> None:  # type: ignore[no-untyped-def]
    await loop.send_step()
    grace, ada, other = loop.contacts
    _, path = await create_hook(loop, "smtp2go")
    r = await http.post(path, json=samples.smtp2go_event(grace, loop.sent[grace].message_id_header))
    assert r.status_code == 200 and r.json()["applied"] == 1, r.text
    assert await suppressed(loop, grace) == "hard_bounce"
    spam = samples.smtp2go_event(ada, loop.sent[ada].message_id_header, event="spam")
    r = await http.post(path, data={k: v for k, v in spam.items() if isinstance(v, str)})  # the form variant
    assert r.status_code == 200 and r.json()["applied"] == 1, r.text
    assert await suppressed(loop, ada) == "complaint"
    soft = samples.smtp2go_event(other, loop.sent[other].message_id_header, bounce="soft")
    r = await http.post(path, json=soft)
    assert r.status_code == 200 and r.json()["ignored"] == 1, r.text
    assert await suppressed(loop, other) is None
    assert (await loop.messages(other))[0].state == "sent"
    assert await usage(loop) == (1, 1)


async def test_smtp2go_with_basic_credentials_refuses_others_and_counts_a_retry_once(loop: Loop, http) -> None:  # type: ignore[no-untyped-def]
    await loop.send_step()
    grace = loop.contacts[0]
    _, path = await create_hook(loop, "smtp2go", basic_auth={"username": "s2g", "password": "another-long-secret"})
    event = samples.smtp2go_event(grace, loop.sent[grace].message_id_header)
    r = await http.post(path, json=event, headers=_basic("s2g", "not-the-password"))
    assert r.status_code == 401 and r.json()["code"] == "provider_hook.unauthorized", r.text
    assert await suppressed(loop, grace) is None
    for expected in ("applied", "duplicates"):  # SMTP2GO sends it again: the same event, once
        r = await http.post(path, json=event, headers=_basic("s2g", "another-long-secret"))
        assert r.status_code == 200 and r.json()[expected] == 1, r.text
    assert await usage(loop) == (1, 0)
