"""One test per row of the non-RFC bounce pattern tables."""

from __future__ import annotations

import random

import pytest

from nimbus_api.classify import bounce_patterns as bp

SENDER_EXAMPLES = {
    "mailer-daemon": "MAILER-DAEMON@mx.example.org",
    "postmaster": "System Administrator <postmaster@example.com>",
    "mail-delivery-system": "Mail Delivery Subsystem <daemon@example.com>",
    "mailer-local-part": "<mailer@example.com>",
    "empty-from": "<>",
    "list-admin": "neko-admin@lists.example.org",
}
SUBJECT_EXAMPLES = {
    "undelivered-mail": "Undelivered Mail Returned to Sender",
    "delivery-status-notification": "Delivery Status Notification (Failure)",
    "failure-notice": "failure notice",
    "could-not-send": "Warning: could not send message for past 4 hours",
    "delayed": "Delayed Mail (still being retried)",
    "list-refusal": "You neko@example.org are not member (neko ML)",
}
BODY_EXAMPLES = {
    "delay-warning-only": "THIS IS A WARNING MESSAGE ONLY. YOU DO NOT NEED TO RESEND YOUR MESSAGE.",
    "delay-still-retrying": "A message that you sent has not yet been delivered to one or more of its recipients",
    "exim-failed": "A message that you sent could not be delivered to one or more of its recipients.",
    "qmail-failed": "Hi. This is the qmail-send program at mx.example.jp. I'm afraid I wasn't able to deliver",
    "postfix-failed": "the message returned below could not be delivered to one or more destinations.",
    "sendmail-failed": "----- The following addresses had permanent fatal errors -----",
    "gmail-failed": "Delivery to the following recipient failed permanently:",
    "yahoo-failed": "Sorry, we were unable to deliver your message to the following address.",
    "exchange-failed": "Your message did not reach the following recipient(s):",
    "generic-failed": "Unable to deliver message to the address below.",
    "japanese-failed": "以下のメールアドレスへの送信に失敗しました。",
    "russian-failed": "К сожалению, Ваше письмо не может быть доставлено одному или нескольким получателям",
    "list-refusal": "You are not a member of this mailing list <neko@example.org>.",
}
MARKER_EXAMPLES = {
    "exim-copy": "report\n------ This is a copy of the message, including all the headers. ------\n",
    "qmail-copy": "report\n--- Below this line is a copy of the message.\n",
    "original-message": "report\n----- Original message -----\n",
    "original-headers": "report\nOriginal message headers:\n",
    "mfilter-original": "report\n-------original message\n",
    "headers-follow": "report\nReturn-Path: <sender@example.org>\n",
}
#: (report text, the address the row yields)
RECIPIENT_EXAMPLES = {
    "angle-colon": ("<neko@example.jp>:\nRemote host said: 550 unknown\n", "neko@example.jp"),
    "quoted-colon": ('"neko@example.jp":\nSMTP error from remote server\n', "neko@example.jp"),
    "sendmail-reply-line": ("550 <neko@example.jp>... User unknown\n", "neko@example.jp"),
    "rcpt-to-transcript": (">>> RCPT To:<neko@example.jp>\n<<< 550 unknown\n", "neko@example.jp"),
    "address-field": ("[Status: Error, Address: <neko@example.jp>, ResponseCode 421]", "neko@example.jp"),
    "deliver-to-line": ("Unable to deliver message to: <neko@example.jp>\n", "neko@example.jp"),
    "label-colon-address": ("Unknown user: neko@example.jp\n", "neko@example.jp"),
    "bare-address-line": ("The following address(es) failed:\n\n  neko@example.jp\n", "neko@example.jp"),
}
VENDOR_EXAMPLES = {
    "google-groups": "Visit https://groups.google.com/support/ for help",
    "list-not-member": "You are not a member of this mailing list",
    "list-loop": "Loop Alert: Duplicated Message-ID",
}


def test_every_row_has_an_example() -> None:
    assert set(SENDER_EXAMPLES) == {row.name for row in bp.SENDER_PATTERNS}
    assert set(SUBJECT_EXAMPLES) == {row.name for row in bp.SUBJECT_PATTERNS}
    assert set(BODY_EXAMPLES) == {row.name for row in bp.BODY_PATTERNS}
    assert set(MARKER_EXAMPLES) == {row.name for row in bp.ORIGINAL_MARKERS}
    assert set(RECIPIENT_EXAMPLES) == {row.name for row in bp.RECIPIENT_PATTERNS}
    assert set(VENDOR_EXAMPLES) == {row.name for row in bp.VENDOR_REASONS}


@pytest.mark.parametrize("row", bp.SENDER_PATTERNS, ids=lambda row: row.name)
def test_sender_row(row: bp.Pattern) -> None:
    assert bp.first(bp.SENDER_PATTERNS, SENDER_EXAMPLES[row.name]) is row


def test_ordinary_senders_match_no_row() -> None:
    for sender in ("Alice <alice@example.com>", "postmaster-news@example.com", "bob.daemon@example.org"):
        assert bp.first(bp.SENDER_PATTERNS, sender) is None, sender


@pytest.mark.parametrize("row", bp.SUBJECT_PATTERNS, ids=lambda row: row.name)
def test_subject_row(row: bp.Pattern) -> None:
    assert bp.first(bp.SUBJECT_PATTERNS, SUBJECT_EXAMPLES[row.name]) is row


def test_ordinary_subjects_match_no_row() -> None:
    for subject in ("Re: lunch on friday?", "Quarterly report", "Your order has shipped"):
        assert bp.first(bp.SUBJECT_PATTERNS, subject) is None, subject


@pytest.mark.parametrize("row", bp.BODY_PATTERNS, ids=lambda row: row.name)
def test_body_row(row: bp.BodyPattern) -> None:
    text = BODY_EXAMPLES[row.name].lower()
    assert row.regex.search(text)
    first = next(p for p in bp.BODY_PATTERNS if p.regex.search(text))
    assert first is row
    assert row.action == ("delayed" if row.name.startswith("delay-") else "failed")


@pytest.mark.parametrize("row", bp.ORIGINAL_MARKERS, ids=lambda row: row.name)
def test_marker_row(row: bp.Pattern) -> None:
    text = bp.lowered(MARKER_EXAMPLES[row.name])
    match = row.regex.search(text)
    assert match is not None and match.start() == len("report\n")


@pytest.mark.parametrize("row", bp.RECIPIENT_PATTERNS, ids=lambda row: row.name)
def test_recipient_row(row: bp.RecipientPattern) -> None:
    text, address = RECIPIENT_EXAMPLES[row.name]
    match = row.regex.search(bp.lowered(text))
    assert match is not None and match.group("addr") == address


def test_recipient_rows_skip_summary_headers() -> None:
    text = bp.lowered("  To:      sender@example.com\n  From: other@example.com\n")
    for row in bp.RECIPIENT_PATTERNS:
        assert row.regex.search(text) is None, row.name


@pytest.mark.parametrize("row", bp.VENDOR_REASONS, ids=lambda row: row.name)
def test_vendor_row(row: bp.VendorReason) -> None:
    assert bp.vendor_reason(VENDOR_EXAMPLES[row.name]) is row


def test_lowered_keeps_positions() -> None:
    text = "İstanbul NEKO@Example.JP"
    low = bp.lowered(text)
    assert len(low) == len(text)
    assert low.endswith("neko@example.jp")


def test_lowered_lowers_only_ascii_letters_and_keeps_length() -> None:
    rnd = random.Random(3)
    alphabet = [*"AZaz09 -\n", "Ä", "İ", "\u212a", "ß", "\udcff", "日", "\U0001f600"]
    for _ in range(500):
        text = "".join(rnd.choice(alphabet) for _ in range(rnd.randrange(0, 20)))
        assert bp.lowered(text) == text.translate(bp._ASCII_LOWER)
        assert len(bp.lowered(text)) == len(text)
