"""Bounces without a delivery-status part: Exim, qmail, old sendmail, Exchange, webmail systems.

A message is a bounce when it has ``X-Failed-Recipients``; or when its sender or subject looks like a
mail system's (mailer-daemon, postmaster, "Undelivered Mail Returned to Sender") *and* its text has a
bounce's wording (``bounce_patterns.BODY_PATTERNS``); or when both its sender and its subject do. A
subject with a reply or forward prefix from an ordinary sender is a person's mail about a bounce, not
one. The report text is cut where the
returned message starts; failed recipients are found where MTAs put them (``RECIPIENT_PATTERNS``),
else in ``X-Failed-Recipients``, else by ``flufl.bounce``, else as the returned message's ``To``.
Each recipient's diagnostic is the text after its address up to the next recipient; its status code,
reply code and reason are read from there (``reasons``), from the whole report when that says
nothing. A notice that the message is only delayed is a ``delivery_report``, never a bounce.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from typing import NamedTuple

from nimbus_api.classify import bounce_patterns as bp
from nimbus_api.classify import reasons as reasons_mod
from nimbus_api.classify.dsn import build_recipient, parse_status_fields, recipient_from_group, verdict_for
from nimbus_api.classify.original import returned_header, returned_message_id
from nimbus_api.classify.parsing import Parsed
from nimbus_api.classify.types import Action, Classification, Recipient

# flufl.bounce logs every failure of its own detectors with a traceback; for us a failing library
# detector only means "no addresses from it", so its logger is kept quiet.
_FLUFL_LOG = logging.getLogger("flufl.bounce")
_FLUFL_LOG.addHandler(logging.NullHandler())
_FLUFL_LOG.propagate = False

_ADDR_RE = re.compile(bp.ADDR)
_FORWARD_OR_REPLY_RE = re.compile(r"^\s*(?:(?:re|aw|sv|antw|fwd?|wg|tr|rv|vs)\s*(?:\[\d+\])?\s*:\s*)+", re.I)
_MAX_TEXT = 32 * 1024
#: The report (before the returned message) is looked for in this many characters.
_MAX_REPORT = 12 * 1024
_MAX_DIAGNOSTIC = 1200
_NOT_RECIPIENT_LOCAL = ("mailer-daemon", "postmaster", "support", "abuse", "noreply", "no-reply")


def detect(parsed: Parsed) -> Classification | None:
    fired: list[str] = []
    failed_header = _addresses(" ".join(parsed.headers("X-Failed-Recipients")))
    if failed_header:
        fired.append("pattern:x-failed-recipients")
    sender = bp.first(bp.SENDER_PATTERNS, parsed.header("From") or "<>")
    if sender is not None:
        fired.append(f"pattern:sender-{sender.name}")
    subject = bp.first(bp.SUBJECT_PATTERNS, parsed.subject)
    if subject is not None and sender is None and _FORWARD_OR_REPLY_RE.match(parsed.subject):
        subject = None  # a person answering or forwarding a bounce: "Re: Undelivered Mail ..."
    if subject is not None:
        fired.append(f"pattern:subject-{subject.name}")
    if not failed_header and sender is None and subject is None:
        return None
    text = parsed.report_text()[:_MAX_TEXT].replace("\r\n", "\n")
    report = _cut_report(text, fired)
    body = _body_pattern(" ".join(report[:6000].lower().split()))
    if body is not None:
        fired.append(f"pattern:body-{body.name}")
    if not failed_header and body is None and (sender is None or subject is None):
        return None
    action: Action = "delayed" if body is not None and body.action == "delayed" else "failed"
    if action == "delayed":
        fired.append("pattern:delayed")
    recipients = _embedded_dsn(report, fired) or _recipients(
        parsed, report, text[len(report) :], failed_header, action, fired
    )
    if not recipients:
        return None
    verdict = verdict_for(parsed, recipients, fired, prefix="pattern")
    if not verdict.original_message_id:
        verdict = replace(verdict, original_message_id=returned_message_id(parsed, text[len(report) :]))
    return verdict


def _body_pattern(report: str) -> bp.BodyPattern | None:
    for pattern in bp.BODY_PATTERNS:
        if pattern.may_match(report) and pattern.regex.search(report):
            return pattern
    return None


def _cut_report(text: str, fired: list[str]) -> str:
    """The report part of ``text``: everything before the returned message starts."""
    cut = min(len(text), _MAX_REPORT)
    name = ""
    low = bp.lowered(text[:cut])
    for marker in bp.ORIGINAL_MARKERS:
        if not marker.may_match(low):
            continue
        match = marker.regex.search(low, 0, cut)
        if match is not None and match.start() < cut and match.start() > 0:
            cut, name = match.start(), marker.name
    if name:
        fired.append(f"pattern:cut-{name}")
    return text[:cut]


def _addresses(value: str) -> list[str]:
    return list(dict.fromkeys(m.group(0).lower() for m in _ADDR_RE.finditer(value)))


def _embedded_dsn(report: str, fired: list[str]) -> list[Recipient]:
    """RFC 3464 fields pasted into the text (a report whose MIME structure was lost)."""
    if "final-recipient" not in report.lower():
        return []
    recipients = [r for g in parse_status_fields(report) if (r := recipient_from_group(g, fired, report)) is not None]
    if recipients:
        fired.append("pattern:embedded-delivery-status")
    return recipients


def _pasted_header(rest: str, name: str) -> str:
    """A header of the returned message pasted as text after the report (no message/rfc822 part)."""
    match = re.search(rf"^[ \t]*{name}:[ \t]*(.{{1,300}})$", rest[:20000], re.M | re.I)
    return match.group(1).strip() if match else ""


def _recipients(
    parsed: Parsed, report: str, rest: str, failed_header: list[str], action: Action, fired: list[str]
) -> list[Recipient]:
    excluded = _excluded(parsed)
    low = bp.lowered(report)
    positions: dict[str, int] = {}
    spans: list[Mention] = []
    for pattern in bp.RECIPIENT_PATTERNS:
        if not pattern.may_match(low):
            continue
        for match in pattern.regex.finditer(low):
            address = match.group("addr").lower()
            if address in excluded or address.split("@")[0] in _NOT_RECIPIENT_LOCAL:
                continue
            line_end = report.find("\n", match.end()) if pattern.line else -1
            spans.append(Mention(match.start(), match.end("addr"), address, line_end))
            if address not in positions:
                positions[address] = match.start()
                fired.append(f"pattern:recipient-{pattern.name}")
    found = sorted(positions, key=positions.__getitem__)
    lowered = report.lower()
    if failed_header and (all(a in lowered for a in failed_header) or not found):
        addresses = failed_header
    else:
        addresses = found or failed_header
    if not addresses:
        addresses = _flufl(parsed, excluded)
        if addresses:
            fired.append("pattern:recipient-flufl-bounce")
    if not addresses:
        to = _addresses(returned_header(parsed, "To") or _pasted_header(rest, "To"))
        addresses = [a for a in to if a not in excluded][:1]
        if addresses:
            fired.append("pattern:recipient-returned-to")
    if not addresses:
        return []
    chunks = _chunks(report, addresses, spans)
    single = len(addresses) == 1
    vendor = bp.vendor_reason(report)
    recipients: list[Recipient] = []
    for address in addresses:
        chunk, mentioned = chunks.get(address, ("", ""))
        recipients.append(_recipient(address, chunk, mentioned, report if single else "", action, vendor, fired))
    return recipients


def _excluded(parsed: Parsed) -> set[str]:
    """Addresses that are never the failed recipient: the bounce's own sender and addressee."""
    out: set[str] = set()
    for name in ("From", "To", "Return-Path", "Reply-To"):
        out.update(_addresses(parsed.header(name)))
    return out


class Mention(NamedTuple):
    """Where a recipient pattern found an address: the match start, the address end, and for
    one-line rows the end of that line (the diagnostic stops there)."""

    start: int
    end: int
    address: str
    line_end: int = -1


def _chunks(report: str, addresses: list[str], spans: list[Mention]) -> dict[str, tuple[str, str]]:
    """Each address's diagnostic (from its first mention up to the next mention of a recipient),
    and the same text from the start of the mention (to read the SMTP command from)."""
    mentions = sorted(m for m in spans if m.address in addresses)
    lowered = report.lower()
    for address in addresses:
        if not any(m.address == address for m in mentions):
            index = lowered.find(address)
            if index >= 0:
                mentions.append(Mention(index, index + len(address), address))
    mentions.sort()
    chunks: dict[str, tuple[str, str]] = {}
    for i, mention in enumerate(mentions):
        if mention.address in chunks:
            continue
        stop = next(
            (m.start for m in mentions[i + 1 :] if m.start >= mention.end and m.address != mention.address),
            len(report),
        )
        if mention.line_end >= 0:
            stop = min(stop, mention.line_end)
        chunks[mention.address] = (report[mention.end : stop][:_MAX_DIAGNOSTIC], report[mention.start : stop])
    return chunks


def _recipient(
    address: str,
    chunk: str,
    mentioned: str,
    whole: str,
    action: Action,
    vendor: bp.VendorReason | None,
    fired: list[str],
) -> Recipient:
    diagnostic = " ".join(chunk.split())
    context = diagnostic
    status = reasons_mod.find_status(diagnostic)
    if whole and not status and reasons_mod.phrase_rule(diagnostic) is None:
        context = " ".join(whole.split())[: _MAX_DIAGNOSTIC * 2]
        status = reasons_mod.find_status(context)
    reply_code = reasons_mod.find_reply_code(context)
    command = reasons_mod.find_command(mentioned) or reasons_mod.find_command(whole)
    reason = ""
    if vendor is not None:
        fired.append(f"pattern:vendor-{vendor.name}")
        reason = vendor.reason
    if action == "delayed" and status.startswith("5"):
        status = "4" + status[1:]
    return build_recipient(
        address=address,
        action=action,
        status=status,
        reply_code=reply_code,
        diagnostic=diagnostic,
        fired=fired,
        text=context,
        command=command,
        reason=reason,
    )


def _flufl(parsed: Parsed, excluded: set[str]) -> list[str]:
    try:
        from flufl.bounce import all_failures

        temporary, permanent = all_failures(parsed.message)
    except Exception:  # a detector of the library that trips on a strange message: no addresses
        return []
    found = sorted({a.decode("utf-8", "replace").lower() for a in (*permanent, *temporary)})
    return [a for a in found if "@" in a and a not in excluded]
