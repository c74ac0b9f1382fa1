from __future__ import annotations

from nimbus_api.classify.parsing import Parsed
from nimbus_api.classify.types import Classification


def detect(parsed: Parsed) -> Classification | None:
    return None
