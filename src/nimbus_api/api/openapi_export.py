"""Export the OpenAPI document as stable, diff-friendly JSON (``make openapi``; CI checks it)."""

from __future__ import annotations

import json

from nimbus_api.api.app import create_app
from nimbus_api.config import Settings


def export_openapi() -> str:
    app = create_app(Settings(database_url=None, redis_url=None))
    return json.dumps(app.openapi(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
