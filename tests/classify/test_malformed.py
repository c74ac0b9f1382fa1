"""Broken input never raises: it is classified (``other`` at worst) with a parse note saying why."""

from __future__ import annotations

import random
import time

import pytest

from nimbus_api.classify import classifier, classify
from nimbus_api.classify.parsing import PARSE_LIMIT
from tests.classify.mail import dsn, message


@pytest.mark.parametrize(
    ("raw", "note"),
    [
        (b"", "headers:none"),
        (b"just some text, no header at all\n\nand more", "headers:none"),
        (
            b"From: a@example.com\nSubject: x\nContent-Type: multipart/mixed; boundary=zz\n\n--zz\n"
            b"Content-Type: text/plain\n\nnever closed\n",
            "mime:CloseBoundaryNotFoundDefect",
        ),
        (
            b"From: a@example.com\nSubject: x\nContent-Type: multipart/mixed; boundary=missing\n\nno parts at all\n",
            "mime:StartBoundaryNotFoundDefect",
        ),
        (
            b"From: a@example.com\nSubject: x\nContent-Type: text/plain; charset=x-no-such-charset\n\n"
            b"\xff\xfe\x00 hi\n",
            "charset:unknown",
        ),
    ],
    ids=["empty", "no-headers", "unclosed-multipart", "boundary-never-seen", "unknown-charset"],
)
def test_broken_input_is_other_with_a_note(raw: bytes, note: str) -> None:
    verdict = classify(raw)
    assert verdict.kind == "other"
    assert note in verdict.parse_notes


def test_undecodable_bytes_in_a_bounce_are_noted_and_still_read() -> None:
    raw = message(
        [
            ("From", "MAILER-DAEMON@mx.example.org"),
            ("Subject", "failure notice"),
            ("Content-Type", "text/plain; charset=utf-8"),
        ],
        "I'm afraid I wasn't able to deliver your message to the following addresses.\n\n"
        "<gone@rcpt.example.net>:\n550 5.1.1 user unknown BAD-BYTE\n",
    )
    raw = raw.replace(b"BAD-BYTE", b"\xff\xfe")
    verdict = classify(raw)
    assert verdict.kind == "bounce"
    assert "charset:undecodable" in verdict.parse_notes


def test_bad_encoded_words_and_headers() -> None:
    raw = (
        b"From: =?x-bogus?B?AAAA?= <a@example.com>\nSubject: =?utf-8?Q?broken=ZZ?=\n"
        b"Message-ID: <unterminated\nIn-Reply-To: <<<\n\nbody\n"
    )
    verdict = classify(raw)
    assert verdict.kind in {"other", "reply"}


def test_a_25_mb_message_is_cut_and_classified_quickly() -> None:
    attachment = b"QUJD" * (25 * 1024 * 1024 // 4)
    raw = (
        b"From: a@example.com\nSubject: big\nContent-Type: multipart/mixed; boundary=b\n\n--b\n"
        b"Content-Type: text/plain\n\nhello\n--b\nContent-Type: application/octet-stream\n"
        b"Content-Transfer-Encoding: base64\n\n" + attachment + b"\n--b--\n"
    )
    assert len(raw) > 25 * 1024 * 1024 > PARSE_LIMIT
    start = time.perf_counter()
    verdict = classify(raw)
    assert time.perf_counter() - start < 20
    assert verdict.kind == "other"
    assert "size:truncated-for-parsing" in verdict.parse_notes


def test_a_huge_bounce_report_does_not_backtrack() -> None:
    # long runs of what the patterns look for, without the rest: every regex must stay linear
    filler = ("a" * 60 + "@" + "b." * 30 + " " + "-" * 80 + "\n") * 2000
    body = "This is a permanent error. The following address(es) failed:\n\n" + filler
    raw = message([("From", "MAILER-DAEMON@mx.example.org"), ("Subject", "failure notice")], body)
    start = time.perf_counter()
    classify(raw)
    assert time.perf_counter() - start < 5


def test_random_bytes_never_raise() -> None:
    rng = random.Random(42)
    for _ in range(200):
        raw = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 600)))
        classify(raw)
        classify(b"From: MAILER-DAEMON@x.example\nSubject: failure notice\n\n" + raw)
        classify(dsn("Final-Recipient: rfc822; " + raw.decode("latin-1")))


def test_a_failing_detector_is_noted_and_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(parsed: object) -> None:
        raise RuntimeError("boom")

    original = classifier._detectors

    def detectors() -> tuple[tuple[str, object], ...]:
        return (("broken", broken), *original())

    monkeypatch.setattr(classifier, "_detectors", detectors)
    verdict = classify(dsn("Final-Recipient: rfc822; a@rcpt.example.net\nAction: failed\nStatus: 5.1.1\n"))
    assert verdict.kind == "bounce"
    assert "detector:broken-failed" in verdict.parse_notes


def test_the_envelope_keeps_every_field_of_the_verdict() -> None:
    """``_with_envelope`` builds the verdict field by field: none may be dropped (a field added to
    ``Classification`` must be added there)."""
    import dataclasses

    from nimbus_api.classify.parsing import parse
    from nimbus_api.classify.types import Classification, Recipient

    values: dict[str, object] = {
        "kind": "bounce",
        "reasons": ("x",),
        "recipients": (Recipient(address="a@b.example", action="failed"),),
        "original_message_id": "o@x",
        "original_recipient": "r@x",
        "feedback_type": "abuse",
        "in_reply_to": "i@x",
        "references": ("ref@x",),
        "message_id": "m@x",
        "from_address": "f@x",
        "subject": "s",
        "parse_notes": ("note",),
    }
    assert set(values) == {f.name for f in dataclasses.fields(Classification)}
    verdict = Classification(**values)  # type: ignore[arg-type]
    assert classifier._with_envelope(verdict, parse(b"Subject: other\n\n")) == verdict
