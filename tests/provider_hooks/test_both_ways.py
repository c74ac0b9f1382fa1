"""The same bounce or complaint reported both ways, by mail in the inbox (read by the real IMAP sync) and
by the sending service's webhook: it acts and counts once, whichever arrives first."""

from __future__ import annotations

from tests.inbox.conftest import Loop
from tests.provider_hooks import samples
from tests.provider_hooks.conftest import FakeSns, create_hook, suppressed, usage


async def test_webhook_first_then_the_dsn(loop: Loop, fake_sns: FakeSns) -> None:
    await loop.send_step()
    grace = loop.contacts[0]
    _, path = await create_hook(loop, "ses")
    body = samples.ses_bounce(grace, loop.sent[grace].message_id_header.strip("<>"))
    r = await fake_sns.post(path, fake_sns.message("Notification", body))
    assert r.status_code == 200 and r.json()["applied"] == 1, r.text
    loop.deliver(loop.dsn(grace))
    await loop.sync()
    assert [row.kind for row in await loop.inbound()] == ["bounce"]
    assert await usage(loop) == (1, 0)
    assert len(await loop.events("message.bounced")) == 1
    assert await suppressed(loop, grace) == "hard_bounce"


async def test_the_dsn_first_then_the_webhook(loop: Loop, fake_sns: FakeSns) -> None:
    await loop.send_step()
    grace = loop.contacts[0]
    loop.deliver(loop.dsn(grace))
    await loop.sync()
    assert await usage(loop) == (1, 0)
    _, path = await create_hook(loop, "ses")
    body = samples.ses_bounce(grace, loop.sent[grace].message_id_header)
    r = await fake_sns.post(path, fake_sns.message("Notification", body))
    assert r.status_code == 200 and r.json()["applied"] == 1, r.text  # matched; already counted
    assert await usage(loop) == (1, 0)
    assert len(await loop.events("message.bounced")) == 1


async def test_a_complaint_by_feedback_loop_and_by_webhook_counts_once(loop: Loop, http) -> None:  # type: ignore[no-untyped-def]
    await loop.send_step()
    ada = loop.contacts[1]
    loop.deliver(loop.complaint(ada))
    await loop.sync()
    assert await usage(loop) == (0, 1)
    hook_id, path = await create_hook(loop, "mailgun", signing_key="key-" + "0" * 32)
    assert await suppressed(loop, ada) == "complaint"
    r = await http.post(path, json=_signed_complaint(ada, loop.sent[ada].message_id_header))
    assert r.status_code == 200 and r.json()["applied"] == 1, r.text  # matched the message: not "unmatched"
    notes = await loop.tenant.client.get(f"/v1/provider-hooks/{hook_id}/notifications")
    assert [n["outcome"] for n in notes.json()["data"]] == ["already_counted"], notes.text
    assert await usage(loop) == (0, 1)
    assert len(await loop.events("message.complained")) == 1


async def test_a_complaint_by_webhook_then_by_feedback_loop_counts_once(loop: Loop, http) -> None:  # type: ignore[no-untyped-def]
    await loop.send_step()
    ada = loop.contacts[1]
    _, path = await create_hook(loop, "mailgun", signing_key="key-" + "0" * 32)
    r = await http.post(path, json=_signed_complaint(ada, loop.sent[ada].message_id_header))
    assert r.status_code == 200 and r.json()["applied"] == 1, r.text
    loop.deliver(loop.complaint(ada))
    await loop.sync()
    assert [row.kind for row in await loop.inbound()] == ["complaint"]
    assert await usage(loop) == (0, 1)
    assert len(await loop.events("message.complained")) == 1


def _signed_complaint(email: str, message_id: str) -> dict[str, object]:
    from tests.provider_hooks.test_sendgrid_mailgun import _mailgun

    return _mailgun(samples.mailgun_event(email, message_id, event="complained"), key="key-" + "0" * 32)
