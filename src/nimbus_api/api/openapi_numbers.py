"""Bounds of an integer written as integers in the document (``"maximum": 86400``, not ``86400.0``).

Pydantic emits a field's bounds as given (``le=86_400`` is ``86400``), but FastAPI passes the document
through its own OpenAPI models, which type ``minimum``, ``maximum`` and the other numeric keywords as
``float``: every bound comes out with a fraction, on integer fields too. For JSON Schema the number is the
same, but a client generator or a tester may take ``86400.0`` for a float and declare or send a float for
an integer field. The bounds of a ``"type": "integer"`` schema are put back as the integers they are; the
bounds of a ``"type": "number"`` schema (``25.0``) are left as they are.
"""

from __future__ import annotations

from typing import Any

_NUMERIC_KEYWORDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")


def _is_integer_schema(schema: dict[str, Any]) -> bool:
    kind = schema.get("type")
    return kind == "integer" or (isinstance(kind, list) and "integer" in kind and "number" not in kind)


def integer_bounds_as_integers(node: Any) -> None:
    """Rewrite, in place, the integral float bounds of every integer schema under ``node``."""
    if isinstance(node, dict):
        if _is_integer_schema(node):
            for keyword in _NUMERIC_KEYWORDS:
                value = node.get(keyword)
                if type(value) is float and value.is_integer():
                    node[keyword] = int(value)
        for value in node.values():
            integer_bounds_as_integers(value)
    elif isinstance(node, list):
        for item in node:
            integer_bounds_as_integers(item)
