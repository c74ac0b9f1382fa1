"""The classifier on reports that real servers wrote: Postfix's DSNs and Dovecot Sieve's vacation replies.

One module-scoped mail loop (``tests/servers/mail_loop.py``): a private Postfix delivering
``MAILBOX_DOMAIN`` over LMTP into a private Dovecot with Sieve. Every test sends from a Dovecot user of
its own, so what comes back (a DSN from MAILER-DAEMON, a vacation reply) lands in that user's maildir,
and is classified as it arrived, byte for byte.

* unknown user of the Dovecot domain: Dovecot's LMTP answers ``550 5.1.1``, Postfix bounces;
* ``BLOCKED_DOMAIN``: Postfix's ``error:5.7.1`` transport bounces;
* ``NAME.example`` for each of ``REMOTES``: an SMTP hop that answers RCPT with a 4xx/5xx, quoted in the
  DSN as "host 127.0.0.1 said: ...";
* ``DEFERRED_DOMAIN``: a closed loopback port; ``delay_warning_time = 1s`` mails ``Action: delayed``
  at once, and after ``QUEUE_LIFETIME`` the message comes back ``Action: failed`` (status 4.4.1);
* a Sieve ``vacation :seconds 1`` script answers a person-to-person message, and (RFC 3834, as in
  real life) not a message with ``List-Unsubscribe`` or ``Precedence: bulk``.

Skipped when Postfix cannot run here (not installed, not root).
"""

from __future__ import annotations

from collections.abc import Iterator
from email import message_from_bytes
from itertools import count

import pytest

from nimbus_api.classify import classify
from tests.servers.certs import make_test_certs
from tests.servers.dovecot import dovecot_available
from tests.servers.mail_loop import MAILBOX_DOMAIN, MailLoop, mail_loop_or_skip, plain_message
from tests.servers.postfix import Postfix, postfix_unavailable_reason, wait_until

BLOCKED_DOMAIN = "blocked.example"
BLOCKED_TEXT = "Message rejected by local policy"
DENIED_DOMAIN = "denied.example"
DENIED_TEXT = "Recipient address rejected: Access denied"  # Postfix's wording for an access(5) REJECT
DEFERRED_DOMAIN = "slow.example"
#: SMTP hops (extra smtpd listeners of the same Postfix posing as other hosts) answering every RCPT so;
#: Postfix's smtpd words it "<addr>: Recipient address rejected: TEXT", as any Postfix MX would.
REMOTES = {
    "busy": "451 4.2.1 Mailbox busy, try again later",
    "disabled": "550 5.2.1 Mailbox disabled, not accepting messages",
    "policy": "554 5.7.1 Rejected by local policy",
}
QUEUE_LIFETIME = "2s"  # a message deferred that long is returned as failed
VACATION = 'require ["vacation", "vacation-seconds"];\nvacation :seconds 1 :subject "Out of office" "I am away";\n'

_serial = count(1)


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailLoop]:
    if not dovecot_available():
        pytest.skip("dovecot is not installed (scripts/install-test-deps)")
    certs = make_test_certs(tmp_path_factory.mktemp("real-reports-certs"))
    with mail_loop_or_skip(
        certs,
        routes={
            BLOCKED_DOMAIN: f"error:5.7.1 {BLOCKED_TEXT}",
            DENIED_DOMAIN: f"error:5.7.1 {DENIED_TEXT}",
            **{f"{name}.example": f"remote:{name}" for name in REMOTES},
        },
        remotes=REMOTES,
        deferred_domains=[DEFERRED_DOMAIN],
        queue_lifetime=QUEUE_LIFETIME,
    ) as running:
        yield running


def new_user(loop: MailLoop, name: str) -> str:
    return loop.add_user(f"{name}{next(_serial)}@{MAILBOX_DOMAIN}")


def send_and_read_back(loop: MailLoop, sender: str, rcpt: str) -> tuple[str, bytes]:
    """Send a plain message from ``sender`` to ``rcpt``; return its Message-ID (no brackets) and the
    first message that comes back to ``sender``."""
    msg = plain_message(sender, rcpt)
    loop.send(msg, sender=sender, recipients=[rcpt])
    back = loop.wait_for_messages(sender)[0]
    return str(msg["Message-ID"]).strip("<>"), back


def assert_real_postfix_dsn(raw: bytes) -> None:
    parsed = message_from_bytes(raw)
    assert parsed.get_content_type() == "multipart/report"
    assert parsed.get_param("report-type") == "delivery-status"
    assert parsed["From"].startswith("Mail Delivery System <MAILER-DAEMON@")
    assert b"X-Postfix-Queue-ID:" in raw


def test_unknown_user_at_dovecot_is_a_hard_bounce(loop: MailLoop) -> None:
    sender = new_user(loop, "sender")
    rcpt = f"nobody{next(_serial)}@{MAILBOX_DOMAIN}"
    message_id, raw = send_and_read_back(loop, sender, rcpt)
    assert_real_postfix_dsn(raw)
    assert b"User doesn't exist" in raw  # Dovecot's LMTP refusal, quoted by Postfix

    verdict = classify(raw)
    assert verdict.kind == "bounce", verdict.reasons
    assert [r.address for r in verdict.recipients] == [rcpt]
    [recipient] = verdict.recipients
    assert recipient.action == "failed"
    assert recipient.status == "5.1.1"
    assert recipient.reply_code == "550"
    assert recipient.permanent is True
    assert recipient.hard is True
    assert recipient.reason == "userunknown"
    assert verdict.original_message_id == message_id


@pytest.mark.parametrize(("domain", "text"), [(BLOCKED_DOMAIN, BLOCKED_TEXT), (DENIED_DOMAIN, DENIED_TEXT)])
def test_error_transport_5_7_1_is_a_soft_permanent_bounce(loop: MailLoop, domain: str, text: str) -> None:
    sender = new_user(loop, "policy")
    rcpt = f"someone@{domain}"
    message_id, raw = send_and_read_back(loop, sender, rcpt)
    assert_real_postfix_dsn(raw)
    assert text.encode() in raw

    verdict = classify(raw)
    assert verdict.kind == "bounce", verdict.reasons
    [recipient] = verdict.recipients
    assert recipient.address == rcpt
    assert recipient.status == "5.7.1"
    assert recipient.permanent is True
    assert verdict.original_message_id == message_id
    assert recipient.hard is False, recipient.reason


def test_remote_4xx_at_rcpt_gives_a_delayed_report(loop: MailLoop) -> None:
    sender = new_user(loop, "busy")
    rcpt = "someone@busy.example"
    message_id, raw = send_and_read_back(loop, sender, rcpt)
    assert_real_postfix_dsn(raw)
    assert b"Diagnostic-Code: smtp; 451 4.2.1" in raw

    verdict = classify(raw)
    assert verdict.kind == "delivery_report", verdict.reasons
    [recipient] = verdict.recipients
    assert (recipient.address, recipient.action, recipient.status) == (rcpt, "delayed", "4.2.1")
    assert (recipient.reply_code, recipient.remote_mta) == ("451", "127.0.0.1")
    assert recipient.permanent is False
    assert recipient.hard is False
    assert verdict.original_message_id == message_id
    assert recipient.reason != "userunknown"


@pytest.mark.parametrize(
    ("name", "status", "reason"),
    [("disabled", "5.2.1", "suspend"), ("policy", "5.7.1", "")],
)
def test_remote_5xx_at_rcpt_is_a_soft_permanent_bounce(loop: MailLoop, name: str, status: str, reason: str) -> None:
    """Refusals at RCPT that say nothing about the address existing: permanent, but not hard."""
    sender = new_user(loop, name)
    rcpt = f"someone@{name}.example"
    message_id, raw = send_and_read_back(loop, sender, rcpt)
    assert_real_postfix_dsn(raw)
    assert f"Diagnostic-Code: smtp; {REMOTES[name][:9]}".encode() in raw

    verdict = classify(raw)
    assert verdict.kind == "bounce", verdict.reasons
    [recipient] = verdict.recipients
    assert (recipient.address, recipient.action, recipient.status) == (rcpt, "failed", status)
    assert (recipient.reply_code, recipient.remote_mta) == (REMOTES[name][:3], "127.0.0.1")
    assert recipient.permanent is True
    assert verdict.original_message_id == message_id
    assert recipient.hard is False, recipient.reason
    if reason:
        assert recipient.reason == reason


def test_deferral_gives_a_delayed_report_not_a_bounce(loop: MailLoop) -> None:
    sender = new_user(loop, "delayed")
    rcpt = f"someone@{DEFERRED_DOMAIN}"
    message_id, raw = send_and_read_back(loop, sender, rcpt)
    assert_real_postfix_dsn(raw)
    assert b"Action: delayed" in raw
    assert message_from_bytes(raw)["Subject"] == "Delayed Mail (still being retried)"

    verdict = classify(raw)
    assert verdict.kind == "delivery_report", verdict.reasons
    [recipient] = verdict.recipients
    assert recipient.address == rcpt
    assert recipient.action == "delayed"
    assert recipient.status.startswith("4.")
    assert recipient.permanent is False
    assert recipient.hard is False
    assert verdict.original_message_id == message_id


def test_expired_deferral_is_a_permanent_soft_bounce(loop: MailLoop) -> None:
    """Past ``maximal_queue_lifetime`` Postfix gives up: ``Action: failed`` with the last 4.x.x status."""
    sender = new_user(loop, "expired")
    rcpt = f"late@{DEFERRED_DOMAIN}"
    msg = plain_message(sender, rcpt)
    loop.send(msg, sender=sender, recipients=[rcpt])
    warning, raw = loop.wait_for_messages(sender, 2)
    assert b"Action: delayed" in warning
    assert_real_postfix_dsn(raw)
    assert b"Action: failed" in raw
    assert message_from_bytes(raw)["Subject"] == "Undelivered Mail Returned to Sender"

    verdict = classify(raw)
    assert verdict.kind == "bounce", verdict.reasons
    [recipient] = verdict.recipients
    assert recipient.address == rcpt
    assert recipient.action == "failed"
    assert recipient.status.startswith("4.")
    assert recipient.permanent is True
    assert recipient.hard is False, recipient.reason
    assert verdict.original_message_id == str(msg["Message-ID"]).strip("<>")


def test_sieve_vacation_reply_is_an_auto_reply(loop: MailLoop) -> None:
    alice, bob = new_user(loop, "alice"), new_user(loop, "bob")
    loop.dovecot.set_sieve(bob, VACATION)
    message_id, raw = send_and_read_back(loop, alice, bob)
    reply = message_from_bytes(raw)
    assert reply["X-Sieve"].startswith("Pigeonhole")  # really written by Sieve, sent through Postfix
    assert reply["Subject"] == "Out of office"
    assert len(loop.messages(bob)) == 1  # vacation keeps the message too

    verdict = classify(raw)
    assert verdict.kind == "auto_reply", verdict.reasons
    assert verdict.original_message_id == message_id
    assert verdict.from_address == bob


@pytest.mark.parametrize(
    ("header", "value", "why"),
    [
        ("List-Unsubscribe", f"<mailto:unsubscribe@{MAILBOX_DOMAIN}>", "mailinglist recipient"),
        ("Precedence", "bulk", "precedence=bulk message"),
    ],
)
def test_no_vacation_reply_to_list_or_bulk_mail(loop: MailLoop, header: str, value: str, why: str) -> None:
    """RFC 3834 and Pigeonhole: a message with a List-* header (our campaigns carry List-Unsubscribe) or
    ``Precedence: bulk`` gets no vacation reply, so a Sieve auto-reply is never seen for campaign mail."""
    carol, dave = new_user(loop, "carol"), new_user(loop, "dave")
    loop.dovecot.set_sieve(dave, VACATION)
    msg = plain_message(carol, dave, subject="News")
    msg[header] = value
    loop.send(msg, sender=carol, recipients=[dave])
    loop.wait_for_messages(dave)  # delivered: Sieve ran during the LMTP delivery

    # Pigeonhole logs its decision (through Dovecot's log process, so it may lag the delivery a little)
    decision = f"discarding vacation response to {why}"
    assert wait_until(lambda: decision in loop.dovecot.log_text(), timeout=5), loop.dovecot.log_text()[-2000:]
    # and nothing comes back: a vacation reply takes ~0.1 s through Postfix here, 2 s is ample
    assert not wait_until(lambda: bool(loop.messages(carol)), timeout=2), "a vacation reply was sent"
    assert f"sent vacation response to <{carol}>" not in loop.dovecot.log_text()


@pytest.mark.skipif(bool(postfix_unavailable_reason()), reason=postfix_unavailable_reason() or "n/a")
def test_private_postfix_stops_without_leftovers() -> None:
    postfix = Postfix()
    with postfix:
        pids = postfix.processes()
        assert len(pids) >= 3  # the reaper, master, and master's first daemons
        root = postfix.root
    assert not root.exists()
    assert postfix.processes() == []
    alive = [pid for pid in pids if _exists(pid)]
    assert alive == [], alive


def _exists(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return bool(stat.read())
    except OSError:
        return False


def test_mail_loop_route_added_after_start(loop: MailLoop) -> None:
    """``route`` on a running Postfix rewrites the texthash table and reloads: the next message uses it."""
    domain = f"late{next(_serial)}.example"
    loop.route(domain, "error:5.7.26 Unauthenticated mail is not accepted")
    sender = new_user(loop, "late")
    message_id, raw = send_and_read_back(loop, sender, f"someone@{domain}")
    assert_real_postfix_dsn(raw)
    verdict = classify(raw)
    assert verdict.kind == "bounce", verdict.reasons
    assert [r.status for r in verdict.recipients] == ["5.7.26"]
    assert verdict.original_message_id == message_id


def test_mail_loop_queue_tools(loop: MailLoop) -> None:
    """A deferred message sits in the queue (``queue_ids``), ``flush`` retries it now, ``delete`` drops it."""
    postfix = loop.postfix
    sender = new_user(loop, "queue")
    mark = len(postfix.log_text())
    loop.send(plain_message(sender, f"q@{DEFERRED_DOMAIN}"), sender=sender, recipients=[f"q@{DEFERRED_DOMAIN}"])
    found = postfix.wait_for_log(r"postfix/cleanup\[\d+\]: ([0-9A-F]+): message-id=", start=mark)
    queue_id = found.group(1)
    postfix.wait_for_log(rf"{queue_id}: to=<q@{DEFERRED_DOMAIN}>.*status=deferred", start=mark)
    assert queue_id in postfix.queue_ids()
    postfix.flush()
    postfix.delete(queue_id)
    assert wait_until(lambda: queue_id not in postfix.queue_ids(), timeout=5)
    postfix.wait_for_log(rf"{queue_id}: removed", start=mark)
