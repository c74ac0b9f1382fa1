"""Data tables for bounces written without a delivery-status part (``nonrfc``).

Every row is ``(name, regex, what it yields)``; ``nonrfc`` only walks the tables, so a new MTA's
wording is one row (and one test) here. All regexes are precompiled, case-insensitive, and linear:
no nested quantifiers, bounded gaps, so a hostile 4 MB body cannot make them backtrack.

Tables:

* ``SENDER_PATTERNS``: the From of a bounce (mailer-daemon, postmaster, "Mail Delivery System").
* ``SUBJECT_PATTERNS``: bounce subjects ("Undelivered Mail Returned to Sender", "failure notice"...).
* ``BODY_PATTERNS``: the wording MTAs open a bounce with; yields ``failed`` or ``delayed``.
* ``ORIGINAL_MARKERS``: where the returned copy of the message starts (the report is cut there).
* ``RECIPIENT_PATTERNS``: where a failed address sits in the report text (group ``addr``).
* ``VENDOR_REASONS``: reports whose reason is their format, not their wording (a Google Groups
  refusal is ``rejected`` whatever language it is written in).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from nimbus_api.classify.needles import may_match, needles

ADDR = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.\-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9\-]{0,62}\.){1,8}[A-Za-z]{2,24}"


class _Row:
    """A table row's ``needles`` (``needles.needles`` of its regex): ``may_match`` says False only
    when the text holds none of them, and then the regex need not run."""

    __slots__ = ()
    regex: re.Pattern[str]
    needles: tuple[str, ...] | None

    def __post_init__(self) -> None:
        object.__setattr__(self, "needles", needles(self.regex))

    def may_match(self, text: str) -> bool:
        return may_match(text, self.needles)


@dataclass(frozen=True, slots=True)
class Pattern(_Row):
    name: str
    regex: re.Pattern[str]
    needles: tuple[str, ...] | None = field(default=None, init=False, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class RecipientPattern(_Row):
    """``line``: the diagnostic is the rest of the matched line (``554 <a@b>... Host unknown``)."""

    name: str
    regex: re.Pattern[str]
    line: bool = False
    needles: tuple[str, ...] | None = field(default=None, init=False, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class BodyPattern(_Row):
    name: str
    regex: re.Pattern[str]
    action: Literal["failed", "delayed"]
    needles: tuple[str, ...] | None = field(default=None, init=False, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class VendorReason(_Row):
    name: str
    regex: re.Pattern[str]
    reason: str
    needles: tuple[str, ...] | None = field(default=None, init=False, repr=False, compare=False)


_UPPER_RE = re.compile(r"(?<!\\)(?<!\(\?)[A-Z]")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _c(regex: str, flags: int = 0) -> re.Pattern[str]:
    """A case-insensitive row, matched against ``lowered`` text: its letters are lowered (escapes
    and ``(?P<`` kept) instead of compiling with ``re.I``, which is several times slower."""
    return re.compile(_UPPER_RE.sub(lambda m: m.group(0).lower(), regex), flags)


def lowered(text: str) -> str:
    """``text`` with ASCII letters lowered: same length, so match positions index ``text`` too.

    Non-ASCII text goes through UTF-8 bytes, whose ``lower`` touches only ``A-Z`` (every byte of a
    multi-byte sequence is >= 0x80): the same result as ``translate(_ASCII_LOWER)``, in C, ~30x faster.
    ``surrogatepass`` carries the lone surrogates a ``surrogateescape`` decode leaves.
    """
    if text.isascii():
        return text.lower()
    return text.encode("utf-8", "surrogatepass").lower().decode("utf-8", "surrogatepass")


#: Matched against ``display-name <address>`` of the From header.
SENDER_PATTERNS: tuple[Pattern, ...] = (
    Pattern("mailer-daemon", _c(r"\bmailer-daemon\b|^<?mailer-daemon@")),
    Pattern("postmaster", _c(r"\bpostmaster@")),
    Pattern(
        "mail-delivery-system",
        _c(r"mail delivery (?:system|subsystem|service)|mail deliver system|mail\.delivery\.system@"),
    ),
    Pattern("mailer-local-part", _c(r"<?(?:mailer|mmdf|mail-daemon|bounces?|nobody)@")),
    Pattern("empty-from", _c(r"^\s*<>\s*$")),
    Pattern("list-admin", _c(r"^[^@<]*-admin@|<[^@>]*-admin@")),
)

SUBJECT_PATTERNS: tuple[Pattern, ...] = (
    Pattern(
        "undelivered-mail",
        _c(r"undeliver(?:ed|able)(?: mail)?|returned mail|mail returned|returned to sender"),
    ),
    Pattern(
        "delivery-status-notification",
        _c(r"delivery status notification|delivery notification|delivery (?:has )?failed|delivery failure"),
    ),
    Pattern(
        "failure-notice",
        _c(r"failure notice|mail delivery failed|mail failure|mail system error|mail failed"),
    ),
    Pattern(
        "could-not-send",
        _c(r"could not send|not delivered|non-?delivery|nondeliverable|delivery problem"),
    ),
    Pattern(
        "delayed",
        _c(r"delayed mail|delivery (?:is )?delayed|\(delay\)|warning: message .{1,80} delayed"),
    ),
    Pattern("list-refusal", _c(r"are not (?:a )?member|loop alert")),
)

#: The opening words of a bounce. Delay notices say the message is still queued.
BODY_PATTERNS: tuple[BodyPattern, ...] = (
    BodyPattern("delay-warning-only", _c(r"warning message only|you do not need to resend"), "delayed"),
    BodyPattern(
        "delay-still-retrying",
        _c(
            r"has not yet been delivered|will be retried|delivery attempts will continue|"
            r"still being retried|has been delayed|could not send mail for past|delivery (?:is|"
            r"has been) delayed"
        ),
        "delayed",
    ),
    BodyPattern(
        "exim-failed",
        _c(
            r"could not be delivered to one or more (?:of its )?recipients|"
            r"following address(?:\(es\))? failed"
        ),
        "failed",
    ),
    BodyPattern("qmail-failed", _c(r"i'm afraid i wasn't able to deliver|qmail-send program"), "failed"),
    BodyPattern(
        "postfix-failed",
        _c(
            r"could not be delivered to one or more destinations|this is the (?:postfix|"
            r"mail system) program"
        ),
        "failed",
    ),
    BodyPattern(
        "sendmail-failed",
        _c(
            r"following addresses had (?:permanent )?(?:fatal|delivery) errors|"
            r"transcript of session follows|unsent message follows"
        ),
        "failed",
    ),
    BodyPattern(
        "gmail-failed",
        _c(
            r"delivery to the following recipients? failed|technical details of permanent failure|"
            r"address not found"
        ),
        "failed",
    ),
    BodyPattern(
        "yahoo-failed",
        _c(r"unable to deliver your message to the following|sorry, we were unable to deliver"),
        "failed",
    ),
    BodyPattern(
        "exchange-failed",
        _c(
            r"did not reach the following recipient|delivery has failed to these recipients|"
            r"could not be delivered because|was not delivered to"
        ),
        "failed",
    ),
    BodyPattern(
        "generic-failed",
        _c(
            r"unable to deliver (?:the |your )?message|message could not be delivered|delivery failed|"
            r"failed permanently|permanent (?:fatal )?error|couldn't be delivered|could not be delivered|"
            r"undeliverable|failed addresses follow|not be delivered|no valid recipients"
        ),
        "failed",
    ),
    BodyPattern(
        "japanese-failed",
        re.compile(r"送信に失敗|配信できません|送信できません|届きませんでした|宛先不明|エラーのため"),
        "failed",
    ),
    BodyPattern("russian-failed", re.compile(r"не может быть доставлено|не доставлено"), "failed"),
    BodyPattern(
        "list-refusal",
        _c(r"you are not a member|not member of|loop alert|duplicated message-id"),
        "failed",
    ),
)

#: The line where the returned message (or its headers) starts; the report is what comes before.
ORIGINAL_MARKERS: tuple[Pattern, ...] = (
    Pattern("exim-copy", _c(r"^-{3,} ?This is a copy of (?:the|your) message", re.M)),
    Pattern("qmail-copy", _c(r"^-{2,} ?Below this line is a copy of the message", re.M)),
    Pattern(
        "original-message",
        _c(
            r"^[ \t]*-{2,}[ \t]*(?:original message|unsent message follows|message text follows|"
            r"the header of the original message)",
            re.M,
        ),
    ),
    Pattern(
        "original-headers",
        _c(
            r"^[ \t]*(?:original (?:message|mail) (?:headers|follows|as follows)|"
            r"included is a copy of the message header|"
            r"-+ ?original message ?-+|original message headers:)",
            re.M,
        ),
    ),
    Pattern("mfilter-original", _c(r"^-{3,}original message", re.M)),
    Pattern("headers-follow", _c(r"^(?:Return-Path|Received): ?\S", re.M)),
)

#: Where a failed recipient's address sits in the report. Every row yields the ``addr`` group; a
#: recipient's position is its first match. ``To:``/``From:`` summary lines are never recipients.
RECIPIENT_PATTERNS: tuple[RecipientPattern, ...] = (
    RecipientPattern("angle-colon", _c(rf"^[ \t]*<(?P<addr>{ADDR})>:", re.M)),
    RecipientPattern("quoted-colon", _c(rf'^[ \t]*"(?P<addr>{ADDR})":[ \t]*$', re.M)),
    RecipientPattern("sendmail-reply-line", _c(rf"^[ \t]*[45]\d\d <(?P<addr>{ADDR})>\.\.\.", re.M), line=True),
    RecipientPattern("rcpt-to-transcript", _c(rf">>> ?RCPT TO: ?<(?P<addr>{ADDR})>", re.M)),
    RecipientPattern("address-field", _c(rf"\bAddress: ?<(?P<addr>{ADDR})>")),
    RecipientPattern(
        "deliver-to-line",
        _c(
            rf"(?:deliver(?:ed)? (?:message |mail )?to|reach the following recipient|failed recipient|"
            rf"address(?:es)? failed|recipient address)s?:[ \t]*<?(?P<addr>{ADDR})>?"
        ),
    ),
    RecipientPattern(
        "label-colon-address",
        _c(
            rf"^[ \t]*(?!(?:to|from|cc|bcc|sender|reply-to|original sender|return-path|delivered-to|"
            rf"x-[\w-]+)\s*:)[A-Za-z][A-Za-z ]{{2,40}}:[ \t]*<?(?P<addr>{ADDR})>?[ \t]*$",
            re.M,
        ),
    ),
    RecipientPattern(
        "bare-address-line",
        _c(
            rf"^[ \t]*(?:\*[ \t]*|>>>[ \t]*|\|[ \t]*)?<?(?P<addr>{ADDR})>?(?:<mailto:[^>\s]{{1,200}}>|"
            rf"[ \t]+on[ \t].{{1,80}}|[ \t]+\[[^\]\n]{{1,200}}\]|[ \t]+\.\.\.[ \t].{{1,200}}|"
            rf"[ \t]+<[^>\s]{{1,200}}>|[ \t]+\(.{{1,200}}\)|"
            rf"[ \t]+(?:Invalid Address|Error), ERROR_CODE.{{1,300}})?[ \t]*:?[ \t]*$",
            re.M,
        ),
    ),
)

#: Formats whose reason is the format itself.
VENDOR_REASONS: tuple[VendorReason, ...] = (
    VendorReason("google-groups", _c(r"groups\.google\.com|google groups|googlegroups"), "rejected"),
    VendorReason("list-not-member", _c(r"you are not a member|are not member|not a member of this"), "rejected"),
    VendorReason("list-loop", _c(r"loop alert|duplicated message-id"), "systemerror"),
)


def first(patterns: tuple[Pattern, ...], text: str) -> Pattern | None:
    """The first row whose regex occurs in ``text``."""
    text = lowered(text)
    for pattern in patterns:
        if pattern.may_match(text) and pattern.regex.search(text):
            return pattern
    return None


def vendor_reason(text: str) -> VendorReason | None:
    text = lowered(text)
    for row in VENDOR_REASONS:
        if row.may_match(text) and row.regex.search(text):
            return row
    return None
