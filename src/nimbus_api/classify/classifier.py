"""``classify(raw)``: the one entry point, a pure function of a message's bytes.

Detectors run in a fixed order and the first that claims the message decides its kind:

1. ``arf``: an RFC 5965 feedback report is a ``complaint``;
2. ``dsn``: an RFC 3464 delivery-status report is a ``bounce`` when a recipient failed, else a
   ``delivery_report`` (delayed, relayed, delivered: never counted as a bounce);
3. ``nonrfc``: the bounces MTAs write without a delivery-status part (Exim, qmail, old sendmail,
   Exchange, webmail systems), read from their headers and wording;
4. ``autoreply``: RFC 3834 headers, the vendors' auto-reply headers and out-of-office wording;
5. ``reply``: whatever is left is a person's mail, a ``reply`` candidate or ``other``.

Reports come before auto-replies because MTAs mark their bounces ``Auto-Submitted: auto-replied`` too.
A detector that raises (it should not) is skipped with a parse note, so one strange message can never
stop a mailbox's sync.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

from nimbus_api.classify import reply
from nimbus_api.classify.parsing import Parsed, message_ids, parse
from nimbus_api.classify.types import Classification

Detector = Callable[[Parsed], Classification | None]


@functools.cache
def _detectors() -> Sequence[tuple[str, Detector]]:
    # Imported here so each detector module stays importable (and testable) on its own.
    from nimbus_api.classify import arf, autoreply, dsn, nonrfc

    # ``autoreply`` goes after the reports: MTAs mark their bounces ``Auto-Submitted`` too.
    return (
        ("arf", arf.detect),
        ("dsn", dsn.detect),
        ("nonrfc", nonrfc.detect),
        ("autoreply", autoreply.detect),
    )


def classify(raw: bytes) -> Classification:
    """Classify one message. Never raises."""
    return classify_parsed(parse(raw))


def classify_parsed(parsed: Parsed) -> Classification:
    """``classify`` for a message the caller has parsed already (``parsing.parse``)."""
    verdict: Classification | None = None
    for name, detector in _detectors():
        try:
            verdict = detector(parsed)
        except Exception:  # a detector bug must not stop a sync
            parsed.note(f"detector:{name}-failed")
            verdict = None
        if verdict is not None:
            break
    if verdict is None:
        kind, reasons = reply.detect(parsed)
        verdict = Classification(kind="reply" if kind == "reply" else "other", reasons=tuple(reasons))
    return _with_envelope(verdict, parsed)


def _with_envelope(verdict: Classification, parsed: Parsed) -> Classification:
    """Fill in the fields every verdict carries, from the message's own headers."""
    in_reply_to = message_ids(parsed.header("In-Reply-To"))
    references = message_ids(" ".join(parsed.headers("References")))
    # what ``dataclasses.replace`` would build, without its per-field introspection
    return Classification(
        kind=verdict.kind,
        reasons=verdict.reasons,
        recipients=verdict.recipients,
        original_message_id=verdict.original_message_id,
        original_recipient=verdict.original_recipient,
        feedback_type=verdict.feedback_type,
        in_reply_to=verdict.in_reply_to or (in_reply_to[0] if in_reply_to else ""),
        references=verdict.references or references,
        message_id=verdict.message_id or parsed.message_id,
        from_address=verdict.from_address or parsed.from_address,
        subject=verdict.subject or parsed.subject,
        parse_notes=tuple(dict.fromkeys((*verdict.parse_notes, *parsed.notes))),
    )
