"""The unified inbox API over what the sync stored: list with filters, read, mark, and answer."""

from __future__ import annotations

import email
from email import policy

from sqlalchemy import update

from nimbus_api.models import EmailAccount
from tests.conftest import TenantFactory
from tests.inbox.conftest import Loop


async def test_list_read_mark_and_filter(loop: Loop, make_tenant: TenantFactory) -> None:
    await loop.send_step()
    grace = loop.contacts[0]
    reply = loop.reply_to(grace, "Yes, Tuesday works.")
    reply.add_alternative("<p>Yes, Tuesday works.<script>alert(1)</script></p>", subtype="html")
    loop.deliver(reply)
    loop.deliver(b"From: news@example.org\r\nSubject: weekly digest\r\nMessage-ID: <d1@example.org>\r\n\r\nhi\r\n")
    await loop.sync()
    client = loop.tenant.client

    r = await client.get("/v1/inbox")
    assert r.status_code == 200, r.text
    items = r.json()["data"]
    assert [i["kind"] for i in items] == ["other", "reply"]  # newest first
    answer = items[1]
    assert answer["campaign_id"] == str(loop.campaign_id) and answer["read"] is False
    assert answer["snippet"].startswith("Yes, Tuesday works.")

    assert [i["kind"] for i in (await client.get("/v1/inbox", params={"kind": "reply"})).json()["data"]] == ["reply"]
    by_campaign = (await client.get("/v1/inbox", params={"campaign_id": str(loop.campaign_id)})).json()["data"]
    assert [i["id"] for i in by_campaign] == [answer["id"]]
    assert len((await client.get("/v1/inbox", params={"account_id": str(loop.inbox_id)})).json()["data"]) == 2
    page = (await client.get("/v1/inbox", params={"limit": 1})).json()
    second = (await client.get("/v1/inbox", params={"limit": 1, "cursor": page["next_cursor"]})).json()
    assert [i["id"] for i in page["data"] + second["data"]] == [i["id"] for i in items]

    detail = (await client.get(f"/v1/inbox/{answer['id']}")).json()
    assert detail["html_untrusted"] is True and "<script>" in detail["html"]  # as received, flagged
    assert detail["new_text"].strip() == "Yes, Tuesday works."
    assert detail["match"]["method"] == "in_reply_to"
    assert detail["match"]["sent_message_id"] == str(loop.sent[grace].id)
    assert detail["classification"]["kind"] == "reply" and "header:in-reply-to" in detail["classification"]["reasons"]
    assert any(h["name"] == "In-Reply-To" for h in detail["headers"])

    r = await client.patch(f"/v1/inbox/{answer['id']}", json={"read": True})
    assert r.status_code == 200 and r.json()["read"] is True
    assert [i["kind"] for i in (await client.get("/v1/inbox", params={"unread": "true"})).json()["data"]] == ["other"]
    r = await client.patch(f"/v1/inbox/{items[0]['id']}", json={"archived": True})
    assert r.json()["archived"] is True
    assert [i["kind"] for i in (await client.get("/v1/inbox")).json()["data"]] == ["reply"]
    archived = (await client.get("/v1/inbox", params={"archived": "true"})).json()["data"]
    assert [i["kind"] for i in archived] == ["other"]
    assert (await client.patch(f"/v1/inbox/{answer['id']}", json={"read": None})).status_code == 422

    stranger = await make_tenant()
    assert (await stranger.client.get(f"/v1/inbox/{answer['id']}")).status_code == 404
    assert (await stranger.client.get("/v1/inbox")).json()["data"] == []


async def test_reply_is_threaded_sent_counted_and_matched_again(loop: Loop) -> None:
    await loop.send_step()
    grace = loop.contacts[0]
    loop.deliver(loop.reply_to(grace, "Can you send the pricing?"))
    await loop.sync()
    [inbound] = await loop.inbound()
    before = len(loop.world.smtp.messages)
    r = await loop.tenant.client.post(f"/v1/inbox/{inbound.id}/reply", json={"text": "Attached, see below."})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["to"] == grace and body["subject"] == "Re: Hello Grace" and body["reply_code"] == 250
    [envelope] = loop.world.smtp.messages[before:]
    assert envelope.rcpt_tos == [grace]
    sent = email.message_from_bytes(envelope.original_content or b"", policy=policy.default)
    assert sent["In-Reply-To"] == f"<{inbound.message_id_header}>"
    assert f"<{inbound.message_id_header}>" in sent["References"]
    assert sent["Message-ID"] == body["message_id"] and "List-Unsubscribe" not in sent
    detail = (await loop.tenant.client.get(f"/v1/inbox/{inbound.id}")).json()
    assert [x["id"] for x in detail["replies"]] == [body["id"]] and detail["read"] is True

    # the prospect answers our answer: matched through the stored reply's Message-ID
    again = loop.reply_to(grace, "Thanks!")
    again.replace_header("In-Reply-To", body["message_id"])
    again.replace_header("References", body["message_id"])
    loop.deliver(again)
    await loop.sync()
    rows = await loop.inbound()
    assert rows[-1].kind == "reply" and rows[-1].enrollment_id == loop.sent[grace].enrollment_id
    assert rows[-1].match_method == "in_reply_to"


async def test_replies_are_refused_for_reports_suppressed_addresses_and_spent_budgets(loop: Loop) -> None:
    await loop.send_step()
    grace, other = loop.contacts[0], loop.contacts[1]
    loop.deliver(loop.reply_to(grace))
    loop.deliver(loop.reply_to(other))
    await loop.sync()
    first, second = await loop.inbound()
    client = loop.tenant.client
    r = await client.post("/v1/suppressions", json={"email": other})
    assert r.status_code == 201, r.text
    r = await client.post(f"/v1/inbox/{second.id}/reply", json={"text": "hi"})
    assert (r.status_code, r.json()["code"]) == (409, "inbox.recipient_suppressed")
    async with loop.sessionmaker() as session, session.begin():
        await session.execute(update(EmailAccount).where(EmailAccount.id == loop.inbox_id).values(daily_send_limit=3))
    r = await client.post(f"/v1/inbox/{first.id}/reply", json={"text": "hi"})
    assert (r.status_code, r.json()["code"]) == (409, "inbox.budget_exhausted")
    assert (await client.post(f"/v1/inbox/{first.id}/reply", json={})).status_code == 422
