"""Outgoing MIME: headers, alternatives, threading, RFC 8058 unsubscribe, and no header injection."""

from __future__ import annotations

import email
from email import policy

import pytest

from nimbus_api.sending.mime import HeaderInjection, OutgoingMail, build, new_message_id, to_bytes


def mail(**overrides: object) -> OutgoingMail:
    values: dict[str, object] = {
        "from_email": "ada@sender.example",
        "from_name": "Ada Lovelace",
        "to_email": "grace@example.org",
        "to_name": "Grace",
        "reply_to": "replies@sender.example",
        "subject": "Quick question, Grace",
        "text": "Hello Grace,\n\n.line starting with a dot\n",
        "html": "<p>Hello <b>Grace</b></p>",
        "message_id": "<abc123@sender.example>",
        "in_reply_to": None,
        "references": (),
        "unsubscribe_url": "https://nimbus.example/u/tok",
        "unsubscribe_mailto": "mailto:unsubscribe@sender.example?subject=unsubscribe-tok",
    }
    values.update(overrides)
    return OutgoingMail(**values)  # type: ignore[arg-type]


def parse(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=policy.default)  # type: ignore[return-value]


def test_headers_and_alternatives() -> None:
    raw = to_bytes(build(mail()))
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    msg = parse(raw)
    assert msg["From"] == "Ada Lovelace <ada@sender.example>"
    assert msg["To"] == "Grace <grace@example.org>"
    assert msg["Reply-To"] == "replies@sender.example"
    assert msg["Message-ID"] == "<abc123@sender.example>"
    assert msg["Date"]
    assert msg["List-Unsubscribe"] == (
        "<mailto:unsubscribe@sender.example?subject=unsubscribe-tok>, <https://nimbus.example/u/tok>"
    )
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg.get_content_type() == "multipart/alternative"
    parts = [p.get_content_type() for p in msg.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    assert "In-Reply-To" not in msg


def test_text_only_and_threading() -> None:
    msg = parse(
        to_bytes(build(mail(html=None, in_reply_to="<first@sender.example>", references=("<first@sender.example>",))))
    )
    assert msg.get_content_type() == "text/plain"
    assert msg["In-Reply-To"] == "<first@sender.example>"
    assert msg["References"] == "<first@sender.example>"


def test_non_ascii_names_and_subjects_are_encoded() -> None:
    raw = to_bytes(build(mail(from_name="Zoë Müller", subject="Grüße aus Köln")))
    assert raw.isascii()
    msg = parse(raw)
    assert msg["Subject"] == "Grüße aus Köln"
    assert msg["From"].addresses[0].display_name == "Zoë Müller"


@pytest.mark.parametrize(
    "field",
    ["subject", "from_name", "to_name", "to_email", "reply_to", "message_id", "unsubscribe_url"],
)
@pytest.mark.parametrize("payload", ["x\r\nBcc: victim@example.com", "x\nBcc: v@example.com", "x\rBcc: v", "x\x00y"])
def test_line_breaks_in_any_header_value_are_refused(field: str, payload: str) -> None:
    with pytest.raises(HeaderInjection):
        build(mail(**{field: payload}))


def test_display_name_with_quotes_and_commas_stays_one_address() -> None:
    msg = parse(to_bytes(build(mail(to_name='Evil, "Bcc" <x@y.z>'))))
    assert len(msg["To"].addresses) == 1
    assert msg["To"].addresses[0].addr_spec == "grace@example.org"


def test_message_ids_are_unique_on_the_sending_domain() -> None:
    ids = {new_message_id("sender.example") for _ in range(1000)}
    assert len(ids) == 1000
    assert all(i.startswith("<") and i.endswith("@sender.example>") for i in ids)
