"""RFC 3464 delivery status notifications: ``multipart/report; report-type=delivery-status``.

Each per-recipient block gives Final-Recipient (or Original-Recipient), Action, Status,
Diagnostic-Code and Remote-MTA. A recipient whose Action is ``failed`` (or whose status is 5.x.x) is
permanent; the message is a ``bounce`` when any recipient failed permanently, else a
``delivery_report`` (delayed, delivered, relayed, expanded: never counted as a bounce).

Real DSNs are sloppy, so the reader is lenient: fields are read line by line from the part's text
(folded lines joined, CRLF or LF, blank lines optional between blocks, any case), a missing Action is
inferred from the status, a missing or catch-all status is looked for in the diagnostic, and a report
whose status part was sent as ``text/plain`` is still read.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field, replace
from email.message import Message

from nimbus_api.classify import reasons as reasons_mod
from nimbus_api.classify import ses
from nimbus_api.classify.original import returned_header, returned_message_id
from nimbus_api.classify.parsing import Parsed
from nimbus_api.classify.types import Action, Classification, Kind, Recipient

STATUS_PART_TYPES = frozenset({"message/delivery-status", "message/global-delivery-status", "text/delivery-status"})
_FIELD_RE = re.compile(r"^([A-Za-z][A-Za-z0-9-]{1,40})[ \t]*:[ \t]*(.*)$")
_ADDR_RE = re.compile(r"[^\s<>\"'();,:\[\]]+@[A-Za-z0-9\-_.]+[A-Za-z0-9]")
_RECIPIENT_FIELDS = frozenset({"final-recipient", "original-recipient", "x-actual-recipient"})
_PER_RECIPIENT = _RECIPIENT_FIELDS | {"action", "status", "diagnostic-code", "remote-mta", "last-attempt-date"}
_ACTIONS: dict[str, Action] = {
    "failed": "failed",
    "failure": "failed",
    "fail": "failed",
    "failed permanently": "failed",
    "expired": "failed",
    "bounced": "failed",
    "bounce": "failed",
    "delayed": "delayed",
    "delay": "delayed",
    "deferred": "delayed",
    "delivered": "delivered",
    "relayed": "relayed",
    "expanded": "expanded",
}


@dataclass(slots=True)
class StatusGroup:
    """The fields of one per-recipient block, names lower-cased, values unfolded."""

    fields: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> str:
        return self.fields.get(name, "")


def parse_status_fields(text: str) -> list[StatusGroup]:
    """The per-recipient groups of a delivery-status text, in order.

    A group starts at a blank line or at a recipient field the current group already has (DSNs that
    omit the blank lines between recipients). Groups naming no recipient are per-message fields.
    """
    groups: list[StatusGroup] = []
    current = StatusGroup()
    last = ""
    for raw_line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if not raw_line.strip():
            if current.fields:
                groups.append(current)
                current = StatusGroup()
            last = ""
            continue
        if raw_line[0] in " \t" and last:
            current.fields[last] = f"{current.fields[last]} {raw_line.strip()}".strip()
            continue
        match = _FIELD_RE.match(raw_line)
        if match is None:
            last = ""
            continue
        name, value = match.group(1).lower(), match.group(2).strip()
        repeated = name in _RECIPIENT_FIELDS or (
            name == "action" and any(f in current.fields for f in _RECIPIENT_FIELDS)
        )
        if repeated and name in current.fields:
            groups.append(current)
            current = StatusGroup()
        if name not in current.fields:
            current.fields[name] = value
        last = name
    if current.fields:
        groups.append(current)
    return [g for g in groups if any(f in g.fields for f in _PER_RECIPIENT - {"remote-mta"})]


def _message_text(message: Message) -> str:
    """A message/* sub-part's text: its header-like fields, then whatever the parser left as body."""
    try:
        lines = [f"{name}: {value}" for name, value in message.raw_items()]
    except Exception:  # a header the parser kept as an object it cannot render: keep the rest
        lines = []
    payload = message.get_payload()
    if isinstance(payload, str) and payload.strip():
        lines.append(payload)
    return "\n".join(lines)


def status_texts(parsed: Parsed) -> list[str]:
    """The texts of the delivery-status parts, in MIME order."""
    texts: list[str] = []
    # this report's own status parts; only when it has none, those of an attached report (a relay
    # that wrapped the DSN it received in a message of its own)
    parts = parsed.parts_of_type(STATUS_PART_TYPES) or [
        part for ctype, part in parsed.typed_parts() if ctype in STATUS_PART_TYPES
    ]
    for part in parts:
        payload = part.get_payload()
        if isinstance(payload, list):
            texts.append("\n\n".join(_message_text(p) for p in payload if isinstance(p, Message)))
        else:
            texts.append(parsed.part_text(part))
    return texts


def is_dsn_report(parsed: Parsed) -> bool:
    return parsed.report_type in {"delivery-status", "global-delivery-status"}


def detect(parsed: Parsed) -> Classification | None:
    ses_verdict = _ses(parsed)
    if ses_verdict is not None:
        return ses_verdict
    fired: list[str] = []
    texts = status_texts(parsed)
    if texts:
        fired.append("dsn:delivery-status-part")
    if is_dsn_report(parsed):
        fired.insert(0, "dsn:report-type=delivery-status")
        if not texts:
            texts = [parsed.part_text(p) for ctype, p in parsed.typed_parts() if ctype.startswith("text/")]
            texts.append(parsed.report_text())
            fired.append("dsn:status-fields-in-text")
    if not fired:
        return None
    groups = [g for text in texts for g in parse_status_fields(text)]
    notification = parsed.report_text()
    pairs = [(g, r) for g in groups if (r := recipient_from_group(g, fired, notification)) is not None]
    first_of = {r.address: i for i, (_, r) in reversed(list(enumerate(pairs)))}
    pairs = [pair for i, pair in enumerate(pairs) if first_of[pair[1].address] == i]
    if len(pairs) == 1 and not pairs[0][1].diagnostic and notification:
        # no Diagnostic-Code: the human-readable part usually says what happened
        group = pairs[0][0]
        pairs = [(group, recipient_from_group(group, fired, notification, context=notification) or pairs[0][1])]
    recipients = [r for _, r in pairs]
    if not recipients:
        if not is_dsn_report(parsed):
            return None
        fired.append("dsn:no-recipient-fields")
        return None
    return verdict_for(parsed, recipients, fired)


def _ses(parsed: Parsed) -> Classification | None:
    """Amazon SES ``Bounce`` / ``Delivery`` notifications: the same fields, as JSON."""
    obj = ses.notification(parsed)
    if obj is None:
        return None
    kind = obj.get("notificationType")
    fired = [f"dsn:ses-notification={str(kind).lower()}"]
    recipients: list[Recipient] = []
    if kind == "Bounce":
        bounce = ses.section(obj, "bounce")
        permanent = str(bounce.get("bounceType", "")) == "Permanent"
        for item in ses.dicts(bounce.get("bouncedRecipients")):
            address = address_of(str(item.get("emailAddress", "")))
            if not address:
                continue
            diagnostic = clean_diagnostic(str(item.get("diagnosticCode") or ""))
            status = reasons_mod.find_status(str(item.get("status") or "")) or reasons_mod.find_last_status(diagnostic)
            raw_action = str(item.get("action") or "").lower()
            action = _ACTIONS.get(raw_action) or ("failed" if permanent else "delayed")
            recipients.append(
                build_recipient(
                    address=address,
                    action=action,
                    status=status,
                    reply_code=reasons_mod.find_reply_code(diagnostic),
                    diagnostic=diagnostic,
                    fired=fired,
                )
            )
    elif kind == "Delivery":
        delivery = ses.section(obj, "delivery")
        response = str(delivery.get("smtpResponse") or "")
        for value in delivery.get("recipients") or []:
            address = address_of(str(value))
            if address:
                recipients.append(
                    Recipient(
                        address=address,
                        action="delivered",
                        status=reasons_mod.find_status(response),
                        reply_code=reasons_mod.find_reply_code(response),
                        reason="delivered",
                        diagnostic=response[:1000],
                    )
                )
    if not recipients:
        return None
    verdict = verdict_for(parsed, recipients, fired)
    return replace(verdict, original_message_id=ses.mail_message_id(obj))


def verdict_for(parsed: Parsed, recipients: list[Recipient], fired: list[str], prefix: str = "dsn") -> Classification:
    """``bounce`` when any recipient failed permanently (``Action: failed``, or a 5.x.x status on a
    recipient not reported delivered), else ``delivery_report``."""
    kind: Kind
    if any(r.permanent and r.action in {"failed", "delayed"} for r in recipients):
        kind = "bounce"
        fired.append(f"{prefix}:action=failed")
    else:
        kind = "delivery_report"
        fired.append(f"{prefix}:" + "+".join(dict.fromkeys(f"action={r.action}" for r in recipients)))
    return Classification(
        kind=kind,
        reasons=tuple(dict.fromkeys(fired)),
        recipients=tuple(recipients),
        original_message_id=returned_message_id(parsed),
    )


#: A relaying MTA's own gloss before the remote server's words: ``5.1.0 - Unknown address error 550-'...'``
_GLOSS_RE = re.compile(r"^[245]\.\d{1,3}\.\d{1,3} - [A-Za-z ]{3,60} (?=[245]\d\d[ -])")


def clean_diagnostic(value: str) -> str:
    """A Diagnostic-Code without its type (``smtp;``) and without a relaying MTA's gloss."""
    if ";" in value[:12]:
        value = value.split(";", 1)[1]
    value = value.strip()
    return _GLOSS_RE.sub("", value)


def address_of(value: str) -> str:
    """``rfc822; <Someone@Example.COM>`` -> ``someone@example.com``; ``""`` when no address."""
    if ";" in value:
        value = value.split(";", 1)[1]
    match = _ADDR_RE.search(value)
    return match.group(0).strip(".").lower() if match else ""


def recipient_from_group(
    group: StatusGroup, fired: list[str], notification: str = "", context: str = ""
) -> Recipient | None:
    """A recipient from one per-recipient block; ``context`` is wording to read the reason from
    when the block has no Diagnostic-Code."""
    address = ""
    for name in ("final-recipient", "original-recipient", "x-actual-recipient"):
        address = address_of(group.get(name))
        if address:
            break
    if not address:
        return None
    raw_diagnostic = group.get("diagnostic-code")
    diagnostic = clean_diagnostic(raw_diagnostic)
    status = reasons_mod.find_status(group.get("status"))
    in_diag = reasons_mod.find_last_status(raw_diagnostic)
    if in_diag and (not status or not in_diag.endswith(".0.0")):
        # the code the remote server said is more precise than the one the reporting MTA derived
        status = in_diag
    action = _action(group.get("action"), status, diagnostic)
    reply_code = reasons_mod.find_reply_code(diagnostic)
    # "Status: 4.0.0 (host name lookup failure)": the comment is wording too
    comment = group.get("status").partition("(")[2]
    command = reasons_mod.find_command(diagnostic) or _notification_command(notification)
    if group.get("action").strip().lower().startswith("expired"):
        fired.append("reason:action-expired")
        reason_hint = "expired"
    else:
        reason_hint = ""
    return build_recipient(
        address=address,
        action=action,
        status=status,
        reply_code=reply_code,
        diagnostic=diagnostic,
        remote_mta=address_of_mta(group.get("remote-mta")),
        fired=fired,
        text=f"{diagnostic} {comment} {' '.join(context.split())[:2000]}".strip(),
        command=command,
        reason=reason_hint,
    )


def build_recipient(
    *,
    address: str,
    action: Action,
    status: str,
    reply_code: str,
    diagnostic: str,
    fired: list[str],
    remote_mta: str = "",
    text: str = "",
    command: str = "",
    reason: str = "",
) -> Recipient:
    """A recipient with its permanence, reason and hardness worked out.

    ``text`` is the wording the reason is read from (default: ``diagnostic``); ``reason``, when given,
    is a reason the caller already knows (a vendor's own label).
    """
    permanent = action == "failed" or status.startswith("5")
    if reason:
        pass
    elif action == "delivered" or (action in {"relayed", "expanded"} and not status.startswith(("4", "5"))):
        reason = "delivered"
    else:
        reason = reasons_mod.reason_for(status, text or diagnostic, fired, command)
    if action == "failed" and not status and reply_code.startswith("5"):
        permanent = True
    return Recipient(
        address=address,
        action=action,
        status=status,
        reply_code=reply_code,
        permanent=permanent,
        hard=reasons_mod.is_hard(reason, permanent),
        reason=reason,
        diagnostic=diagnostic[:1000],
        remote_mta=remote_mta,
    )


@functools.lru_cache(maxsize=8)
def _notification_command(notification: str) -> str:
    """The SMTP command the human-readable part names (computed once per report)."""
    return reasons_mod.find_command(notification)


def address_of_mta(value: str) -> str:
    if ";" in value:
        value = value.split(";", 1)[1]
    return value.strip()[:255]


def _action(value: str, status: str, diagnostic: str) -> Action:
    word = value.strip().lower().split("(")[0].strip()
    if word in _ACTIONS:
        return _ACTIONS[word]
    first = word.split(" ")[0] if word else ""
    if first in _ACTIONS:
        return _ACTIONS[first]
    code = status or reasons_mod.find_status(diagnostic) or reasons_mod.find_reply_code(diagnostic)
    if code.startswith("2"):
        return "delivered"
    if code.startswith("4"):
        return "delayed"
    return "failed"


__all__ = ["address_of", "build_recipient", "detect", "parse_status_fields", "returned_header", "status_texts"]
