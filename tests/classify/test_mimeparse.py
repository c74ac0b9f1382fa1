"""``mimeparse.parse_bytes`` builds the very tree the stdlib parser (compat32) builds.

Compared part by part: headers as stored, envelope line, preamble, epilogue, default type, payload and
defects (type and arguments). Inputs: the synthetic messages of ``mail.py``, hand-written broken ones,
the corpus when it is there (read in place), and thousands of seeded mutations of them all (cut,
lines dropped, boundary / blank / continuation / ``From`` lines inserted, random token soup).
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import os
import random
from email.message import Message
from pathlib import Path

import pytest

from nimbus_api.classify import mimeparse
from tests.classify.mail import dsn, message, plain_bounce

REPO_ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(os.environ.get("NIMBUS_CORPUS_DIR") or REPO_ROOT / ".." / "shared" / "corpus").resolve()

TOKENS = (
    b"\n", b"\r\n", b"\r", b"\n\n", b"--", b"-- ", b"--\n", b"From x\n", b"From y", b" cont\n", b":x\n", b"\tx\n",
    b"Content-Type: message/delivery-status\n", b"Content-Type: multipart/mixed; boundary=b\n",
    b"Content-Type: message/rfc822\n", b'Content-Type: multipart/digest; boundary="b"\n',
    b"Content-Type: multipart/alternative\n", b"Content-Transfer-Encoding: base64\n", b"--b\n", b"--b--\n", b"--b--",
    b"--b \r\n", b"--b--  \r", b"--=_bnd_42\n", b"--=_bnd_42--\n", b"garbage line\n", b"X: y\n", b"\xff\xfe\n",
    b"\x0b\x0c\x1c\n",
)  # fmt: skip

HANDWRITTEN = (
    b"",
    b"\n",
    b"no header\n\nbody",
    b"From sender Thu Dec  3 10:00:00 2026\nSubject: x\n\nbody\n",
    b"Subject: x\nFrom late\n\nbody\n",
    b"Subject: x\nFrom late\nTo: y\n\nbody\n",
    b" continued first\nSubject: x\n\nbody",
    b": no name\nSubject: x\n\nbody",
    b"Content-Type: multipart/mixed\n\nno boundary\n",
    b"Content-Type: multipart/mixed; boundary=b\nContent-Transfer-Encoding: base64\n\n--b\n\nx\n--b--\n",
    b"Content-Type: multipart/mixed; boundary=b\n\npre\n--b\n--b\n--b\nX: 1\n\none\n--b--\nepi\n",
    b"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: multipart/mixed; boundary=c\n\n"
    b"--c\n\nin\n--b--\n",
    b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nx\r\n--b--",
    b"Content-Type: multipart/digest; boundary=b\n\n--b\n\nSubject: inner\n\nbody\n--b--\n",
    b"Content-Type: message/delivery-status\n\nA: 1\n\n\n\nB: 2\nC: 3\nnot a field\n\nD: 4",
    b"Content-Type: message/rfc822\n\nContent-Type: message/rfc822\n\nSubject: deep\n\nbody",
    b"Content-Type: multipart/report; boundary=b\n\n--b\nContent-Type: message/delivery-status\n\nA: 1\n--b\n--b--\n",
    b"Subject: bare cr\rTo: x\r\rbody\r",
    b"From x\nSubject: y\n\nbody",
    b"From x\n\nbody",
    b"From x",
    b"From x\n continued\nSubject: y\n\nbody",
    b"From x\nFrom y\nSubject: z\n\nbody",
    b"From x\r\nSubject: y\r\n folded\r\n\r\nbody",
    b"Subject:   \n  \nTo: a\n\n",
    b"Subject:",
    b"Subject: x\n--not-a-boundary: y\n\nbody",
    b'Content-Type: multipart/mixed; boundary="a:b"\n\n--a:b\nX: 1\n--a:b: y\n\nin\n--a:b--\n',
)


def _dump(part: Message) -> tuple[object, ...]:
    payload = part._payload  # type: ignore[attr-defined]
    return (
        part._headers,  # type: ignore[attr-defined]
        part.get_unixfrom(),
        part.preamble,
        part.epilogue,
        part.get_default_type(),
        [(type(d).__name__, d.args) for d in part.defects],
        [_dump(p) for p in payload] if isinstance(payload, list) else payload,
    )


def _stdlib(raw: bytes) -> tuple[object, ...]:
    return _dump(email.parser.BytesParser(policy=email.policy.compat32).parsebytes(raw))


def _seeds() -> list[bytes]:
    seeds = list(HANDWRITTEN)
    seeds += [
        dsn("Final-Recipient: rfc822; a@rcpt.example.net\nAction: failed\nStatus: 5.1.1\n"),
        dsn("Final-Recipient: rfc822; a@rcpt.example.net\nAction: delayed\nStatus: 4.4.1\n", crlf=True),
        dsn(
            "Final-Recipient: rfc822; a@b.example\n\nFinal-Recipient: rfc822; c@d.example\n",
            returned_type="message/rfc822",
        ),
        plain_bounce("<a@rcpt.example.net>: 550 5.1.1 user unknown\n"),
        message([("From", "x@y.example"), ("Subject", "hello")], "just text\n"),
    ]
    if (CORPUS / "labels.jsonl").is_file():
        names = [json.loads(line)["file"] for line in (CORPUS / "labels.jsonl").read_text().splitlines() if line]
        seeds += [(CORPUS / name).read_bytes() for name in names]
    return seeds


def _mutate(rnd: random.Random, raw: bytes) -> bytes:
    op = rnd.random()
    if op < 0.25:
        return raw[: rnd.randrange(len(raw) + 1)]
    if op < 0.55:
        for _ in range(rnd.randrange(1, 6)):
            i = rnd.randrange(len(raw) + 1)
            raw = raw[:i] + rnd.choice(TOKENS) + raw[i:]
        return raw
    if op < 0.7:
        lines = raw.splitlines(True)
        i = rnd.randrange(len(lines) + 1)
        return b"".join([*lines[:i], rnd.choice(TOKENS), *lines[i:]])
    if op < 0.85:
        lines = raw.splitlines(True)
        for _ in range(rnd.randrange(1, 6)):
            if lines:
                del lines[rnd.randrange(len(lines))]
        return b"".join(lines)
    return b"".join(rnd.choice(TOKENS) for _ in range(rnd.randrange(1, 40)))


@pytest.mark.parametrize("index", range(len(HANDWRITTEN)))
def test_handwritten_messages_parse_as_the_stdlib_does(index: int) -> None:
    raw = HANDWRITTEN[index]
    assert _dump(mimeparse.parse_bytes(raw)) == _stdlib(raw)


def test_seed_messages_parse_as_the_stdlib_does() -> None:
    for raw in _seeds():
        assert _dump(mimeparse.parse_bytes(raw)) == _stdlib(raw), raw[:200]


@pytest.mark.parametrize("seed", range(4))
def test_mutated_messages_parse_as_the_stdlib_does(seed: int) -> None:
    rnd = random.Random(seed)
    seeds = _seeds()
    for _ in range(600):
        raw = _mutate(rnd, rnd.choice(seeds))
        assert _dump(mimeparse.parse_bytes(raw)) == _stdlib(raw), raw[:300]


def test_a_failure_of_the_fast_path_falls_back_to_the_stdlib(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: object) -> Message:
        raise RuntimeError("fast path bug")

    monkeypatch.setattr(mimeparse._Parser, "parse", broken)
    raw = dsn("Final-Recipient: rfc822; a@rcpt.example.net\nAction: failed\nStatus: 5.1.1\n")
    assert _dump(mimeparse.parse_bytes(raw)) == _stdlib(raw)


def test_the_parts_come_with_their_types_in_walk_order() -> None:
    rnd = random.Random(11)
    seeds = _seeds()
    for raw in [*seeds, *(_mutate(rnd, rnd.choice(seeds)) for _ in range(300))]:
        message, order = mimeparse.parse_bytes_typed(raw)
        assert order is not None
        assert [(id(p), t) for p, t in order] == [(id(p), p.get_content_type()) for p in message.walk()]


def test_headers_only_parse_as_the_stdlib_does(monkeypatch: pytest.MonkeyPatch) -> None:
    rnd = random.Random(5)
    seeds = _seeds()
    for raw in [*seeds, *(_mutate(rnd, rnd.choice(seeds)) for _ in range(300))]:
        text = raw.decode("ascii", errors="surrogateescape")
        expected = _dump(email.parser.Parser(policy=email.policy.compat32).parsestr(text, headersonly=True))
        assert _dump(mimeparse.parse_headers_text(text)) == expected, raw[:300]
    # and not by falling back: the fast path itself handles them
    monkeypatch.setattr(email.parser.Parser, "parsestr", None)
    assert mimeparse.parse_headers_text("Subject: x\n\nbody").get_payload() == "body"
