"""Inbound message classification: a pure function of the raw bytes (no database, no network).

``classify(raw) -> Classification``; see ``classifier`` for the detector order and ``types`` for the
verdict. ``nimbus classify FILE...`` prints the same verdicts as JSON lines.
"""

from nimbus_api.classify.classifier import classify, classify_parsed
from nimbus_api.classify.types import (
    BOUNCE_REASONS,
    HARD_REASONS,
    KINDS,
    Classification,
    Kind,
    Recipient,
)

__all__ = [
    "BOUNCE_REASONS",
    "HARD_REASONS",
    "KINDS",
    "Classification",
    "Kind",
    "Recipient",
    "classify",
    "classify_parsed",
]
