"""The JSON form of a verdict, as ``nimbus classify`` prints it (one object per file)."""

from __future__ import annotations

from typing import Any

from nimbus_api.classify.types import Classification


def verdict_json(verdict: Classification, file: str) -> dict[str, Any]:
    return {
        "file": file,
        "kind": verdict.kind,
        "reasons": list(verdict.reasons),
        "recipients": [
            {
                "address": r.address,
                "action": r.action,
                "status": r.status,
                "reply_code": r.reply_code,
                "hard": r.hard,
                "permanent": r.permanent,
                "reason": r.reason,
                "diagnostic": r.diagnostic,
            }
            for r in verdict.recipients
        ],
        "matched_message_id": verdict.original_message_id or None,
        "feedback_type": verdict.feedback_type or None,
        "parse_notes": list(verdict.parse_notes),
    }
