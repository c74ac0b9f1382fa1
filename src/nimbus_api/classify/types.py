"""What the classifier says about one inbound message.

A ``Classification`` is a pure function of the raw bytes (``classify.classify``); it knows nothing of
our database. Matching it to a sent message, an enrollment or a contact happens later, in ``inbox``,
which may turn a ``reply`` that matches nothing into ``other`` and an ``other`` from a known prospect
into ``reply``.

``reasons`` are short, stable, machine-readable strings naming the rules that fired, in the order they
fired (``header:auto-submitted=auto-replied``, ``dsn:report-type=delivery-status``,
``pattern:exim-x-failed-recipients``...): they are stored with the message and shown by the API and
by ``nimbus classify`` so a person can see why a message was read as it was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["reply", "auto_reply", "bounce", "delivery_report", "complaint", "other"]
KINDS: tuple[Kind, ...] = ("reply", "auto_reply", "bounce", "delivery_report", "complaint", "other")

#: Reasons a bounced recipient can carry (the corpus README's vocabulary), plus ``feedback`` for a
#: complaint, ``vacation`` for an auto-reply and ``delivered`` for a success report.
BOUNCE_REASONS: frozenset[str] = frozenset(
    {
        "userunknown", "hostunknown", "hasmoved", "notaccept", "mailboxfull", "exceedlimit", "suspend",
        "filtered", "rejected", "blocked", "spamdetected", "policyviolation", "securityerror",
        "authfailure", "badreputation", "requireptr", "norelaying", "toomanyconn", "speeding",
        "notcompliantrfc", "contenterror", "virusdetected", "syntaxerror", "mesgtoobig",
        "failedstarttls", "expired", "networkerror", "systemerror", "systemfull", "mailererror",
        "onhold", "undefined",
    }
)  # fmt: skip
#: The reasons that say the address itself is permanently bad: only these are ``hard`` (suppressed).
HARD_REASONS: frozenset[str] = frozenset({"userunknown", "hostunknown", "hasmoved", "notaccept"})

Action = Literal["failed", "delayed", "delivered", "relayed", "expanded"]


@dataclass(frozen=True, slots=True)
class Recipient:
    """One recipient a bounce, delivery report or complaint is about.

    ``status`` is the enhanced status code as it appears in the message (``5.1.1``), or ``""`` when the
    message carries none (then ``permanent`` comes from the reply code or the wording). ``permanent``:
    the message will not be delivered to this recipient (any 5xx, or ``Action: failed``); ``hard``: the
    address itself is bad (``reason`` in ``HARD_REASONS``), so the contact is suppressed.
    """

    address: str
    action: Action
    status: str = ""
    reply_code: str = ""
    permanent: bool = False
    hard: bool = False
    reason: str = "undefined"
    diagnostic: str = ""
    remote_mta: str = ""


@dataclass(frozen=True, slots=True)
class Classification:
    """The verdict on one message.

    ``original_message_id``: the Message-ID of our message that the report or auto-reply is about, read
    from the returned ``message/rfc822`` / ``text/rfc822-headers`` part (bounces, complaints) or from
    ``In-Reply-To`` (auto-replies); ``""`` when none was found. ``in_reply_to`` and ``references`` are
    this message's own threading headers (angle brackets stripped), used to match replies.
    ``original_recipient``: for a complaint, the address that complained, when the report says.
    ``parse_notes``: what was wrong with the message (broken MIME, undecodable charset, no headers,
    truncated) without stopping classification.
    """

    kind: Kind
    reasons: tuple[str, ...] = ()
    recipients: tuple[Recipient, ...] = ()
    original_message_id: str = ""
    original_recipient: str = ""
    feedback_type: str = ""
    in_reply_to: str = ""
    references: tuple[str, ...] = ()
    message_id: str = ""
    from_address: str = ""
    subject: str = ""
    parse_notes: tuple[str, ...] = field(default=())

    @property
    def hard_recipients(self) -> tuple[Recipient, ...]:
        return tuple(r for r in self.recipients if r.hard)
