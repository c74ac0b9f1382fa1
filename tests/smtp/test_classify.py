"""One test per row of the classification table, and the table's documentation kept in sync."""

from __future__ import annotations

from typing import NamedTuple

import pytest

from nimbus_api.smtp import classify as classify_module
from nimbus_api.smtp.classify import TABLE, Row, classify, match, render_table
from nimbus_api.smtp.errors import Stage


class Example(NamedTuple):
    stage: Stage
    code: int
    enhanced: str | None
    text: str
    encrypted: bool
    expected: str


# One real-world reply per row, in table order; the row it must hit is the one at the same index.
EXAMPLES: list[Example] = [
    Example("mail", 530, "5.7.0", "Must issue a STARTTLS command first.", False, "smtp.starttls_required"),
    Example(
        "auth",
        538,
        "5.7.11",
        "Encryption required for requested authentication mechanism",
        False,
        "smtp.starttls_required",
    ),
    Example("mail", 530, "5.7.0", "Authentication required", True, "smtp.auth_failed"),
    Example("tls", 454, "4.7.0", "TLS not available due to local problem", False, "smtp.tls_handshake_failed"),
    Example("tls", 502, "5.5.1", "Error: command not implemented", False, "smtp.starttls_unsupported"),
    Example("auth", 504, "5.7.4", "Unrecognized authentication type", True, "smtp.auth_unsupported"),
    Example("auth", 534, "5.7.9", "Application-specific password required.", True, "smtp.auth_failed"),
    Example(
        "mail",
        553,
        "5.7.1",
        "Sender address rejected: not owned by user ada@example.test",
        True,
        "smtp.sender_rejected",
    ),
    Example("rcpt", 554, "5.7.1", "<ada@example.test>: Relay access denied", False, "smtp.relay_denied"),
    # Postfix's check_recipient_access: the same 5.7.1 as a relay refusal, about one address only.
    Example(
        "rcpt",
        550,
        "5.7.1",
        "<erin@xn--bcher-kva.test>: Recipient address rejected: Access denied",
        True,
        "smtp.recipient_rejected",
    ),
    Example("rcpt", 550, "5.7.1", "Unable to deliver to this domain: not permitted", True, "smtp.relay_denied"),
    Example(
        "rcpt",
        550,
        "5.1.1",
        "The email account that you tried to reach does not exist.",
        True,
        "smtp.recipient_rejected",
    ),
    Example("rcpt", 450, "4.7.1", "Greylisted, please try again in 300 seconds", True, "smtp.throttled"),
    Example("dot", 554, "5.7.1", "Message rejected as spam", True, "smtp.rejected"),
    Example("data", 250, None, "OK", True, "smtp.rejected"),
]


def test_every_row_has_an_example() -> None:
    assert len(EXAMPLES) == len(TABLE)


@pytest.mark.parametrize(
    ("index", "example"), list(enumerate(EXAMPLES)), ids=[f"row{i}-{e.expected}" for i, e in enumerate(EXAMPLES)]
)
def test_row(index: int, example: Example) -> None:
    row = match(example.stage, example.code, example.enhanced, example.text, encrypted=example.encrypted)
    assert row is TABLE[index]
    assert row.code == example.expected
    assert classify(example.stage, example.code, example.enhanced, example.text, encrypted=example.encrypted) == (
        example.expected
    )


@pytest.mark.parametrize(
    ("stage", "code", "enhanced", "text", "encrypted", "expected"),
    [
        # The same reply means different things at different stages.
        ("rcpt", 554, "5.7.1", "Relay access denied", True, "smtp.relay_denied"),
        ("dot", 554, "5.7.1", "Relay access denied", True, "smtp.rejected"),
        ("mail", 554, "5.7.1", "Relay access denied", True, "smtp.sender_rejected"),
        # 530 in cleartext that is not about TLS is a login requirement.
        ("mail", 530, "5.7.0", "Authentication required", False, "smtp.auth_failed"),
        # 4xx wins at any stage, including AUTH and the greeting.
        ("auth", 454, "4.7.0", "Temporary authentication failure", True, "smtp.throttled"),
        ("connect", 421, "4.3.2", "Service not available", False, "smtp.throttled"),
        (
            "auth",
            535,
            "5.7.139",
            "Authentication unsuccessful, SmtpClientAuthentication is disabled",
            True,
            "smtp.auth_failed",
        ),
        ("ehlo", 550, None, "Access denied", False, "smtp.rejected"),
        ("connect", -1, None, "Malformed SMTP response line", False, "smtp.rejected"),
    ],
)
def test_stage_matters(
    stage: Stage, code: int, enhanced: str | None, text: str, encrypted: bool, expected: str
) -> None:
    assert classify(stage, code, enhanced, text, encrypted=encrypted) == expected


def test_last_row_is_a_catch_all() -> None:
    assert TABLE[-1] == Row("*", "*", "*", "*", "", "smtp.rejected")


def test_docstring_shows_the_table() -> None:
    doc = classify_module.__doc__
    assert doc is not None
    assert "    " + render_table().replace("\n", "\n    ") in doc


def test_every_code_has_a_hint() -> None:
    assert {row.code for row in TABLE} <= set(classify_module.HINTS)
