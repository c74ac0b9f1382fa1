"""The auto-reply detector: one test per wording-table row and per header rule, the vendors' formats,
the human replies it must leave alone, and the corpus's RFC 3834 messages."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

import pytest

from nimbus_api.classify import classify
from nimbus_api.classify.autoreply import PATTERNS, PRESENCE_HEADERS, Pattern, compiled_row, detect, fold
from nimbus_api.classify.parsing import parse
from nimbus_api.classify.types import Classification
from tests.mailworld import ooo_messages as ooo

REPO_ROOT = Path(__file__).resolve().parents[2]
CORPUS_DIR = Path(os.environ.get("NIMBUS_CORPUS_DIR", REPO_ROOT / ".." / "shared" / "corpus"))
LANGUAGES = ("en", "de", "fr", "es", "it", "nl", "pt", "sv", "pl")


def message(
    subject: str = "Hello",
    body: str = "Just a note.",
    headers: dict[str, str] | None = None,
    *,
    in_reply_to: str | None = None,
) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Anna Example <anna@prospect.example>"
    msg["To"] = "bob@nimbus.example"
    msg["Subject"] = subject
    msg["Message-ID"] = "<m1@prospect.example>"
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    return bytes(msg)


def verdict(raw: bytes) -> Classification | None:
    return detect(parse(raw))


def reasons(raw: bytes) -> tuple[str, ...]:
    found = verdict(raw)
    return found.reasons if found else ()


def _row_id(row: Pattern) -> str:
    return f"{row.lang}-{row.field}-{PATTERNS.index(row)}"


# --- the wording table ---------------------------------------------------------------------------
@pytest.mark.parametrize("row", PATTERNS, ids=_row_id)
def test_table_row_matches_its_example(row: Pattern) -> None:
    assert compiled_row(row).match(fold(row.example)), row.example
    thread = "<ours-1@nimbus.example>" if row.needs_thread else None
    if row.field == "subject":
        raw = message(subject=row.example, body="Regards.", in_reply_to=thread)
    else:
        raw = message(subject="Your message", body=f"Hello,\n\n{row.example}\nAnna", in_reply_to=thread)
    assert row.reason in reasons(raw)


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("field", ["subject", "body"])
def test_every_language_has_subject_and_body_rows(lang: str, field: str) -> None:
    assert any(r.lang == lang and r.field == field for r in PATTERNS)


#: Ordinary subjects and first lines, in the table's languages, that no row may match.
ORDINARY_LINES = [
    "Re: Automatic reply: Pricing",
    "AW: Abwesenheitsnotiz: Ihr Angebot",
    "Automation of replies in our CRM",
    "Autumn offer",
    "Out of curiosity, what is the price?",
    "I was out of the office last week, sorry for the delay.",
    "I am out of ideas, can you help?",
    "I'm away from my desk a lot, please call instead.",
    "I'm out of the office tomorrow, but yes: Thursday works.",
    "I will be out of the office next week, so let's talk today.",
    "Thank you for your email. We are interested.",
    "Ich bin bis morgen erreichbar.",
    "Ich bin gerne bereit, einen Termin zu vereinbaren.",
    "Absenz von Daten im Bericht",
    "Je suis intéressé par votre offre.",
    "Absence de réponse de votre part",
    "Estoy interesado en la oferta.",
    "Fuera de plazo: la factura",
    "Sono interessato alla vostra proposta.",
    "Ik ben geïnteresseerd in uw voorstel.",
    "Estou interessado na proposta.",
    "Jag är intresserad av ert förslag.",
    "Jestem zainteresowany ofertą.",
    "Auto insurance quote",
]


@pytest.mark.parametrize("line", ORDINARY_LINES)
def test_no_row_matches_ordinary_lines(line: str) -> None:
    matched = [_row_id(r) for r in PATTERNS if compiled_row(r).match(fold(line)) and not r.needs_thread]
    assert matched == []


def test_auto_prefix_counts_only_on_an_answer() -> None:
    # "Auto:" is RFC 3834's prefix, and also the German word for car.
    assert verdict(message(subject="Auto: Angebot für Ihren Fuhrpark")) is None
    threaded = message(subject="Auto: Our proposal", in_reply_to="<ours-1@nimbus.example>")
    assert reasons(threaded) == ("subject:ooo-en",)


@pytest.mark.parametrize(
    ("subject", "reason"),
    [
        ("Reponse automatique : Notre offre", "subject:ooo-fr"),  # the accents dropped by a client
        ("Odpowiedz automatyczna: Nasza oferta", "subject:ooo-pl"),
        ("Franvaro", "subject:ooo-sv"),
        ("AUTOMATISCHE ANTWORT: Unser Angebot", "subject:ooo-de"),
        ("Nicht im Buero", ""),  # "ue" for "ü" is not folded: not claimed
        ("=?utf-8?q?R=C3=A9ponse_automatique=C2=A0=3A?= Notre offre", "subject:ooo-fr"),
        ("=?iso-8859-1?q?Abwesenheitsnotiz=3A_Ihr_Angebot?=", "subject:ooo-de"),
    ],
)
def test_subjects_are_folded(subject: str, reason: str) -> None:
    raw = message(body="x").replace(b"Subject: Hello", b"Subject: " + subject.encode())
    assert (reason in reasons(raw)) if reason else verdict(raw) is None


@pytest.mark.parametrize("subject", ["[EXTERNAL] Automatic reply: Pricing", "[EXT] [SPAM?] Out of Office"])
def test_gateway_tags_before_the_subject(subject: str) -> None:
    assert reasons(message(subject=subject)) == ("subject:ooo-en",)


def test_body_wording_after_a_greeting_and_a_thank_you() -> None:
    raw = message(body="Guten Tag,\n\nvielen Dank für Ihre E-Mail. Ich bin bis 14.12. nicht im Büro.\n")
    assert reasons(raw) == ("body:ooo-de",)
    raw = message(body="Merci pour votre message. Je suis en congés jusqu'au 14 décembre.")
    assert reasons(raw) == ("body:ooo-fr",)


def test_body_wording_in_the_html_part_only() -> None:
    msg = EmailMessage()
    msg["From"] = "anna@prospect.example"
    msg["Subject"] = "Your message"
    msg.set_content(
        "<html><head><style>p{margin:0}</style></head><body><p>Hello,</p>"
        "<p>I&#39;m out of the office until Monday.</p></body></html>",
        subtype="html",
    )
    assert reasons(bytes(msg)) == ("body:ooo-en",)


def test_curly_apostrophe_and_non_breaking_space() -> None:
    assert reasons(message(body="I\u2019m\u00a0currently out of the office.")) == ("body:ooo-en",)


# --- header rules --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("auto-replied", "header:auto-submitted=auto-replied"),
        ("auto-generated", "header:auto-submitted=auto-generated"),
        ("auto-notified", "header:auto-submitted=auto-notified"),
        ("auto-replied (vacation)", "header:auto-submitted=auto-replied"),
        ("Auto-Replied; owner-email=anna@prospect.example", "header:auto-submitted=auto-replied"),
        ("vacation", "header:auto-submitted=vacation"),
    ],
)
def test_auto_submitted_any_value_but_no(value: str, reason: str) -> None:
    assert reasons(message(headers={"Auto-Submitted": value})) == (reason,)


@pytest.mark.parametrize("value", ["no", "No", "no; x-test=1"])
def test_auto_submitted_no_is_a_person(value: str) -> None:
    assert verdict(message(headers={"Auto-Submitted": value})) is None


@pytest.mark.parametrize("value", ["bulk", "junk", "auto_reply", "list", "Bulk"])
def test_precedence(value: str) -> None:
    assert reasons(message(headers={"Precedence": value})) == (f"header:precedence={value.lower()}",)


@pytest.mark.parametrize("value", ["first-class", "normal", "urgent"])
def test_other_precedence_is_not_automatic(value: str) -> None:
    assert verdict(message(headers={"Precedence": value})) is None


@pytest.mark.parametrize("name", PRESENCE_HEADERS)
def test_vendor_presence_headers(name: str) -> None:
    assert reasons(message(headers={name: "yes"})) == (f"header:{name.lower()}",)


@pytest.mark.parametrize("name", ["X-Autoreply", "X-Autorespond"])
def test_vendor_header_saying_no(name: str) -> None:
    assert verdict(message(headers={name: "no"})) is None


@pytest.mark.parametrize("value", ["VACATION", "vacation"])
def test_x_apple_action_vacation(value: str) -> None:
    assert reasons(message(headers={"X-Apple-Action": value})) == ("header:x-apple-action=vacation",)


def test_x_apple_action_other_value() -> None:
    assert verdict(message(headers={"X-Apple-Action": "FORWARD"})) is None


def test_x_autogenerated_reply() -> None:
    assert reasons(message(headers={"X-Autogenerated": "Reply"})) == ("header:x-autogenerated=reply",)


@pytest.mark.parametrize("mailer", ["Unix vacation(1)", "AutoReply 2.1", "Out-of-Office Assistant", "Autoresponder"])
def test_x_mailer_of_vacation_software(mailer: str) -> None:
    assert reasons(message(headers={"X-Mailer": mailer})) == ("header:x-mailer=vacation-software",)


@pytest.mark.parametrize("mailer", ["Microsoft Outlook 16.0", "Apple Mail (2.3774)", "Thunderbird 128.0"])
def test_x_mailer_of_a_mail_client(mailer: str) -> None:
    assert verdict(message(headers={"X-Mailer": mailer})) is None


def test_x_auto_response_suppress_alone_is_not_enough() -> None:
    assert verdict(message(subject="RE: Your offer", headers={"X-Auto-Response-Suppress": "All"})) is None


def test_rules_loop_alone_is_not_enough() -> None:
    raw = message(subject="FW: Your offer", headers={"X-MS-Exchange-Inbox-Rules-Loop": "anna@prospect.example"})
    assert verdict(raw) is None


def test_suppress_and_rules_loop_together_are_exchange_oof() -> None:
    raw = message(
        subject="Your offer",
        headers={"X-Auto-Response-Suppress": "All", "X-MS-Exchange-Inbox-Rules-Loop": "anna@prospect.example"},
    )
    assert reasons(raw) == ("header:x-auto-response-suppress", "header:x-ms-exchange-inbox-rules-loop")


def test_suppress_is_listed_with_a_decisive_signal() -> None:
    raw = message(subject="Automatic reply: Your offer", headers={"X-Auto-Response-Suppress": "All"})
    assert reasons(raw) == ("subject:ooo-en", "header:x-auto-response-suppress")


# --- vendor formats ------------------------------------------------------------------------------
VENDOR_CASES = [
    (ooo.exchange_ooo, "en", ("header:auto-submitted=auto-generated", "subject:ooo-en", "body:ooo-en")),
    (ooo.exchange_ooo, "de", ("header:auto-submitted=auto-generated", "subject:ooo-de", "body:ooo-de")),
    (ooo.exchange_ooo, "fr", ("header:auto-submitted=auto-generated", "subject:ooo-fr", "body:ooo-fr")),
    (ooo.gmail_vacation, "en", ("header:auto-submitted=auto-replied", "subject:ooo-en", "body:ooo-en")),
    (ooo.gmail_vacation, "es", ("header:auto-submitted=auto-replied", "subject:ooo-es", "body:ooo-es")),
    (ooo.gmail_vacation, "it", ("header:auto-submitted=auto-replied", "subject:ooo-it", "body:ooo-it")),
    (ooo.apple_vacation, "en", ("header:x-apple-action=vacation", "subject:ooo-en", "body:ooo-en")),
    (ooo.apple_vacation, "fr", ("header:x-apple-action=vacation", "subject:ooo-en", "body:ooo-fr")),
    (ooo.sieve_vacation, "en", ("header:auto-submitted=auto-replied", "header:precedence=bulk", "subject:ooo-en")),
    (ooo.sieve_vacation, "de", ("header:auto-submitted=auto-replied", "header:precedence=bulk", "body:ooo-de")),
]


@pytest.mark.parametrize(
    ("builder", "lang", "expected"), VENDOR_CASES, ids=[f"{b.__name__}-{lang}" for b, lang, _ in VENDOR_CASES]
)
def test_vendor_out_of_office(builder: ooo.Builder, lang: str, expected: tuple[str, ...]) -> None:
    raw = bytes(builder(lang, subject="Pricing for 2027", in_reply_to="ours-42@nimbus.example"))
    found = classify(raw)
    assert found.kind == "auto_reply"
    assert set(expected) <= set(found.reasons)
    assert found.original_message_id == "ours-42@nimbus.example"
    assert [(r.address, r.reason, r.hard) for r in found.recipients] == [(parse(raw).from_address, "vacation", False)]


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("builder", [ooo.exchange_ooo, ooo.gmail_vacation], ids=lambda b: b.__name__)
def test_wording_alone_in_every_language(builder: ooo.Builder, lang: str) -> None:
    """With the vendor headers stripped, subject and first line still say it, in every language."""
    msg = builder(lang)
    for name in ("Auto-Submitted", "X-Auto-Response-Suppress", "X-MS-Exchange-Inbox-Rules-Loop"):
        del msg[name]
    found = reasons(bytes(msg))
    assert f"subject:ooo-{lang}" in found
    assert f"body:ooo-{lang}" in found


def test_exchange_ooo_headers() -> None:
    msg = ooo.exchange_ooo("en", subject="Pricing")
    assert msg["Subject"] == "Automatic reply: Pricing"
    assert msg["X-Auto-Response-Suppress"] == "All"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["X-MS-Exchange-Inbox-Rules-Loop"] == "anna@prospect.example"
    assert "Precedence" not in msg


def test_gmail_vacation_without_a_subject_answers_re_and_still_wins() -> None:
    """An auto-reply is never a reply: ``Re:`` and ``In-Reply-To`` do not make it one."""
    msg = ooo.gmail_vacation("en", vacation_subject=None, subject="Pricing", text="Back on Monday.")
    assert msg["Subject"] == "Re: Pricing"
    found = classify(bytes(msg))
    assert found.kind == "auto_reply"
    assert found.reasons == ("header:auto-submitted=auto-replied",)
    assert found.in_reply_to == "campaign-1.step-1@nimbus.example"


def test_apple_vacation_has_no_auto_submitted() -> None:
    msg = ooo.apple_vacation("en", text="I'm only sleeping.")
    assert "Auto-Submitted" not in msg
    assert reasons(bytes(msg)) == ("header:x-apple-action=vacation", "subject:ooo-en")


def test_original_message_id_falls_back_to_references() -> None:
    raw = message(subject="Automatic reply: x", headers={"References": "<a@x> <ours-7@nimbus.example>"})
    found = verdict(raw)
    assert found is not None
    assert found.original_message_id == "ours-7@nimbus.example"


def test_no_original_when_unthreaded() -> None:
    found = verdict(message(subject="Out of Office"))
    assert found is not None
    assert found.original_message_id == ""


# --- human replies it must leave alone -----------------------------------------------------------
def test_ordinary_outlook_reply_with_suppress_header_is_a_reply() -> None:
    msg = ooo.outlook_reply()
    assert msg["X-Auto-Response-Suppress"] == "All"
    found = classify(bytes(msg))
    assert found.kind == "reply"


def test_human_reply_mentioning_out_of_office_in_a_later_line() -> None:
    text = (
        "Hi Bob,\n\nthanks for the proposal, we are interested.\nI was out of office last week, hence "
        "the delay. I am out of the office again from Friday, so let's talk before.\n"
    )
    assert classify(bytes(ooo.gmail_reply(text))).kind == "reply"


def test_human_reply_opening_with_out_of_office_but_quoting_history() -> None:
    text = "I'm out of the office tomorrow, but yes: let's do Thursday."
    assert classify(bytes(ooo.gmail_reply(text))).kind == "reply"
    assert classify(bytes(ooo.outlook_reply(text))).kind == "reply"


def test_human_reply_quoting_our_out_of_office_wording() -> None:
    quoted = "I am out of the office until Monday.\nAutomatic reply: this is what your OOO looks like"
    assert classify(bytes(ooo.gmail_reply("Interesting, tell me more.", quoted=quoted))).kind == "reply"


@pytest.mark.parametrize(
    "text",
    [
        "We just came back from vacation and would like to order.",
        "Our out of office policy is fine with your terms.",
        "Sounds good. Automatic reply tools are what we need.",
    ],
)
def test_words_in_the_middle_do_not_count(text: str) -> None:
    assert classify(bytes(ooo.gmail_reply(text))).kind == "reply"
    assert verdict(message(subject="Question", body=text)) is None


def test_a_person_answering_an_auto_reply() -> None:
    raw = message(subject="Re: Automatic reply: Pricing", body="OK, I will wait.", in_reply_to="<x@y>")
    assert classify(raw).kind == "reply"


def test_plain_message_is_not_auto() -> None:
    assert classify(message()).kind == "other"


# --- robustness and speed ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff\xfe garbage",
        b"Subject: =?x-unknown?q?Abwesenheitsnotiz?=\r\n\r\n",
        b"Auto-Submitted: \r\nPrecedence:\r\n\r\nbody",
        b"Content-Type: multipart/alternative; boundary=x\r\nSubject: Out of Office\r\n\r\n--x\r\n",
        b"Subject: Out of Office\r\nContent-Type: text/plain; charset=no-such-charset\r\n\r\n\xff\xfe",
    ],
)
def test_never_raises(raw: bytes) -> None:
    detect(parse(raw))
    classify(raw)


def test_empty_auto_submitted_is_not_a_signal() -> None:
    assert verdict(b"Auto-Submitted: \r\nSubject: hi\r\n\r\nbody") is None


def test_fast_on_ordinary_mail() -> None:
    parsed = [parse(bytes(ooo.gmail_reply(f"Message number {i}, all fine."))) for i in range(500)]
    started = time.perf_counter()
    for p in parsed:
        assert detect(p) is None
    per_message = (time.perf_counter() - started) / len(parsed)
    assert per_message < 0.002, f"{per_message * 1e6:.0f} µs per message"


# --- the corpus ----------------------------------------------------------------------------------
def test_corpus_rfc3834_messages_are_auto_replies() -> None:
    folder = CORPUS_DIR / "messages" / "rfc3834"
    if not folder.is_dir():
        pytest.skip(f"corpus not found at {folder} (set NIMBUS_CORPUS_DIR)")
    files = sorted(folder.glob("*.eml"))
    assert len(files) == 3
    for path in files:
        found = classify(path.read_bytes())
        assert found.kind == "auto_reply", (path.name, found.reasons)
        assert [r.reason for r in found.recipients] == ["vacation"]


def test_corpus_reports_are_never_claimed() -> None:
    """148 of the corpus's bounces say ``Auto-Submitted`` too: none is read as an out-of-office, even
    with no report detector before this one."""
    labels_file = CORPUS_DIR / "labels.jsonl"
    if not labels_file.is_file():
        pytest.skip(f"corpus not found at {CORPUS_DIR} (set NIMBUS_CORPUS_DIR)")
    claimed = []
    for line in labels_file.read_text().splitlines():
        label = json.loads(line)
        if label["kind"] != "auto_reply" and verdict((CORPUS_DIR / label["file"]).read_bytes()) is not None:
            claimed.append(label["file"])
    assert claimed == []


# --- what the report detectors own ---------------------------------------------------------------
def _report(report_type: str) -> bytes:
    return (
        "From: MTA <reports@mx.prospect.example>\r\nSubject: Delivery Status Notification (Failure)\r\n"
        "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: multipart/report; report-type={report_type}; boundary=b\r\n\r\n"
        "--b\r\nContent-Type: text/plain\r\n\r\nI am out of the office.\r\n--b--\r\n"
    ).encode()


@pytest.mark.parametrize("report_type", ["delivery-status", "feedback-report", '""'])
def test_reports_are_left_to_their_detectors(report_type: str) -> None:
    assert verdict(_report(report_type)) is None


def test_read_receipt_is_an_automatic_answer() -> None:
    assert reasons(_report("disposition-notification")) == (
        "header:auto-submitted=auto-replied",
        "body:ooo-en",
    )


@pytest.mark.parametrize("sender", ["MAILER-DAEMON@mx.prospect.example", "postmaster@prospect.example"])
def test_mail_system_senders_are_left_alone(sender: str) -> None:
    raw = message(subject="Undelivered Mail Returned to Sender", headers={"Auto-Submitted": "auto-replied"})
    raw = raw.replace(b"Anna Example <anna@prospect.example>", sender.encode())
    assert verdict(raw) is None


def test_apple_unsubscribe_is_left_alone() -> None:
    raw = message(subject="unsubscribe", headers={"Auto-Submitted": "auto-replied", "X-Apple-Unsubscribe": "true"})
    assert verdict(raw) is None


# --- a real Sieve vacation response --------------------------------------------------------------
def test_real_pigeonhole_vacation_response() -> None:
    """Pigeonhole's own ``vacation`` output, as ``sieve-test -e`` prints the response it sends."""
    with tempfile.TemporaryDirectory(prefix="nimbus-sieve-") as tmp:
        _run_pigeonhole_vacation(Path(tmp))


def _run_pigeonhole_vacation(tmp_path: Path) -> None:
    if shutil.which("sieve-test") is None:
        pytest.skip("sieve-test (dovecot-sieve) is not installed")
    prefix: list[str] = []
    if os.geteuid() == 0:  # Dovecot refuses to run mail code as root
        if shutil.which("setpriv") is None:
            pytest.skip("running as root and setpriv is missing")
        nobody = pwd.getpwnam("nobody")
        prefix = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]
    tmp_path.chmod(0o777)
    (tmp_path / "v.sieve").write_text(
        'require "vacation";\nvacation :days 1 :addresses ["anna@prospect.example"] '
        '"Ich bin bis zum 14. Dezember nicht im Büro.";\n'
    )
    (tmp_path / "in.eml").write_bytes(
        b"From: Bob Sender <bob@nimbus.example>\r\nTo: Anna <anna@prospect.example>\r\n"
        b"Subject: Our proposal\r\nMessage-ID: <ours-9@nimbus.example>\r\n"
        b"Date: Thu, 03 Dec 2026 10:00:00 +0000\r\n\r\nHello Anna\r\n"
    )
    completed = subprocess.run(
        [
            *prefix, "env", f"HOME={tmp_path}", "sieve-test", "-e",
            "-o", f"mail_location=maildir:{tmp_path}/Maildir",
            "-a", "anna@prospect.example", "-r", "anna@prospect.example", "-f", "bob@nimbus.example",
            str(tmp_path / "v.sieve"), str(tmp_path / "in.eml"),
        ],
        capture_output=True, timeout=30, check=False,
    )  # fmt: skip
    # With -e, sieve-test prints the message it would send on stdout, then a "RECIPIENT:" trailer.
    sent = completed.stdout.split(b"\nRECIPIENT: ", 1)[0]
    if b"X-Sieve:" not in sent:
        pytest.skip(f"sieve-test sent nothing here: {completed.stderr[-300:]!r}")
    found = classify(sent)
    assert found.kind == "auto_reply"
    assert found.reasons[:2] == ("header:auto-submitted=auto-replied", "header:precedence=bulk")
    assert "subject:ooo-en" in found.reasons  # "Auto: Our proposal"
    assert "body:ooo-de" in found.reasons
    assert found.original_message_id == "ours-9@nimbus.example"
    # The builder writes the header set Pigeonhole writes.
    real = {name.lower() for name in parse(sent).message}
    assert real == {name.lower() for name in ooo.sieve_vacation()}
