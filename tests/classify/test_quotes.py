"""``new_text``: what a person wrote in a reply, without the quoted history and the signature."""

from __future__ import annotations

import time
from email.message import EmailMessage

import pytest

from nimbus_api.classify import quotes
from nimbus_api.classify.parsing import parse
from nimbus_api.classify.quotes import extract, new_text
from tests.mailworld import ooo_messages as ooo


def plain(body: str, subject: str = "Re: Our proposal") -> bytes:
    msg = EmailMessage()
    msg["From"] = "anna@prospect.example"
    msg["Subject"] = subject
    msg.set_content(body)
    return bytes(msg)


def test_gmail_reply() -> None:
    assert new_text(parse(bytes(ooo.gmail_reply()))) == "Hi Bob,\n\nsounds good, let's talk on Tuesday."


def test_outlook_reply_without_signature_and_history() -> None:
    text = new_text(parse(bytes(ooo.outlook_reply())))
    assert text == "Hi Bob,\n\nyes, Tuesday at 10:00 works for us. Please send the contract beforehand."


QUOTE_HEADERS = [
    ("en", "On Thu, Dec 3, 2026 at 9:00 AM Bob Sender <bob@nimbus.example> wrote:"),
    ("en-wrapped", "On Thu, Dec 3, 2026 at 9:00 AM Bob Sender <bob@nimbus.example>\nwrote:"),
    ("de", "Am Do., 3. Dez. 2026 um 09:00 Uhr schrieb Bob Sender <bob@nimbus.example>:"),
    ("fr", "Le jeu. 3 déc. 2026 à 09:00, Bob Sender <bob@nimbus.example> a écrit :"),
    ("es", "El jue, 3 dic 2026 a las 9:00, Bob Sender (<bob@nimbus.example>) escribió:"),
    ("it", "Il giorno gio 3 dic 2026 alle ore 09:00 Bob Sender <bob@nimbus.example> ha scritto:"),
    ("nl", "Op do 3 dec. 2026 om 09:00 schreef Bob Sender <bob@nimbus.example>:"),
    ("pt", "Em qui., 3 de dez. de 2026 às 09:00, Bob Sender <bob@nimbus.example> escreveu:"),
    ("sv", "Den tors 3 dec. 2026 kl 09:00 skrev Bob Sender <bob@nimbus.example>:"),
    ("pl", "W dniu 3.12.2026 o 09:00, Bob Sender <bob@nimbus.example> napisał:"),
    ("pl-a", "czw., 3 gru 2026 o 09:00 Bob Sender <bob@nimbus.example> napisał(a):"),
    ("outlook-en", "-----Original Message-----\nFrom: Bob Sender\nSent: Thursday, December 3, 2026"),
    ("outlook-de", "-----Ursprüngliche Nachricht-----\nVon: Bob Sender\nGesendet: Donnerstag, 3. Dezember"),
    ("outlook-block-fr", "De : Bob Sender <bob@nimbus.example>\nEnvoyé : jeudi 3 décembre 2026 09:00"),
    ("outlook-block-es", "De: Bob Sender <bob@nimbus.example>\nEnviado: jueves, 3 de diciembre de 2026"),
    ("outlook-underscores", "________________________________\nFrom: Bob Sender\nSent: Thursday"),
]


@pytest.mark.parametrize(("name", "header"), QUOTE_HEADERS, ids=[n for n, _ in QUOTE_HEADERS])
def test_quote_headers_in_every_language(name: str, header: str) -> None:
    body = f"Yes, please call me on Tuesday.\n\n{header}\n\n> Hello Anna,\n> would you like a call?\n"
    assert new_text(parse(plain(body))) == "Yes, please call me on Tuesday."


def test_history_without_quote_marks_after_a_header() -> None:
    body = "Agreed.\n\nAm 03.12.2026 um 09:00 schrieb Bob Sender:\nHallo Anna,\nwie wäre ein Anruf?\n"
    assert extract(body) == "Agreed."


def test_inline_answers_between_quoted_lines_are_kept() -> None:
    body = "See below.\n> Would Tuesday work?\nYes, at 10.\n> And the price?\nFine as offered.\n"
    assert extract(body) == "See below.\nYes, at 10.\nFine as offered."


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("Yes, let's do it.\n\nBest regards,\nAnna Example\nACME Ltd | +1 555 0100", "Yes, let's do it."),
        ("Ja, gerne.\n\nMit freundlichen Grüßen\nAnna Example", "Ja, gerne."),
        ("Yes please.\n\nThanks, Anna\nCEO, ACME", "Yes please."),
        ("Yes please.\n\n-- \nAnna Example\nACME Ltd", "Yes please."),
        ("Sure.\n\nSent from my iPhone", "Sure."),
    ],
)
def test_signatures(body: str, expected: str) -> None:
    assert extract(body) == expected


@pytest.mark.parametrize(
    "body",
    [
        "Hi Bob,\nThanks, that works for me.\nTuesday at 10?\n\nAnna",
        "Hi Bob,\nThanks, that works for me\nand the price is fine\n\nAnna",
        "Our points:\n- price per seat\n- timing of the roll-out\n- support hours",
    ],
)
def test_sentences_and_lists_are_not_signatures(body: str) -> None:
    assert extract(body) == body.strip()


def test_only_quoted_text_gives_nothing() -> None:
    assert extract("> Hello Anna\n> would you like a call?\n") == ""


def test_no_quotes_at_all_is_the_whole_text() -> None:
    assert extract("  Hello Bob,\r\n\r\n\r\n\r\nyes.\r\n  ") == "Hello Bob,\n\nyes."


def test_html_only_reply() -> None:
    msg = EmailMessage()
    msg["From"] = "anna@prospect.example"
    msg["Subject"] = "Re: Our proposal"
    msg.set_content(
        '<html><body><div dir="ltr">Sounds good, call me &amp; my colleague.</div><br>'
        '<div class="gmail_quote"><div dir="ltr" class="gmail_attr">On Thu, Dec 3, 2026 at 9:00 AM '
        "Bob Sender &lt;bob@nimbus.example&gt; wrote:<br></div><blockquote>Hello Anna,<br>"
        "would you like a call?</blockquote></div></body></html>",
        subtype="html",
    )
    assert new_text(parse(bytes(msg))) == "Sounds good, call me & my colleague."


def test_outlook_html_reply() -> None:
    msg = EmailMessage()
    msg["From"] = "anna@prospect.example"
    msg["Subject"] = "RE: Our proposal"
    msg.set_content(
        '<html><head><style>p.MsoNormal {margin:0}</style></head><body><div class="WordSection1">'
        '<p class="MsoNormal">Tuesday works.</p><p class="MsoNormal">Anna</p>'
        '<div id="divRplyFwdMsg"><hr><b>From:</b> Bob Sender &lt;bob@nimbus.example&gt;<br>'
        "<b>Sent:</b> Thursday, December 3, 2026 09:00<br><b>To:</b> Anna<br>"
        "<b>Subject:</b> Our proposal</div><p>Hello Anna, would a call suit you?</p></div></body></html>",
        subtype="html",
    )
    assert new_text(parse(bytes(msg))) == "Tuesday works.\nAnna"


def test_plain_part_preferred_over_html() -> None:
    msg = EmailMessage()
    msg["From"] = "anna@prospect.example"
    msg.set_content("The plain text.")
    msg.add_alternative("<p>The HTML text.</p>", subtype="html")
    assert new_text(parse(bytes(msg))) == "The plain text."


def test_auto_reply_text() -> None:
    text = new_text(parse(bytes(ooo.exchange_ooo("de"))))
    assert text.startswith("Guten Tag,\n\nvielen Dank für Ihre Nachricht. Ich bin bis zum 14. Dezember")
    assert "Mit freundlichen Grüßen" not in text


@pytest.mark.parametrize(
    "raw",
    [b"", b"\x00\xff garbage", b"Subject: x\r\n\r\n", b"Content-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\n"],
)
def test_never_raises(raw: bytes) -> None:
    assert isinstance(new_text(parse(raw)), str)


def test_library_failure_falls_back_to_own_stripping(monkeypatch: pytest.MonkeyPatch) -> None:
    import mailparser_reply.parser as library

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("library bug")

    monkeypatch.setattr(library, "EmailMessage", broken)
    body = "Yes.\n\nEl jue, 3 dic 2026 a las 9:00, Bob (<bob@nimbus.example>) escribió:\n> Hola\n"
    assert extract(body) == "Yes."


def test_total_failure_returns_the_text(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(text: str) -> str:
        raise RuntimeError("bug")

    monkeypatch.setattr(quotes, "extract", broken)
    assert new_text(parse(plain("Just this.\n"))) == "Just this."


def test_large_history_is_fast() -> None:
    history = "\n".join(f"> line {i} of a very long quoted thread with From: and Sent: words" for i in range(20_000))
    body = f"Short answer.\n\nOn Thu, Dec 3, 2026 at 9:00 AM Bob wrote:\n{history}\n"
    started = time.perf_counter()
    assert extract(body) == "Short answer."
    assert time.perf_counter() - started < 2.0
