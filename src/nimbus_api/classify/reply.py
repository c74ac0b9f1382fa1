"""The last detector: a message no other detector claimed is a person's mail.

It is a ``reply`` candidate when it says it answers something (``In-Reply-To``, ``References``, or a
reply prefix on the subject in one of the languages mail clients use), else ``other``. Whether it
answers one of *our* messages is decided when it is matched (``inbox.matching``): a candidate that
matches nothing is stored as ``other``, and an ``other`` from a prospect we wrote to from this account
becomes a ``reply``.
"""

from __future__ import annotations

import re

from nimbus_api.classify.parsing import Parsed

#: Reply prefixes: en Re, de AW/Aw, sv/da/no SV, nl Antw, fi VS, pl Odp, it R/RIF, es/pt RE/RES/ENC? (no: ENC
#: is a forward), fr "Réf", plus the bracketed forms some clients write (``Re[2]:``).
REPLY_PREFIX_RE = re.compile(
    r"^\s*(?:re|aw|sv|antw|antwort|vs|odp|rif|r|res|réf|ref|ynt|atb|otv|回复|答复|返信)(?:\[\d+\]|\(\d+\))?\s*[:：]",
    re.I,
)


def detect(parsed: Parsed) -> tuple[str, list[str]]:
    """``("reply", reasons)`` or ``("other", reasons)``; never fails."""
    reasons: list[str] = []
    if parsed.header("In-Reply-To"):
        reasons.append("header:in-reply-to")
    if parsed.header("References"):
        reasons.append("header:references")
    if REPLY_PREFIX_RE.match(parsed.subject):
        reasons.append("subject:reply-prefix")
    if reasons:
        return "reply", reasons
    return "other", ["fallback:no-reply-markers"]
