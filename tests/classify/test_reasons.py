"""One test per row of the reason tables (status codes, diagnostic phrases), and the rules around them."""

from __future__ import annotations

import random
import re

import pytest

from nimbus_api.classify import BOUNCE_REASONS, HARD_REASONS, reasons
from nimbus_api.classify.reasons import (
    PHRASE_TABLE,
    STATUS_TABLE,
    PhraseRule,
    StatusRule,
    find_command,
    find_last_status,
    find_reply_code,
    find_status,
    is_hard,
    phrase_rule,
    reason_for,
    status_rule,
)

#: (a status code the row covers, the reason expected with no wording at all)
STATUS_EXAMPLES: dict[str, str] = {
    "status-x.1.1": "5.1.1",
    "status-x.1.2": "5.1.2",
    "status-x.1.3": "5.1.3",
    "status-x.1.4": "5.1.4",
    "status-x.1.6": "5.1.6",
    "status-x.1.7": "5.1.7",
    "status-x.1.8": "5.1.8",
    "status-x.1.10": "5.1.10",
    "status-x.2.1": "5.2.1",
    "status-x.2.2": "4.2.2",
    "status-x.2.3": "5.2.3",
    "status-x.3.1": "4.3.1",
    "status-x.3.4": "5.3.4",
    "status-5.4.4": "5.4.4",
    "status-x.4.7": "4.4.7",
    "status-x.5.4": "5.5.4",
    "status-x.6.0": "5.6.0",
    "status-x.7.25": "5.7.25",
    "status-x.7.23": "5.7.23",
    "status-x.7.26": "5.7.26",
    "status-x.7.27": "5.7.27",
    "status-x.7.9": "5.7.9",
    "status-x.7.6": "5.7.6",
}

#: A diagnostic each phrase row must be the first to match.
PHRASE_EXAMPLES: dict[str, str] = {
    "phrase-not-rfc-compliant": "550 5.7.1 This message is not RFC 5322 compliant: multiple From headers",
    "phrase-mailer-error": 'procmail: Couldn\'t create "/var/mail/neko"',
    "phrase-directory-lookup": "User Neko (neko@example.jp) not listed in Domino Directory",
    "phrase-dns-temporary": "Name service error for domain example.com: Host not found, try again",
    "phrase-spam-classification": "Your message was rejected due to spam classification",
    "phrase-expired": "Retry timeout exceeded",
    "phrase-spam-content": "550 REJECTED - Blacklisted URL in message, see uribl.com",
    "phrase-auth-spf-dkim-dmarc": "550 5.7.1 Message rejected: SPF check failed for example.com",
    "phrase-ptr-reverse-dns": "550 Client host has no PTR record",
    "phrase-reputation": "554 Your IP has a poor reputation",
    "phrase-virus": "554 Virus found in message",
    "phrase-relay-denied": "554 5.7.1 <a@example.net>: Relay access denied",
    "phrase-too-many-connections": "421 Too many connections from your host",
    "phrase-recipient-access-denied": "550 5.4.1 Recipient address rejected: Access denied",
    "phrase-blocklist": "554 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org",
    "phrase-rate-limit": "452 Rate limit exceeded, slow down",
    "phrase-mailbox-full": "552 Mailbox is full",
    "phrase-message-too-big": "552 Message size exceeds fixed maximum message size",
    "phrase-has-moved": "550 User has moved; please try neko@new.example.org",
    "phrase-sender-rejected": "553 Domain of sender address nobody@nowhere.invalid does not exist",
    "phrase-suspended": "550 Account has been suspended",
    "phrase-null-mx": "556 Domain does not accept mail (null MX)",
    "phrase-domain-does-not-exist": "553 mail.example.org does not exist",
    "phrase-user-unknown": "550 Recipient address rejected: User unknown in local recipient table",
    "phrase-host-unknown": "Host or domain name not found",
    "phrase-spam": "554 Message looks like unsolicited bulk mail (UBE)",
    "phrase-policy": "550 Message refused for policy reasons",
    "phrase-security": "530 Must issue a STARTTLS command first",
    "phrase-syntax": "503 Improper sequence of commands",
    "phrase-filtered": "550 Message filtered by the recipient's rules",
    "phrase-system-full": "452 Insufficient system storage",
    "phrase-network": "Connection timed out",
    "phrase-system-error": "451 Local error in processing: internal server error",
    "phrase-gave-up": "I'm not going to try again; this message has been in the queue too long.",
    "phrase-rejected": "554 Message not accepted",
}


def test_every_row_has_an_example() -> None:
    assert set(STATUS_EXAMPLES) == {row.name for row in STATUS_TABLE}
    assert set(PHRASE_EXAMPLES) == {row.name for row in PHRASE_TABLE}


def test_tables_use_the_reason_vocabulary() -> None:
    for row in (*STATUS_TABLE, *PHRASE_TABLE):
        assert row.reason in BOUNCE_REASONS, row


@pytest.mark.parametrize("row", STATUS_TABLE, ids=lambda row: row.name)
def test_status_row(row: StatusRule) -> None:
    code = STATUS_EXAMPLES[row.name]
    assert status_rule(code) is row
    fired: list[str] = []
    assert reason_for(code, "", fired) == row.reason
    assert fired == [f"reason:{row.name}"]


@pytest.mark.parametrize("row", PHRASE_TABLE, ids=lambda row: row.name)
def test_phrase_row(row: PhraseRule) -> None:
    example = PHRASE_EXAMPLES[row.name]
    assert phrase_rule(example) is row
    assert phrase_rule(example.upper()) is row  # case does not matter
    fired: list[str] = []
    reason = reason_for("", example, fired, command="RCPT TO")
    assert reason == row.reason
    assert f"reason:{row.name}" in fired


def test_a_loose_code_yields_to_wording() -> None:
    # 5.1.1 used for a full mailbox: the wording says what happened
    assert reason_for("5.1.1", "552 5.1.1 Mailbox is full") == "mailboxfull"
    # ...but a 5.1.1 that says "rejected" stays an unknown user
    assert reason_for("5.1.1", "550 5.1.1 Recipient rejected") == "userunknown"
    # 5.2.2 is never anything but a full mailbox
    assert reason_for("5.2.2", "552 5.2.2 user unknown") == "mailboxfull"


def test_class_fallback_when_nothing_else_says() -> None:
    assert reason_for("4.4.1", "") == "expired"
    assert reason_for("5.7.0", "") == "securityerror"
    assert reason_for("5.0.0", "") == "rejected"
    assert reason_for("", "") == "undefined"


def test_user_unknown_not_answering_rcpt_is_filtered() -> None:
    text = "550 Unknown user neko@example.jp"
    assert reason_for("5.0.0", text, command="RCPT TO") == "userunknown"
    assert reason_for("5.0.0", text, command="DATA") == "filtered"
    assert reason_for("5.0.0", text) == "filtered"
    # an x.1.x code says it is the address
    assert reason_for("5.1.1", text, command="DATA") == "userunknown"


def test_refusal_at_mail_from_is_about_the_sender() -> None:
    assert reason_for("5.1.0", "553 5.1.0 neko@example.jp: no such user", command="MAIL FROM") == "rejected"


def test_temporary_host_unknown_is_a_network_error() -> None:
    assert reason_for("4.0.0", "DNS Error: NXDOMAIN Domain name not found") == "networkerror"
    assert reason_for("5.0.0", "DNS Error: NXDOMAIN Domain name not found") == "hostunknown"


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("550 5.1.1 <a@b.example>... User unknown", "5.1.1"),
        ("smtp; 550 #5.1.0 Address rejected.", "5.1.0"),
        ("(#5.5.0)", "5.5.0"),
        ("ERROR_CODE :5.2.2 mailbox full", "5.2.2"),
        ("version 1.2.3.4 and 10.5.1.1", ""),
        ("no code here", ""),
    ],
)
def test_find_status(text: str, status: str) -> None:
    assert find_status(text) == status


def test_find_last_status_prefers_the_remote_servers_code() -> None:
    assert find_last_status("5.1.0 - Unknown address error 550-'5.7.1 Access denied'") == "5.7.1"
    assert find_last_status("554 4.4.7 Message expired <421 4.4.2 Connection timed out>") == "4.4.2"
    assert find_last_status("5.0.0 something 5.0.0") == "5.0.0"


def test_find_reply_code() -> None:
    assert find_reply_code("host mx said: 550 5.1.1 unknown") == "550"
    assert find_reply_code("550-5.7.1 multi line") == "550"
    assert find_reply_code("no code 5.1.1 only") == ""


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("550 User unknown (in reply to RCPT TO command)", "RCPT TO"),
        ("550 Rejected (in reply to end of DATA\n    command)", "DATA"),
        ("SMTP error from remote mail server after RCPT TO:<a@b.example>:", "RCPT TO"),
        ("SMTP error from remote mail server after end of data:", "DATA"),
        ("SMTP error from remote server after RCPT command:", "RCPT TO"),
        (">>> MAIL From:<a@b.example>\n<<< 553 sender rejected", "MAIL FROM"),
        (">>> RCPT To:<a@b.example>\n<<< 550 5.1.1 unknown\n>>> DATA\n<<< 503 Need RCPT", "RCPT TO"),
        ("Remote host said: 550 5.2.1 User Unknown [RCPT_TO]", "RCPT TO"),
        ("most progress was RCPT TO response; remote host said: 550", "RCPT TO"),
        ("-------SMTP command\nDATA\n", "DATA"),
        ("nothing about commands", ""),
    ],
)
def test_find_command(text: str, command: str) -> None:
    assert find_command(text) == command


def test_only_address_reasons_are_hard() -> None:
    assert {"userunknown", "hostunknown", "hasmoved", "notaccept"} == HARD_REASONS
    for reason in BOUNCE_REASONS:
        assert is_hard(reason, permanent=True) == (reason in HARD_REASONS)
        assert not is_hard(reason, permanent=False)
    # a 5xx for policy, spam, reputation or authentication is permanent but not hard
    for reason in ("policyviolation", "spamdetected", "badreputation", "authfailure", "blocked"):
        assert not is_hard(reason, permanent=True)


@pytest.mark.parametrize(
    ("regex", "expected"),
    [
        (r"abc|de", ("de", "abc")),
        (r"x?bc(?:de|fg)h", ("bc",)),
        (r"(?:user|mailbox) unknown", (" unknown",)),
        (r"quota|over ?quota|disk quota", ("quota",)),
        (r"a\w+", None),
        (r"(?:ab)?c", None),
        (r"(?i:abc)", None),
        (r"ab|\d+", None),
    ],
)
def test_needles_are_literals_every_match_contains(regex: str, expected: tuple[str, ...] | None) -> None:
    assert reasons.needles(re.compile(regex)) == expected
    assert reasons.needles(re.compile(regex, re.I)) is None


@pytest.mark.parametrize("index", range(len(PHRASE_TABLE)), ids=lambda i: PHRASE_TABLE[i].name)
def test_phrase_row_needles_are_in_every_match(index: int) -> None:
    """Random texts made of the row's own pieces: wherever the regex matches, a needle occurs (the
    prefilter never skips a row that would have matched)."""
    row, row_needles = PHRASE_TABLE[index], reasons._PHRASE_NEEDLES[index]
    if row_needles is None:
        return
    pieces = [*re.split(r"[^a-z0-9' ]+", row.pattern.pattern), *PHRASE_EXAMPLES[row.name].lower().split()]
    pieces = [p for p in pieces if p] + [" ", "-", ".", "@", "x"]
    rnd = random.Random(index)
    matched = 0
    for _ in range(400):
        text = "".join(rnd.choice(pieces) for _ in range(rnd.randrange(1, 12)))
        if row.pattern.search(text):
            matched += 1
            assert any(n in text for n in row_needles), (row.name, text)
    assert row.pattern.search(PHRASE_EXAMPLES[row.name].lower())
    assert any(n in PHRASE_EXAMPLES[row.name].lower() for n in row_needles)


def test_prefiltered_phrase_index_is_the_plain_first_match() -> None:
    texts = [example.lower() for example in PHRASE_EXAMPLES.values()]
    texts += [f"{a} {b}" for a in texts[:12] for b in texts[-12:]]
    for text in texts:
        plain = next((i for i, row in enumerate(PHRASE_TABLE) if row.pattern.search(text)), -1)
        assert reasons._phrase_index.__wrapped__(text) == plain, text
