"""A reply stops the sequence before the next step, through the real loop: sent over SMTP, answered into
Dovecot, read by the sync, matched, and acted on once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from nimbus_api.models import Enrollment
from tests.inbox.conftest import Loop


async def test_a_reply_stops_the_sequence_and_cancels_the_queued_follow_up(loop: Loop) -> None:
    await loop.send_step()
    assert len(loop.sent) == 3
    grace, other, third = loop.contacts
    # step 2 of `grace` and `third` becomes due and is queued (not yet sent)
    async with loop.sessionmaker() as session, session.begin():
        await session.execute(
            update(Enrollment)
            .where(Enrollment.id.in_([loop.sent[grace].enrollment_id, loop.sent[third].enrollment_id]))
            .values(next_send_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    await loop.campaigns.dispatch(loop.campaign_id)
    assert [m.state for m in await loop.messages(grace)] == ["sent", "queued"]

    loop.deliver(loop.reply_to(grace))
    loop.deliver(loop.reply_to(other, "Not interested."))
    await loop.sync()

    rows = await loop.inbound()
    assert [r.kind for r in rows] == ["reply", "reply"]
    first = rows[0]
    assert first.match_method == "in_reply_to" and first.sent_message_id == loop.sent[grace].id
    assert first.enrollment_id == loop.sent[grace].enrollment_id and first.campaign_id == loop.campaign_id
    assert first.new_text is not None and "Tuesday" in first.new_text and "> Hi Grace" not in first.new_text

    enrollment = await loop.enrollment(grace)
    assert enrollment.status == "replied" and enrollment.replied_at is not None and enrollment.next_send_at is None
    assert [m.state for m in await loop.messages(grace)] == ["sent", "cancelled"]
    assert (await loop.enrollment(other)).status == "replied"
    assert (await loop.enrollment(third)).status == "active"  # no reply: its follow-up stays queued
    assert [m.state for m in await loop.messages(third)] == ["sent", "queued"]

    replied = await loop.events("enrollment.replied")
    assert sorted(str(e["email"]) for e in replied) == sorted([grace, other])
    assert {str(e["inbound_message_id"]) for e in replied} == {str(r.id) for r in rows}

    # the same reply seen again (copied into Junk by a filter: same Message-ID) is not a second reply
    loop.deliver(rows[0].raw, folder="Junk")
    await loop.sync()
    assert len(await loop.inbound()) == 2
    assert len(await loop.events("enrollment.replied")) == 2


async def test_a_message_from_a_prospect_without_threading_headers_is_a_reply_by_sender(loop: Loop) -> None:
    await loop.send_step()
    grace = loop.contacts[0]
    msg = loop.reply_to(grace, "Saw your note - call me?")
    del msg["In-Reply-To"]
    del msg["References"]
    msg.replace_header("Subject", "quick question")
    loop.deliver(msg)
    stranger = loop.reply_to(grace)
    stranger.replace_header("From", "someone-else@example.org")
    del stranger["In-Reply-To"]
    del stranger["References"]
    loop.deliver(stranger)
    await loop.sync()
    rows = await loop.inbound()
    assert [(r.kind, r.match_method) for r in rows] == [("reply", "sender"), ("other", None)]
    assert (await loop.enrollment(grace)).status == "replied"
