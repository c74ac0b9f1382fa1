"""A warmup message on the wire: plain text, threaded when it is a reply, with the marker header.

No tracking, no ``List-Unsubscribe``, no HTML: it should read like one person writing to another. The text
is rebuilt from the row's seed (``phrases``), the names are the two inboxes' own display names.
"""

from __future__ import annotations

import email.policy
import email.utils
from datetime import datetime
from email.message import EmailMessage

from nimbus_api.models import EmailAccount, WarmupMessage
from nimbus_api.warmup import phrases
from nimbus_api.warmup.marker import HEADER, Marker


def body_of(row: WarmupMessage, sender: EmailAccount, recipient: EmailAccount) -> str:
    names = {
        "sender_name": phrases.first_name(sender.from_name, sender.email),
        "recipient_name": phrases.first_name(recipient.from_name, recipient.email),
    }
    if row.parent_id is None and row.in_reply_to is None:
        return phrases.compose(row.seed, **names).body
    return phrases.compose_reply(row.seed, subject=row.subject, **names).body


def render(row: WarmupMessage, sender: EmailAccount, recipient: EmailAccount, marker: Marker, now: datetime) -> bytes:
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = email.utils.formataddr((sender.from_name or "", sender.email))
    msg["To"] = email.utils.formataddr((recipient.from_name or "", recipient.email))
    msg["Subject"] = row.subject
    msg["Date"] = email.utils.format_datetime(now)
    msg["Message-ID"] = f"<{row.message_id_header}>"
    if row.in_reply_to:
        msg["In-Reply-To"] = row.in_reply_to
    if row.references:
        msg["References"] = row.references
    msg[HEADER] = marker.sign(row.message_id_header)
    msg.set_content(body_of(row, sender, recipient))
    return msg.as_bytes()
